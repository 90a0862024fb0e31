"""A sweep's orbax checkpoints: what an epoch saves, and putting a saved state back on the devices.

A checkpoint of epoch ``e`` holds every bucket's parameters, optimizer state and normalizer (for
inference), the full device state of every bucket as numbered leaves (``resume``, for a resumed
run) and the meta item of :mod:`augnes_jax.checkpoint_meta`. Rows past a bucket's variants are
padding: a restore drops them and pads again for the device count of the run that restores.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from augnes_jax import checkpoint_meta
from augnes_jax.checkpoint import SweepCheckpointer
from augnes_jax.distribution import host_copy
from augnes_jax.sweep_errors import SweepError
from augnes_jax.variants import Variant

__all__ = ["save_epoch", "restore_device_state", "saved_variant_widths"]


def save_epoch(checkpointer: SweepCheckpointer, epoch: int, runs: Sequence[Any], *, config: Mapping[str, Any],
               env: str, obs_dim: int, act_dim: int, num_layers: int, val_mse: Mapping[str, Any],
               diverged: set[str]) -> None:
    """Starts the checkpoint save of epoch ``epoch`` (orbax commits it in the background).

    ``runs`` are the sweep's bucket runs (``bucket``, ``states``, ``buffers``); ``val_mse`` maps a
    variant's current name to its validation error this epoch.
    """
    arrays: dict[str, Any] = {"params": {}, "opt_state": {}, "normalizer": {}, "resume": {}}
    variants_meta = []
    depths = len({r.bucket.num_layers for r in runs}) > 1  # each variant records its own depth
    for r in runs:
        name = r.bucket.name
        arrays["params"][name] = r.states.params
        arrays["opt_state"][name] = r.states.opt_state
        arrays["normalizer"][name] = r.states.normalizer
        leaves = jax.tree.leaves((r.states, r.buffers))
        arrays["resume"][name] = {f"leaf_{i:04d}": leaf for i, leaf in enumerate(leaves)}
        masks = host_copy(r.states.mask)
        for i, v in enumerate(r.bucket.variants):
            variants_meta.append(checkpoint_meta.variant_entry(
                name=v.name, hidden_dim=v.hidden_dim, buffer_size=v.buffer_size, seed=v.seed, bucket=name,
                index=i, max_width=v.max_width, mask=masks[i].tolist(), val_mse=val_mse.get(v.name),
                diverged=v.name in diverged, num_layers=v.num_layers if depths else None))
    wm = runs[0].wm if runs else None
    meta = checkpoint_meta.build_meta(config=config, env=env, obs_dim=obs_dim, act_dim=act_dim,
                                      num_layers=num_layers, epoch=epoch, variants=variants_meta,
                                      learn_reward=bool(wm.learn_reward) if wm is not None else None,
                                      num_goals=int(wm.num_goals) if wm is not None else None)
    best = checkpoint_meta.best_val_mse(meta)
    checkpointer.save(epoch, arrays=arrays, meta=meta, metrics={"val_mse": best} if best is not None else None)


def restore_device_state(runs: Sequence[Any], arrays: Mapping[str, Any], step: int, directory: Any,
                         shard) -> list[tuple[Any, Any]]:
    """Returns every bucket's ``(states, buffers)`` as saved at ``step``, placed by ``shard``.

    ``runs`` give each bucket's current state, whose tree structure, shapes and dtypes the saved
    leaves must match; ``directory`` names the checkpoints in messages.

    Raises:
      SweepError: the checkpoint does not fit this config's buckets.
    """
    try:
        saved = arrays["resume"]
        for r in runs:
            saved[r.bucket.name]  # noqa: B018 - fail early, naming the bucket
    except (KeyError, TypeError) as e:
        raise SweepError(f"cannot resume: checkpoint {step} in {directory} has no "
                         f"resume state for bucket {e}; was it written with another config?") from None
    out = []
    for r in runs:
        leaves, treedef = jax.tree.flatten((r.states, r.buffers))
        item = saved[r.bucket.name]
        if sorted(item) != [f"leaf_{i:04d}" for i in range(len(leaves))]:
            raise SweepError(f"cannot resume: checkpoint {step} holds {len(item)} arrays for bucket "
                             f"{r.bucket.name}, this config needs {len(leaves)}")
        # rows past the bucket's variants are padding: re-pad for this run's device count
        n = len(r.bucket.variants)
        restored = [jnp.asarray(r.pad(np.asarray(item[f"leaf_{i:04d}"])[:n]), dtype=leaf.dtype)
                    for i, leaf in enumerate(leaves)]
        for a, b in zip(restored, leaves, strict=True):
            if a.shape != b.shape:
                raise SweepError(f"cannot resume: checkpoint {step} does not match this config (bucket "
                                 f"{r.bucket.name}: shape {a.shape} != {b.shape}); only keys that keep "
                                 f"every array's shape may change")
        out.append(shard(jax.tree.unflatten(treedef, restored)))
    return out


def saved_variant_widths(meta: Mapping[str, Any], variants: Sequence[Variant]) -> list[Variant]:
    """Returns ``variants`` with the names and widths the checkpoint recorded (auto mode grows them)."""
    saved = checkpoint_meta.saved_variants(meta)
    new = []
    for v in variants:
        match = saved.get((v.bucket, v.index))
        if match is not None and match["hidden_dim"] != v.hidden_dim:
            v = v.with_width(match["hidden_dim"])
        new.append(v)
    return new
