"""``python -m augnes_jax.sweep``: train capacity variants side by side and measure their regret.

The host shell of a sweep. Each epoch it calls a few jitted functions over every bucket's
variant axis (collect, train, evaluate, control: see :mod:`augnes_jax.epoch`), then writes
between them: ``judgments.jsonl``, ``strategy_stats.json``, ``world_model_stats.json``,
TensorBoard runs, an orbax checkpoint and the MetaJudgmentController's decision.

Usage::

    python -m augnes_jax.sweep [--config PATH] [--run-dir DIR] [--resume] [key=value ...]
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from augnes_jax import envs as envs_lib
from augnes_jax import files
from augnes_jax.config import Config, ConfigError, config_from_dict, diff, load_config
from augnes_jax.epoch import (
    EpochSettings,
    buffer_item,
    init_bucket_buffers,
    init_bucket_states,
    make_bucket_fns,
    make_reference_fn,
    make_validation_set,
)
from augnes_jax.planner import PlannerSettings
from augnes_jax.variants import (
    Bucket,
    Variant,
    all_variants,
    build_buckets,
    useful_flop_fraction,
    variant_num_params,
)
from augnes_jax.world_model import make_world_model

log = logging.getLogger("augnes_jax.sweep")

# Key purposes: every random stream is derived from (config seed, variant seed, purpose, epoch),
# never from the variant's width or buffer size, so variants that differ only in capacity see
# the same random numbers (and an interrupted run resumes onto the same streams).
_INIT, _COLLECT, _TRAIN, _EVAL, _VAL = range(5)


class SweepError(RuntimeError):
    """A sweep cannot start or continue; the message is one line for the user."""


def _purpose_key(cfg_seed: int, purpose: int, epoch: int = 0) -> jax.Array:
    return jax.random.fold_in(jax.random.fold_in(jax.random.key(cfg_seed), purpose), epoch)


def variant_keys(cfg_seed: int, seeds: np.ndarray, purpose: int, epoch: int) -> jax.Array:
    """Returns ``[V]`` typed keys that depend only on (config seed, variant seed, purpose, epoch)."""
    base = _purpose_key(cfg_seed, purpose, epoch)
    return jax.vmap(lambda s: jax.random.fold_in(base, s))(jnp.asarray(seeds, jnp.uint32))


def eval_episodes(cfg_seed: int, epoch: int, goal_ids: np.ndarray, per_goal: int) -> tuple[jax.Array, jax.Array]:
    """Returns the evaluation episodes' ``(keys[N], goals[N])``; shared by every variant (CRN)."""
    goals = jnp.repeat(jnp.asarray(goal_ids, jnp.int32), per_goal)
    return jax.random.split(_purpose_key(cfg_seed, _EVAL, epoch), goals.shape[0]), goals


def goal_probabilities(avg_regret: np.ndarray, counts: np.ndarray, mode: str, temperature: float, floor: float) -> np.ndarray:
    """Returns collection probabilities over goals ``[G]``.

    ``uniform`` gives every goal the same share. ``regret`` gives goals with a higher average
    regret so far a larger share: a softmax over standardised average regret at the given
    temperature, mixed with a uniform floor so no goal starves. Goals not yet judged count as
    average.
    """
    g = avg_regret.shape[0]
    if mode == "uniform" or not np.any(counts > 0):
        return np.full(g, 1.0 / g)
    seen = counts > 0
    r = np.where(seen, avg_regret, np.nan)
    mu = np.nanmean(r)
    sd = np.nanstd(r)
    z = np.where(seen, (r - mu) / (sd + 1e-8), 0.0)
    w = np.exp((z - z.max()) / temperature)
    p = w / w.sum()
    floor = min(floor, 1.0 / g)
    return floor + (1.0 - g * floor) * p


# ----------------------------------------------------------------------------- memory check


def available_memory_bytes() -> int | None:
    """Returns the bytes available for the sweep's arrays on the default device, if known."""
    dev = jax.devices()[0]
    if dev.platform != "cpu":
        try:
            stats = dev.memory_stats() or {}
            limit = stats.get("bytes_limit")
            if limit:
                return int(limit) - int(stats.get("bytes_in_use", 0))
        except Exception:  # noqa: BLE001 - memory_stats is optional on some backends
            return None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return None


def estimate_bytes(cfg: Config, buckets: list[Bucket], obs_dim: int, act_dim: int) -> int:
    """Returns an estimate of the device bytes the variants need (buffers, params, optimizer)."""
    item = 4 * (2 * obs_dim + act_dim + 1)
    total = 0
    for b in buckets:
        v = len(b.variants)
        n_params = variant_num_params(
            Variant("", b.max_width, 0, 0, b.name, 0, b.max_width), obs_dim, act_dim, cfg.world_model.num_layers)
        total += v * b.max_buffer_size * item  # ring buffers
        total += v * n_params * 4 * 3  # params + adam moments
        collect = math.ceil(cfg.samples_per_epoch / cfg.env.episode_length) * cfg.env.episode_length
        total += v * collect * item * 2  # collected transitions in flight
        p = cfg.planner
        total += v * collect // cfg.env.episode_length * p.num_samples * p.horizon * (obs_dim + act_dim) * 4
    return total


def check_memory(cfg: Config, buckets: list[Bucket], obs_dim: int, act_dim: int) -> None:
    """Raises :class:`SweepError` when the variants will not fit in the available memory."""
    need = estimate_bytes(cfg, buckets, obs_dim, act_dim)
    have = available_memory_bytes()
    if have is not None and need > 0.8 * have:
        n = sum(len(b.variants) for b in buckets)
        raise SweepError(
            f"the {n} variants need about {need / 2**30:.2f} GiB but only {have / 2**30:.2f} GiB is available; "
            f"use fewer variants (variants.hidden_dims / buffer_sizes / seeds) or a smaller largest buffer "
            f"(variants.buffer_sizes max = {max(cfg.variants.buffer_sizes)})"
        )


# ----------------------------------------------------------------------------- run directory


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


def _check_writable(run_dir: Path) -> None:
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write_probe"
        probe.write_text("ok")
        probe.unlink()
    except OSError as e:
        raise SweepError(f"cannot write to run directory {run_dir}: {e.strerror or e}") from None


# ----------------------------------------------------------------------------- the sweep


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


def make_mesh(devices: str):
    """Returns a 1-D ``Mesh`` with axis ``variant`` over the requested devices, or None for one device."""
    available = jax.devices()
    n = len(available) if devices == "auto" else int(devices)
    if n > len(available):
        raise SweepError(f"devices={n} but only {len(available)} {available[0].platform} device(s) are visible")
    if n <= 1:
        return None
    return jax.sharding.Mesh(np.asarray(available[:n]), ("variant",))


def _pad_rows(x: np.ndarray, size: int) -> np.ndarray:
    """Returns ``x`` padded along axis 0 to ``size`` rows by repeating its last row."""
    pad = size - x.shape[0]
    return x if pad == 0 else np.concatenate([x, np.repeat(x[-1:], pad, axis=0)], axis=0)


class Sweep:
    """One capacity sweep: set up with a config and a run directory, then :meth:`run`.

    Args:
      cfg: the validated config.
      run_dir: the run directory (created).
      resume: continue from the latest complete checkpoint in ``run_dir``.
      allow_changed: config keys that may differ from the run's saved config on resume.
      progress: show a rich progress bar and summary table.
    """

    def __init__(self, cfg: Config, run_dir: str | Path, *, resume: bool = False,
                 allow_changed: tuple[str, ...] = (), progress: bool = True):
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.resume = resume
        self.allow_changed = allow_changed
        self.show_progress = progress
        self.env = envs_lib.make(cfg.env.name)
        self.env_params = self.env.default_params(cfg.env.episode_length)
        self.goal_ids = np.asarray(cfg.env.goals if cfg.env.goals is not None else range(self.env.num_goals), np.int32)
        self.num_goals = self.env.num_goals
        self.obs_dim = self.env.obs_dim
        self.act_dim = self.env.action_feature_dim
        v = cfg.variants
        if v.capacity_mode == "auto":
            widths = (v.auto_start_hidden_dim,)
            self.buckets = build_buckets(widths, v.buffer_sizes, v.seeds, v.bucket_ratio,
                                         max_width_override=v.auto_max_hidden_dim)
        else:
            self.buckets = build_buckets(v.hidden_dims, v.buffer_sizes, v.seeds, v.bucket_ratio)
        self.variants = all_variants(self.buckets)
        self.settings = EpochSettings(
            episode_length=cfg.env.episode_length,
            samples_per_epoch=cfg.samples_per_epoch,
            train_steps=cfg.world_model.train_steps_per_epoch,
            planner=PlannerSettings.from_config(cfg.planner),
            exploration_noise=cfg.planner.exploration_noise,
            k_steps=tuple(sorted(cfg.world_model.k_steps)),
        )
        self.flop_fraction = useful_flop_fraction(self.buckets, self.obs_dim, self.act_dim, cfg.world_model.num_layers)
        self.diverged: set[str] = set()
        self.growth: list[dict[str, Any]] = []
        self.mesh = make_mesh(cfg.devices)
        self.num_devices = 1 if self.mesh is None else self.mesh.devices.size

    def _shard(self, tree):
        """Returns ``tree`` placed with its leading (variant) axis split over the mesh."""
        if self.mesh is None:
            return tree
        sharding = jax.sharding.NamedSharding(self.mesh, jax.sharding.PartitionSpec("variant"))
        return jax.device_put(tree, sharding)

    def _padded(self, n: int) -> int:
        return -(-n // self.num_devices) * self.num_devices

    # -- setup ---------------------------------------------------------------------------
    def _build(self) -> None:
        cfg, wmc = self.cfg, self.cfg.world_model
        self.runs: list[BucketRun] = []
        item = buffer_item(self.env, self.obs_dim)
        for b in self.buckets:
            wm = make_world_model(self.obs_dim, self.act_dim, b.max_width, wmc.num_layers, wmc.learning_rate,
                                  wmc.weight_decay, wmc.grad_clip, wmc.batch_size)
            fns = make_bucket_fns(self.env, self.env_params, wm, self.goal_ids, self.num_goals, self.settings)
            size = self._padded(len(b.variants))
            seeds = _pad_rows(np.asarray([v.seed for v in b.variants], np.int64), size)
            hidden = _pad_rows(np.asarray([v.hidden_dim for v in b.variants], np.int32), size)
            capacity = _pad_rows(np.asarray([v.buffer_size for v in b.variants], np.int32), size)
            states = init_bucket_states(wm, variant_keys(cfg.seed, seeds, _INIT, 0), jnp.asarray(hidden))
            buffers = init_bucket_buffers(item, b.max_buffer_size, jnp.asarray(capacity))
            states, buffers = self._shard((states, buffers))
            self.runs.append(BucketRun(b, wm, fns, states, buffers, seeds, hidden))
        self.reference = make_reference_fn(self.env, self.env_params, self.settings)
        self.val = make_validation_set(
            self.env, self.env_params, _purpose_key(cfg.seed, _VAL), self.goal_ids, wmc.val_size,
            cfg.env.episode_length, max(self.settings.k_steps))

    # -- one epoch -----------------------------------------------------------------------
    def run_epoch(self, epoch: int) -> dict[str, Any]:
        """Returns host copies of everything epoch ``epoch`` computed (runs the jitted calls)."""
        cfg = self.cfg
        use_random = epoch < cfg.planner.random_collect_epochs
        keys_eval, goals_eval = eval_episodes(cfg.seed, epoch, self.goal_ids, cfg.planner.episodes_per_goal)
        out: dict[str, Any] = {"buckets": []}
        for r in self.runs:
            probs = np.stack([self._goal_probs(v) for v in r.bucket.variants]).astype(np.float32)
            probs = _pad_rows(probs, r.padded_size)
            keys_c, keys_t, probs_d = self._shard((variant_keys(cfg.seed, r.seeds, _COLLECT, epoch),
                                                   variant_keys(cfg.seed, r.seeds, _TRAIN, epoch), jnp.asarray(probs)))
            r.buffers, counts = r.fns.collect(r.states, r.buffers, keys_c, probs_d, use_random=use_random)
            r.states, train_metrics = r.fns.train(r.states, r.buffers, keys_t)
            one_step, k_step = r.fns.evaluate(r.states, self.val)
            returns = r.fns.control(r.states, jax.random.clone(keys_eval), goals_eval)
            out["buckets"].append({"counts": counts, "train": train_metrics, "one_step": one_step,
                                   "k_step": k_step, "returns": returns, "probs": probs})
        optimal, baseline = self.reference(jax.random.clone(keys_eval), goals_eval)
        out["optimal"], out["baseline"], out["goals"] = optimal, baseline, goals_eval
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils

            return multihost_utils.process_allgather(out, tiled=True)
        return jax.device_get(out)

    def _goal_probs(self, v: Variant) -> np.ndarray:
        ledger = self.ledger.get(v.name)
        g = self.goal_ids
        if ledger is None:
            return np.full(len(g), 1.0 / len(g))
        counts, sums = ledger
        avg = np.where(counts > 0, sums / np.maximum(counts, 1), 0.0)[g]
        rc = self.cfg.regret
        return goal_probabilities(avg, counts[g], rc.goal_sampling, rc.priority_temperature, rc.min_goal_share)

    # -- entry point ---------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        """Returns the final summary after running (or resuming) every epoch."""
        from augnes_jax.sweep_io import SweepWriter

        check_memory(self.cfg, self.buckets, self.obs_dim, self.act_dim)
        _check_writable(self.run_dir)
        writer = SweepWriter(self)
        start_epoch = writer.prepare(resume=self.resume, allow_changed=self.allow_changed)
        self.ledger = writer.ledger
        t_setup = time.perf_counter()
        self._build()
        if start_epoch > 0:
            writer.restore_device_state(start_epoch - 1)
        try:
            with writer.progress(start_epoch) as advance:
                for epoch in range(start_epoch, self.cfg.epochs):
                    t0 = time.perf_counter()
                    result = self.run_epoch(epoch)
                    t_compute = time.perf_counter() - t0
                    writer.write_epoch(epoch, result, t_compute=t_compute)
                    advance(epoch)
        finally:
            writer.close()
        summary = writer.summary(time.perf_counter() - t_setup)
        return summary


# ----------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    """Returns the sweep's argument parser."""
    p = argparse.ArgumentParser(
        prog="python -m augnes_jax.sweep",
        description="Train hidden_dim x buffer_size x seed world-model variants side by side and "
                    "measure per-goal regret against capacity.")
    p.add_argument("--config", help="YAML config (default: configs/default.yaml)")
    p.add_argument("--run-dir", help="run directory (default: runs/<run_name or env-timestamp>)")
    p.add_argument("--resume", action="store_true", help="continue a killed sweep from its latest checkpoint")
    p.add_argument("--allow-change", action="append", default=[], metavar="KEY",
                   help="with --resume: a config key that may differ from the run's config (repeatable)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar or summary table")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. epochs=2")
    return p


def _fail(msg: str) -> int:
    print(f"augnes_jax.sweep: error: {msg}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    """Runs the sweep CLI; returns the exit status (2 for bad input, nothing written)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("jax", "absl", "orbax", "tensorboard"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        cfg = load_config(args.config, args.overrides)
        if args.resume and not args.run_dir:
            raise ConfigError("--resume", "needs --run-dir DIR of the run to continue")
        if cfg.distributed or os.environ.get("JAX_COORDINATOR_ADDRESS"):
            jax.distributed.initialize()  # multi-host: every process runs this same command
        run_dir = resolve_run_dir(cfg, args.run_dir)
        if args.resume:
            saved = run_dir / "config.yaml"
            if not saved.exists():
                raise SweepError(f"cannot resume: {saved} does not exist")
            import yaml

            old = config_from_dict(yaml.safe_load(saved.read_text()))
            changed = [k for k in diff(old, cfg) if k not in args.allow_change and k != "run_name"]
            if changed:
                raise SweepError(
                    f"cannot resume {run_dir}: config differs from the run's in {', '.join(changed)} "
                    f"(pass --allow-change KEY for each key that may change)")
        elif (run_dir / "config.yaml").exists():
            raise SweepError(f"{run_dir} already holds a run; pass --resume to continue it or choose another --run-dir")
        sweep = Sweep(cfg, run_dir, resume=args.resume, allow_changed=tuple(args.allow_change),
                      progress=not args.no_progress)
        sweep.run()
    except ConfigError as e:
        return _fail(str(e))
    except (SweepError, files.ArtifactWriteError) as e:
        return _fail(str(e))
    except KeyboardInterrupt:
        print("augnes_jax.sweep: interrupted; resume with --resume --run-dir", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
