"""The run directory's artifacts of a sweep: one writer that only writes.

:class:`SweepWriter` writes what an epoch judged and the sweep's host state into the run
directory: the resolved ``config.yaml`` (written first), ``judgments.jsonl`` (append-only,
through the :class:`~augnes_jax.executor.Executor`'s feedback path), the per-variant and
controller TensorBoard runs, ``strategy_stats.json``, ``world_model_stats.json`` and
``sweep_state.json`` (atomic), and the controller's capacity curve. It is given values, never
the sweep, and changes none of them.

Multi-process runs: every process keeps the same host state, but only process 0
(``primary``) writes files; a writer of another process writes nothing.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax.numpy as jnp
import numpy as np

from augnes_jax import files, regret
from augnes_jax.config import Config, to_yaml
from augnes_jax.evidence import (
    DIVERGED_TAG,
    LATENCY_TAG,
    NUM_PARAMS_TAG,
    REFERENCE_RUN,
    planner_gap_tag,
)
from augnes_jax.executor import Executor
from augnes_jax.host_state import HostState, JudgedEpoch, state_record
from augnes_jax.judgments import read_judgments
from augnes_jax.strategy_stats import build_strategy_stats, write_strategy_stats
from augnes_jax.tensorboard_io import RunWriter, multiline_charts, write_regret_summaries
from augnes_jax.variants import Variant

__all__ = ["CAPACITY_RUN", "CONTROLLER_RUN", "REFERENCE_RUN", "TB_FIGURES", "SweepWriter", "capacity_run", "decision_text",
           "hparam_domains", "sweep_layout"]

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

    def capacity(c: Any) -> str:  # a sweep over depths names the depth too
        return f"hidden_dim {c.get('hidden_dim')}, buffer_size {c.get('buffer_size')}" + (
            f", num_layers {c['num_layers']}" if "num_layers" in c else "")

    head = f"**{decision.decision}**: recommended {capacity(decision.recommended)}"
    if decision.suggested_next:
        head += f"; next to try {capacity(decision.suggested_next)}"
    caps = "; ".join(f"{'d' + str(c['num_layers']) + '-' if 'num_layers' in c else ''}h{c['hidden_dim']}-"
                     f"b{c['buffer_size']}: {c['avg_regret']:.3g}" for c in decision.capacities)  # fmt: skip
    steps = decision.evidence.get("steps", [])
    return (f"{head}.  \nAvg regret over epochs {steps} (mean over seeds): {caps or 'none yet'}.  \n"
            f"Why: {decision.reason}")


def hparam_domains(variants: Sequence[Variant], capacity_mode: str) -> dict[str, list[int]]:
    """Returns the HParams domains every variant run shares: each width the variants can take
    (in ``auto`` mode every width they can grow to), each buffer size and seed, and in a sweep over
    depths each depth."""
    widths = {v.hidden_dim for v in variants}
    if capacity_mode == "auto":
        for v in variants:
            h = v.hidden_dim
            while h <= v.max_width:
                widths.add(h)
                h *= 2
    out = {"hidden_dim": sorted(widths), "buffer_size": sorted({v.buffer_size for v in variants}),
           "seed": sorted({v.seed for v in variants})}
    if any(v.named_depth for v in variants):
        out["num_layers"] = sorted({v.num_layers for v in variants})
    return out


class SweepWriter:
    """Writes the artifacts of one sweep's run directory (see the module docstring).

    Args:
      run_dir: the run directory.
      cfg: the run's config.
      primary: this process writes the files (process 0).
      goal_ids: the goals the sweep evaluates.
      num_goals: the environment's number of goals.
      oracle: how the optimal returns are computed (recorded in every judgment).
      num_params: a variant's parameter count.
      hp_domains: the HParams domains (:func:`hparam_domains`).
      purge_step: a resumed run's first epoch; TensorBoard drops its runs' later steps.
      config_changed: write ``config.yaml`` again with the first epoch (a resume that changed it).
    """

    def __init__(self, run_dir: Path, cfg: Config, *, primary: bool, goal_ids: np.ndarray, num_goals: int,
                 oracle: str, num_params: Callable[[Variant], int], hp_domains: dict[str, list[int]],
                 purge_step: int | None = None, config_changed: bool = False):
        self.run_dir = run_dir
        self.cfg = cfg
        self.primary = primary
        self.goal_ids = goal_ids
        self.num_goals = num_goals
        self.oracle = oracle
        self.num_params = num_params
        self.hp_domains = hp_domains
        self.purge_step = purge_step
        self.config_changed = config_changed
        self.judgments_path = run_dir / "judgments.jsonl"
        self.stats_path = run_dir / "strategy_stats.json"
        self.wm_stats_path = run_dir / "world_model_stats.json"
        self.tb_root = run_dir / "tb"
        self.writers: dict[str, RunWriter] = {}
        # a failed task is raised again where the sweep waits for it (WritePipeline.wait)
        self.executor: Executor | None = (Executor(self.judgments_path, on_error=_raised_by_waiter)
                                          if primary else None)

    def write_config(self) -> None:
        """Writes the resolved ``config.yaml`` (a new run writes it before anything else)."""
        if self.primary:
            files.write_text_atomic(self.run_dir / "config.yaml", to_yaml(self.cfg))

    # ------------------------------------------------------------------ TensorBoard runs
    def open_writers(self, variants: Sequence[Variant]) -> None:
        """Opens the TensorBoard run of every variant (and the controller's run) not yet open.

        Variant runs carry the HParams session of their variant, with the same discrete domains
        in every run. The ``_controller`` run carries the custom-scalars layout of the whole sweep.
        """
        if not self.primary:
            return
        for v in variants:
            if v.name in self.writers:
                continue
            w = RunWriter(self.tb_root / v.name, purge_step=self.purge_step)
            hp = {"hidden_dim": v.hidden_dim, "buffer_size": v.buffer_size, "seed": v.seed}
            w.hparams(hp | ({"num_layers": v.num_layers} if "num_layers" in self.hp_domains else {}),
                      {"regret/avg": 0.0, "advantage/avg": 0.0, "world_model/val_mse": 0.0},
                      domains=self.hp_domains)
            self.writers[v.name] = w
        if CONTROLLER_RUN not in self.writers:
            w = RunWriter(self.tb_root / CONTROLLER_RUN, purge_step=self.purge_step)
            w.custom_scalars(sweep_layout(self.hp_domains["hidden_dim"], self.hp_domains["buffer_size"]))
            self.writers[CONTROLLER_RUN] = w

    # ------------------------------------------------------------------ one epoch
    def write_epoch(self, judged: JudgedEpoch, host: HostState, flop_fraction: float) -> None:
        """Writes every artifact of one judged epoch: judgments, TensorBoard, then the JSON files."""
        if self.config_changed:
            self.write_config()
        self.config_changed = False
        self._write_judgments(judged)
        self._write_variant_tb(judged, host)
        self._write_cost_tb(judged)
        self._write_reference_tb(judged)
        self._write_controller_tb(judged)
        for w in self.writers.values():
            with _naming(w.logdir):
                w.flush()
        if self.primary:
            self._write_stats(host, flop_fraction)
            host.wm_stats.write(self.wm_stats_path)
            self.write_state(host, judged.epoch, flop_fraction)

    def write_state(self, host: HostState, epoch: int, flop_fraction: float) -> None:
        """Writes ``sweep_state.json``: what a resume gives back to the host after ``epoch``."""
        if self.primary:
            files.write_json_atomic(self.run_dir / "sweep_state.json", state_record(host, epoch, flop_fraction))

    def _write_judgments(self, judged: JudgedEpoch) -> None:
        """Stores every judged variant's episodes through the executor's feedback path, one batch."""
        n = judged.goals.shape[0]
        episode = np.arange(n)
        feedback = [{"goal_id": judged.goals, "reward": res.returns, "optimal_reward": judged.optimal,
                     "baseline_reward": judged.baseline, "episode": episode, "variant": [name] * n,
                     "hidden_dim": np.full(n, res.variant.hidden_dim),
                     "buffer_size": np.full(n, res.variant.buffer_size), "seed": np.full(n, res.variant.seed),
                     # a sweep over depths states each variant's depth; a single-depth log stays as it was
                     **({"num_layers": np.full(n, res.variant.num_layers)} if res.variant.named_depth else {})}
                    for name, res in judged.variants.items() if not res.diverged]
        if not feedback or not self.primary:
            return
        # regret and advantage are computed as the feedback is stored
        cat = {k: np.concatenate([np.asarray(f[k]) for f in feedback]) if k != "variant"
               else [x for f in feedback for x in f[k]] for k in feedback[0]}
        with _naming(self.judgments_path):
            self.executor.store_feedback_batch(**cat, epoch=judged.epoch, strategy="mpc_world_model",
                                               oracle=self.oracle, run=self.run_dir.name)

    def _write_variant_tb(self, judged: JudgedEpoch, host: HostState) -> None:
        """Writes each variant's run: capacity, collection shares, model errors, regret summaries."""
        epoch = judged.epoch
        goals = jnp.asarray(judged.goals, jnp.int32)
        for name, res in judged.variants.items():
            w = self.writers.get(name)
            if w is None:
                continue
            w.changed(epoch, {NUM_PARAMS_TAG: float(self.num_params(res.variant)), DIVERGED_TAG: float(res.diverged)})
            w.scalars(epoch, {f"collection/goal_{g}/share": float(s)
                              for g, s in zip(self.goal_ids, res.share, strict=True)})
            host.wm_stats.write_tb(w, name, epoch, res.metrics)
            if res.diverged:
                continue
            agg = regret.aggregate(jnp.asarray(res.regret, jnp.float32), goals, self.num_goals)
            adv_agg = regret.aggregate(jnp.asarray(res.advantage, jnp.float32), goals, self.num_goals)
            # histograms of every episode so far, per goal, once a goal has enough of them
            seen_goals, seen_regret = host.episodes[name]
            write_regret_summaries(w, epoch, agg, adv_agg, per_episode_regret=seen_regret, goal_ids=seen_goals)

    def _write_cost_tb(self, judged: JudgedEpoch) -> None:
        """Writes each variant's measured planner latency, ``cost/latency_ms``, where its bucket was timed."""
        for name, ms in (judged.latency_ms or {}).items():
            w = self.writers.get(name)
            if w is not None:
                w.scalars(judged.epoch, {LATENCY_TAG: ms})

    def _write_reference_tb(self, judged: JudgedEpoch) -> None:
        """Writes the run ``_reference``: the planner's own gap per goal, ``planner_gap/goal_{g}``.

        The mean over the epoch's evaluation episodes of each goal of the exact optimum minus the
        evaluation planner's return on the true dynamics; nothing where the optimum is not exact.
        The run is shared by every variant (the gap does not depend on the model).
        """
        if judged.planner_gap is None or not self.primary:
            return
        w = self.writers.get(REFERENCE_RUN)
        if w is None:
            w = self.writers[REFERENCE_RUN] = RunWriter(self.tb_root / REFERENCE_RUN, purge_step=self.purge_step)
        gap, goals = np.asarray(judged.planner_gap, np.float64), np.asarray(judged.goals)
        w.scalars(judged.epoch, {planner_gap_tag(int(g)): float(gap[goals == g].mean())
                                 for g in self.goal_ids if np.any(goals == g)})

    def _write_controller_tb(self, judged: JudgedEpoch) -> None:
        """Writes the controller run: this epoch's means over seeds, one line per capacity."""
        ctl = self.writers.get(CONTROLLER_RUN)
        if ctl is None:
            return
        groups: dict[tuple[int, int, int], list] = {}
        for res in judged.variants.values():
            if not res.diverged:
                v = res.variant
                groups.setdefault((v.named_depth or 0, v.hidden_dim, v.buffer_size), []).append(res)
        for (d, h, b), items in sorted(groups.items()):
            cap = f"d{d}-h{h}-b{b}" if d else f"h{h}-b{b}"  # a sweep over depths: one line per depth too
            values = {
                f"by_capacity/avg_regret/{cap}": float(np.mean([p.avg_regret for p in items])),
                f"by_capacity/val_mse/{cap}": float(np.mean([p.metrics["val_mse"] for p in items])),
            }
            if all("reward_mse" in p.metrics for p in items):  # a world model with reward heads
                values[f"by_capacity/reward_mse/{cap}"] = float(np.mean([p.metrics["reward_mse"] for p in items]))
            ctl.scalars(judged.epoch, values)

    def _write_stats(self, host: HostState, flop_fraction: float) -> None:
        if not self.judgments_path.exists() or self.judgments_path.stat().st_size == 0:
            return
        j = read_judgments(self.judgments_path)
        stats = build_strategy_stats(j, source=str(self.judgments_path), num_goals=self.num_goals,
                                     ci_level=self.cfg.regret.ci_level, diverged_variants=set(host.diverged))
        for exp in stats.get("experiments", []):
            share = host.collection.get(exp.get("variant"))
            if share is not None:
                exp["collection_share_by_epoch"] = {"goals": [int(g) for g in self.goal_ids], "share": share}
        stats["useful_flop_fraction"] = flop_fraction
        write_strategy_stats(self.stats_path, stats)

    # ------------------------------------------------------------------ the controller's answer
    def write_decision(self, epoch: int, decision: Any, controller: Any) -> None:
        """Writes the controller's answer of ``epoch``; a failure is logged, never raised (showing
        the answer must not decide what the sweep does)."""
        try:
            self._write_capacity_tb(epoch, decision, controller)
        except Exception as e:  # noqa: BLE001 - see the docstring
            log.warning("TensorBoard summaries of the decision at epoch %d failed: %s", epoch, e)

    def _write_capacity_tb(self, epoch: int, decision: Any, controller: Any) -> None:
        """Writes the capacity curve, the decision and the dashboard figures of ``epoch``.

        The curve goes into its own run ``_capacity/epoch_NNNN`` (step = the capacity on the
        axis), so no step repeats in any run; its values are ``decision.json``'s per-capacity
        averages. An earlier attempt at the same epoch (a resumed run) is replaced.
        """
        caps = list(decision.capacities)
        run = self.tb_root / capacity_run(epoch)
        if run.exists():
            shutil.rmtree(run)
        with RunWriter(run) as cap:
            _write_capacity_curves(cap, caps)
        ctl = self.writers.get(CONTROLLER_RUN)
        if ctl is None:
            return
        rec = decision.recommended
        ctl.scalars(epoch, {"decision/recommended_hidden_dim": rec.get("hidden_dim"),
                            "decision/recommended_buffer_size": rec.get("buffer_size"),
                            "decision/expand": 1.0 if decision.decision == "expand" else 0.0,
                            **({"decision/recommended_num_layers": rec["num_layers"]} if "num_layers" in rec else {})})
        ctl.text("decision", decision_text(decision), epoch)
        from augnes_jax import dashboard

        figs = dashboard.figures(self.run_dir, controller=controller, names=TB_FIGURES)
        for name, fig in figs.items():
            ctl.figure(f"dashboard/{name.removesuffix('.png')}", fig, epoch, pil_kwargs={"compress_level": 1})
        with _naming(ctl.logdir):
            ctl.flush()

    def close(self) -> None:
        """Waits for the executor's pending tasks, then flushes and closes every writer.

        Every step runs even when an earlier one fails; the first failure is raised at the end.
        """
        errors: list[BaseException] = []
        if self.executor is not None:
            try:
                self.executor.shutdown(wait=True)
            except Exception as e:  # noqa: BLE001 - re-raised below, once the writers are closed
                errors.append(e)
        for w in self.writers.values():
            try:
                w.close()
            except Exception:  # noqa: BLE001 - a summary that cannot be flushed must not stop the rest
                _abandon(w)
        if errors:
            raise errors[0]


def _raised_by_waiter(failure: Any) -> None:
    """Leaves a failed executor task to the code that waits for it, which raises its exception."""


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


def _write_capacity_curves(cap: RunWriter, caps: list[dict[str, Any]]) -> None:
    """Writes ``decision.json``'s per-capacity averages as curves; in a sweep over depths, one line per depth too."""
    # against hidden_dim, one line per buffer_size (with advantage and model error) ...
    for c in caps:
        depth = f"_num_layers_{c['num_layers']}" if "num_layers" in c else ""
        line = f"buffer_size_{c['buffer_size']}{depth}"
        cap.scalars(int(c["hidden_dim"]), {
            f"capacity/avg_regret_vs_hidden_dim/{line}": c["avg_regret"],
            f"capacity/avg_advantage_vs_hidden_dim/{line}": c["avg_advantage"],
            f"capacity/val_mse_vs_hidden_dim/{line}": c["val_mse"],
        })
    # ... and against buffer_size, one line per hidden_dim tested at two or more buffer sizes
    for c in caps:
        if sum(o["hidden_dim"] == c["hidden_dim"] and o.get("num_layers") == c.get("num_layers") for o in caps) > 1:
            depth = f"_num_layers_{c['num_layers']}" if "num_layers" in c else ""
            cap.scalars(int(c["buffer_size"]), {
                f"capacity/avg_regret_vs_buffer_size/hidden_dim_{c['hidden_dim']}{depth}": c["avg_regret"]})
