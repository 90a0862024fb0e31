"""``strategy_stats.json``: per-experiment, per-goal regret aggregates of a judgments log.

Experiments are keyed by ``variant``, else ``strategy``, else ``"all"``. Aggregation runs on the
pure core (:mod:`augnes_jax.regret`, jitted segment sums in float32, checked against float64);
numbers are written with their shortest float32 decimals, and missing values as ``null``. The
command line over any judgments log is :mod:`augnes_jax.stats`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from augnes_jax import regret as regret_lib
from augnes_jax.clock import utc_now
from augnes_jax.files import write_json_atomic
from augnes_jax.judgments_columns import Judgments, as_judgments

__all__ = [
    "STATS_SCHEMA",
    "aggregate_np",
    "build_strategy_stats",
    "experiment_keys",
    "index_keys",
    "write_strategy_stats",
]

STATS_SCHEMA = 1


def _num(x: Any) -> float | None:
    """Returns ``x`` as the shortest decimal of its float32 value, or None if not finite."""
    v = float(x)
    if not math.isfinite(v):
        return None
    return float(str(np.float32(v)))


def _ci(lo: Any, hi: Any) -> list[float] | None:
    a, b = _num(lo), _num(hi)
    return None if a is None or b is None else [a, b]


def experiment_keys(judgments: Judgments) -> list[str]:
    """Returns each row's experiment name: its ``variant``, else ``strategy``, else ``"all"``."""
    return [
        v if v is not None else (s if s is not None else "all")
        for v, s in zip(judgments.variant, judgments.strategy, strict=True)
    ]


def _per_goal(values: Any, num_goals: int) -> np.ndarray:
    """Returns a float64 ``[G]`` array from a sequence or a {goal: value} mapping (NaN if absent)."""
    out = np.full(num_goals, np.nan)
    if isinstance(values, Mapping):
        for g, v in values.items():
            if 0 <= int(g) < num_goals and v is not None:
                out[int(g)] = float(v)
        return out
    arr = np.asarray(values, np.float64).reshape(-1)
    if arr.shape[0] < num_goals:
        raise ValueError(f"per-goal values have {arr.shape[0]} entries for {num_goals} goals")
    return arr[:num_goals].copy()


def index_keys(keys: Sequence[Any]) -> tuple[np.ndarray, list]:
    """Returns ``(index per row, distinct keys in order of first appearance)``."""
    table: dict = {}
    idx = np.fromiter((table.setdefault(k, len(table)) for k in keys), np.int64, len(keys))
    return idx, list(table)


def _bucket(n: int, least: int) -> int:
    return max(least, 1 << max(0, (n - 1).bit_length()))


def aggregate_np(values: np.ndarray, seg: np.ndarray, num: int, mask=None):
    """Returns the GoalAggregate ``[num]`` of ``values`` by ``seg`` as NumPy arrays.

    Rows and segments are padded to powers of two (padding rows masked out), so logs of
    different sizes share a few compiled aggregations.
    """
    n = values.shape[0]
    size = _bucket(n, 1024)
    v = np.zeros(size, np.float32)
    s = np.zeros(size, np.int32)
    m = np.zeros(size, bool)
    v[:n] = values
    s[:n] = seg
    m[:n] = True if mask is None else mask
    agg = regret_lib.aggregate(jnp.asarray(v), jnp.asarray(s), _bucket(num, 16), jnp.asarray(m))
    return jax.tree.map(lambda a: np.asarray(a)[:num], agg)


def _interval_np(agg, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Returns the confidence interval of a flat NumPy GoalAggregate, padded like above."""
    shape = agg.count.shape
    n = int(np.prod(shape))
    size = _bucket(n, 16)

    def pad(a):
        out = np.zeros(size, a.dtype)
        out[:n] = a.reshape(-1)
        return out

    lo, hi = regret_lib.confidence_interval(jax.tree.map(pad, agg), level)
    return np.asarray(lo)[:n].reshape(shape), np.asarray(hi)[:n].reshape(shape)


def _capacity(col: np.ndarray, exp_idx: np.ndarray, num_exp: int) -> list[int | None | bool]:
    """Returns per experiment the single value of a capacity column, None if mixed, False if absent."""
    lo = np.full(num_exp, np.iinfo(np.int64).max)
    hi = np.full(num_exp, -1)
    np.minimum.at(lo, exp_idx, col)
    np.maximum.at(hi, exp_idx, col)
    out: list[int | None | bool] = []
    for a, b in zip(lo.tolist(), hi.tolist(), strict=True):
        if b < 0:
            out.append(False)
        elif a == b:
            out.append(int(a))
        else:
            out.append(None)
    return out


def build_strategy_stats(
    judgments: Judgments | Sequence[Mapping[str, Any]],
    *,
    source: str,
    num_goals: int | None = None,
    optimal_by_goal: Any = None,
    baseline_by_goal: Any = None,
    ci_level: float = 0.95,
    diverged_variants: set[str] | None = None,
) -> dict:
    """Returns the ``strategy_stats.json`` document (DESIGN.md shape) for a judgments log.

    Args:
      judgments: the log, from :func:`augnes_jax.judgments.read_judgments` or built by
        :meth:`Judgments.from_columns`, or a list of judgment records (dicts), checked by
        :meth:`Judgments.from_records`. Anything else raises ``TypeError``.
      source: where the judgments came from (written as ``source``).
      num_goals: G; defaults to the largest goal_id + 1. Goals without episodes get null.
      optimal_by_goal, baseline_by_goal: optional per-goal optimal / baseline returns (a
        ``[G]`` sequence or ``{goal: value}``) for rows that do not state them.
      ci_level: level of the Student-t intervals (written as ``avg_regret_ci95``).
      diverged_variants: experiments to mark ``"diverged": true``; a row with a true
        ``diverged`` field marks its experiment too.

    ``normalized_score = (reward - baseline) / (optimal - baseline)`` on the averages over the
    rows where both are known (per experiment and per goal); null where unknown or where
    optimal equals baseline. ``groups`` pools experiments over seeds by (hidden_dim,
    buffer_size).
    """
    judgments = as_judgments(judgments, caller="build_strategy_stats")
    n = len(judgments)
    if n == 0:
        raise ValueError("no judgments to aggregate")
    gid = judgments.goal_id
    max_goal = int(gid.max())
    G = max_goal + 1 if num_goals is None else int(num_goals)
    if max_goal >= G:
        raise ValueError(f"goal_id {max_goal} is not below num_goals {G}")
    cols = _columns(judgments, G, optimal_by_goal, baseline_by_goal)
    names = experiment_keys(judgments)
    exp_idx, exps = index_keys(names)
    aggs = _experiment_aggregates(judgments, cols, exp_idx, len(exps), G, ci_level)
    diverged = set(diverged_variants or ())
    for name, ext in zip(names, judgments.extra, strict=True):
        if ext and ext.get("diverged") is True:
            diverged.add(name)
    caps = {f: _capacity(getattr(judgments, f), exp_idx, len(exps)) for f in ("hidden_dim", "buffer_size", "seed")}
    strategies = _capacity_str(judgments.strategy, exp_idx, len(exps))
    experiments = []
    for e, name in enumerate(exps):
        entry: dict[str, Any] = {"variant": name}
        if strategies[e] is not None and strategies[e] != name:
            entry["strategy"] = strategies[e]
        for f in ("hidden_dim", "buffer_size", "seed"):
            if caps[f][e] is not False:
                entry[f] = caps[f][e]
        entry.update(_experiment_totals(aggs, e), diverged=name in diverged)
        entry["goals"] = {str(g): _goal_entry(aggs, e, g) for g in range(G)}
        experiments.append(entry)
    return {
        "schema": STATS_SCHEMA,
        "generated_at": utc_now(),
        "source": source,
        "ci_level": ci_level,
        "num_goals": G,
        "episodes": n,
        "experiments": experiments,
        "groups": _groups(judgments, cols.advantage, ci_level),
    }


class _Columns(NamedTuple):
    """The per-row columns of a log after filling in per-goal optima and baselines."""

    reward: np.ndarray
    optimal: np.ndarray
    baseline: np.ndarray
    advantage: np.ndarray


def _columns(judgments: Judgments, num_goals: int, optimal_by_goal: Any, baseline_by_goal: Any) -> _Columns:
    """Returns the log's columns with missing optima, baselines and advantages filled in."""
    gid = judgments.goal_id
    reward = judgments.reward
    optimal = judgments.optimal_reward.copy()
    baseline = judgments.baseline_reward.copy()
    advantage = judgments.advantage.copy()
    if optimal_by_goal is not None:
        fill = np.isnan(optimal)
        optimal[fill] = _per_goal(optimal_by_goal, num_goals)[gid[fill]]
    if baseline_by_goal is not None:
        fill = np.isnan(baseline)
        baseline[fill] = _per_goal(baseline_by_goal, num_goals)[gid[fill]]
    fill = np.isnan(advantage) & np.isfinite(baseline)
    advantage[fill] = regret_lib.episode_advantage(reward[fill], baseline[fill])
    return _Columns(reward, optimal, baseline, advantage)


class _Aggregates(NamedTuple):
    """Per experiment and goal ``[E, G]`` (totals ``[E, 1]``) aggregates and intervals."""

    reg: Any
    adv: Any
    r_known: Any
    o_known: Any
    b_known: Any
    reg_tot: Any
    adv_tot: Any
    lo: np.ndarray
    hi: np.ndarray
    tlo: np.ndarray
    thi: np.ndarray


def _experiment_aggregates(
    judgments: Judgments, cols: _Columns, exp_idx: np.ndarray, num_exp: int, num_goals: int, ci_level: float
) -> _Aggregates:
    E, G = num_exp, num_goals
    seg = exp_idx * G + judgments.goal_id
    known = np.isfinite(cols.optimal) & np.isfinite(cols.baseline)

    def per_exp(agg):
        return jax.tree.map(lambda a: a.reshape(E, G), agg)

    reg = per_exp(aggregate_np(judgments.regret, seg, E * G))
    adv = per_exp(aggregate_np(cols.advantage, seg, E * G, np.isfinite(cols.advantage)))
    r_known = per_exp(aggregate_np(np.where(known, cols.reward, 0), seg, E * G, known))
    o_known = per_exp(aggregate_np(np.where(known, cols.optimal, 0), seg, E * G, known))
    b_known = per_exp(aggregate_np(np.where(known, cols.baseline, 0), seg, E * G, known))
    reg_tot = jax.tree.map(np.asarray, regret_lib.total(reg))
    adv_tot = jax.tree.map(np.asarray, regret_lib.total(adv))
    lo, hi = _interval_np(reg, ci_level)
    tlo, thi = _interval_np(reg_tot, ci_level)
    return _Aggregates(reg, adv, r_known, o_known, b_known, reg_tot, adv_tot, lo, hi, tlo, thi)


def _score(r_sum: Any, o_sum: Any, b_sum: Any, count: int) -> float | None:
    """Returns the normalized score of summed reward, optimum and baseline (None if undefined)."""
    if count <= 0:
        return None
    den = float(np.float32(o_sum) - np.float32(b_sum))
    if den == 0.0:
        return None
    return _num((float(r_sum) - float(b_sum)) / den)


def _experiment_totals(a: _Aggregates, e: int) -> dict[str, Any]:
    """Returns the all-goals fields of experiment ``e``."""
    return {
        "episodes": int(a.reg_tot.count[e, 0]),
        "sum_regret": _num(a.reg_tot.sum[e, 0]),
        "avg_regret": _num(a.reg_tot.mean[e, 0]),
        "avg_regret_ci95": _ci(a.tlo[e, 0], a.thi[e, 0]),
        "avg_advantage": _num(a.adv_tot.mean[e, 0]) if a.adv_tot.count[e, 0] > 0 else None,
        "normalized_score": _score(
            a.r_known.sum[e].sum(), a.o_known.sum[e].sum(), a.b_known.sum[e].sum(), int(a.r_known.count[e].sum())
        ),
    }


def _goal_entry(a: _Aggregates, e: int, g: int) -> dict[str, Any]:
    """Returns the fields of goal ``g`` of experiment ``e`` (nulls for a goal without episodes)."""
    c = int(a.reg.count[e, g])
    if c == 0:
        return {
            "count": 0, "sum_regret": None, "avg_regret": None,
            "avg_regret_ci95": None, "avg_advantage": None, "normalized_score": None,
        }  # fmt: skip
    return {
        "count": c,
        "sum_regret": _num(a.reg.sum[e, g]),
        "avg_regret": _num(a.reg.mean[e, g]),
        "avg_regret_ci95": _ci(a.lo[e, g], a.hi[e, g]),
        "avg_advantage": _num(a.adv.mean[e, g]) if a.adv.count[e, g] > 0 else None,
        "normalized_score": _score(
            a.r_known.sum[e, g], a.o_known.sum[e, g], a.b_known.sum[e, g], int(a.r_known.count[e, g])
        ),
    }


def _capacity_str(col: list, exp_idx: np.ndarray, num_exp: int) -> list[str | None]:
    """Returns per experiment its single non-null value of a string column, else None."""
    seen: list[set] = [set() for _ in range(num_exp)]
    for e, v in zip(exp_idx.tolist(), col, strict=True):
        if v is not None and len(seen[e]) < 2:
            seen[e].add(v)
    return [next(iter(s)) if len(s) == 1 else None for s in seen]


def _groups(judgments: Judgments, advantage: np.ndarray, ci_level: float) -> list[dict]:
    """Returns rows pooled over seeds by (hidden_dim, buffer_size), sorted by capacity."""
    rows = np.flatnonzero((judgments.hidden_dim >= 0) & (judgments.buffer_size >= 0))
    if rows.shape[0] == 0:
        return []
    keys = list(zip(judgments.hidden_dim[rows].tolist(), judgments.buffer_size[rows].tolist(),
                    strict=True))  # fmt: skip
    idx, uniq = index_keys(keys)
    K = len(uniq)
    reg = aggregate_np(judgments.regret[rows], idx, K)
    adv_rows = advantage[rows]
    adv = aggregate_np(adv_rows, idx, K, np.isfinite(adv_rows))
    lo, hi = _interval_np(reg, ci_level)
    seeds: list[set] = [set() for _ in range(K)]
    for k, s in zip(idx.tolist(), judgments.seed[rows].tolist(), strict=True):
        if s >= 0:
            seeds[k].add(s)
    out = []
    for k in sorted(range(K), key=lambda k: uniq[k]):
        out.append(
            {
                "hidden_dim": int(uniq[k][0]),
                "buffer_size": int(uniq[k][1]),
                "seeds": sorted(seeds[k]),
                "episodes": int(reg.count[k]),
                "avg_regret": _num(reg.mean[k]),
                "avg_regret_ci95": _ci(lo[k], hi[k]),
                "avg_advantage": _num(adv.mean[k]) if adv.count[k] > 0 else None,
            }
        )
    return out


def write_strategy_stats(path: str | os.PathLike, stats: Mapping[str, Any]) -> Path:
    """Returns ``path`` after writing the stats document to it atomically."""
    return write_json_atomic(path, stats)
