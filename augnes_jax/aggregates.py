"""Robust aggregates over seeds and goals: IQM and the probability of improvement (pure: no I/O).

Per capacity the scores are the per-seed, per-goal window regrets ``[S, G]``. The interquartile
mean (IQM) drops the lowest and highest quarter of them; the probability of improvement of
capacity Y over X is ``mean_g P(regret_Y[g] < regret_X[g])`` over seeds (ties count one half),
as in rliable. Their 95% intervals are stratified bootstrap percentile intervals: seeds are
resampled with replacement within each goal.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from augnes_jax.evidence import VariantEvidence
from augnes_jax.statistics import iqm

__all__ = ["capacity_scores", "probability_of_improvement", "robust_aggregates"]


def capacity_scores(evidence: Sequence[VariantEvidence], hidden_dim: int, buffer_size: int) -> np.ndarray:
    """Returns the ``[S, G]`` per-seed, per-goal window regrets of one capacity (``avg_regret`` as one goal without goal tags)."""
    evs = sorted((e for e in evidence if e.hidden_dim == hidden_dim and e.buffer_size == buffer_size), key=lambda e: e.seed)
    goals = sorted(set.intersection(*(set(e.goal_regret) for e in evs))) if evs else []
    if not goals:
        return np.asarray([[e.avg_regret] for e in evs], np.float64).reshape(len(evs), 1)
    return np.asarray([[e.goal_regret[g] for g in goals] for e in evs], np.float64)


def probability_of_improvement(x: np.ndarray, y: np.ndarray) -> float:
    """Returns ``mean_g P(y[:, g] < x[:, g])`` over all seed pairs, ties counting one half (lower regret is better)."""
    less = (y[:, None, :] < x[None, :, :]).mean((0, 1))
    ties = (y[:, None, :] == x[None, :, :]).mean((0, 1))
    return float((less + 0.5 * ties).mean())


def _stratified(scores: np.ndarray, rng: np.random.Generator, n: int) -> np.ndarray:
    """Returns ``[n, S, G]`` resamples of ``scores`` with seeds drawn with replacement per goal."""
    s, g = scores.shape
    idx = rng.integers(0, s, size=(n, s, g))
    return np.take_along_axis(np.broadcast_to(scores, (n, s, g)), idx, axis=1)


def _ci(boot: np.ndarray) -> list[float]:
    return [float(v) for v in np.quantile(boot, [0.025, 0.975])]


def robust_aggregates(
    evidence: Sequence[VariantEvidence], buffer_size: int | None, *, rng: np.random.Generator, bootstrap_samples: int = 500
) -> dict[str, Any]:
    """Returns mean and IQM per width of the ladder at ``buffer_size``, and the probability of improvement of each step."""
    widths = sorted({e.hidden_dim for e in evidence if e.buffer_size == buffer_size})
    scores = {h: capacity_scores(evidence, h, buffer_size) for h in widths}
    per_width, steps = [], []
    boots = {}
    for h in widths:
        sc = scores[h]
        boots[h] = _stratified(sc, rng, bootstrap_samples)
        flat = boots[h].reshape(bootstrap_samples, -1)
        per_width.append({"hidden_dim": h, "mean": float(sc.mean()), "mean_ci95": _ci(flat.mean(1)),
                          "iqm": float(iqm(sc)), "iqm_ci95": _ci(iqm(flat, axis=1))})  # fmt: skip
    for a, b in zip(widths[:-1], widths[1:], strict=True):
        x, y = scores[a], scores[b]
        if x.shape[1] != y.shape[1]:
            continue
        bx, by = boots[a], boots[b]
        less = (by[:, :, None, :] < bx[:, None, :, :]).mean((1, 2))
        ties = (by[:, :, None, :] == bx[:, None, :, :]).mean((1, 2))
        poi_boot = (less + 0.5 * ties).mean(1)
        steps.append({"from": a, "to": b, "probability_of_improvement": probability_of_improvement(x, y),
                      "ci95": _ci(poi_boot)})  # fmt: skip
    return {"buffer_size": buffer_size, "widths": per_width, "steps": steps,
            "bootstrap": "stratified over seeds within goals"}  # fmt: skip
