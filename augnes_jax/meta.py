"""MetaJudgmentController: reads a sweep's TensorBoard runs and decides "expand" or "keep".

``python -m augnes_jax.meta RUN_DIR [--epsilon E] [--k K] [--relative] [--watch ...]`` decides
once (or, with ``--watch``, on every change next to a live run), writes ``decision.json`` and
alerts, and prints a one-screen explanation: the marginal gains, a per-goal table of verdicts
(capacity-, data- or planner-limited, solved, inconclusive) with the numbers behind each, and the
scaling fit with the cost of the next step.

The controller ties the jobs together: :mod:`augnes_jax.evidence` turns the run's TensorBoard
scalars into per-variant evidence windows, :mod:`augnes_jax.decision` decides from them (with
the intervals of :mod:`augnes_jax.statistics`), :mod:`augnes_jax.alerts` raises an alert when a
ladder's latest marginal gain drops below epsilon, and :mod:`augnes_jax.meta_report` renders
the explanation.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from augnes_jax import files
from augnes_jax.cli import ArgumentParser, non_negative_float, positive_int, run_command
from augnes_jax.decision import Decision, Gain, decide, latest_gains
from augnes_jax.decision_analysis import AnalysisSettings
from augnes_jax.errors import UserError
from augnes_jax.evidence import (
    DIVERGED_TAG,
    NUM_PARAMS_TAG,
    ScalarReader,
    VariantData,
    VariantEvidence,
    collect_evidence,
    read_planner_gap,
    read_variants,
)
from augnes_jax.meta_report import print_explanation
from augnes_jax.variants import parse_variant_name

log = logging.getLogger(__name__)

__all__ = [
    "DIVERGED_TAG",
    "NUM_PARAMS_TAG",
    "Decision",
    "Gain",
    "MetaJudgmentController",
    "analysis_settings",
    "has_tensorboard_runs",
    "main",
    "model_error_by_goal",
    "run_dir_problem",
    "run_settings",
]


def _default_reader(tb_root: Path) -> ScalarReader:
    # imported on first use: tensorboard loads slowly
    from augnes_jax.tensorboard_io import TensorBoardReader

    return TensorBoardReader(str(tb_root))


class MetaJudgmentController:
    """Reads a run's TensorBoard scalars incrementally and decides "expand" or "keep".

    Args:
      run_dir: the run directory (``RUN/``); TensorBoard runs are read from ``RUN/tb/``.
      epsilon: the smallest marginal gain (absolute, or relative if ``relative``) worth paying for.
      k_last: epochs per variant in the evidence window.
      bootstrap_samples: replicates of the two-level bootstrap.
      seed: seed of the bootstrap generators.
      align_epochs: end every window at the latest epoch all live variants reached.
      alerter: where alerts go; by default an :class:`augnes_jax.alerts.Alerter` without webhook.
      reader: a :class:`augnes_jax.evidence.ScalarReader`; by default ``TensorBoardReader(RUN/tb)``.
      analysis: the settings of decision.json's per-goal, scaling, aggregate and cost sections;
        the per-goal model error is read from ``RUN/world_model_stats.json`` when it exists.
    """

    def __init__(
        self,
        run_dir: str | Path,
        *,
        epsilon: float,
        k_last: int = 2,
        relative: bool = False,
        bootstrap_samples: int = 2000,
        seed: int = 0,
        align_epochs: bool = True,
        alerter: Any = None,
        reader: ScalarReader | None = None,
        analysis: AnalysisSettings | None = None,
    ):
        if not epsilon >= 0:
            raise ValueError(f"epsilon must be >= 0, got {epsilon!r}")
        if k_last < 1:
            raise ValueError(f"k_last must be >= 1, got {k_last!r}")
        if bootstrap_samples < 1:
            raise ValueError(f"bootstrap_samples must be >= 1, got {bootstrap_samples!r}")
        self.run_dir = Path(run_dir)
        self.tb_root = self.run_dir / "tb"
        self.epsilon = float(epsilon)
        self.k_last = int(k_last)
        self.relative = bool(relative)
        self.bootstrap_samples = int(bootstrap_samples)
        self.seed = int(seed)
        self.align_epochs = align_epochs
        self._alerter = alerter
        self._reader = reader
        self.analysis = analysis or AnalysisSettings()
        self.variants: list[VariantData] = []
        self.evidence: list[VariantEvidence] = []
        self.decision: Decision | None = None
        self.history: list[dict[str, Any]] = self._load_history()

    @classmethod
    def from_config(cls, run_dir: str | Path, cfg: Any, **kwargs: Any) -> MetaJudgmentController:
        """Returns a controller configured from a :class:`augnes_jax.config.Config`."""
        from augnes_jax.alerts import Alerter

        if kwargs.get("alerter") is None:
            kwargs["alerter"] = Alerter.from_config(run_dir, cfg.alerts)
        return cls(
            run_dir,
            epsilon=cfg.meta.epsilon,
            k_last=cfg.meta.last_k_epochs,
            relative=cfg.meta.relative,
            bootstrap_samples=cfg.meta.bootstrap_samples,
            seed=cfg.seed,
            analysis=analysis_settings(cfg.meta, cfg.world_model),
            **kwargs,
        )

    @property
    def reader(self) -> ScalarReader:
        """Returns the (lazily created) incremental TensorBoard reader."""
        if self._reader is None:
            self._reader = _default_reader(self.tb_root)
        return self._reader

    @property
    def alerter(self) -> Any:
        """Returns the alert sink (by default an :class:`augnes_jax.alerts.Alerter` without webhook)."""
        if self._alerter is None:
            from augnes_jax.alerts import Alerter

            self._alerter = Alerter(self.run_dir)
        return self._alerter

    @alerter.setter
    def alerter(self, alerter: Any) -> None:
        """Sends the alerts of later :meth:`write` calls to ``alerter`` (closing is the caller's)."""
        self._alerter = alerter

    def _load_history(self) -> list[dict[str, Any]]:
        path = self.run_dir / "decision.json"
        if not path.exists():
            return []
        try:
            hist = files.read_json(path).get("history", [])
        except (ValueError, OSError, AttributeError) as e:
            log.warning("ignoring the history of %s: %s", path, e)
            return []
        return [h for h in hist if isinstance(h, dict)]

    def update(self) -> Decision:
        """Returns the decision recomputed after reloading new TensorBoard events."""
        self.reader.reload()
        self.variants = read_variants(self.reader)
        self.evidence, excluded = collect_evidence(self.variants, self.k_last, align_epochs=self.align_epochs)
        self.decision = decide(
            self.evidence,
            epsilon=self.epsilon,
            relative=self.relative,
            k_last=self.k_last,
            bootstrap_samples=self.bootstrap_samples,
            seed=self.seed,
            excluded=excluded,
            analysis=self._analysis_settings(),
        )
        return self.decision

    def _analysis_settings(self) -> AnalysisSettings:
        """Returns the analysis settings with what the run recorded for the current windows.

        The per-goal model error (``world_model_stats.json``) and, where the optimum is exact, the
        planner's own gap per goal (the ``_reference`` run's ``planner_gap/goal_{g}``, averaged
        over the epochs of the evidence windows), unless the settings already carry them.
        """
        s = self.analysis
        if s.model_error is None:
            stats = model_error_by_goal(self.run_dir / "world_model_stats.json", self.evidence)
            if stats is not None:
                s = dataclasses.replace(s, model_error=stats[0], model_epsilon=stats[1])
        if s.planner_gap is None:
            gap = read_planner_gap(self.reader, {step for e in self.evidence for step in e.steps})
            if gap is not None:
                s = dataclasses.replace(s, planner_gap=gap)
        return s

    def alerts(self) -> list[dict[str, Any]]:
        """Returns the alert payloads the current decision calls for (before de-duplication).

        One per ladder whose latest step (into its largest capacity) gains less than epsilon.
        """
        from augnes_jax.alerts import marginal_gain_alert

        if self.decision is None:
            return []
        out = []
        for g in latest_gains(self.decision.gains):
            value = g.compared(self.relative)
            if value is not None and value < self.epsilon:
                out.append(marginal_gain_alert(g, epsilon=self.epsilon, relative=self.relative, decision=self.decision.decision))
        return out

    def write(self, run_dir: str | Path | None = None, *, growth: Sequence[Any] | None = None) -> list[dict[str, Any]]:
        """Returns the alerts raised after writing ``decision.json`` atomically.

        Args:
          run_dir: where ``decision.json`` goes (default: the controller's run directory).
          growth: the sweep's capacity growth history, included verbatim when given.
        """
        decision = self.decision if self.decision is not None else self.update()
        entry = decision.history_entry()
        last = self.history[-1] if self.history else None
        if last is None or [last.get(k) for k in ("epoch", "decision", "recommended", "suggested_next")] != [
            entry[k] for k in ("epoch", "decision", "recommended", "suggested_next")
        ]:
            self.history.append(entry)
        target = Path(run_dir) if run_dir is not None else self.run_dir
        files.write_json_atomic(target / "decision.json", decision.to_json(history=self.history, growth=growth))
        return self.alerter.raise_alerts(self.alerts(), step=decision.epoch)

    def close(self) -> None:
        """Releases the alert sink (flushes its TensorBoard writer)."""
        if self._alerter is not None:
            self._alerter.close()


def analysis_settings(meta: Any, world_model: Any = None) -> AnalysisSettings:
    """Returns the analysis settings of a ``meta`` config section (FLOPs need ``world_model``'s batch and steps)."""
    flops = None
    if world_model is not None:
        # training FLOPs per epoch and parameter: 6 per sample (forward and backward passes)
        flops = 6.0 * world_model.batch_size * world_model.train_steps_per_epoch
    return AnalysisSettings(
        level=meta.significance_level,
        multiple_comparisons=meta.multiple_comparisons,
        statistic=meta.statistic,
        cost=meta.cost,
        epsilon_per_cost=meta.epsilon_per_cost,
        flops_per_param=flops,
        bootstrap_samples=meta.bootstrap_samples,
    )


def model_error_by_goal(path: Path, evidence: Sequence[VariantEvidence]) -> tuple[dict[str, dict[int, float]], float | None] | None:
    """Returns ``({variant: {goal: mean per-goal model error over its window}}, model epsilon)`` from ``world_model_stats.json``.

    None when the file does not exist or cannot be read (the diagnosis then goes without it).
    """
    if not path.exists():
        return None
    try:
        doc = files.read_json(path)
        variants = doc.get("variants", {})
        out: dict[str, dict[int, float]] = {}
        for e in evidence:
            epochs = [x for x in variants.get(e.name, {}).get("epochs", []) if x.get("epoch") in e.steps]
            per_goal: dict[int, list[float]] = {}
            for x in epochs:
                for g, v in (x.get("per_goal_mse") or {}).items():
                    if v is not None and math.isfinite(v):
                        per_goal.setdefault(int(g), []).append(float(v))
            if per_goal:
                out[e.name] = {g: sum(v) / len(v) for g, v in per_goal.items()}
        eps = doc.get("epsilon")
        return out, (float(eps) if isinstance(eps, (int, float)) else None)
    except (ValueError, OSError, AttributeError, TypeError) as err:
        log.warning("ignoring the per-goal model error of %s: %s", path, err)
        return None


# ------------------------------------------------------------------------------------- CLI


def run_settings(run_dir: Path) -> dict[str, Any]:
    """Returns the meta/alerts settings from ``RUN/config.yaml`` (schema defaults without one)."""
    from augnes_jax.config import AlertsConfig, MetaConfig, load_config

    path = run_dir / "config.yaml"
    if path.exists():
        cfg = load_config(path)
        meta, alerts, seed, world_model = cfg.meta, cfg.alerts, cfg.seed, cfg.world_model
    else:
        meta, alerts, seed, world_model = MetaConfig(), AlertsConfig(), 0, None
    return {"meta": meta, "alerts": alerts, "seed": seed, "world_model": world_model}


def has_tensorboard_runs(tb_root: Path) -> bool:
    """Returns True when ``tb_root`` holds at least one run folder with an event file."""
    if not tb_root.is_dir():
        return False
    return any(p.is_dir() and any(q.name.startswith("events.out.tfevents") for q in p.iterdir()) for p in tb_root.iterdir())


def run_dir_problem(run_dir: Path) -> str | None:
    """Returns why ``run_dir`` cannot be read as a sweep's run directory (one line), or None."""
    if not run_dir.is_dir():
        return f"RUN_DIR {run_dir}: no such directory"
    if not has_tensorboard_runs(run_dir / "tb"):
        return f"{run_dir / 'tb'}: no TensorBoard runs"
    runs = sorted(p.name for p in (run_dir / "tb").iterdir() if p.is_dir() and not p.name.startswith("_"))
    if runs and not any(parse_variant_name(r) is not None for r in runs):
        shown = ", ".join(runs[:3]) + (", ..." if len(runs) > 3 else "")
        return (f"{run_dir / 'tb'}: no run is named as a capacity variant h{{hidden_dim}}-b{{buffer_size}}-s{{seed}} "
                f"(found {shown}); write judgments with hidden_dim, buffer_size and seed through "
                f"`python -m augnes_jax.stats LOG --tb {run_dir / 'tb'}`")
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Returns the exit status of ``python -m augnes_jax.meta RUN_DIR [...]``."""
    parser = ArgumentParser(prog="python -m augnes_jax.meta", description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", metavar="RUN_DIR")
    parser.add_argument("--epsilon", type=non_negative_float, default=None, help="default: meta.epsilon of the run's config")
    parser.add_argument("--k", type=positive_int, default=None, help="epochs per evidence window (meta.last_k_epochs)")
    parser.add_argument("--relative", action="store_true", default=None, help="compare relative gains with epsilon")
    parser.add_argument("--bootstrap-samples", type=positive_int, default=None)
    parser.add_argument("--watch", action="store_true", help="poll the run and alert as evidence arrives")
    parser.add_argument("--interval", type=non_negative_float, default=5.0, help="seconds between polls (--watch)")
    parser.add_argument("--max-polls", type=positive_int, default=None, help="stop watching after N polls")
    args = parser.parse_args(argv)
    return run_command("augnes_jax.meta", lambda: _run(args))


def _run(args) -> int:
    from augnes_jax.config import ConfigError

    run_dir = Path(args.run_dir)
    if (problem := run_dir_problem(run_dir)) is not None:
        raise UserError(problem)
    try:
        settings = run_settings(run_dir)
    except ConfigError as e:
        raise UserError(f"{run_dir / 'config.yaml'}: {e}") from None
    meta, alerts_cfg = settings["meta"], settings["alerts"]
    from augnes_jax.alerts import Alerter

    alerter = Alerter.from_config(run_dir, alerts_cfg)
    ctrl = MetaJudgmentController(
        run_dir,
        epsilon=meta.epsilon if args.epsilon is None else args.epsilon,
        k_last=meta.last_k_epochs if args.k is None else args.k,
        relative=meta.relative if args.relative is None else True,
        bootstrap_samples=meta.bootstrap_samples if args.bootstrap_samples is None else args.bootstrap_samples,
        seed=settings["seed"],
        alerter=alerter,
        analysis=analysis_settings(meta, settings["world_model"]),
    )
    try:
        if not args.watch:
            decision = ctrl.update()
            ctrl.write()
            print_explanation(decision)
            return 0
        return _watch(ctrl, interval=args.interval, max_polls=args.max_polls)
    except KeyboardInterrupt:
        return 0
    finally:
        ctrl.close()
        alerter.wait(timeout=alerts_cfg.timeout_s * (alerts_cfg.retries + 1) + 1.0)


def _watch(ctrl: MetaJudgmentController, *, interval: float, max_polls: int | None) -> int:
    """Returns 0 after polling ``max_polls`` times (forever when None), printing on changes."""
    last_key = None
    last_evidence = None
    polls = 0
    while max_polls is None or polls < max_polls:
        if polls:
            time.sleep(interval)
        polls += 1
        decision = ctrl.update()
        evidence = (tuple(decision.evidence["runs"]), tuple(decision.evidence["steps"]))
        if evidence != last_evidence:
            last_evidence = evidence
            ctrl.write()
        if decision.key() != last_key:
            last_key = decision.key()
            print_explanation(decision)
    return 0


if __name__ == "__main__":
    sys.exit(main())
