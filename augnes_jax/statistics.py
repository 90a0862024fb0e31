"""Interval statistics: the Student-t quantile, t-intervals and the two-level bootstrap (pure core).

One Student-t quantile serves the whole package: :func:`student_t_quantile` is jittable and
takes any level and (traced) degrees of freedom, for the per-goal intervals of
:func:`augnes_jax.regret.confidence_interval`; :func:`t_quantile_975` is the same quantile at
the 97.5% level as a Python float, rounded to four decimals like a printed t table, so the
controller's decisions do not depend on the last float32 bits of a backend. Fractional (Welch)
degrees of freedom below 31 round down, so the interval only gets wider.

The interval helpers work on float64 NumPy values (one value per seed) and are what the
controller's decision and the capacity dashboard share. No I/O, no shell imports.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy import special as jsp

__all__ = [
    "adjust_p_values",
    "hull",
    "iqm",
    "normal_quantile",
    "percentile_interval",
    "student_t_quantile",
    "t_interval",
    "t_two_sided_p",
    "t_quantile_975",
    "two_level_bootstrap",
    "welch_t_interval",
]

# Below this many degrees of freedom the t quantile is refined by Newton steps.
_T_NEWTON_BELOW = 16
# Below this many degrees of freedom a fractional df rounds down (the t table's rows).
_TABLE_ROWS = 31
# Decimals of the float quantile, as in a printed t table.
_DECIMALS = 4


def student_t_quantile(p: float | jax.Array, df: jax.Array) -> jax.Array:
    """Returns the ``p``-quantile of Student's t with ``df`` degrees of freedom (``df``'s shape).

    ``p`` must lie in (0.5, 1). Exact closed forms for df = 1 and 2; otherwise the
    Cornish-Fisher expansion (Abramowitz & Stegun 26.7.5), refined by Newton steps on the CDF
    (a regularised incomplete beta function) for df < 16, where the expansion alone is not
    accurate to float32. Jittable; df may be traced.
    """
    df = jnp.asarray(df)
    if not jnp.issubdtype(df.dtype, jnp.floating):
        df = df.astype(jnp.float32)
    # The upper tail 1 - p, formed before rounding p to float32, keeps Newton's residual free of
    # cancellation far in the tail.
    tail = jnp.asarray(1.0 - p, df.dtype)
    p = jnp.asarray(p, df.dtype)
    z = -jsp.ndtri(tail)
    v = jnp.maximum(df, 1.0)
    g1 = (z**3 + z) / 4
    g2 = (5 * z**5 + 16 * z**3 + 3 * z) / 96
    g3 = (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / 384
    g4 = (79 * z**9 + 776 * z**7 + 1482 * z**5 - 1920 * z**3 - 945 * z) / 92160
    t = z + g1 / v + g2 / v**2 + g3 / v**3 + g4 / v**4

    small = v < _T_NEWTON_BELOW
    vs = jnp.where(small, v, 3.0)  # keeps the incomplete beta finite where it is not used
    ts = jnp.where(small, t, 1.0)
    for _ in range(4):
        x = vs / (vs + ts * ts)
        upper = 0.5 * jsp.betainc(vs / 2, 0.5, x)  # P(T > ts)
        log_pdf = (
            jsp.gammaln((vs + 1) / 2)
            - jsp.gammaln(vs / 2)
            - 0.5 * jnp.log(vs * math.pi)
            - (vs + 1) / 2 * jnp.log1p(ts * ts / vs)
        )
        ts = jnp.maximum(ts + (upper - tail) / jnp.exp(log_pdf), 1e-6)
    t = jnp.where(small, ts, t)
    t = jnp.where(v == 2, (1 - 2 * tail) / jnp.sqrt(2 * p * tail), t)
    t = jnp.where(v == 1, 1 / jnp.tan(math.pi * tail), t)
    return t


@jax.jit
def _quantile_975(df: jax.Array) -> jax.Array:
    return student_t_quantile(0.975, df)


@functools.lru_cache(maxsize=4096)
def _rounded_975(df: float) -> float:
    return round(float(_quantile_975(jnp.float32(df))), _DECIMALS)


def t_quantile_975(df: float) -> float:
    """Returns the 97.5% quantile of Student's t with ``df`` degrees of freedom, to four decimals.

    The value of :func:`student_t_quantile` at ``p = 0.975``; ``df`` below 31 is floored first.
    """
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    return _rounded_975(float(math.floor(df)) if df < _TABLE_ROWS else float(df))


def t_interval(values: Any) -> tuple[float, float] | None:
    """Returns the Student-t 95% interval of the mean of ``values`` (one per seed), or None.

    ``mean -/+ t_{.975, n-1} * std(ddof=1) / sqrt(n)`` in float64; None below two values.
    """
    v = np.asarray(values, np.float64)
    if len(v) < 2:
        return None
    half = t_quantile_975(len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v))
    mean = v.mean()
    return (float(mean - half), float(mean + half))


def welch_t_interval(a: Sequence[float], b: Sequence[float]) -> tuple[float, float] | None:
    """Returns the Welch 95% interval of ``mean(a) - mean(b)`` (unpaired samples), or None.

    None when a side has fewer than two values; a point interval when both variances are 0.
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if len(a) < 2 or len(b) < 2:
        return None
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = math.sqrt(va + vb)
    diff = float(a.mean() - b.mean())
    if se == 0.0:
        return (diff, diff)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half = t_quantile_975(max(df, 1.0)) * se
    return (diff - half, diff + half)


def two_level_bootstrap(
    groups: Sequence[Sequence[np.ndarray]], rng: np.random.Generator, num_samples: int
) -> np.ndarray:
    """Returns bootstrap means ``[num_samples, len(groups)]`` resampling seeds, then cells.

    ``groups[j][s]`` is the cell vector of seed ``s`` in group ``j``; all groups share the seed
    and cell draws (a paired bootstrap), so every group must have the same number of seeds and,
    per seed, the same number of cells. Each replicate draws ``S`` seeds with replacement and,
    independently for every drawn seed, its cells with replacement, and averages.
    """
    num_groups, num_seeds = len(groups), len(groups[0])
    seed_idx = rng.integers(0, num_seeds, size=(num_samples, num_seeds))
    means = np.zeros((num_samples, num_seeds, num_groups))
    for s in range(num_seeds):
        mask = seed_idx == s
        n = int(mask.sum())
        if n == 0:
            continue
        size = len(groups[0][s])
        cell_idx = rng.integers(0, size, size=(n, size))
        for j in range(num_groups):
            means[mask, j] = groups[j][s][cell_idx].mean(axis=1)
    return means.mean(axis=1)


def percentile_interval(point: float, boot: np.ndarray, center: float) -> tuple[float, float]:
    """Returns the 95% percentile interval of ``point``: its bootstrap deviations from ``center``.

    Non-finite replicates are dropped; with none left the interval is the point itself.
    """
    boot = boot[np.isfinite(boot)]
    if len(boot) == 0:
        return (point, point)
    lo, hi = np.quantile(boot - center, [0.025, 0.975])
    return (float(point + lo), float(point + hi))


def hull(x: tuple[float, float], y: tuple[float, float] | None) -> tuple[float, float]:
    """Returns the smallest interval that contains ``x`` and ``y`` (``x`` when ``y`` is None)."""
    return x if y is None else (min(x[0], y[0]), max(x[1], y[1]))


def t_two_sided_p(t: Any, df: Any) -> np.ndarray:
    """Returns the two-sided p-values ``P(|T| >= |t|)`` of Student's t with ``df`` degrees of freedom.

    ``I_{df / (df + t^2)}(df / 2, 1 / 2)`` (the regularised incomplete beta function) in float32;
    an infinite ``|t|`` gives 0. Works elementwise on arrays.
    """
    t = np.abs(np.asarray(t, np.float64))
    df = np.broadcast_to(np.asarray(df, np.float64), t.shape)
    with np.errstate(divide="ignore", invalid="ignore"):
        x = np.where(np.isinf(t), 0.0, df / (df + t * t))
    p = np.asarray(jsp.betainc(jnp.asarray(df / 2, jnp.float32), jnp.float32(0.5), jnp.asarray(x, jnp.float32)))
    return np.clip(p.astype(np.float64), 0.0, 1.0)


@functools.lru_cache(maxsize=256)
def normal_quantile(p: float) -> float:
    """Returns the ``p``-quantile of the standard normal distribution."""
    return float(jsp.ndtri(jnp.float32(p)))


def adjust_p_values(p: Sequence[float], method: str) -> np.ndarray:
    """Returns multiplicity-adjusted p-values: ``"holm"`` (family-wise error) or ``"bh"`` (false discovery rate).

    Holm's step-down: ``max_{j <= i} min(1, (m - j + 1) p_(j))``; Benjamini-Hochberg's step-up:
    ``min_{j >= i} min(1, m p_(j) / j)``, both in the order of the sorted p-values.
    """
    p = np.asarray(p, np.float64)
    m = len(p)
    if m == 0:
        return p.copy()
    order = np.argsort(p, kind="stable")
    ranked = p[order]
    if method == "holm":
        adj = np.maximum.accumulate(np.minimum(1.0, (m - np.arange(m)) * ranked))
    elif method == "bh":
        adj = np.minimum.accumulate(np.minimum(1.0, m * ranked / np.arange(1, m + 1))[::-1])[::-1]
    else:
        raise ValueError(f"unknown multiple-comparison method {method!r} (holm | bh)")
    out = np.empty(m)
    out[order] = adj
    return out


def iqm(values: Any, axis: int | None = None) -> Any:
    """Returns the interquartile mean: the mean of the middle 50% of ``values`` (rliable's IQM).

    The lowest and highest quarter (``floor(n / 4)`` values each) are dropped before averaging.
    """
    v = np.sort(np.asarray(values, np.float64), axis=axis)
    if axis is None:
        v = v.ravel()
        axis = 0
    n = v.shape[axis]
    cut = n // 4
    return np.take(v, np.arange(cut, n - cut), axis=axis).mean(axis=axis)
