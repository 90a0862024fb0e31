"""The analysis sections of ``decision.json``: per-goal verdicts, the scaling curve, robust aggregates, cost (pure).

These sections explain and qualify a decision; they never change its ``decision``,
``recommended`` or ``gains``. The scaling curve is fitted on the width ladder at the recommended
``buffer_size`` (``avg_regret``), and once more per capacity-limited goal.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from augnes_jax.aggregates import robust_aggregates
from augnes_jax.diagnosis import diagnose
from augnes_jax.evidence import VariantEvidence
from augnes_jax.scaling import add_gain_per_cost, scaling_curve, summarize_cost

__all__ = ["COSTS", "MULTIPLE_COMPARISONS", "STATISTICS", "AnalysisSettings", "analyze", "latency_cost"]

STATISTICS = ("mean", "iqm")
COSTS = ("params", "flops", "latency_ms")
MULTIPLE_COMPARISONS = ("holm", "bh")
_METHOD_NAMES = {"holm": "Holm step-down (family-wise error)", "bh": "Benjamini-Hochberg (false discovery rate)"}


@dataclasses.dataclass(frozen=True)
class AnalysisSettings:
    """What the analysis needs besides the evidence.

    ``flops_per_param`` converts parameters into training FLOPs per epoch (``6 * batch_size *
    train_steps_per_epoch``: forward and backward passes); ``model_error`` maps variant names to
    the world model's mean error per goal over the window; ``planner_gap`` maps goals to the
    true-dynamics planner's regret against an exact optimum. ``cost="latency_ms"`` prices a
    capacity by its measured planner milliseconds per control step (``cost/latency_ms``, see
    :func:`latency_cost`).
    """

    level: float = 0.05
    multiple_comparisons: str = "holm"
    statistic: str = "mean"
    cost: str = "params"
    epsilon_per_cost: float | None = None
    flops_per_param: float | None = None
    model_error: Mapping[str, Mapping[int, float]] | None = None
    model_epsilon: float | None = None
    planner_gap: Mapping[int, float] | None = None
    bootstrap_samples: int = 1000

    def __post_init__(self):
        if self.statistic not in STATISTICS:
            raise ValueError(f"statistic must be one of {STATISTICS}, got {self.statistic!r}")
        if self.cost not in COSTS:
            raise ValueError(f"cost must be one of {COSTS}, got {self.cost!r}")
        if self.multiple_comparisons not in MULTIPLE_COMPARISONS:
            raise ValueError(f"multiple_comparisons must be one of {MULTIPLE_COMPARISONS}, got {self.multiple_comparisons!r}")


def analyze(
    evidence: Sequence[VariantEvidence],
    *,
    recommended: Mapping[str, int | None],
    epsilon: float,
    settings: AnalysisSettings,
    seed: int = 0,
) -> dict[str, Any]:
    """Returns the ``goals``, ``multiple_comparisons``, ``scaling``, ``aggregates`` and ``cost`` sections."""
    s = settings
    goals = diagnose(
        evidence, epsilon=epsilon, recommended=recommended, level=s.level, method=s.multiple_comparisons,
        model_error=s.model_error, model_epsilon=s.model_epsilon, planner_gap=s.planner_gap,
    )  # fmt: skip
    rec_h, rec_b = recommended.get("hidden_dim"), recommended.get("buffer_size")
    curve = scaling_curve(evidence, buffer_size=rec_b, recommended_width=rec_h, epsilon=epsilon,
                          rng=np.random.default_rng([seed, 15, 0]), bootstrap_samples=s.bootstrap_samples)  # fmt: skip
    per_goal = {}
    for g, d in goals.items():
        if d.verdict == "capacity_limited":
            per_goal[str(g)] = scaling_curve(
                evidence, buffer_size=rec_b, recommended_width=rec_h, epsilon=epsilon,
                rng=np.random.default_rng([seed, 15, 1, g]), bootstrap_samples=s.bootstrap_samples, goal=g,
            )  # fmt: skip
    scaling = dict(curve) if curve is not None else {"trusted": False, "why": "no width ladder with two widths",
                                                     "advice": "explore one more width"}  # fmt: skip
    scaling["goals"] = per_goal
    if s.cost == "latency_ms":
        cost = latency_cost(curve, evidence, epsilon_per_cost=s.epsilon_per_cost)
    else:
        cost = summarize_cost(curve, measure=s.cost, flops_per_param=s.flops_per_param,
                              epsilon_per_cost=s.epsilon_per_cost)
        if cost is not None:
            # wall-clock figures enter decision.json only where they price the decision, so a
            # params- or FLOPs-priced decision stays the same from run to run
            cost["latency_ms"] = "measured per variant as cost/latency_ms; priced with meta.cost: latency_ms"
    aggregates = robust_aggregates(evidence, rec_b, rng=np.random.default_rng([seed, 15, 2]))
    return {
        "statistic": s.statistic,
        "goals": {str(g): d.to_json() for g, d in goals.items()},
        "multiple_comparisons": {"method": s.multiple_comparisons, "name": _METHOD_NAMES[s.multiple_comparisons],
                                 "level": s.level, "family": "the goals, per capacity axis"},  # fmt: skip
        "scaling": scaling,
        "aggregates": aggregates,
        "cost": cost,
    }


def _latency_at(evidence: Sequence[VariantEvidence], width: int, buffer_size: int | None) -> float | None:
    vals = [e.latency_ms for e in evidence
            if e.hidden_dim == width and e.buffer_size == buffer_size and e.latency_ms is not None]
    return float(np.mean(vals)) if vals else None


def latency_cost(scaling: Mapping[str, Any] | None, evidence: Sequence[VariantEvidence], *,
                 epsilon_per_cost: float | None) -> dict[str, Any] | None:
    """Returns ``decision.json``'s ``cost`` priced in measured planner milliseconds per control step.

    ``recommended`` and ``next`` are the mean ``cost/latency_ms`` over the seeds of the scaling
    ladder's recommended and next width (at its ``buffer_size``). A width that was never run (the
    next step past the ladder's end) has no measured latency: ``next`` is None and ``why`` says
    so; nothing is extrapolated. Where both are measured and the next costs more, ``gain_per_cost``
    is the predicted next gain over the extra milliseconds (its interval likewise), and
    ``worth_it`` compares the interval's lower bound with ``epsilon_per_cost`` on a trusted fit.
    None without a scaling ladder.
    """
    if scaling is None:
        return None
    b, start, nxt = scaling.get("buffer_size"), scaling["from_width"], scaling["next_width"]
    c_from, c_next = _latency_at(evidence, start, b), _latency_at(evidence, nxt, b)
    out: dict[str, Any] = {"measure": "latency_ms", "recommended": c_from, "next": c_next,
                           "from_width": start, "next_width": nxt, "gain_per_cost": None,
                           "gain_per_cost_ci95": None, "epsilon_per_cost": epsilon_per_cost, "worth_it": None}  # fmt: skip
    if c_from is None:
        out["why"] = f"no cost/latency_ms measured at hidden_dim {start}"
    elif c_next is None:
        out["why"] = f"hidden_dim {nxt} was not run: its latency is not measured"
    else:
        out["why"] = f"measured at hidden_dim {start} and {nxt}"
    return add_gain_per_cost(out, scaling, c_from, c_next, epsilon_per_cost)
