"""A tiny committed checkpoint (bucket w4 holding h2 and h4, obs_dim 3, act_dim 2) for tests."""

import jax
import jax.numpy as jnp

from augnes_jax import checkpoint as ckpt
from augnes_jax import world_model as W


def write_toy_checkpoint(run_dir, seed: int = 0):
    """Returns ``run_dir`` after saving step 0 of a two-variant world-model checkpoint in it."""
    wm = W.make_world_model(3, 2, max_width=4, num_layers=1)
    states = jax.jit(jax.vmap(wm.init))(jax.random.split(jax.random.key(seed), 2), jnp.array([2, 4]))
    variants = [{"name": f"h{h}-b8-s0", "hidden_dim": h, "buffer_size": 8, "seed": 0, "bucket": "w4", "index": i,
                 "max_width": 4, "mask": [1] * h + [0] * (4 - h), "val_mse": 0.1 * (i + 1)}
                for i, h in enumerate([2, 4])]
    meta = {"config": {}, "env": "toy", "obs_dim": 3, "act_dim": 2, "num_layers": 1, "variants": variants}
    with ckpt.SweepCheckpointer(run_dir / "checkpoints") as saver:
        saver.save(0, arrays=ckpt.world_model_arrays({"w4": states}), meta=meta)
    return run_dir
