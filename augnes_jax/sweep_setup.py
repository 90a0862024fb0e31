"""What a sweep is built from: its run directory, its epoch settings, its buckets and each bucket's
device state (shell layer)."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from augnes_jax import buffer as rb
from augnes_jax import envs as envs_lib
from augnes_jax.config import Config, ConfigError, check_goals, sweep_depths
from augnes_jax.distribution import Placement, pad_rows, shard_bucket_fns
from augnes_jax.epoch import (
    EpochSettings,
    buffer_item,
    init_bucket_buffers,
    init_bucket_states,
    make_bucket_fns,
    reward_sources,
)
from augnes_jax.planner import PlannerSettings
from augnes_jax.sampling import INIT, variant_keys
from augnes_jax.sweep_errors import SweepError
from augnes_jax.variants import Bucket, build_buckets
from augnes_jax.world_model import make_world_model

__all__ = ["BucketRun", "build_bucket_run", "build_env", "check_writable", "epoch_settings", "resolve_run_dir", "sweep_buckets"]


def resolve_run_dir(cfg: Config, run_dir: str | None) -> Path:
    """Returns the run directory: ``--run-dir``, else ``runs_dir/run_name``, else a timestamped name."""
    if run_dir:
        return Path(run_dir)
    name = cfg.run_name or f"{cfg.env.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    root = Path(cfg.runs_dir).resolve()
    path = (root / name).resolve()
    if root not in path.parents:
        raise ConfigError("run_name", f"{name!r} escapes {root}")
    return path


def check_writable(run_dir: Path) -> None:
    """Creates ``run_dir`` and checks that this process can write into it.

    Raises:
      SweepError: it cannot; the message names the directory and the reason.
    """
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        # one probe per process: hosts sharing the run directory must not remove each other's
        probe = run_dir / f".write_probe.{jax.process_index()}"
        probe.write_text("ok")
        probe.unlink()
    except OSError as e:
        raise SweepError(f"cannot write to run directory {run_dir}: {e.strerror or e}") from None


def epoch_settings(cfg: Config, env: Any) -> EpochSettings:
    """Returns the static sizes of one epoch under ``cfg``, and where planning gets the reward."""
    planner = PlannerSettings.from_config(cfg.planner)
    pc = cfg.planner
    return EpochSettings(
        episode_length=cfg.env.episode_length,
        samples_per_epoch=cfg.samples_per_epoch,
        train_steps=cfg.world_model.train_steps_per_epoch,
        planner=planner,
        collect_planner=dataclasses.replace(planner, num_samples=pc.collect_num_samples,
                                            num_elites=min(pc.num_elites, pc.collect_num_samples),
                                            iterations=pc.collect_iterations),
        exploration_noise=cfg.planner.exploration_noise,
        k_steps=tuple(sorted(cfg.world_model.k_steps)),
        **reward_sources(cfg.world_model.reward, env),
    )


def sweep_buckets(cfg: Config) -> list[Bucket]:
    """Returns the width buckets of the config's variants (``auto`` mode: the start width only)."""
    v = cfg.variants
    if v.capacity_mode == "auto":
        return build_buckets((v.auto_start_hidden_dim,), v.buffer_sizes, v.seeds, v.bucket_ratio,
                             max_width_override=v.auto_max_hidden_dim, depths=sweep_depths(cfg))
    return build_buckets(v.hidden_dims, v.buffer_sizes, v.seeds, v.bucket_ratio, depths=sweep_depths(cfg))


@dataclasses.dataclass
class BucketRun:
    """A bucket's static functions and its current (device) state.

    ``states`` and ``buffers`` carry a leading variant axis padded up to a multiple of the
    device count; rows past ``len(bucket.variants)`` are padding and never reach an output.
    """

    bucket: Bucket
    wm: Any
    fns: Any
    states: Any
    buffers: Any
    seeds: np.ndarray
    hidden_dims: np.ndarray

    @property
    def padded_size(self) -> int:
        """Returns the length of the (padded) variant axis."""
        return int(self.seeds.shape[0])

    def pad(self, x: np.ndarray) -> np.ndarray:
        """Returns per-variant rows ``x[len(variants), ...]`` padded to the variant axis' length."""
        return pad_rows(np.asarray(x), self.padded_size)


def build_bucket_run(b: Bucket, cfg: Config, env: Any, env_params: Any, goal_ids: np.ndarray,
                     settings: EpochSettings, placement: Placement, seed: Any = None) -> BucketRun:
    """Returns bucket ``b``'s jitted functions and its freshly initialised, placed device state.

    ``seed`` (:func:`augnes_jax.buffer_seed.seed_items`: the file's last rows) is added to every
    variant's empty buffer in order, so each starts with its ``buffer_size`` most recent rows.
    """
    wmc = cfg.world_model
    obs_dim, act_dim = env.obs_dim, env.action_feature_dim
    wm = make_world_model(obs_dim, act_dim, b.max_width, b.num_layers, wmc.learning_rate,
                          wmc.weight_decay, wmc.grad_clip, wmc.batch_size,
                          num_goals=env.num_goals, learn_reward=settings.learn_reward)
    fns = make_bucket_fns(env, env_params, wm, goal_ids, env.num_goals, settings)
    size = placement.padded(len(b.variants))
    seeds = pad_rows(np.asarray([v.seed for v in b.variants], np.int64), size)
    hidden = pad_rows(np.asarray([v.hidden_dim for v in b.variants], np.int32), size)
    capacity = pad_rows(np.asarray([v.buffer_size for v in b.variants], np.int32), size)
    item = buffer_item(env, obs_dim)
    # built straight into their sharding, so no single device ever holds every buffer
    def init(k, h, c, rows):
        buffers = init_bucket_buffers(item, b.max_buffer_size, c)
        if rows is not None:  # the file's last rows, after the rows before them
            buffers = jax.vmap(rb.add_after, in_axes=(0, None, None))(buffers, rows.before, rows.items)
        return init_bucket_states(wm, k, h), buffers

    init = jax.jit(init, out_shardings=placement.sharding)
    states, buffers = init(variant_keys(cfg.seed, seeds, INIT, 0), jnp.asarray(hidden), jnp.asarray(capacity), seed)
    return BucketRun(b, wm, shard_bucket_fns(fns, placement.mesh), states, buffers, seeds, hidden)


def build_env(cfg: Config, env: Any = None) -> tuple[Any, Config]:
    """Returns the sweep's environment and the config that records how a fresh process builds it.

    The environment comes back behind the full interface (:func:`augnes_jax.envs.adapt`).
    ``env`` given: that object, recorded by its class's import path where it has one. Otherwise
    ``env.name`` built with ``env.kwargs``; a name registered from Python is recorded as its
    factory's import path, so ``--resume``, ``infer`` and ``dashboard`` need no registering code.

    Raises:
      ConfigError: the name does not resolve, the factory refuses ``env.kwargs`` or raises, the
        environment lacks part of the minimal contract, or ``env.goals`` names a goal it does not
        have.
    """
    if env is None:
        try:
            env = envs_lib.make(cfg.env.name, **cfg.env.kwargs)
        except envs_lib.EnvLookupError as e:
            raise ConfigError("env.kwargs" if "env.kwargs" in str(e) else "env.name", str(e)) from None
        name = envs_lib.recorded_name(cfg.env.name)
    else:
        cls = type(env)
        name = (f"{cls.__module__}:{cls.__qualname__}"
                if cls.__module__ not in ("__main__", None) and "<" not in cls.__qualname__ else cfg.env.name)
        if cls.__module__.startswith("augnes_jax.envs.") and getattr(env, "name", None):
            name = env.name if envs_lib.is_known(env.name) else name
    try:
        env = envs_lib.adapt(env, label=name)
    except envs_lib.EnvContractError as e:
        raise ConfigError("env.name", str(e)) from None
    check_goals(cfg, env.num_goals)
    if name != cfg.env.name:
        cfg = dataclasses.replace(cfg, env=dataclasses.replace(cfg.env, name=name))
    return env, cfg
