"""Per-goal diagnosis: which goals are limited by capacity, by data, or by the planner (pure: no I/O).

For every goal the regret of each variant is its window mean of ``regret/goal_{g}/avg``
(:attr:`augnes_jax.evidence.VariantEvidence.goal_regret`). Along an axis (``hidden_dim`` on the
ladder at the recommended ``buffer_size``, ``buffer_size`` on the ladder at the recommended
``hidden_dim``) the goal's ``gain`` is its mean regret at the smallest capacity minus at the
largest, over the seeds measured at every capacity of the ladder (paired across seeds). Its
standard error comes from the residuals of the additive model ``seed effect + capacity effect``
(``(S - 1)(K - 1)`` degrees of freedom; with two capacities, the paired t-test), and gives a
Student-t 95% interval and a two-sided p-value. The p-values of the goals are adjusted per axis
for multiple comparisons (Holm's family-wise step-down by default, or Benjamini-Hochberg's false
discovery rate); a goal's trend is significant when its adjusted p-value is below ``level`` and
the gain is positive, which implies an interval excluding 0.

Verdicts, first match wins:

- ``solved``: the mean regret at the smallest width is within ``epsilon`` (or, with a significant
  width trend, within ``epsilon`` at the recommended width: the recommendation already covers it);
- ``capacity_limited``: a significant width trend and regret still above ``epsilon`` at the
  recommended width;
- ``data_limited``: a significant ``buffer_size`` trend and no significant width trend;
- ``planner_limited``: regret above ``epsilon`` although the planner on the true dynamics falls
  short of an exact optimum on that goal by more than ``epsilon`` (``planner_gap``), or although
  the world model's error on that goal is within the model's own epsilon (objective mismatch);
- ``inconclusive``: none of these; ``more_seeds`` estimates how many more seeds a two-sided
  test at ``level`` with 80% power needs to detect a gain of ``epsilon`` over the width ladder.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np

from augnes_jax.evidence import VariantEvidence
from augnes_jax.statistics import (
    adjust_p_values,
    normal_quantile,
    student_t_quantile,
    t_quantile_975,
    t_two_sided_p,
)

__all__ = ["VERDICTS", "GoalDiagnosis", "TrendTest", "diagnose", "trend_tests"]

VERDICTS = ("capacity_limited", "data_limited", "planner_limited", "solved", "inconclusive")
POWER = 0.8


@dataclasses.dataclass(frozen=True)
class TrendTest:
    """The paired contrast of one goal's regret between the smallest and largest capacity of an axis."""

    axis: str
    capacities: tuple[int, ...]
    means: tuple[float, ...]  # mean regret over the paired seeds per capacity
    gain: float  # mean regret at the smallest capacity minus at the largest
    se: float | None
    df: int
    seeds: int
    p: float = 1.0
    p_adjusted: float = 1.0

    def gain_ci95(self) -> tuple[float, float] | None:
        """Returns the Student-t 95% interval of :attr:`gain`, or None without residual degrees of freedom."""
        if self.se is None:
            return None
        half = t_quantile_975(self.df) * self.se
        return (self.gain - half, self.gain + half)

    def significant(self, level: float) -> bool:
        """Returns True when regret falls along the axis at the adjusted ``level``."""
        return self.gain > 0 and self.p_adjusted < level

    def to_json(self) -> dict[str, Any]:
        """Returns the JSON form used in ``decision.json``'s goal evidence."""
        ci = self.gain_ci95()
        return {
            "capacities": list(self.capacities),
            "mean_regret": list(self.means),
            "gain": self.gain,
            "gain_ci95": list(ci) if ci else None,
            "seeds": self.seeds,
            "df": self.df,
            "p": self.p,
            "p_adjusted": self.p_adjusted,
        }


@dataclasses.dataclass(frozen=True)
class GoalDiagnosis:
    """The verdict on one goal and the numbers behind it."""

    goal: int
    verdict: str
    gain: float | None
    gain_ci95: tuple[float, float] | None
    evidence: Mapping[str, Any]
    why: str

    def to_json(self) -> dict[str, Any]:
        """Returns the JSON form of ``decision.json``'s ``goals[goal]``."""
        return {
            "verdict": self.verdict,
            "gain": self.gain,
            "gain_ci95": list(self.gain_ci95) if self.gain_ci95 else None,
            "evidence": dict(self.evidence),
            "why": self.why,
        }


def _trend(axis: str, rows: Sequence[tuple[int, int, float]]) -> TrendTest | None:
    """Returns the paired contrast of ``rows`` = ``(capacity, seed, regret)``, or None below two capacities.

    Only seeds measured at every capacity are kept. The residual variance comes from the additive
    model ``regret = seed effect + capacity effect`` (``(S - 1)(K - 1)`` degrees of freedom; with
    two capacities this is the paired t-test).
    """
    cell = {(c, s): v for c, s, v in rows}
    caps = sorted({c for c, _, _ in rows})
    seeds = sorted(s for s in {s for _, s, _ in rows} if all((c, s) in cell for c in caps))
    if len(caps) < 2 or not seeds:
        return None
    y = np.asarray([[cell[(c, s)] for c in caps] for s in seeds], np.float64)  # [S, K]
    means = y.mean(0)
    gain = float(means[0] - means[-1])
    df = (len(seeds) - 1) * (len(caps) - 1)
    se = None
    if df >= 1:
        resid = y - y.mean(1, keepdims=True) - means[None, :] + y.mean()
        se = math.sqrt(2 * float((resid * resid).sum()) / df / len(seeds))
    return TrendTest(axis, tuple(caps), tuple(float(m) for m in means), gain, se, df, len(seeds))


def _t_stat(t: TrendTest) -> float:
    if t.se is None or (t.se == 0 and t.gain == 0):
        return 0.0
    return math.inf if t.se == 0 else t.gain / t.se


def _rows(evidence: Sequence[VariantEvidence], axis: str, fixed: Mapping[str, int | None], goal: int):
    other = "buffer_size" if axis == "hidden_dim" else "hidden_dim"
    return [
        (getattr(e, axis), e.seed, e.goal_regret[goal])
        for e in evidence
        if getattr(e, other) == fixed.get(other) and goal in e.goal_regret
    ]


def trend_tests(
    evidence: Sequence[VariantEvidence], axis: str, recommended: Mapping[str, int | None], *, method: str
) -> dict[int, TrendTest]:
    """Returns each goal's trend along ``axis`` (on the recommended ladder), p-values adjusted across goals."""
    goals = sorted({g for e in evidence for g in e.goal_regret})
    tests = {g: t for g in goals if (t := _trend(axis, _rows(evidence, axis, recommended, g))) is not None}
    if not tests:
        return {}
    # one p-value call for all goals; a test without residual degrees of freedom keeps p = 1
    stats = np.asarray([_t_stat(t) for t in tests.values()])
    p = np.where([t.se is None for t in tests.values()], 1.0,
                 t_two_sided_p(stats, [max(t.df, 1) for t in tests.values()]))  # fmt: skip
    adj = adjust_p_values(p, method)
    return {
        g: dataclasses.replace(t, p=float(pi), p_adjusted=float(a))
        for (g, t), pi, a in zip(tests.items(), p, adj, strict=True)
    }


def _mean_at(evidence: Sequence[VariantEvidence], goal: int, h: int | None, b: int | None) -> float | None:
    vals = [e.goal_regret[goal] for e in evidence if e.hidden_dim == h and e.buffer_size == b and goal in e.goal_regret]
    return float(np.mean(vals)) if vals else None


def _more_seeds(t: TrendTest | None, epsilon: float, level: float, tests: int = 1) -> int | None:
    """Returns the extra seeds the width test needs to detect a gain of ``max(|gain|, epsilon)``, or None.

    The smallest ``n`` more than the seeds measured with ``effect >= (t_{1 - a/2, df(n)} + z_{0.8})
    * sd / sqrt(n)``: Student's t at the degrees of freedom ``n`` seeds would give, the per-seed
    spread ``sd = se * sqrt(seeds)`` held fixed, and ``a = level / tests`` (Bonferroni over the goals
    tested on the axis, which bounds Holm's and Benjamini-Hochberg's thresholds). At least one more
    seed; None beyond 1000 more or without a standard error.
    """
    if t is None or t.se is None:
        return None
    if t.se == 0:
        return 1
    effect = max(abs(t.gain), epsilon, 1e-12)
    sd = t.se * math.sqrt(t.seeds)
    n = np.arange(t.seeds + 1, t.seeds + 1001)
    df = (n - 1) * max(len(t.capacities) - 1, 1)
    crit = np.asarray(student_t_quantile(1 - level / (2 * max(tests, 1)), jnp.asarray(df, jnp.float32)), np.float64)
    ok = np.flatnonzero(effect >= (crit + normal_quantile(POWER)) * sd / np.sqrt(n))
    return int(n[ok[0]] - t.seeds) if ok.size else None


def diagnose(
    evidence: Sequence[VariantEvidence],
    *,
    epsilon: float,
    recommended: Mapping[str, int | None],
    level: float = 0.05,
    method: str = "holm",
    model_error: Mapping[str, Mapping[int, float]] | None = None,
    model_epsilon: float | None = None,
    planner_gap: Mapping[int, float] | None = None,
) -> dict[int, GoalDiagnosis]:
    """Returns the diagnosis of every goal with per-goal regret evidence (see the module doc).

    Args:
      evidence: the controller's evidence windows.
      epsilon: the regret (and gain) that is worth acting on.
      recommended: the decision's recommended ``hidden_dim`` and ``buffer_size``.
      level: the significance level after adjustment.
      method: ``"holm"`` or ``"bh"``.
      model_error: per variant name, the world model's mean error per goal over the window.
      model_epsilon: the model error below which the model counts as accurate on a goal.
      planner_gap: per goal, the true-dynamics planner's regret against an exact optimum.
    """
    width = trend_tests(evidence, "hidden_dim", recommended, method=method)
    data = trend_tests(evidence, "buffer_size", recommended, method=method)
    goals = sorted({g for e in evidence for g in e.goal_regret})
    rec_h, rec_b = recommended.get("hidden_dim"), recommended.get("buffer_size")
    out = {}
    for g in goals:
        wt, dt = width.get(g), data.get(g)
        ladder = [e for e in evidence if e.buffer_size == rec_b and g in e.goal_regret]
        h_min = min((e.hidden_dim for e in ladder), default=rec_h)
        r_min, r_rec = _mean_at(evidence, g, h_min, rec_b), _mean_at(evidence, g, rec_h, rec_b)
        mse = None
        if model_error:
            vals = [model_error[e.name][g] for e in evidence
                    if e.hidden_dim == rec_h and e.buffer_size == rec_b and g in model_error.get(e.name, {})]  # fmt: skip
            mse = float(np.mean(vals)) if vals else None
        gap = (planner_gap or {}).get(g)
        ev: dict[str, Any] = {
            "regret_at_smallest": r_min,
            "smallest_hidden_dim": h_min,
            "regret_at_recommended": r_rec,
            "width_trend": wt.to_json() if wt else None,
            "buffer_trend": dt.to_json() if dt else None,
            "model_error": mse,
            "model_epsilon": model_epsilon,
            "planner_gap": gap,
        }
        verdict, why = _verdict(g, wt, dt, r_min, r_rec, mse, gap, epsilon=epsilon, level=level,
                                model_epsilon=model_epsilon, h_min=h_min, rec_h=rec_h)  # fmt: skip
        if verdict == "inconclusive":
            ev["more_seeds"] = _more_seeds(wt, epsilon, level, len(width))
            ci = wt.gain_ci95() if wt else None
            if ci is not None and ci[1] < epsilon:
                why += f"; the width interval already rules out a gain of epsilon {epsilon:g}"
            elif ev["more_seeds"] is not None:
                effect = max(abs(wt.gain), epsilon)
                why += f"; about {ev['more_seeds']} more seeds would detect a gain of {effect:.3g} with 80% power"
        main = dt if verdict == "data_limited" else wt
        out[g] = GoalDiagnosis(g, verdict, main.gain if main else None, main.gain_ci95() if main else None, ev, why)
    return out


def _f(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3g}"


def _trend_text(t: TrendTest) -> str:
    ci = t.gain_ci95()
    cis = f" [{_f(ci[0])}, {_f(ci[1])}]" if ci else ""
    return (f"{t.axis} {t.capacities[0]}->{t.capacities[-1]}: regret {_f(t.means[0])}->{_f(t.means[-1])}, "
            f"gain {_f(t.gain)}{cis}, p {_f(t.p)} (adjusted {_f(t.p_adjusted)})")  # fmt: skip


def _verdict(g, wt, dt, r_min, r_rec, mse, gap, *, epsilon, level, model_epsilon, h_min, rec_h) -> tuple[str, str]:
    """Returns ``(verdict, why)`` for one goal (the rules of the module doc, in order)."""
    wsig = wt is not None and wt.significant(level)
    dsig = dt is not None and dt.significant(level)
    trend = _trend_text(wt) if wt else "one width only"
    if r_min is not None and r_min <= epsilon:
        return "solved", f"regret {_f(r_min)} at hidden_dim {h_min} is within epsilon {epsilon:g}"
    if wsig and r_rec is not None and r_rec <= epsilon:
        return "solved", f"{trend}; regret {_f(r_rec)} at the recommended hidden_dim {rec_h} is within epsilon {epsilon:g}"
    if wsig:
        return "capacity_limited", f"{trend}; regret {_f(r_rec)} at hidden_dim {rec_h} is still above epsilon {epsilon:g}"
    if dsig:
        return "data_limited", f"{_trend_text(dt)}; width does not help ({trend})"
    if gap is not None and gap > epsilon:
        return "planner_limited", f"the planner on the true dynamics falls {_f(gap)} short of the exact optimum (> epsilon {epsilon:g})"
    if mse is not None and model_epsilon is not None and mse <= model_epsilon and r_rec is not None and r_rec > epsilon:
        return "planner_limited", (f"regret {_f(r_rec)} > epsilon {epsilon:g} although the model's error on the goal, "
                                   f"{_f(mse)}, is within {model_epsilon:g}")  # fmt: skip
    mse_text = f", model error {_f(mse)}" if mse is not None else ""
    return "inconclusive", f"{trend}; no axis explains regret {_f(r_rec)}{mse_text}"
