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
from augnes_jax.scaling import scaling_curve, summarize_cost

__all__ = ["COSTS", "MULTIPLE_COMPARISONS", "STATISTICS", "AnalysisSettings", "analyze"]

STATISTICS = ("mean", "iqm")
COSTS = ("params", "flops")
MULTIPLE_COMPARISONS = ("holm", "bh")
_METHOD_NAMES = {"holm": "Holm step-down (family-wise error)", "bh": "Benjamini-Hochberg (false discovery rate)"}


@dataclasses.dataclass(frozen=True)
class AnalysisSettings:
    """What the analysis needs besides the evidence.

    ``flops_per_param`` converts parameters into training FLOPs per epoch (``6 * batch_size *
    train_steps_per_epoch``: forward and backward passes); ``model_error`` maps variant names to
    the world model's mean error per goal over the window; ``planner_gap`` maps goals to the
    true-dynamics planner's regret against an exact optimum.
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
    cost = summarize_cost(curve, measure=s.cost, flops_per_param=s.flops_per_param, epsilon_per_cost=s.epsilon_per_cost)
    if cost is not None:
        cost["latency_ms"] = "not measured: the sweep does not time the planner per control step yet"
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
