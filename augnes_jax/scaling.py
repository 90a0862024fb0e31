"""The scaling curve: regret(N) = a * N^(-b) + c in parameters, its bootstrap and the next step (pure: no I/O).

The fit is least squares: for a fixed exponent ``b`` the model is linear in ``a`` and ``c``, so
their optimum and the residual sum of squares are closed forms; ``b`` is found on a log-spaced
grid and refined by golden-section search between the grid neighbours of the best point. The
whole bootstrap (seeds resampled with replacement, paired across capacities) is fitted at once.

From the fit, the predicted gain of the next step is ``f(N_from) - f(N_next)``: from the
recommended width to the next width of the ladder, or to twice the largest width at the
ladder's end (its parameter count extrapolated by a quadratic in the width, exact for an MLP).
Its 95% interval is the bootstrap percentile interval, its deviations widened by
``sqrt(S / (S - 1)) * t_{.975, S-1} / z_{.975}`` for ``S`` seeds (a percentile bootstrap over few
seeds is too narrow). The fit is *trusted* with at least three
capacities, no significant increase of regret between neighbours (more than two standard
errors over seeds) and no neighbour drop that differs from the fitted drop by more than three
standard errors and by more than half the fitted drop (a jump the smooth curve cannot follow). The advice is "expand" when the interval's lower bound exceeds ``epsilon``,
"keep" otherwise (saturation), and "explore one more width" when the fit is not trusted.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from augnes_jax.evidence import VariantEvidence
from augnes_jax.statistics import normal_quantile, t_quantile_975

__all__ = ["curve_band", "fit_power_law", "ladder_matrix", "next_width", "scaling_curve", "summarize_cost"]

_B_GRID = np.geomspace(1e-3, 4.0, 200)
_GOLDEN = (math.sqrt(5) - 1) / 2
_TOL = 1e-9
_Z975 = normal_quantile(0.975)


def _sse_ac(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Returns ``(sse, a, c)`` of the best line ``y = a x + c`` per row (``x`` and ``y`` ``[..., K]``)."""
    xm, ym = x.mean(-1, keepdims=True), y.mean(-1, keepdims=True)
    xc, yc = x - xm, y - ym
    sxx = (xc * xc).sum(-1)
    sxy = (xc * yc).sum(-1)
    a = np.where(sxx > 0, sxy / np.where(sxx > 0, sxx, 1.0), 0.0)
    sse = (yc * yc).sum(-1) - a * sxy
    return sse, a, ym[..., 0] - a * xm[..., 0]


def fit_power_law(n: Sequence[float], y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Returns ``(a, b, c)`` of the least-squares fit ``y = a n^(-b) + c`` for each row of ``y``.

    ``n`` holds K >= 3 positive capacities; ``y`` is ``[K]`` or ``[R, K]`` (scalars or ``[R]``
    results).
    """
    n = np.asarray(n, np.float64)
    y = np.asarray(y, np.float64)
    flat = y.ndim == 1
    y2 = y[None] if flat else y
    u = n / n.min()  # the fit on n / min(n); a rescales at the end
    grid_x = u[None, :] ** -_B_GRID[:, None]  # [B, K]
    sse, _, _ = _sse_ac(grid_x[None], y2[:, None, :])  # [R, B]
    best = sse.argmin(1)
    lo = _B_GRID[np.maximum(best - 1, 0)]
    hi = _B_GRID[np.minimum(best + 1, len(_B_GRID) - 1)]

    def sse_at(b):
        return _sse_ac(u[None, :] ** -b[:, None], y2)[0]

    p, q = hi - _GOLDEN * (hi - lo), lo + _GOLDEN * (hi - lo)
    fp, fq = sse_at(p), sse_at(q)
    for _ in range(48):  # golden section: one new point per step, the other is kept
        left = fp <= fq  # the minimum lies in [lo, q]
        hi = np.where(left, q, hi)
        lo = np.where(left, lo, p)
        new = np.where(left, hi - _GOLDEN * (hi - lo), lo + _GOLDEN * (hi - lo))
        f_new = sse_at(new)
        p, q, fp, fq = (np.where(left, new, q), np.where(left, p, new),
                        np.where(left, f_new, fq), np.where(left, fp, f_new))  # fmt: skip
    b = (lo + hi) / 2
    _, a_u, c = _sse_ac(u[None, :] ** -b[:, None], y2)
    a = a_u * n.min() ** b
    return (a[0], b[0], c[0]) if flat else (a, b, c)


def ladder_matrix(
    evidence: Sequence[VariantEvidence], fixed_buffer: int | None, goal: int | None
) -> tuple[list[int], list[int], np.ndarray, list[float | None]]:
    """Returns ``(widths, seeds, Y [S, K], params [K])`` of the width ladder at ``fixed_buffer``.

    ``Y[s, k]`` is seed ``s``'s window regret at width ``k`` (the goal's when ``goal`` is given,
    else ``avg_regret``); only seeds measured at every width are kept, so the bootstrap is paired.
    """
    cell: dict[tuple[int, int], float] = {}
    params: dict[int, list[float]] = {}
    for e in evidence:
        if e.buffer_size != fixed_buffer:
            continue
        v = e.avg_regret if goal is None else e.goal_regret.get(goal)
        if v is None:
            continue
        cell[(e.hidden_dim, e.seed)] = v
        if e.num_params is not None:
            params.setdefault(e.hidden_dim, []).append(e.num_params)
    widths = sorted({h for h, _ in cell})
    seeds = sorted(s for s in {s for _, s in cell} if all((h, s) in cell for h in widths))
    y = np.asarray([[cell[(h, s)] for h in widths] for s in seeds], np.float64).reshape(len(seeds), len(widths))
    return widths, seeds, y, [float(np.mean(params[h])) if h in params else None for h in widths]


def next_width(widths: Sequence[int], recommended: int | None) -> tuple[int, int]:
    """Returns ``(from, next)``: the recommended width and the next of the ladder (twice the largest at its end)."""
    start = recommended if recommended in widths else widths[-1]
    later = [w for w in widths if w > start]
    return start, (later[0] if later else 2 * widths[-1])


def _params_at(widths: Sequence[int], params: Sequence[float | None], width: int) -> float | None:
    if any(p is None for p in params):
        return None
    if width in widths:
        return float(params[list(widths).index(width)])
    coef = np.polyfit(np.asarray(widths, np.float64), np.asarray(params, np.float64), min(2, len(widths) - 1))
    return float(np.polyval(coef, width))


def _trust(widths, y: np.ndarray, fitted: np.ndarray) -> tuple[bool, str]:
    """Returns ``(trusted, why)`` of a fit on the seed matrix ``y [S, K]`` with fitted means ``[K]``."""
    if len(widths) < 3:
        return False, f"only {len(widths)} capacities: a three-parameter curve needs at least 3"
    mean = y.mean(0)
    drops = mean[:-1] - mean[1:]
    d = y[:, :-1] - y[:, 1:]
    se = d.std(0, ddof=1) / math.sqrt(len(y)) if len(y) >= 2 else np.zeros(len(drops))
    scale = _TOL * max(1.0, float(np.abs(mean).max()))
    for k in range(len(drops)):
        if drops[k] < -(2 * se[k] + scale):
            return False, f"non-monotone: regret rises from width {widths[k]} to {widths[k + 1]} by {-drops[k]:.3g}"
    fit_drops = fitted[:-1] - fitted[1:]
    for k in range(len(drops)):
        miss = abs(drops[k] - fit_drops[k])
        if len(y) >= 2 and miss > 3 * se[k] + scale and miss > 0.5 * abs(fit_drops[k]):
            return False, (f"jump: regret drops {drops[k]:.3g} from width {widths[k]} to {widths[k + 1]}, "
                           f"the fit allows {fit_drops[k]:.3g} +/- {3 * se[k]:.3g}")  # fmt: skip
    return True, "at least 3 capacities, monotone, every neighbour step within the fit"


def scaling_curve(
    evidence: Sequence[VariantEvidence],
    *,
    buffer_size: int | None,
    recommended_width: int | None,
    epsilon: float,
    rng: np.random.Generator,
    bootstrap_samples: int = 1000,
    goal: int | None = None,
) -> dict[str, Any] | None:
    """Returns the fit of one width ladder (``avg_regret``, or one goal's regret) as ``decision.json``'s ``scaling``.

    None when the ladder has fewer than two widths measured on a common seed.
    """
    widths, seeds, y, params = ladder_matrix(evidence, buffer_size, goal)
    if len(widths) < 2 or len(seeds) < 1:
        return None
    start, nxt = next_width(widths, recommended_width)
    n = params if all(p is not None for p in params) else [float(w) for w in widths]
    unit = "params" if n is params else "hidden_dim"
    n_from = _params_at(widths, params, start) if unit == "params" else float(start)
    n_next = _params_at(widths, params, nxt) if unit == "params" else float(nxt)
    out: dict[str, Any] = {
        "buffer_size": buffer_size, "goal": goal, "widths": list(widths), "N": list(n), "N_unit": unit,
        "mean_regret": [float(v) for v in y.mean(0)], "seeds": len(seeds), "from_width": start,
        "next_width": nxt, "N_from": n_from, "N_next": n_next,
        "a": None, "b": None, "c": None, "predicted_next_gain": None, "predicted_next_gain_ci95": None,
    }  # fmt: skip
    if len(widths) < 3:
        out.update(trusted=False, why=_trust(widths, y, y.mean(0))[1], advice="explore one more width")
        return out
    a, b, c = fit_power_law(n, y.mean(0))
    boot = y[rng.integers(0, len(seeds), size=(bootstrap_samples, len(seeds)))].mean(1)  # [R, K]
    ab, bb, _ = fit_power_law(n, boot)
    gain = float(a * (n_from**-b - n_next**-b))
    gains = ab * (n_from**-bb - n_next**-bb)
    gains = gains[np.isfinite(gains)]
    ci = (gain, gain)
    if len(gains):
        # A percentile bootstrap over few seeds is too narrow; its deviations widen by the
        # small-sample factor sqrt(S / (S - 1)) * t_{.975, S-1} / z_{.975}.
        widen = math.sqrt(len(seeds) / (len(seeds) - 1)) * t_quantile_975(len(seeds) - 1) / _Z975 if len(seeds) >= 2 else 1.0
        lo, hi = np.quantile(gains - gain, [0.025, 0.975])
        ci = (gain + widen * float(lo), gain + widen * float(hi))
    fitted = a * np.asarray(n) ** -b + c
    trusted, why = _trust(widths, y, fitted)
    if not trusted:
        advice = "explore one more width"
    elif ci[0] > epsilon:
        advice = "expand"
        why += f"; the next step's gain {gain:.3g} [{ci[0]:.3g}, {ci[1]:.3g}] is above epsilon {epsilon:g}"
    else:
        advice = "keep"
        why += f"; saturation: the next step's gain {gain:.3g} [{ci[0]:.3g}, {ci[1]:.3g}] is not above epsilon {epsilon:g}"
    out.update(a=float(a), b=float(b), c=float(c), predicted_next_gain=gain, predicted_next_gain_ci95=list(ci),
               trusted=trusted, why=why, advice=advice)  # fmt: skip
    return out


def curve_band(
    n: Sequence[float], y: np.ndarray, n_eval: np.ndarray, rng: np.random.Generator, bootstrap_samples: int = 500
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Returns ``(fit, lo, hi)`` at ``n_eval``: the fitted curve of the seed matrix ``y [S, K]`` and its 95% bootstrap band."""
    a, b, c = fit_power_law(n, y.mean(0))
    fit = a * n_eval**-b + c
    boot = y[rng.integers(0, len(y), size=(bootstrap_samples, len(y)))].mean(1)
    ab, bb, cb = fit_power_law(n, boot)
    curves = ab[:, None] * n_eval[None, :] ** -bb[:, None] + cb[:, None]
    lo, hi = np.quantile(curves, [0.025, 0.975], axis=0)
    return fit, lo, hi


def summarize_cost(scaling: Mapping[str, Any] | None, *, measure: str, flops_per_param: float | None,
                   epsilon_per_cost: float | None) -> dict[str, Any] | None:  # fmt: skip
    """Returns ``decision.json``'s ``cost``: the cost of the recommended width and of the next, and the gain per cost."""
    if scaling is None or scaling.get("N_unit") != "params":
        return None
    scale = 1.0 if measure == "params" else flops_per_param
    if scale is None:
        return None
    c_from, c_next = scaling["N_from"], scaling["N_next"]
    c_from = None if c_from is None else c_from * scale
    c_next = None if c_next is None else c_next * scale
    out: dict[str, Any] = {"measure": measure, "recommended": c_from, "next": c_next, "gain_per_cost": None,
                           "gain_per_cost_ci95": None, "epsilon_per_cost": epsilon_per_cost, "worth_it": None}  # fmt: skip
    return add_gain_per_cost(out, scaling, c_from, c_next, epsilon_per_cost)


def add_gain_per_cost(out: dict[str, Any], scaling: Mapping[str, Any], c_from: float | None, c_next: float | None,
                      epsilon_per_cost: float | None) -> dict[str, Any]:  # fmt: skip
    """Returns ``out`` with the predicted next gain per unit of extra cost, its interval and ``worth_it``.

    They stay as they are unless both costs are known and the next one is larger.
    """
    gain, ci = scaling.get("predicted_next_gain"), scaling.get("predicted_next_gain_ci95")
    if c_from is not None and c_next is not None and c_next > c_from and gain is not None:
        extra = c_next - c_from
        out["gain_per_cost"] = gain / extra
        out["gain_per_cost_ci95"] = [ci[0] / extra, ci[1] / extra]
        if epsilon_per_cost is not None:
            out["worth_it"] = bool(scaling.get("trusted") and ci[0] / extra > epsilon_per_cost)
    return out
