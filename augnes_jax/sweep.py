"""``python -m augnes_jax.sweep``: train capacity variants side by side and measure their regret.

The host shell of a sweep. Each epoch runs the same named steps, data flowing one way::

    collect -> train -> evaluate -> control   jitted calls over every bucket's variant axis
                                              (augnes_jax.epoch), returning EpochOutputs
    judge    fold the outputs into the host state (augnes_jax.host_state): divergence,
             regret and advantage, the per-goal ledger, collection shares
    write    judgments.jsonl, TensorBoard, strategy_stats.json, world_model_stats.json and
             sweep_state.json (augnes_jax.sweep_io)
    decide   the MetaJudgmentController's decision, capacity growth on the device
             (augnes_jax.growth), then the epoch's orbax checkpoint (augnes_jax.sweep_checkpoints)

Write and decide run on the executor while the next epoch computes, from a snapshot of the
epoch's host and device state (augnes_jax.write_pipeline), wherever nothing they do feeds back
into that epoch: fixed capacity, one process. ``Sweep(synchronous_writes=True)`` runs them in
between the epochs instead; the artifacts are the same.

Usage::

    python -m augnes_jax.sweep [--config PATH] [--run-dir DIR] [--resume] [key=value ...]

``--resume --run-dir DIR`` continues a killed sweep from its latest complete checkpoint
(augnes_jax.resume): work after it is dropped and redone, so the result equals an uninterrupted
run's. The run's own ``config.yaml`` is the base; a key that an override or ``--config`` changes
is refused unless it is named with ``--allow-change KEY``.

With ``data.path`` the sweep starts from a transitions file: ``data.mode=fit`` (the default) fits
world models to it alone (augnes_jax.data_sweep); ``data.mode=seed`` fills every variant's replay
buffer with its rows, then runs this sweep (augnes_jax.buffer_seed); a resume restores the buffers.

Scaling out (augnes_jax.distribution): every bucket's variant axis is split over a ``Mesh`` axis
``variant`` (``devices: auto | N``), padded up to a multiple of the device count; padded rows
never reach an output. With ``distributed: true`` or ``JAX_COORDINATOR_ADDRESS`` set, every host
runs the same command after ``jax.distributed.initialize()``; process 0 alone writes the run
directory's files and every process takes part in the orbax saves.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from augnes_jax import buffer_seed, compile_cache, data_sweep, reporting, run_lock
from augnes_jax.checkpoint import SweepCheckpointer
from augnes_jax.checkpoint_meta import CheckpointWriteError
from augnes_jax.cli import ArgumentParser, os_error_line, run_command
from augnes_jax.config import Config, ConfigError, load_config, to_dict
from augnes_jax.control_timing import timed_control
from augnes_jax.distribution import (  # noqa: F401 - make_mesh, padded_size: public here too
    Placement,
    host_copy,
    init_distributed,
    make_mesh,
    padded_size,
    sync_processes,
)
from augnes_jax.epoch import BucketOutputs, EpochOutputs, make_reference_fn, make_validation_set
from augnes_jax.errors import UserError
from augnes_jax.growth import CapacityController, agree, grow_bucket, wants_growth
from augnes_jax.host_state import (
    HostState,
    JudgedEpoch,
    apply_growth,
    judge_epoch,
    set_bucket_variants,
    snapshot,
)
from augnes_jax.memory_check import check_memory
from augnes_jax.resume import check_config as resume_config_changes
from augnes_jax.resume import restore as restore_run
from augnes_jax.sampling import (  # noqa: F401 - goal_probabilities: public here too
    COLLECT,
    TRAIN,
    VAL,
    collection_goal_probabilities,
    eval_episodes,
    goal_probabilities,
    goal_verdicts,
    ledger_goal_probabilities,
    purpose_key,
    variant_keys,
)
from augnes_jax.sweep_checkpoints import restore_device_state, save_epoch, saved_variant_widths
from augnes_jax.sweep_errors import SweepError
from augnes_jax.sweep_io import SweepWriter, hparam_domains
from augnes_jax.sweep_setup import (  # noqa: F401 - BucketRun: public here too
    BucketRun,
    build_bucket_run,
    build_env,
    check_writable,
    epoch_settings,
    resolve_run_dir,
    sweep_buckets,
)
from augnes_jax.variants import (
    Bucket,
    Variant,
    all_variants,
    useful_flop_fraction,
    variant_num_params,
)
from augnes_jax.world_model import head_sizes
from augnes_jax.world_model_stats import WorldModelStats
from augnes_jax.write_pipeline import WritePipeline

log = logging.getLogger("augnes_jax.sweep")


# ----------------------------------------------------------------------------- the sweep


class Sweep:
    """One capacity sweep, fully built (and, with ``resume``, restored) by the constructor; then :meth:`run`.

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
      before_write: called with the epoch before each epoch's artifacts are written (a seam for
        fault drills: the moment a write fault starts to count).
      synchronous_writes: write each epoch's artifacts before the next epoch starts; by default
        they are written on the executor while the next epoch computes, where nothing written
        feeds back into it (fixed capacity, one process). The results are the same either way.

    Raises:
      SweepError: the run cannot start or be resumed; the message is one line.
    """

    def __init__(self, cfg: Config, run_dir: str | Path, *, env: Any = None, resume: bool = False,
                 allow_changed: tuple[str, ...] = (), progress: bool = True,
                 before_write: Callable[[int], None] | None = None, synchronous_writes: bool = False):
        self._t_start = time.perf_counter()
        self.env, cfg = build_env(cfg, env)
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.resume = resume
        changed = resume_config_changes(self.run_dir, cfg, allow_changed) if resume else []
        self.primary = jax.process_index() == 0
        self.show_progress = progress and self.primary
        self.before_write = before_write
        self.synchronous_writes = synchronous_writes
        self.env_params = self.env.default_params(cfg.env.episode_length)
        self.goal_ids = np.asarray(cfg.env.goals if cfg.env.goals is not None else range(self.env.num_goals), np.int32)
        self.num_goals, self.obs_dim, self.act_dim = self.env.num_goals, self.env.obs_dim, self.env.action_feature_dim
        self.settings = epoch_settings(cfg, self.env)
        buckets = sweep_buckets(cfg)
        self.head_extra = head_sizes(self.num_goals, self.settings.learn_reward)  # reward heads' extra in/out
        self.flop_fraction = useful_flop_fraction(buckets, self.obs_dim, self.act_dim, self.head_extra)
        self.hp_domains = hparam_domains(all_variants(buckets), cfg.variants.capacity_mode)
        self.placement = Placement(cfg.devices)
        self.num_devices = self.placement.num_devices
        self.host = HostState(buckets=buckets, wm_stats=WorldModelStats(epsilon=cfg.world_model.epsilon))
        self.epoch_times, self.checkpoint_times = [], []
        self.capacity = CapacityController(self.run_dir, cfg)
        check_memory(cfg, buckets, self.obs_dim, self.act_dim, self.num_devices)
        seed = None if resume else buffer_seed.seed_items(cfg, self.env, self.settings)  # checked before writing
        check_writable(self.run_dir)
        restored = restore_run(self.run_dir, cfg, self.host, self.num_goals, self.primary) if resume else None
        self.start_epoch = 0 if restored is None else restored.start
        seed = buffer_seed.seed_items(cfg, self.env, self.settings) if resume and self.start_epoch == 0 else seed
        self.config_changed = bool(changed)
        self.runs = [build_bucket_run(b, cfg, self.env, self.env_params, self.goal_ids, self.settings, self.placement,
                                      seed) for b in buckets]
        self.reference = make_reference_fn(self.env, self.env_params, self.settings, with_planner=True)
        self.val = make_validation_set(
            self.env, self.env_params, purpose_key(cfg.seed, VAL), self.goal_ids, cfg.world_model.val_size,
            cfg.env.episode_length, max(self.settings.k_steps))
        if restored is not None and restored.checkpoint is not None:
            self._restore_device_state(*restored.checkpoint)

    # -- the host state, read only -------------------------------------------------------
    @property
    def variants(self) -> list[Variant]:
        """Returns every variant under its current name."""
        return self.host.variants

    @property
    def buckets(self) -> list[Bucket]:
        """Returns the width buckets with their current variants."""
        return self.host.buckets

    @property
    def ledger(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Returns the per-variant regret ledger ``(counts[G], sums[G])``."""
        return self.host.ledger

    def num_params(self, v: Variant) -> int:
        """Returns the parameter count of variant ``v``."""
        return variant_num_params(v, self.obs_dim, self.act_dim, self.head_extra)

    def shard(self, tree):
        """Returns ``tree`` placed with its leading (variant) axis split over the devices."""
        return self.placement.shard(tree)

    # -- setup ---------------------------------------------------------------------------
    def _restore_device_state(self, step: int, arrays: dict, meta: dict) -> None:
        restored = restore_device_state(self.runs, arrays, step, self.run_dir / "checkpoints", self.shard)
        for b_index, (r, (states, buffers)) in enumerate(zip(self.runs, restored, strict=True)):
            r.states, r.buffers = states, buffers
            self._adopt_variants(b_index, saved_variant_widths(meta, r.bucket.variants))

    def _adopt_variants(self, b_index: int, new: list[Variant]) -> None:
        r = self.runs[b_index]
        r.bucket = set_bucket_variants(self.host, b_index, new)
        r.hidden_dims = r.pad(np.asarray([v.hidden_dim for v in new], np.int32))

    # -- collect -> train -> evaluate -> control -----------------------------------------
    def run_epoch(self, epoch: int, timings: dict[str, float] | None = None) -> EpochOutputs:
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
        buckets, control_ms = [], []
        for r in self.runs:
            probs = r.pad(np.stack([self._goal_probs(v) for v in r.bucket.variants]).astype(np.float32))
            keys_c, keys_t, probs_d = self.shard((variant_keys(cfg.seed, r.seeds, COLLECT, epoch),
                                                  variant_keys(cfg.seed, r.seeds, TRAIN, epoch), jnp.asarray(probs)))
            r.buffers, counts = phase("collect", r.fns.collect, r.states, r.buffers, keys_c, probs_d,
                                      use_random=use_random)
            r.states, train_metrics = phase("train", r.fns.train, r.states, r.buffers, keys_t)
            one_step, k_step = phase("evaluate", r.fns.evaluate, r.states, self.val)
            returns, ms = phase("control", timed_control, r.fns.control, (r.states, jax.random.clone(keys_eval), goals_eval),
                                episode_length=cfg.env.episode_length, rows=r.padded_size // self.num_devices)
            control_ms.append(ms)
            buckets.append(BucketOutputs(counts, train_metrics, one_step, k_step, returns, probs))
        ref = phase("reference", self.reference, jax.random.clone(keys_eval), goals_eval)
        return host_copy(EpochOutputs(buckets, ref.optimal, ref.baseline, goals_eval, planner=ref.planner,
                                      control_ms=control_ms))

    def _goal_probs(self, v: Variant) -> np.ndarray:
        return collection_goal_probabilities(self.cfg.regret, self.host.ledger.get(v.name), self.host.verdicts,
                                             self.goal_ids)

    # -- judge -> write -> decide --------------------------------------------------------
    def _epoch(self, epoch: int, writer: SweepWriter, checkpointer: SweepCheckpointer | None,
               pipeline: WritePipeline) -> None:
        t0 = time.perf_counter()
        outputs = self.run_epoch(epoch)
        t_compute = time.perf_counter() - t0
        pipeline.wait()  # the previous epoch's artifacts: a write failure stops the sweep here
        judged = judge_epoch(self.host, outputs, epoch, self.goal_ids, self.num_goals, self.num_params)
        # written while the next epoch computes, the epoch's host state and device state are taken now
        host, runs = ((snapshot(self.host), [dataclasses.replace(r) for r in self.runs]) if pipeline.overlap
                      else (self.host, self.runs))
        pipeline.run(functools.partial(self._finish_epoch, judged, host, runs, writer, checkpointer, t_compute),
                     name=f"epoch {epoch} artifacts")

    def _finish_epoch(self, judged: JudgedEpoch, host: HostState, runs: list[BucketRun], writer: SweepWriter,
                      checkpointer: SweepCheckpointer | None, t_compute: float) -> None:
        epoch = judged.epoch
        t0 = time.perf_counter()
        if self.before_write is not None:
            self.before_write(epoch)
        writer.write_epoch(judged, host, self.flop_fraction)
        t_io = time.perf_counter() - t0
        # The controller (which reads what was just written, and may grow the variants), then the
        # checkpoint: a committed checkpoint of epoch e stands for every artifact of epoch e,
        # growth included, so a resume from it redoes nothing and misses nothing.
        if self.cfg.meta.consult_every_epoch or epoch == self.cfg.epochs - 1:
            self._decide(epoch, writer, host)
        t1 = time.perf_counter()
        if checkpointer is not None:
            renamed = {g["from"]: g["to"] for g in host.growth if g["epoch"] == epoch}
            val_mse = {renamed.get(k, k): res.metrics["val_mse"] for k, res in judged.variants.items()}
            save_epoch(checkpointer, epoch, runs, config=to_dict(self.cfg), env=self.cfg.env.name,
                       obs_dim=self.obs_dim, act_dim=self.act_dim, num_layers=self.cfg.world_model.num_layers,
                       val_mse=val_mse, diverged=host.diverged)
        self.checkpoint_times.append(time.perf_counter() - t1)
        self.epoch_times.append(t_compute + t_io)

    def _decide(self, epoch: int, writer: SweepWriter, host: HostState) -> None:
        decision = self.capacity.consult(epoch, host.growth) if self.primary else None
        if decision is not None:
            writer.write_decision(epoch, decision, self.capacity.controller)
            if self.cfg.regret.goal_sampling == "diagnosis":  # epochs never overlap; saved for a resume
                self.host.verdicts = self.host.verdicts_at[epoch] = goal_verdicts(decision)
                writer.write_state(self.host, epoch, self.flop_fraction)
        # only where capacity can grow, where the epochs do not overlap
        if agree(decision is not None and wants_growth(decision, self.cfg, host.growth, epoch)):
            self._grow(epoch, writer)

    def _grow(self, epoch: int, writer: SweepWriter) -> None:
        """Doubles every variant's width (up to the bucket's max) without changing its function."""
        for b_index, r in enumerate(self.runs):
            grown = grow_bucket(r, self.shard)
            if grown is None:
                continue
            r.states, _, new = grown
            apply_growth(self.host, epoch, r.bucket.variants, new, self.num_goals)
            self._adopt_variants(b_index, new)
            writer.open_writers(self.host.variants)
            log.info("capacity grown at epoch %d: %s", epoch,
                     ", ".join(f"{g['from']} -> {g['to']}" for g in self.host.growth[-len(new):]))
        writer.write_state(self.host, epoch, self.flop_fraction)

    # -- entry point ---------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        """Returns the final summary after running (or resuming) every epoch."""
        writer = SweepWriter(self.run_dir, self.cfg, primary=self.primary, goal_ids=self.goal_ids,
                             num_goals=self.num_goals, oracle=self.env.oracle, num_params=self.num_params,
                             hp_domains=self.hp_domains, purge_step=self.start_epoch if self.resume else None,
                             config_changed=self.config_changed)
        checkpointer = None
        try:
            if not self.resume:
                writer.write_config()
            if self.cfg.checkpoint.enabled:
                checkpointer = SweepCheckpointer(self.run_dir / "checkpoints", keep_last=self.cfg.checkpoint.keep_last,
                                                 keep_best=self.cfg.checkpoint.keep_best)
            writer.open_writers(self.host.variants)
            # epochs overlap their writes where neither growth nor the verdicts can feed a decision
            # back into the next epoch, and where no collective (orbax saves, the controller's broadcast) could cross
            pipeline = WritePipeline(writer.executor, overlap=not self.synchronous_writes and jax.process_count() == 1
                                     and self.cfg.variants.capacity_mode != "auto"
                                     and self.cfg.regret.goal_sampling != "diagnosis")
            with reporting.progress(self.show_progress, self.cfg.epochs, self.start_epoch,
                                    lambda: self.host.variants, lambda: self.host.wm_stats) as advance:
                for epoch in range(self.start_epoch, self.cfg.epochs):
                    self._epoch(epoch, writer, checkpointer, pipeline)
                    advance(epoch)
                pipeline.wait()
        except BaseException:
            # the failure that stopped the sweep is the one to report, not what closing then hits
            with contextlib.suppress(Exception):
                _close(writer, checkpointer, self.capacity)
            raise
        _close(writer, checkpointer, self.capacity)
        if self.primary:
            reporting.render_dashboard(self.run_dir, self.capacity.controller, self.cfg.meta.epsilon)
        summary = reporting.summary(
            self.run_dir, self.host.variants, params={v.name: self.num_params(v) for v in self.host.variants},
            wm_stats=self.host.wm_stats, diverged=self.host.diverged, wall_s=time.perf_counter() - self._t_start,
            flop_fraction=self.flop_fraction, decision=self.capacity.last_decision,
            epoch_times=self.epoch_times, checkpoint_times=self.checkpoint_times)
        if self.show_progress:
            reporting.print_summary(summary, writer.tb_root)
        return summary


def _close(writer: SweepWriter, checkpointer: SweepCheckpointer | None, capacity: CapacityController) -> None:
    """Closes the writer and waits for pending checkpoint saves.

    Every step runs even when an earlier one fails (a full disk must not also cost the
    checkpoint already being committed); the first failure is raised at the end.
    """
    errors: list[BaseException] = []
    for step in (writer.close, lambda: checkpointer and checkpointer.close()):
        try:
            step()
        except Exception as e:  # noqa: BLE001 - re-raised below, after the other steps
            errors.append(e)
    capacity.close()
    if errors:
        raise errors[0]


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


def main(argv: list[str] | None = None, *, before_write: Callable[[int], None] | None = None) -> int:
    """Runs the sweep CLI; returns the exit status (2 for the user's error, 130 when interrupted).

    ``before_write`` is passed on to :class:`Sweep` (a fault drill arms its faults there).

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
            _run_cli(args, started, before_write)
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


def _run_cli(args: argparse.Namespace, started: list[Path], before_write: Callable[[int], None] | None) -> None:
    """Checks the arguments and the run directory, holds its lock and runs the sweep."""
    if args.resume and not args.run_dir:
        raise ConfigError("--resume", "needs --run-dir DIR of the run to continue")
    saved = Path(args.run_dir) / "config.yaml" if args.resume else None
    if saved is not None and not saved.is_file():
        raise SweepError(f"cannot resume: {saved} does not exist")
    # a resumed run starts from its own config: only --config and overrides can change it
    cfg = load_config(args.config if args.config or saved is None else saved, args.overrides)
    compile_cache.configure(cfg.compile_cache)
    if cfg.data.path is not None and cfg.data.mode == "fit":  # no environment to drive: fit models to the data
        data_sweep.run_cli(cfg, args.run_dir, prog=PROG, resume=args.resume)
        return
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
        if saved is None and (run_dir / "config.yaml").exists():
            raise SweepError(f"{run_dir} already holds a run; pass --resume to continue it or choose another --run-dir")
        if primary and lock is None:
            check_writable(run_dir)
            lock = run_lock.acquire(run_dir, command=PROG)
        # every process checks the run directory before process 0 writes config.yaml into it
        sync_processes("augnes_jax.sweep:checked")
        started.append(run_dir)
        sweep = Sweep(cfg, run_dir, resume=args.resume, allow_changed=tuple(args.allow_change),
                      progress=not args.no_progress, before_write=before_write)
        sweep.run()
    finally:
        if lock is not None:
            lock.release(remove_dir=created)


if __name__ == "__main__":
    sys.exit(main())
