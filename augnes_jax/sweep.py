"""``python -m augnes_jax.sweep``: train capacity variants side by side and measure their regret.

The host shell of a sweep. Each epoch it calls a few jitted functions over every bucket's
variant axis (collect, train, evaluate, control: see :mod:`augnes_jax.epoch`), then writes
between them: ``judgments.jsonl``, ``strategy_stats.json``, ``world_model_stats.json``,
TensorBoard runs, an orbax checkpoint and the MetaJudgmentController's decision.

Usage::

    python -m augnes_jax.sweep [--config PATH] [--run-dir DIR] [--resume] [key=value ...]

``--resume --run-dir DIR`` continues a killed sweep from its latest complete checkpoint: work
after it is dropped and redone, so the result equals an uninterrupted run's. The run's own
``config.yaml`` is the base; a key that an override or ``--config`` changes is refused unless it
is named with ``--allow-change KEY``.

Scaling out: every bucket's variant axis is split over a ``Mesh`` axis ``variant``
(``devices: auto | N``), padded up to a multiple of the device count; padded rows never reach an
output. With ``distributed: true`` or ``JAX_COORDINATOR_ADDRESS`` set, every host runs the same
command after ``jax.distributed.initialize()``; process 0 alone writes the run directory's files
and every process takes part in the orbax saves.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
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

from augnes_jax import compile_cache, run_lock
from augnes_jax import envs as envs_lib
from augnes_jax.checkpoint import CheckpointWriteError
from augnes_jax.cli import ArgumentParser, os_error_line, run_command
from augnes_jax.config import RESULT_NEUTRAL, Config, ConfigError, diff, load_config
from augnes_jax.epoch import (
    BucketFns,
    EpochSettings,
    buffer_item,
    init_bucket_buffers,
    init_bucket_states,
    make_bucket_fns,
    make_reference_fn,
    make_validation_set,
)
from augnes_jax.errors import UserError
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


class SweepError(UserError, RuntimeError):
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


def estimate_bytes(cfg: Config, buckets: list[Bucket], obs_dim: int, act_dim: int, num_devices: int = 1) -> int:
    """Returns an estimate of the device bytes the variants need (buffers, params, optimizer).

    With ``num_devices`` > 1 every bucket's variant axis counts padded up to a multiple of it.
    """
    item = 4 * (2 * obs_dim + act_dim + 1)
    total = 0
    for b in buckets:
        v = -(-len(b.variants) // num_devices) * num_devices
        n_params = variant_num_params(
            Variant("", b.max_width, 0, 0, b.name, 0, b.max_width), obs_dim, act_dim, cfg.world_model.num_layers)
        total += v * b.max_buffer_size * item  # ring buffers
        total += v * n_params * 4 * 3  # params + adam moments
        collect = math.ceil(cfg.samples_per_epoch / cfg.env.episode_length) * cfg.env.episode_length
        total += v * collect * item * 2  # collected transitions in flight
        p = cfg.planner
        total += v * collect // cfg.env.episode_length * p.num_samples * p.horizon * (obs_dim + act_dim) * 4
    return total


def check_memory(cfg: Config, buckets: list[Bucket], obs_dim: int, act_dim: int, num_devices: int = 1) -> None:
    """Raises :class:`SweepError` when the variants will not fit in the available memory.

    An accelerator holds ``1/num_devices`` of every variant axis; CPU devices of one process
    share the host's memory, so there only the processes divide the total.
    """
    need = estimate_bytes(cfg, buckets, obs_dim, act_dim, num_devices)
    share = num_devices if jax.devices()[0].platform != "cpu" else jax.process_count()
    need = need // max(share, 1)
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
        # one probe per process: hosts sharing the run directory must not remove each other's
        probe = run_dir / f".write_probe.{jax.process_index()}"
        probe.write_text("ok")
        probe.unlink()
    except OSError as e:
        raise SweepError(f"cannot write to run directory {run_dir}: {e.strerror or e}") from None


# ----------------------------------------------------------------------------- scaling out


def make_mesh(devices: str):
    """Returns a 1-D ``Mesh`` with axis ``variant`` over the requested devices, or None for one device.

    ``devices`` is ``"auto"`` (every visible device, across all processes) or a count. A run
    spread over several processes must use all their devices: a process whose devices are not
    on the mesh would have nothing to compute.
    """
    available = jax.devices()
    n = len(available) if devices == "auto" else int(devices)
    if n > len(available):
        raise SweepError(f"devices={n} but only {len(available)} {available[0].platform} device(s) are visible")
    if jax.process_count() > 1 and n != len(available):
        raise SweepError(f"devices={n} but a run over {jax.process_count()} processes must use all "
                         f"{len(available)} devices; set devices=auto")
    if n <= 1:
        return None
    return jax.sharding.Mesh(np.asarray(available[:n]), ("variant",))


def padded_size(n: int, num_devices: int) -> int:
    """Returns ``n`` rounded up to a multiple of ``num_devices`` (the length of a padded variant axis)."""
    return -(-n // num_devices) * num_devices


def _pad_rows(x: np.ndarray, size: int) -> np.ndarray:
    """Returns ``x`` padded along axis 0 to ``size`` rows by repeating its last row.

    A padded row repeats the last variant's seed, width and capacity, so it computes exactly what
    that variant computes: it never adds a new kind of work, and nothing reads it back.
    """
    pad = size - x.shape[0]
    return x if pad == 0 else np.concatenate([x, np.repeat(x[-1:], pad, axis=0)], axis=0)


def shard_bucket_fns(fns: BucketFns, mesh) -> BucketFns:
    """Returns ``fns`` with every device running the jitted vmap on its own slice of the variant axis.

    The arguments keep their ``NamedSharding(mesh, P("variant"))`` placement; per-variant
    arguments are split along ``variant`` and shared ones (validation set, evaluation keys and
    goals) are replicated. The body is wrapped in ``shard_map`` rather than left to the automatic
    partitioner because the planner's ``top_k`` has no rule for a sharded batch dimension: the
    partitioner would all-gather every candidate's return at every planning step. Under
    ``shard_map`` an epoch makes no cross-device transfer at all, whatever the core functions use.
    """
    if mesh is None:
        return fns
    per_variant, shared = jax.sharding.PartitionSpec("variant"), jax.sharding.PartitionSpec()

    def per_device(fn, in_specs):
        # check_vma=False: the core's scans start from constants, which the varying-axis type
        # check would reject inside shard_map; every output is per-variant, so nothing is lost
        return jax.shard_map(fn, mesh=mesh, in_specs=in_specs, out_specs=per_variant, check_vma=False)

    def collect(states, buffers, keys, goal_probs, use_random: bool):
        body = per_device(functools.partial(fns.collect, use_random=use_random), (per_variant,) * 4)
        return body(states, buffers, keys, goal_probs)

    return BucketFns(
        collect=jax.jit(collect, static_argnames=("use_random",)),
        train=jax.jit(per_device(fns.train, (per_variant,) * 3)),
        evaluate=jax.jit(per_device(fns.evaluate, (per_variant, shared))),
        control=jax.jit(per_device(fns.control, (per_variant, shared, shared))),
    )


def host_copy(tree):
    """Returns ``tree`` with every array copied to host numpy.

    An array spread over several processes' devices is first gathered (a collective: every
    process must call this at the same point); host-local arrays are copied as they are.
    """
    def gather(x):
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            from jax.experimental import multihost_utils

            return multihost_utils.process_allgather(x, tiled=True)
        return x

    return jax.device_get(jax.tree.map(gather, tree))


def sync_processes(name: str) -> None:
    """Waits until every process of a multi-process run reaches the barrier ``name`` (no-op alone)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def init_distributed(cfg: Config) -> bool:
    """Returns True after joining a multi-process run, False when the run is single-process.

    A run is multi-process when the config sets ``distributed: true`` or the environment sets
    ``JAX_COORDINATOR_ADDRESS`` (``host:port`` of process 0). ``JAX_NUM_PROCESSES`` and
    ``JAX_PROCESS_ID`` give the process count and this process's index; JAX itself reads only
    the coordinator address, so they are passed on here. Left unset, JAX detects them on Slurm,
    Open MPI, Kubernetes and Cloud TPU.

    Raises:
      ConfigError: one of those variables is not a non-negative integer.
      SweepError: ``jax.distributed.initialize()`` failed.
    """
    coordinator = os.environ.get("JAX_COORDINATOR_ADDRESS") or None
    if not (cfg.distributed or coordinator):
        return False
    kwargs: dict[str, int] = {}
    for var, arg in (("JAX_NUM_PROCESSES", "num_processes"), ("JAX_PROCESS_ID", "process_id")):
        raw = os.environ.get(var)
        if raw is not None and raw.strip():
            if not raw.strip().isdigit():
                raise ConfigError(var, f"must be a non-negative integer, got {raw!r}")
            kwargs[arg] = int(raw)
    try:
        jax.distributed.initialize(coordinator_address=coordinator, **kwargs)
    except (ValueError, TypeError, RuntimeError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise SweepError(f"jax.distributed.initialize() failed: {first} (set JAX_COORDINATOR_ADDRESS, "
                         f"JAX_NUM_PROCESSES and JAX_PROCESS_ID on every host)") from None
    return True


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

    def pad(self, x: np.ndarray) -> np.ndarray:
        """Returns per-variant rows ``x[len(variants), ...]`` padded to the variant axis' length."""
        return _pad_rows(np.asarray(x), self.padded_size)


class Sweep:
    """One capacity sweep: set up with a config and a run directory, then :meth:`run`.

    Every bucket's variant axis is split over a ``Mesh`` axis ``variant`` (``cfg.devices``:
    ``auto`` or a count), padded up to a multiple of the device count. In a multi-process run
    every process runs the same sweep; only process 0 writes the run directory's files, and every
    process takes part in the checkpoint saves.

    Args:
      cfg: the validated config.
      run_dir: the run directory (created).
      resume: continue from the latest complete checkpoint in ``run_dir``.
      allow_changed: config keys that may differ from the run's saved config on resume.
      progress: show a rich progress bar and summary table (process 0 only).
    """

    def __init__(self, cfg: Config, run_dir: str | Path, *, resume: bool = False,
                 allow_changed: tuple[str, ...] = (), progress: bool = True):
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.resume = resume
        self.allow_changed = allow_changed
        self.primary = jax.process_index() == 0
        self.show_progress = progress and self.primary
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
        planner = PlannerSettings.from_config(cfg.planner)
        pc = cfg.planner
        self.settings = EpochSettings(
            episode_length=cfg.env.episode_length,
            samples_per_epoch=cfg.samples_per_epoch,
            train_steps=cfg.world_model.train_steps_per_epoch,
            planner=planner,
            collect_planner=dataclasses.replace(planner, num_samples=pc.collect_num_samples,
                                                num_elites=min(pc.num_elites, pc.collect_num_samples),
                                                iterations=pc.collect_iterations),
            exploration_noise=cfg.planner.exploration_noise,
            k_steps=tuple(sorted(cfg.world_model.k_steps)),
        )
        self.flop_fraction = useful_flop_fraction(self.buckets, self.obs_dim, self.act_dim, cfg.world_model.num_layers)
        self.diverged: set[str] = set()
        self.growth: list[dict[str, Any]] = []
        self.mesh = make_mesh(cfg.devices)
        self.num_devices = 1 if self.mesh is None else self.mesh.devices.size
        self.variant_sharding = (None if self.mesh is None else
                                 jax.sharding.NamedSharding(self.mesh, jax.sharding.PartitionSpec("variant")))
        # jit rather than device_put: device_put cannot place an array held by one process on
        # devices of other processes, while a jitted identity with out_shardings can
        self._place = jax.jit(lambda tree: tree, out_shardings=self.variant_sharding)

    def _shard(self, tree):
        """Returns ``tree`` placed with its leading (variant) axis split over the mesh."""
        if self.mesh is None:
            return tree
        return self._place(tree)

    def _padded(self, n: int) -> int:
        return padded_size(n, self.num_devices)

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
            # built straight into their sharding, so no single device ever holds every buffer
            init = jax.jit(lambda k, h, c, wm=wm, max_size=b.max_buffer_size: (
                init_bucket_states(wm, k, h), init_bucket_buffers(item, max_size, c)),
                out_shardings=self.variant_sharding)
            states, buffers = init(variant_keys(cfg.seed, seeds, _INIT, 0), jnp.asarray(hidden), jnp.asarray(capacity))
            self.runs.append(BucketRun(b, wm, shard_bucket_fns(fns, self.mesh), states, buffers, seeds, hidden))
        self.reference = make_reference_fn(self.env, self.env_params, self.settings)
        self.val = make_validation_set(
            self.env, self.env_params, _purpose_key(cfg.seed, _VAL), self.goal_ids, wmc.val_size,
            cfg.env.episode_length, max(self.settings.k_steps))

    # -- one epoch -----------------------------------------------------------------------
    def run_epoch(self, epoch: int, timings: dict[str, float] | None = None) -> dict[str, Any]:
        """Returns host copies of everything epoch ``epoch`` computed (runs the jitted calls).

        Per-variant outputs keep the padded variant axis; readers index them by
        ``variant.index`` and never look past ``len(bucket.variants)``. With ``timings`` (for
        benchmarks) every phase is waited for and its seconds are added under its name
        (``collect``, ``train``, ``evaluate``, ``control``, ``reference``).
        """
        cfg = self.cfg

        def phase(name: str, fn, *args, **kwargs):
            if timings is None:
                return fn(*args, **kwargs)
            t0 = time.perf_counter()
            value = jax.block_until_ready(fn(*args, **kwargs))
            timings[name] = timings.get(name, 0.0) + time.perf_counter() - t0
            return value

        use_random = epoch < cfg.planner.random_collect_epochs
        keys_eval, goals_eval = eval_episodes(cfg.seed, epoch, self.goal_ids, cfg.planner.episodes_per_goal)
        out: dict[str, Any] = {"buckets": []}
        for r in self.runs:
            probs = r.pad(np.stack([self._goal_probs(v) for v in r.bucket.variants]).astype(np.float32))
            keys_c, keys_t, probs_d = self._shard((variant_keys(cfg.seed, r.seeds, _COLLECT, epoch),
                                                   variant_keys(cfg.seed, r.seeds, _TRAIN, epoch), jnp.asarray(probs)))
            r.buffers, counts = phase("collect", r.fns.collect, r.states, r.buffers, keys_c, probs_d,
                                      use_random=use_random)
            r.states, train_metrics = phase("train", r.fns.train, r.states, r.buffers, keys_t)
            one_step, k_step = phase("evaluate", r.fns.evaluate, r.states, self.val)
            returns = phase("control", r.fns.control, r.states, jax.random.clone(keys_eval), goals_eval)
            out["buckets"].append({"counts": counts, "train": train_metrics, "one_step": one_step,
                                   "k_step": k_step, "returns": returns, "probs": probs})
        optimal, baseline = phase("reference", self.reference, jax.random.clone(keys_eval), goals_eval)
        out["optimal"], out["baseline"], out["goals"] = optimal, baseline, goals_eval
        return host_copy(out)

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

        check_memory(self.cfg, self.buckets, self.obs_dim, self.act_dim, self.num_devices)
        _check_writable(self.run_dir)
        writer = SweepWriter(self)
        t_setup = time.perf_counter()
        try:
            start_epoch = writer.prepare(resume=self.resume, allow_changed=self.allow_changed)
            self.ledger = writer.ledger
            self._build()
            if start_epoch > 0:
                writer.restore_device_state(start_epoch - 1)
            writer.open_writers()
            with writer.progress(start_epoch) as advance:
                for epoch in range(start_epoch, self.cfg.epochs):
                    t0 = time.perf_counter()
                    result = self.run_epoch(epoch)
                    t_compute = time.perf_counter() - t0
                    writer.write_epoch(epoch, result, t_compute=t_compute)
                    advance(epoch)
        except BaseException:
            # the failure that stopped the sweep is the one to report, not what closing then hits
            with contextlib.suppress(Exception):
                writer.close()
            raise
        writer.close()
        if writer.primary:
            self._render_dashboard(writer)
        summary = writer.summary(time.perf_counter() - t_setup)
        return summary

    def _render_dashboard(self, writer) -> None:
        """Writes the capacity dashboard PNGs to ``plots/``; a plotting failure never fails the sweep."""
        from augnes_jax import dashboard

        loader = None
        if jax.process_count() > 1:
            def loader(run_dir, variant):
                # orbax coordinates a checkpoint read across every process, and only process 0
                # renders: the read would wait for the others forever
                raise RuntimeError(f"not drawn by a multi-process run; run python -m augnes_jax.dashboard {run_dir}")
        try:
            dashboard.render(self.run_dir, controller=writer.controller, epsilon=self.cfg.meta.epsilon,
                             world_model_loader=loader)
        except Exception as e:  # noqa: BLE001 - plots are a convenience on top of the artifacts
            log.warning("capacity dashboard not rendered: %s", e)


# ----------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    """Returns the sweep's argument parser."""
    p = ArgumentParser(
        prog="python -m augnes_jax.sweep",
        description="Train hidden_dim x buffer_size x seed world-model variants side by side and "
                    "measure per-goal regret against capacity.")
    p.add_argument("--config", help="YAML config (default: configs/default.yaml)")
    p.add_argument("--run-dir", help="run directory (default: runs/<run_name or env-timestamp>)")
    p.add_argument("--resume", action="store_true",
                   help="continue a killed sweep from its latest complete checkpoint, with the run's own config.yaml")
    p.add_argument("--allow-change", action="append", default=[], metavar="KEY",
                   help="with --resume: a config key that may differ from the run's config (repeatable)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar or summary table")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. epochs=2")
    return p


PROG = "augnes_jax.sweep"


def _continue_hint(run_dir: Path) -> str:
    return f"then continue with --resume --run-dir {run_dir}"


def main(argv: list[str] | None = None) -> int:
    """Runs the sweep CLI; returns the exit status (2 for the user's error, 130 when interrupted).

    A config, resume or run-directory problem, a run directory held by another sweep, a damaged
    checkpoint with no intact one before it, and an operating-system failure (a full disk, a
    read-only file system) are each one line on stderr; a failure after the run has started
    says how to continue it.
    """
    args = build_parser().parse_args(argv)
    # force: importing orbax already gave the root logger a bare handler (absl calls basicConfig)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", force=True)
    for noisy in ("jax", "orbax", "tensorboard"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # orbax logs a failed background save with its traceback through absl, then raises it in
    # the main thread, where it is reported once, as one line
    logging.getLogger("absl").setLevel(logging.CRITICAL)
    started: list[Path] = []

    def body() -> int:
        try:
            _run_cli(args, started)
        except KeyboardInterrupt:
            print(f"{PROG}: interrupted; resume with --resume --run-dir", file=sys.stderr)
            return 130
        except OSError as e:
            if not started or isinstance(e, UserError):
                raise
            raise SweepError(f"{os_error_line(e)}; {_continue_hint(started[0])}") from None
        except CheckpointWriteError as e:
            raise SweepError(f"{e}; {_continue_hint(started[0])}") from None
        return 0

    return run_command(PROG, body)


def _run_cli(args: argparse.Namespace, started: list[Path]) -> None:
    """Checks the arguments and the run directory, holds its lock and runs the sweep."""
    if args.resume and not args.run_dir:
        raise ConfigError("--resume", "needs --run-dir DIR of the run to continue")
    saved = Path(args.run_dir) / "config.yaml" if args.resume else None
    if saved is not None and not saved.is_file():
        raise SweepError(f"cannot resume: {saved} does not exist")
    # a resumed run starts from its own config: only --config and overrides can change it
    cfg = load_config(args.config if args.config or saved is None else saved, args.overrides)
    compile_cache.configure(cfg.compile_cache)
    if init_distributed(cfg) and not (args.run_dir or cfg.run_name):
        # a timestamped default name could differ between hosts
        raise ConfigError("run_name", "a multi-process run needs --run-dir or run_name, the same on every host")
    run_dir = resolve_run_dir(cfg, args.run_dir)
    primary = jax.process_index() == 0
    created = not run_dir.exists()
    # one writer per run directory: the processes of one multi-process run are one writer,
    # represented by process 0; a directory that does not exist yet is locked once checked
    lock = run_lock.acquire(run_dir, command=PROG) if primary and not created else None
    try:
        if saved is not None:
            try:
                old = load_config(saved)
            except ConfigError as e:
                raise SweepError(f"cannot resume: the run's own config is unusable ({e})") from None
            changed = [k for k in diff(old, cfg) if k not in args.allow_change and k not in RESULT_NEUTRAL]
            if changed:
                raise SweepError(
                    f"cannot resume {run_dir}: config differs from the run's in {', '.join(changed)} "
                    f"(pass --allow-change KEY for each key that may change)")
        elif (run_dir / "config.yaml").exists():
            raise SweepError(f"{run_dir} already holds a run; pass --resume to continue it or choose another --run-dir")
        if primary and lock is None:
            _check_writable(run_dir)
            lock = run_lock.acquire(run_dir, command=PROG)
        # every process checks the run directory before process 0 writes config.yaml into it
        sync_processes("augnes_jax.sweep:checked")
        sweep = Sweep(cfg, run_dir, resume=args.resume, allow_changed=tuple(args.allow_change),
                      progress=not args.no_progress)
        started.append(run_dir)
        sweep.run()
    finally:
        if lock is not None:
            lock.release(remove_dir=created)


if __name__ == "__main__":
    sys.exit(main())
