"""Times one controller-and-dashboard cycle on a synthetic 64-variant x 50-epoch sweep.

A cycle is what a live sweep pays after each epoch: the MetaJudgmentController reloads the
TensorBoard runs incrementally, recomputes the evidence and decision, writes decision.json and
alerts, and the dashboard re-renders its PNGs from the controller's evidence. The event files
are written first (not timed); before each timed cycle one more epoch is appended to every
variant, as a running sweep would. The in-process baseline is a cold cycle: a new controller
that re-reads every event file from scratch.

The controller figure isolates the decision on the same evidence: ``decide`` with the per-goal
diagnosis, the scaling-curve fit (and its bootstrap), the robust aggregates and the cost,
against ``decide`` without them (the controller before the diagnosis), median of ``--cycles``.
Prints one JSON object.

Usage: python benchmarks/bench_meta.py [--goals 8] [--epochs 50] [--cycles 5]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import jax  # noqa: E402
from synthetic_runs import SyntheticRun  # noqa: E402

from augnes_jax.dashboard import render  # noqa: E402
from augnes_jax.decision import decide  # noqa: E402
from augnes_jax.meta import MetaJudgmentController  # noqa: E402

BUDGET_S = 1.0
CONTROLLER_BUDGET_S = 2.0  # decide with the diagnosis and the fit


def _no_model(*args):
    return None  # no checkpoints in a synthetic run: the transition plot is skipped


def _cycle(ctrl: MetaJudgmentController, run_dir: Path) -> dict[str, float]:
    c0 = time.process_time()
    t0 = time.perf_counter()
    ctrl.update()
    t1 = time.perf_counter()
    ctrl.write()
    t2 = time.perf_counter()
    render(run_dir, controller=ctrl, world_model_loader=_no_model, env_factory=_no_model)
    t3 = time.perf_counter()
    # CPU time of this process too: wall time on a shared machine also measures the neighbours.
    return {"update_s": t1 - t0, "write_s": t2 - t1, "render_s": t3 - t2, "cycle_s": t3 - t0,
            "cycle_cpu_s": time.process_time() - c0}  # fmt: skip


def _time_decide(ctrl: MetaJudgmentController, cycles: int) -> tuple[float, float]:
    """Returns the median seconds of ``decide`` on the controller's evidence with and without the analysis."""
    kw = dict(epsilon=ctrl.epsilon, k_last=ctrl.k_last, bootstrap_samples=ctrl.bootstrap_samples, seed=ctrl.seed)
    with_s, without_s = [], []
    for _ in range(cycles):
        t0 = time.perf_counter()
        decide(ctrl.evidence, analysis=ctrl.analysis, **kw)
        t1 = time.perf_counter()
        decide(ctrl.evidence, with_analysis=False, **kw)
        t2 = time.perf_counter()
        with_s.append(t1 - t0)
        without_s.append(t2 - t1)
    return statistics.median(with_s), statistics.median(without_s)


def main() -> None:
    """Prints one JSON object with the cycle time, the cold baseline and their ratio."""
    p = argparse.ArgumentParser()
    p.add_argument("--hidden-dims", type=int, nargs="+", default=[8, 16, 32, 64])
    p.add_argument("--buffer-sizes", type=int, nargs="+", default=[1000, 3000, 10000, 30000])
    p.add_argument("--seeds", type=int, default=4)
    p.add_argument("--goals", type=int, default=8)
    p.add_argument("--epochs", type=int, default=50)
    p.add_argument("--cycles", type=int, default=5)
    args = p.parse_args()
    logging.disable(logging.WARNING)  # the transition plot has no checkpoints here; keep stdout one JSON

    curve = {h: 1.0 / (1 + i) for i, h in enumerate(args.hidden_dims)}
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp)
        run = SyntheticRun(
            run_dir,
            hidden_dims=args.hidden_dims,
            buffer_sizes=args.buffer_sizes,
            seeds=range(args.seeds),
            num_goals=args.goals,
            true_regret=lambda h, b, e, g: curve[h] + 0.05 * g + 0.5 / (1 + e),
            seed_noise=0.02,
            cell_noise=0.05,
        )
        t0 = time.perf_counter()
        run.write_epochs(args.epochs - args.cycles)
        write_s = time.perf_counter() - t0

        ctrl = MetaJudgmentController(run_dir, epsilon=0.05)
        first = _cycle(ctrl, run_dir)  # cold load + first render (imports, font cache)
        incremental = []
        for _ in range(args.cycles):
            run.write_epoch()  # not timed: the sweep's own write
            incremental.append(_cycle(ctrl, run_dir))
        run.close()

        cold = []
        for _ in range(2):
            fresh = MetaJudgmentController(run_dir, epsilon=0.05)
            cold.append(_cycle(fresh, run_dir))

        decide_s, plain_s = _time_decide(ctrl, args.cycles)
        med = {k: statistics.median(c[k] for c in incremental) for k in incremental[0]}
        cold_med = {k: statistics.median(c[k] for c in cold) for k in cold[0]}
        decision = ctrl.decision
        dev = jax.devices()[0]
        print(
            json.dumps(
                {
                    "benchmark": "meta_controller_dashboard_cycle",
                    "device": {"platform": dev.platform, "device_kind": dev.device_kind},
                    "sizes": {
                        "variants": len(run.names),
                        "epochs": args.epochs,
                        "goals": args.goals,
                        "hidden_dims": args.hidden_dims,
                        "buffer_sizes": args.buffer_sizes,
                        "seeds": args.seeds,
                        "bootstrap_samples": ctrl.bootstrap_samples,
                        "plots": 8,
                    },
                    "figure": "median seconds per incremental cycle (update + decision.json/alerts + 8 PNGs)",
                    "cycle_s": round(med["cycle_s"], 4),
                    "cycle_cpu_s": round(med["cycle_cpu_s"], 4),
                    "breakdown_s": {k: round(v, 4) for k, v in med.items() if k.endswith("_s") and "cycle" not in k},
                    "baseline_cold_cycle_s": round(cold_med["cycle_s"], 4),
                    "baseline_cold_cycle_cpu_s": round(cold_med["cycle_cpu_s"], 4),
                    "baseline_breakdown_s": {k: round(v, 4) for k, v in cold_med.items() if "cycle" not in k},
                    "speedup_vs_cold": round(cold_med["cycle_s"] / med["cycle_s"], 2),
                    "decide_with_diagnosis_and_fit_s": round(decide_s, 4),
                    "baseline_decide_without_s": round(plain_s, 4),
                    "controller_budget_s": CONTROLLER_BUDGET_S,
                    "controller_within_budget": decide_s < CONTROLLER_BUDGET_S,
                    "goal_verdicts": {g: d["verdict"] for g, d in decision.analysis.get("goals", {}).items()},
                    "first_cycle_s": round(first["cycle_s"], 4),
                    "budget_s": BUDGET_S,
                    "within_budget": med["cycle_s"] < BUDGET_S,
                    "untimed_event_write_s": round(write_s, 2),
                    "load_average_1m": round(os.getloadavg()[0], 2),
                    "cpu_count": os.cpu_count(),
                    "decision": decision.decision if decision else None,
                    "reader": type(ctrl.reader).__module__ + "." + type(ctrl.reader).__name__,
                }
            )
        )


if __name__ == "__main__":
    main()
