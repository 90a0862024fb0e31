"""Everything a sweep writes between its jitted calls: the run directory's artifacts.

:class:`SweepWriter` owns the run directory of one :class:`augnes_jax.sweep.Sweep`: the
resolved ``config.yaml`` (written first), ``judgments.jsonl`` (append-only), the per-variant
and capacity TensorBoard runs, ``strategy_stats.json`` and ``world_model_stats.json`` (atomic),
orbax checkpoints, the MetaJudgmentController's ``decision.json`` and alerts, the progress bar
and the final summary table. It also restores all of that on ``--resume``.

Multi-process runs: every process keeps the same host state (ledger, statistics, variants), but
only process 0 (``SweepWriter.primary``) writes files: config, TensorBoard, JSON,
``judgments.jsonl``, decision and alerts. Every process takes part in the orbax saves, which
orbax coordinates. The controller's decision is broadcast from process 0.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np

from augnes_jax import checkpoint_meta, files, regret
from augnes_jax.checkpoint import SweepCheckpointer
from augnes_jax.config import to_dict, to_yaml
from augnes_jax.executor import Executor
from augnes_jax.judgments import read_judgments
from augnes_jax.meta import DIVERGED_TAG, NUM_PARAMS_TAG
from augnes_jax.stats import build_strategy_stats, write_strategy_stats
from augnes_jax.sweep import host_copy
from augnes_jax.tensorboard_io import RunWriter, multiline_charts, write_regret_summaries
from augnes_jax.variants import Variant, variant_name, variant_num_params
from augnes_jax.world_model_stats import WorldModelStats

if TYPE_CHECKING:
    from augnes_jax.sweep import Sweep

log = logging.getLogger("augnes_jax.sweep")

# TensorBoard runs besides the variants' ``h{H}-b{B}-s{S}``; the leading underscore sorts them
# apart in every run selector (and the controller's variant pattern never matches them).
CONTROLLER_RUN = "_controller"
CAPACITY_RUN = "_capacity"
# the dashboard figures shown in TensorBoard's Images tab every epoch
TB_FIGURES = ("regret_vs_hidden_dim.png", "regret_vs_buffer_size.png", "goal_regret_heatmap.png")


def capacity_run(epoch: int) -> str:
    """Returns the TensorBoard run that holds the capacity curve decided on at ``epoch``."""
    return f"{CAPACITY_RUN}/epoch_{int(epoch):04d}"


def sweep_layout(hidden_dims: list[int], buffer_sizes: list[int]) -> dict:
    """Returns the sweep's custom-scalars layout: one chart per question, few lines per chart.

    Tags are anchored regular expressions, so ``h4`` never matches ``h40``.
    """
    hs, bs = sorted(hidden_dims), sorted(buffer_sizes)
    capacity: dict[str, list] = {}
    for b in bs:
        capacity[f"avg regret vs hidden_dim (x), buffer_size {b}"] = [
            "Multiline", [f"^capacity/avg_regret_vs_hidden_dim/buffer_size_{b}$"]]
    for h in hs if len(bs) > 1 else ():
        capacity[f"avg regret vs buffer_size (x), hidden_dim {h}"] = [
            "Multiline", [f"^capacity/avg_regret_vs_buffer_size/hidden_dim_{h}$"]]
    by_epoch: dict[str, list] = {}
    mse_by_epoch: dict[str, list] = {}
    for b in bs:
        by_epoch.update(multiline_charts(f"avg regret by epoch, buffer_size {b}",
                                         [f"^by_capacity/avg_regret/h{h}-b{b}$" for h in hs]))
        mse_by_epoch.update(multiline_charts(f"val_mse by epoch, buffer_size {b}",
                                             [f"^by_capacity/val_mse/h{h}-b{b}$" for h in hs]))
    return {
        "which capacity (x = capacity, one run per epoch)": capacity,
        "decision by epoch": {
            "recommended hidden_dim": ["Multiline", ["^decision/recommended_hidden_dim$"]],
            "recommended buffer_size": ["Multiline", ["^decision/recommended_buffer_size$"]],
            "expand (1) or keep (0)": ["Multiline", ["^decision/expand$"]],
        },
        "regret by epoch (mean over seeds)": by_epoch,
        "world model by epoch (mean over seeds)": mse_by_epoch,
    }


def decision_text(decision: Any) -> str:
    """Returns the decision as a short markdown paragraph with rounded numbers."""
    rec = decision.recommended
    head = (f"**{decision.decision}**: recommended hidden_dim {rec.get('hidden_dim')}, "
            f"buffer_size {rec.get('buffer_size')}")
    if decision.suggested_next:
        head += (f"; next to try hidden_dim {decision.suggested_next['hidden_dim']}, "
                 f"buffer_size {decision.suggested_next['buffer_size']}")
    caps = "; ".join(f"h{c['hidden_dim']}-b{c['buffer_size']}: {c['avg_regret']:.3g}" for c in decision.capacities)
    steps = decision.evidence.get("steps", [])
    return (f"{head}.  \nAvg regret over epochs {steps} (mean over seeds): {caps or 'none yet'}.  \n"
            f"Why: {decision.reason}")


def _finite(x) -> float | None:
    x = float(x)
    return x if np.isfinite(x) else None


class SweepWriter:
    """Writes (and on resume restores) the artifacts of one sweep's run directory."""

    def __init__(self, sweep: Sweep):
        self.sweep = sweep
        self.cfg = sweep.cfg
        self.run_dir = sweep.run_dir
        self.judgments_path = self.run_dir / "judgments.jsonl"
        self.stats_path = self.run_dir / "strategy_stats.json"
        self.wm_stats_path = self.run_dir / "world_model_stats.json"
        self.tb_root = self.run_dir / "tb"
        self.writers: dict[str, RunWriter] = {}
        self.ledger: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        # every episode's (goal ids, regret) so far per variant: the per-goal histograms
        self.episodes: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self.collection: dict[str, list[list[float]]] = {}
        # the epoch at which each diverged variant was first flagged (kept across a resume)
        self.diverged_at: dict[str, int] = {}
        self._config_changed = False
        self.epoch_times: list[float] = []
        self.checkpoint_times: list[float] = []
        self.last_decision: Any = None
        self.controller = None
        self._purge_step: int | None = None
        self.checkpointer: SweepCheckpointer | None = None
        # (step, arrays, meta) of the checkpoint a resume starts from, read and verified once
        self._restored: tuple[int, dict, dict] | None = None
        self.wm_stats = WorldModelStats(epsilon=self.cfg.world_model.epsilon)
        self.executor: Executor | None = None
        # multi-process: process 0 alone writes files (see the module docstring)
        self.primary = jax.process_index() == 0

    # ------------------------------------------------------------------ start / resume
    def prepare(self, *, resume: bool, allow_changed: tuple[str, ...]) -> int:
        """Returns the first epoch to run, after writing config.yaml or restoring host state.

        On resume the config must equal the run's ``config.yaml`` except for the keys in
        ``allow_changed``; the changed config then replaces it.

        Raises:
          SweepError: the run cannot be resumed (no or unusable config.yaml, a changed key that is
            not allowed, unreadable artifacts); the message is one line.
        """
        ckpt_dir = self.run_dir / "checkpoints"
        start = 0
        if resume:
            self._check_resumable(allow_changed)
            if self.cfg.checkpoint.enabled:
                self._restored = self._newest_intact_checkpoint(ckpt_dir)
                start = 0 if self._restored is None else self._restored[0] + 1
                self.checkpointer = SweepCheckpointer(ckpt_dir, keep_last=self.cfg.checkpoint.keep_last,
                                                      keep_best=self.cfg.checkpoint.keep_best)
            self._truncate_to(start)
            self._purge_step = start
            log.info("resuming %s at epoch %d of %d", self.run_dir, start, self.cfg.epochs)
        else:
            if self.primary:
                files.write_text_atomic(self.run_dir / "config.yaml", to_yaml(self.cfg))
            if self.cfg.checkpoint.enabled:
                self.checkpointer = SweepCheckpointer(ckpt_dir, keep_last=self.cfg.checkpoint.keep_last,
                                                      keep_best=self.cfg.checkpoint.keep_best)
        if self.primary:
            self.executor = Executor(self.judgments_path)
        if not resume:
            self.open_writers()  # a resume opens them once its checkpoint fits (restore_device_state)
        return start

    def _newest_intact_checkpoint(self, ckpt_dir: Path) -> tuple[int, dict, dict] | None:
        """Returns ``(step, arrays, meta)`` of the newest intact checkpoint, None if there is none.

        A damaged newer step (unreadable, or arrays that fail their checksums) is reported in one
        warning and moved to ``checkpoints_damaged/`` (kept for inspection, out of the way of the
        step that the resumed run writes again); the run then resumes from the step before it,
        and everything written after that step is truncated as after any crash.

        Raises:
          SweepError: checkpoints exist but none is intact.
        """
        from augnes_jax.checkpoint import CheckpointError, checkpoint_steps, restore_newest_intact
        from augnes_jax.sweep import SweepError, sync_processes

        if not ckpt_dir.is_dir():
            return None
        try:
            if not checkpoint_steps(ckpt_dir):
                return None
            step, arrays, meta, damaged = restore_newest_intact(ckpt_dir)
        except CheckpointError as e:
            raise SweepError(f"cannot resume: {e}") from None
        aside = self.run_dir / "checkpoints_damaged"
        for bad, reason in damaged:
            target = aside / str(bad)
            if self.primary:
                aside.mkdir(exist_ok=True)
                n = 1
                while target.exists():
                    target, n = aside / f"{bad}.{n}", n + 1
                os.replace(ckpt_dir / str(bad), target)
                log.warning("resuming from checkpoint %d: checkpoint %d is damaged, moved to %s (%s)",
                            step, bad, target, reason)
        sync_processes("augnes_jax.sweep:checkpoints_checked")
        return step, arrays, meta

    def _check_resumable(self, allow_changed: tuple[str, ...]) -> None:
        """Refuses a resume whose config differs from the run's in a key that may not change."""
        from augnes_jax.config import RESULT_NEUTRAL, ConfigError, diff, load_config
        from augnes_jax.sweep import SweepError

        saved = self.run_dir / "config.yaml"
        if not saved.is_file():
            raise SweepError(f"cannot resume: {saved} does not exist")
        try:
            old = load_config(saved)
        except ConfigError as e:
            raise SweepError(f"cannot resume: the run's own config is unusable ({e})") from None
        changed = [k for k in diff(old, self.cfg) if k not in RESULT_NEUTRAL]
        refused = [k for k in changed if k not in allow_changed]
        if refused:
            raise SweepError(f"cannot resume {self.run_dir}: config differs from the run's in {', '.join(refused)} "
                             f"(pass --allow-change KEY for each key that may change)")
        # written with the first epoch it governs, so a resume that fails before then changes nothing
        self._config_changed = bool(changed)

    def _truncate_to(self, start: int) -> None:
        """Drops every record of epochs >= ``start`` (work after the last checkpoint).

        ``judgments.jsonl`` keeps its lines of epochs < ``start`` once each (a torn last line and
        duplicates of an already seen ``(variant, epoch, episode)`` are dropped),
        ``world_model_stats.json`` its entries of those epochs, and ``sweep_state.json`` gives
        back the diverged variants, collection shares and growth of those epochs. The regret
        ledger is rebuilt from the kept judgments (see :meth:`_rebuild_ledger`).

        Raises:
          SweepError: an artifact of the run cannot be read; the message names it.
        """
        from augnes_jax.sweep import SweepError

        meta_path = self.run_dir / "sweep_state.json"
        if meta_path.exists():
            try:
                state = files.read_json(meta_path)
                diverged_at = {str(d): int(e) for d, e in state.get("diverged", {}).items() if int(e) < start}
                growth = [g for g in state.get("growth", []) if int(g["epoch"]) < start]
                dropped_names = {g["to"] for g in state.get("growth", []) if int(g["epoch"]) >= start}
                collection = {str(k): list(v)[:start] for k, v in state.get("collection", {}).items()
                              if k not in dropped_names}
            except (ValueError, TypeError, KeyError, AttributeError) as e:
                raise SweepError(f"cannot resume: {meta_path} is not a sweep state ({e})") from None
            self.diverged_at = diverged_at
            self.sweep.diverged = set(diverged_at)
            self.collection = collection
            self.sweep.growth = growth
        records = self._kept_judgments(start)
        if self.primary and self.judgments_path.exists():
            files.write_text_atomic(self.judgments_path, "".join(line + "\n" for _, line in records))
        self._rebuild_ledger([rec for rec, _ in records])
        if self.wm_stats_path.exists():
            try:
                self.wm_stats = WorldModelStats.from_file(self.wm_stats_path)
            except (ValueError, OSError) as e:
                raise SweepError(f"cannot resume: {e}") from None
            self.wm_stats.truncate(start)

    def _kept_judgments(self, start: int) -> list[tuple[dict, str]]:
        """Returns ``(record, line)`` of every judgment to keep on resume, in file order."""
        import json

        from augnes_jax.sweep import SweepError

        if not self.judgments_path.exists():
            return []
        try:
            data = self.judgments_path.read_bytes()
        except OSError as e:
            raise SweepError(f"cannot resume: cannot read {self.judgments_path}: {e.strerror}") from None
        lines = data.split(b"\n")
        kept: list[tuple[dict, str]] = []
        seen: set[tuple] = set()
        duplicates = 0
        for number, raw in enumerate(lines, 1):
            if not raw.strip():
                continue
            try:
                rec = json.loads(raw)
                key = (rec["variant"], int(rec["epoch"]), int(rec["episode"]))
            except (ValueError, TypeError, KeyError):
                # the sweep appends whole lines, so only a crash mid-append leaves a bad line
                log.warning("%s:%d: unreadable line dropped on resume (torn by the crash)",
                            self.judgments_path, number)
                continue
            if key[1] >= start:
                continue
            if key in seen:
                duplicates += 1
                continue
            seen.add(key)
            kept.append((rec, raw.decode("utf-8").rstrip("\r")))
        if duplicates:
            log.warning("%s: %d duplicate judgments dropped on resume", self.judgments_path, duplicates)
        return kept

    def _rebuild_ledger(self, records: list[dict]) -> None:
        """Rebuilds the per-variant regret ledger from the kept judgments.

        The ledger is accumulated exactly as :meth:`write_epoch` accumulates it, epoch by epoch
        and episode by episode, with a variant's ledger handed on to its new name where it grew,
        so the float sums (and the regret-prioritised goal probabilities drawn from them) are
        bit-identical to those of an uninterrupted run.
        """
        g = self.sweep.num_goals
        by_epoch: dict[int, dict[str, list[dict]]] = {}
        for rec in records:
            by_epoch.setdefault(int(rec["epoch"]), {}).setdefault(rec["variant"], []).append(rec)
        growth_at: dict[int, list[dict]] = {}
        for event in self.sweep.growth:
            growth_at.setdefault(int(event["epoch"]), []).append(event)
        self.ledger = {}
        self.episodes = {}
        for epoch in sorted(set(by_epoch) | set(growth_at)):
            for name, recs in by_epoch.get(epoch, {}).items():
                recs.sort(key=lambda r: int(r["episode"]))
                goals = np.asarray([int(r["goal_id"]) for r in recs], np.int64)
                reg = np.asarray([float(r["regret"]) for r in recs], np.float64)
                counts, sums = self.ledger.get(name, (np.zeros(g), np.zeros(g)))
                self.ledger[name] = (counts + np.bincount(goals, minlength=g),
                                     sums + np.bincount(goals, weights=reg, minlength=g))
                seen_g, seen_r = self.episodes.get(name, (np.zeros(0, np.int64), np.zeros(0)))
                self.episodes[name] = (np.concatenate([seen_g, goals]), np.concatenate([seen_r, reg]))
            for event in growth_at.get(epoch, []):
                self.ledger[event["to"]] = self.ledger.get(event["from"], (np.zeros(g), np.zeros(g)))
                if event["from"] in self.episodes:
                    self.episodes[event["to"]] = self.episodes[event["from"]]

    def restore_device_state(self, step: int) -> None:
        """Loads every bucket's model and buffer state saved at ``step``.

        Raises:
          SweepError: the checkpoint is unreadable or does not fit this config's variants.
        """
        from augnes_jax.checkpoint import CheckpointError
        from augnes_jax.sweep import SweepError

        try:
            if self._restored is not None and self._restored[0] == step:
                _, arrays, meta = self._restored
                self._restored = None  # the host copy is not needed once on the device
            else:
                arrays, meta = self.checkpointer.restore(step)
            saved = arrays["resume"]
            for r in self.sweep.runs:
                saved[r.bucket.name]  # noqa: B018 - fail early, naming the bucket
        except CheckpointError as e:
            raise SweepError(f"cannot resume: {e}") from None
        except (KeyError, TypeError) as e:
            raise SweepError(f"cannot resume: checkpoint {step} in {self.checkpointer.directory} has no "
                             f"resume state for bucket {e}; was it written with another config?") from None
        for r in self.sweep.runs:
            tree = (r.states, r.buffers)
            leaves, treedef = jax.tree.flatten(tree)
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
            r.states, r.buffers = self.sweep._shard(jax.tree.unflatten(treedef, restored))
        saved = checkpoint_meta.saved_variants(meta)
        if saved:
            self._apply_saved_variants(saved)

    def _apply_saved_variants(self, saved: dict[tuple[str, int], dict]) -> None:
        """In auto mode the variants may have grown; adopt the widths the checkpoint recorded."""
        for b_index, r in enumerate(self.sweep.runs):
            new = []
            for v in r.bucket.variants:
                match = saved.get((v.bucket, v.index))
                if match is not None and match["hidden_dim"] != v.hidden_dim:
                    v = Variant(match["name"], match["hidden_dim"], v.buffer_size, v.seed, v.bucket, v.index, v.max_width)
                new.append(v)
            self._replace_bucket_variants(b_index, new)

    def _replace_bucket_variants(self, b_index: int, new: list[Variant]) -> None:
        import dataclasses

        r = self.sweep.runs[b_index]
        r.bucket = dataclasses.replace(r.bucket, variants=tuple(new))
        r.hidden_dims = r.pad(np.asarray([v.hidden_dim for v in new], np.int32))
        self.sweep.buckets[b_index] = r.bucket
        self.sweep.variants = [v for rr in self.sweep.runs for v in rr.bucket.variants]
        self.open_writers()

    # ------------------------------------------------------------------ TensorBoard
    def open_writers(self) -> None:
        """Opens the TensorBoard run of every variant (and the controller's run) not yet open.

        Variant runs carry the HParams session of their variant, with the same discrete domains
        in every run (every width the variants can grow to, every buffer size and seed). The
        ``_controller`` run carries the custom-scalars layout of the whole sweep.
        """
        for v in self.sweep.variants:
            self._params = getattr(self, "_params", {})
            self._params[v.name] = variant_num_params(v, self.sweep.obs_dim, self.sweep.act_dim,
                                                      self.cfg.world_model.num_layers)
        if not self.primary:
            return
        if getattr(self, "_hp_domains", None) is None:
            widths = {v.hidden_dim for v in self.sweep.variants}
            if self.cfg.variants.capacity_mode == "auto":  # every width a variant can grow to
                for v in self.sweep.variants:
                    h = v.hidden_dim
                    while h <= v.max_width:
                        widths.add(h)
                        h *= 2
            self._hp_domains = {"hidden_dim": sorted(widths),
                                "buffer_size": sorted({v.buffer_size for v in self.sweep.variants}),
                                "seed": sorted({v.seed for v in self.sweep.variants})}
        for v in self.sweep.variants:
            if v.name in self.writers:
                continue
            w = RunWriter(self.tb_root / v.name, purge_step=self._purge_step)
            w.hparams({"hidden_dim": v.hidden_dim, "buffer_size": v.buffer_size, "seed": v.seed},
                      {"regret/avg": 0.0, "advantage/avg": 0.0, "world_model/val_mse": 0.0},
                      domains=self._hp_domains)
            self.writers[v.name] = w
        if CONTROLLER_RUN not in self.writers:
            w = RunWriter(self.tb_root / CONTROLLER_RUN, purge_step=self._purge_step)
            w.custom_scalars(sweep_layout(self._hp_domains["hidden_dim"], self._hp_domains["buffer_size"]))
            self.writers[CONTROLLER_RUN] = w

    def _write_capacity_tb(self, epoch: int, decision: Any) -> None:
        """Writes the controller's answer of ``epoch``: its capacity curve, decision and figures.

        The curve goes into its own run ``_capacity/epoch_NNNN`` (step = the capacity on the
        axis), so no step repeats in any run; its values are ``decision.json``'s per-capacity
        averages. An earlier attempt at the same epoch (a resumed run) is replaced.
        """
        caps = list(decision.capacities)
        run = self.tb_root / capacity_run(epoch)
        if run.exists():
            shutil.rmtree(run)
        with RunWriter(run) as cap:
            # against hidden_dim, one line per buffer_size (with advantage and model error) ...
            for c in caps:
                line = f"buffer_size_{c['buffer_size']}"
                cap.scalars(int(c["hidden_dim"]), {
                    f"capacity/avg_regret_vs_hidden_dim/{line}": c["avg_regret"],
                    f"capacity/avg_advantage_vs_hidden_dim/{line}": c["avg_advantage"],
                    f"capacity/val_mse_vs_hidden_dim/{line}": c["val_mse"],
                })
            # ... and against buffer_size, one line per hidden_dim tested at two or more buffer sizes
            for c in caps:
                if sum(o["hidden_dim"] == c["hidden_dim"] for o in caps) > 1:
                    cap.scalars(int(c["buffer_size"]), {
                        f"capacity/avg_regret_vs_buffer_size/hidden_dim_{c['hidden_dim']}": c["avg_regret"]})
        ctl = self.writers.get(CONTROLLER_RUN)
        if ctl is None:
            return
        rec = decision.recommended
        ctl.scalars(epoch, {"decision/recommended_hidden_dim": rec.get("hidden_dim"),
                            "decision/recommended_buffer_size": rec.get("buffer_size"),
                            "decision/expand": 1.0 if decision.decision == "expand" else 0.0})
        ctl.text("decision", decision_text(decision), epoch)
        from augnes_jax import dashboard

        figs = dashboard.figures(self.run_dir, controller=self.controller, names=TB_FIGURES)
        for name, fig in figs.items():
            ctl.figure(f"dashboard/{name.removesuffix('.png')}", fig, epoch, pil_kwargs={"compress_level": 1})
        with _naming(ctl.logdir):
            ctl.flush()

    # ------------------------------------------------------------------ one epoch
    def write_epoch(self, epoch: int, result: dict[str, Any], *, t_compute: float) -> None:
        """Writes every artifact of one finished epoch, then checkpoints and consults the controller."""
        sweep, cfg = self.sweep, self.cfg
        t0 = time.perf_counter()
        if self._config_changed and self.primary:
            files.write_text_atomic(self.run_dir / "config.yaml", to_yaml(cfg))
        self._config_changed = False
        optimal = np.asarray(result["optimal"], np.float64)
        baseline = np.asarray(result["baseline"], np.float64)
        goals = np.asarray(result["goals"], np.int64)
        episode = np.arange(goals.shape[0])
        feedback: list[dict[str, Any]] = []
        per_variant: dict[str, dict[str, Any]] = {}
        for r, out in zip(sweep.runs, result["buckets"], strict=True):
            for i, v in enumerate(r.bucket.variants):
                returns = np.asarray(out["returns"][i], np.float64)
                one = jax.tree.map(lambda x, i=i: np.asarray(x[i]), out["one_step"])
                ks = jax.tree.map(lambda x, i=i: np.asarray(x[i]), out["k_step"])
                train = jax.tree.map(lambda x, i=i: np.asarray(x[i]), out["train"])
                nonfinite = int(train["nonfinite_updates"])
                diverged = (v.name in sweep.diverged or nonfinite > 0 or not np.isfinite(one["val_mse"])
                            or not np.all(np.isfinite(returns)))
                if diverged and v.name not in sweep.diverged:
                    log.warning("variant %s diverged at epoch %d (non-finite updates: %d); it is excluded "
                                "from here on, the other variants continue", v.name, epoch, nonfinite)
                    sweep.diverged.add(v.name)
                if diverged:
                    self.diverged_at.setdefault(v.name, epoch)
                metrics = {"train_loss": train["train_loss"], "val_mse": one["val_mse"],
                           "per_dim_mse": one["per_dim_mse"], "per_goal_mse": {str(g): one["per_goal_mse"][g] for g in sweep.goal_ids},
                           "k_step_mse": {str(k): ks[k] for k in sorted(ks)}, "samples_seen": int(train["samples_seen"]),
                           "nonfinite_updates": nonfinite, "diverged": diverged}
                meta = {"hidden_dim": v.hidden_dim, "buffer_size": v.buffer_size, "seed": v.seed,
                        "num_params": self._params[v.name]}
                self.wm_stats.record(v.name, epoch, metrics, meta)
                counts = np.asarray(out["counts"][i], np.float64)
                share = (counts / max(counts.sum(), 1.0))[sweep.goal_ids]
                self.collection.setdefault(v.name, []).append([float(x) for x in share])
                per_variant[v.name] = {"variant": v, "returns": returns, "metrics": metrics, "share": share,
                                       "diverged": diverged}
                if not diverged:
                    n = goals.shape[0]
                    feedback.append({"goal_id": goals, "reward": returns, "optimal_reward": optimal,
                                     "baseline_reward": baseline, "episode": episode,
                                     "variant": [v.name] * n, "hidden_dim": np.full(n, v.hidden_dim),
                                     "buffer_size": np.full(n, v.buffer_size), "seed": np.full(n, v.seed)})
        if feedback and self.primary:
            # the executor's feedback path: regret and advantage are computed as feedback is stored
            cat = {k: np.concatenate([np.asarray(f[k]) for f in feedback]) if k != "variant"
                   else [x for f in feedback for x in f[k]] for k in feedback[0]}
            with _naming(self.judgments_path):
                self.executor.store_feedback_batch(**cat, epoch=epoch, strategy="mpc_world_model",
                                                   oracle=sweep.env.oracle, run=self.run_dir.name)

        # TensorBoard, per variant (process 0 has the writers; every process updates the ledger)
        for name, pv in per_variant.items():
            w = self.writers.get(name)
            if w is not None:
                w.changed(epoch, {NUM_PARAMS_TAG: float(self._params[name]), DIVERGED_TAG: float(pv["diverged"])})
                w.scalars(epoch, {f"collection/goal_{g}/share": float(s)
                                  for g, s in zip(sweep.goal_ids, pv["share"], strict=True)})
                self.wm_stats.write_tb(w, name, epoch, pv["metrics"])
            if pv["diverged"]:
                continue
            reg = optimal - pv["returns"]
            adv = pv["returns"] - baseline
            seen_g, seen_r = self.episodes.get(name, (np.zeros(0, np.int64), np.zeros(0)))
            self.episodes[name] = (np.concatenate([seen_g, goals]), np.concatenate([seen_r, reg]))
            if w is not None:
                agg = regret.aggregate(jnp.asarray(reg, jnp.float32), jnp.asarray(goals, jnp.int32), sweep.num_goals)
                adv_agg = regret.aggregate(jnp.asarray(adv, jnp.float32), jnp.asarray(goals, jnp.int32), sweep.num_goals)
                # histograms of every episode so far, per goal, once a goal has enough of them
                write_regret_summaries(w, epoch, agg, adv_agg, per_episode_regret=self.episodes[name][1],
                                       goal_ids=self.episodes[name][0])
            counts_l, sums_l = self.ledger.get(name, (np.zeros(sweep.num_goals), np.zeros(sweep.num_goals)))
            self.ledger[name] = (counts_l + np.bincount(goals, minlength=sweep.num_goals),
                                 sums_l + np.bincount(goals, weights=reg, minlength=sweep.num_goals))
            pv["avg_regret"] = float(reg.mean())
            pv["avg_advantage"] = float(adv.mean())

        # TensorBoard, controller run: this epoch's means over seeds, one line per capacity
        groups: dict[tuple[int, int], list[dict]] = {}
        for pv in per_variant.values():
            if not pv["diverged"]:
                groups.setdefault((pv["variant"].hidden_dim, pv["variant"].buffer_size), []).append(pv)
        ctl = self.writers.get(CONTROLLER_RUN)
        for (h, b), items in sorted(groups.items()) if ctl is not None else ():
            ctl.scalars(epoch, {
                f"by_capacity/avg_regret/h{h}-b{b}": float(np.mean([p["avg_regret"] for p in items])),
                f"by_capacity/val_mse/h{h}-b{b}": float(np.mean([p["metrics"]["val_mse"] for p in items])),
            })
        for w in self.writers.values():
            with _naming(w.logdir):
                w.flush()

        # JSON artifacts
        if self.primary:
            self._write_stats()
            self.wm_stats.write(self.wm_stats_path)
            files.write_json_atomic(self.run_dir / "sweep_state.json", {
                "schema": 1, "epoch": epoch, "diverged": {d: self.diverged_at.get(d, epoch) for d in sorted(sweep.diverged)},
                "collection": self.collection, "growth": sweep.growth,
                "useful_flop_fraction": sweep.flop_fraction,
            })
        t_io = time.perf_counter() - t0

        # The controller (which reads what was just written, and may grow the variants), then the
        # checkpoint: a committed checkpoint of epoch e stands for every artifact of epoch e,
        # growth included, so a resume from it redoes nothing and misses nothing.
        if cfg.meta.consult_every_epoch or epoch == cfg.epochs - 1:
            self._consult_controller(epoch)
        t1 = time.perf_counter()
        if self.checkpointer is not None:
            renamed = {g["from"]: g["to"] for g in sweep.growth if g["epoch"] == epoch}
            self._save_checkpoint(epoch, {renamed.get(k, k): pv for k, pv in per_variant.items()})
        self.checkpoint_times.append(time.perf_counter() - t1)
        self.epoch_times.append(t_compute + t_io)

    def _write_stats(self) -> None:
        if not self.judgments_path.exists() or self.judgments_path.stat().st_size == 0:
            return
        j = read_judgments(self.judgments_path)
        stats = build_strategy_stats(j, source=str(self.judgments_path), num_goals=self.sweep.num_goals,
                                     ci_level=self.cfg.regret.ci_level, diverged_variants=set(self.sweep.diverged))
        for exp in stats.get("experiments", []):
            share = self.collection.get(exp.get("variant"))
            if share is not None:
                exp["collection_share_by_epoch"] = {"goals": [int(g) for g in self.sweep.goal_ids], "share": share}
        stats["useful_flop_fraction"] = self.sweep.flop_fraction
        write_strategy_stats(self.stats_path, stats)

    def _save_checkpoint(self, epoch: int, per_variant: dict[str, dict]) -> None:
        sweep = self.sweep
        arrays: dict[str, Any] = {"params": {}, "opt_state": {}, "normalizer": {}, "resume": {}}
        variants_meta = []
        for r in sweep.runs:
            name = r.bucket.name
            arrays["params"][name] = r.states.params
            arrays["opt_state"][name] = r.states.opt_state
            arrays["normalizer"][name] = r.states.normalizer
            leaves = jax.tree.leaves((r.states, r.buffers))
            arrays["resume"][name] = {f"leaf_{i:04d}": leaf for i, leaf in enumerate(leaves)}
            masks = host_copy(r.states.mask)
            for i, v in enumerate(r.bucket.variants):
                val = per_variant.get(v.name, {}).get("metrics", {}).get("val_mse")
                variants_meta.append(checkpoint_meta.variant_entry(
                    name=v.name, hidden_dim=v.hidden_dim, buffer_size=v.buffer_size, seed=v.seed, bucket=name,
                    index=i, max_width=v.max_width, mask=masks[i].tolist(), val_mse=val,
                    diverged=v.name in sweep.diverged))
        meta = checkpoint_meta.build_meta(config=to_dict(self.cfg), env=sweep.env.name, obs_dim=sweep.obs_dim,
                                          act_dim=sweep.act_dim, num_layers=self.cfg.world_model.num_layers,
                                          epoch=epoch, variants=variants_meta)
        best = checkpoint_meta.best_val_mse(meta)
        self.checkpointer.save(epoch, arrays=arrays, meta=meta,
                               metrics={"val_mse": best} if best is not None else None)

    def _consult_controller(self, epoch: int) -> None:
        expand = self._controller_decides_expand(epoch) if self.primary else False
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils

            # every process must grow the same variants at the same epoch
            expand = bool(multihost_utils.broadcast_one_to_all(np.int32(expand)))
        if expand:
            self._grow(epoch)

    def _controller_decides_expand(self, epoch: int) -> bool:
        from augnes_jax.meta import MetaJudgmentController

        try:
            if self.controller is None:
                self.controller = MetaJudgmentController.from_config(self.run_dir, self.cfg)
            decision = self.controller.update()
            self.controller.write(self.run_dir, growth=self.sweep.growth)
            self.last_decision = decision
        except Exception as e:  # noqa: BLE001 - the controller must never stop the sweep
            log.warning("MetaJudgmentController failed at epoch %d: %s", epoch, e)
            return False
        try:
            self._write_capacity_tb(epoch, decision)
        except Exception as e:  # noqa: BLE001 - nor may showing its answer decide what it does
            log.warning("TensorBoard summaries of the decision at epoch %d failed: %s", epoch, e)
        if self.cfg.variants.capacity_mode != "auto":
            return False
        if decision.decision == "expand":
            return True
        # With a single width there is nothing to compare: once it has k epochs of evidence,
        # grow once so the controller can measure what the next width buys.
        widths_tried = 1 + len({g["epoch"] for g in self.sweep.growth})
        since = max([g["epoch"] + 1 for g in self.sweep.growth], default=0)
        return widths_tried < 2 and epoch + 1 - since >= self.cfg.meta.last_k_epochs

    def _grow(self, epoch: int) -> None:
        """Doubles every variant's width (up to the bucket's max) without changing its function."""
        sweep = self.sweep
        for b_index, r in enumerate(sweep.runs):
            new_dims = np.minimum(r.hidden_dims * 2, r.bucket.max_width).astype(np.int32)
            if np.array_equal(new_dims, r.hidden_dims):
                continue
            r.states = sweep._shard(jax.vmap(r.wm.grow)(r.states, jnp.asarray(new_dims)))
            new = []
            for v, h in zip(r.bucket.variants, new_dims[:len(r.bucket.variants)], strict=True):
                nv = Variant(variant_name(int(h), v.buffer_size, v.seed), int(h), v.buffer_size, v.seed, v.bucket,
                             v.index, v.max_width)
                sweep.growth.append({"epoch": epoch, "from": v.name, "to": nv.name,
                                     "hidden_dim": [v.hidden_dim, int(h)]})
                self.ledger[nv.name] = self.ledger.get(v.name, (np.zeros(sweep.num_goals), np.zeros(sweep.num_goals)))
                if v.name in self.episodes:
                    self.episodes[nv.name] = self.episodes[v.name]
                self.collection[nv.name] = list(self.collection.get(v.name, []))
                if v.name in sweep.diverged:  # a diverged variant stays excluded under its new name
                    sweep.diverged.add(nv.name)
                    self.diverged_at.setdefault(nv.name, self.diverged_at.get(v.name, epoch))
                new.append(nv)
            self._replace_bucket_variants(b_index, new)
            log.info("capacity grown at epoch %d: %s", epoch, ", ".join(f"{g['from']} -> {g['to']}" for g in sweep.growth[-len(new):]))
        if self.primary:
            files.write_json_atomic(self.run_dir / "sweep_state.json", {
                **files.read_json(self.run_dir / "sweep_state.json"), "growth": sweep.growth,
                "collection": self.collection,  # the grown names carry their predecessors' history
                "diverged": {d: self.diverged_at.get(d, epoch) for d in sorted(sweep.diverged)}})

    def _latest_val_mse(self, name: str) -> float | None:
        entry = self.wm_stats.latest(name)
        return None if entry is None else entry.get("val_mse")

    # ------------------------------------------------------------------ progress & summary
    @contextlib.contextmanager
    def progress(self, start_epoch: int):
        """Yields ``advance(epoch)``; shows a rich progress bar with an ETA when enabled."""
        total = self.cfg.epochs
        if not self.sweep.show_progress:
            yield lambda epoch: None
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        n_var = len(self.sweep.variants)
        with Progress(TextColumn("[bold]sweep[/] {task.description}"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), transient=False) as bar:
            task = bar.add_task(f"{n_var} variants, {total} epochs (compiling...)", total=total, completed=start_epoch)

            def advance(epoch: int) -> None:
                best = min((self._latest_val_mse(v.name) or np.inf) for v in self.sweep.variants)
                bar.update(task, completed=epoch + 1,
                           description=f"{n_var} variants, epoch {epoch + 1}/{total}, best val_mse {best:.2e}")

            yield advance

    def summary(self, wall_s: float) -> dict[str, Any]:
        """Returns the final summary (and prints the table, run directory and TensorBoard command)."""
        stats = files.read_json(self.stats_path) if self.stats_path.exists() else {"experiments": []}
        by_name = {e["variant"]: e for e in stats.get("experiments", []) if "variant" in e}
        rows = []
        for v in self.sweep.variants:
            e = by_name.get(v.name, {})
            rows.append({
                "variant": v.name, "params": self._params.get(v.name), "val_mse": self._latest_val_mse(v.name),
                "avg_regret": e.get("avg_regret"), "avg_regret_ci95": e.get("avg_regret_ci95"),
                "avg_advantage": e.get("avg_advantage"), "diverged": v.name in self.sweep.diverged,
            })
        summary = {"run_dir": str(self.run_dir), "rows": rows, "wall_s": wall_s,
                   "useful_flop_fraction": self.sweep.flop_fraction,
                   "decision": getattr(self.last_decision, "decision", None),
                   # seconds per epoch run by this process (compute + artifacts) and spent starting
                   # each epoch's checkpoint save; their ratio is the checkpoint overhead
                   "epoch_times": list(self.epoch_times), "checkpoint_times": list(self.checkpoint_times)}
        if self.sweep.show_progress:
            _print_summary(summary, self.tb_root)
        return summary

    def close(self) -> None:
        """Flushes and closes every writer and waits for pending checkpoint saves.

        Every step runs even when an earlier one fails (a full disk must not also cost the
        checkpoint already being committed); the first failure is raised at the end.
        """
        for w in self.writers.values():
            try:
                w.close()
            except Exception:  # noqa: BLE001 - a summary that cannot be flushed must not stop the rest
                _abandon(w)
        errors: list[BaseException] = []
        for step in (lambda: self.executor and self.executor.shutdown(wait=True),
                     lambda: self.checkpointer and self.checkpointer.close()):
            try:
                step()
            except Exception as e:  # noqa: BLE001 - re-raised below, after the other steps
                errors.append(e)
        if self.controller is not None:
            with contextlib.suppress(Exception):
                self.controller.close()
        if errors:
            raise errors[0]


@contextlib.contextmanager
def _naming(path: Path):
    """Re-raises an OSError that names no file as an ArtifactWriteError naming ``path``."""
    try:
        yield
    except OSError as e:
        if isinstance(e, files.ArtifactWriteError) or e.filename:
            raise
        raise files.ArtifactWriteError(e.errno, f"cannot write {path}: {e.strerror or e}") from e


def _abandon(w: RunWriter) -> None:
    """Gives up a TensorBoard writer whose close failed (a full disk, say).

    tensorboardX would retry the close at interpreter exit and print the same failure as a
    traceback; the error has already been reported once.
    """
    with contextlib.suppress(Exception):
        events = w.writer._get_file_writer().event_writer
        events._closed = True
        events._worker.stop()


def _fmt(x, spec: str = ".4g") -> str:
    return "-" if x is None else format(x, spec)


def _print_summary(summary: dict[str, Any], tb_root: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title="capacity sweep")
    for col in ("variant", "params", "val MSE", "avg regret ± 95% CI", "advantage", "status"):
        table.add_column(col, justify="right" if col not in ("variant", "status") else "left")
    for r in summary["rows"]:
        ci = r["avg_regret_ci95"]
        ci_s = f" ± {(ci[1] - ci[0]) / 2:.3f}" if ci and None not in ci else ""
        table.add_row(r["variant"], _fmt(r["params"], "d"), _fmt(r["val_mse"], ".3e"),
                      f"{_fmt(r['avg_regret'], '.3f')}{ci_s}", _fmt(r["avg_advantage"], ".3f"),
                      "[red]diverged[/]" if r["diverged"] else "ok")
    console.print(table)
    console.print(f"useful-FLOP fraction {summary['useful_flop_fraction']:.2f} · wall {summary['wall_s']:.1f}s"
                  + (f" · controller: {summary['decision']}" if summary.get("decision") else ""))
    console.print(f"run directory: {summary['run_dir']}")
    rel = os.path.relpath(tb_root)
    console.print(f"tensorboard --logdir {tb_root if rel.startswith('..') else rel}")
