"""``strategy_stats.json``: per-experiment, per-goal regret aggregates of a judgments log.

Also the command line ``python -m augnes_jax.stats JUDGMENTS.jsonl [--out PATH] [--tb DIR]
[--parquet FILE]``, which aggregates any judgments log (from augnes_jax or another system),
writes ``strategy_stats.json`` atomically, optionally TensorBoard summaries and the log's
columns as Parquet (atomically), and prints a per-goal table. A bad input is one line on
stderr naming the file and line, exit status 2, and nothing written.

Experiments are keyed by ``variant``, else ``strategy``, else ``"all"``. Aggregation runs on the
pure core (:mod:`augnes_jax.regret`, jitted segment sums in float32, checked against float64);
numbers are written with their shortest float32 decimals, and missing values as ``null``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import os
import sys
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from augnes_jax import regret as regret_lib
from augnes_jax import run_lock
from augnes_jax.cli import ArgumentParser, run_command
from augnes_jax.errors import UserError
from augnes_jax.files import write_bytes_atomic, write_json_atomic
from augnes_jax.judgments import Judgments, read_judgments, utc_now

__all__ = [
    "build_strategy_stats",
    "experiment_keys",
    "main",
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


def _index(keys: Sequence[Any]) -> tuple[np.ndarray, list]:
    """Returns ``(index per row, distinct keys in order of first appearance)``."""
    table: dict = {}
    idx = np.fromiter((table.setdefault(k, len(table)) for k in keys), np.int64, len(keys))
    return idx, list(table)


def _bucket(n: int, least: int) -> int:
    return max(least, 1 << max(0, (n - 1).bit_length()))


def _aggregate_np(values: np.ndarray, seg: np.ndarray, num: int, mask=None):
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
      judgments: the log, from :func:`augnes_jax.judgments.read_judgments`, or a list of
        judgment records (dicts), checked by :meth:`Judgments.from_records`.
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
    if not isinstance(judgments, Judgments):
        judgments = Judgments.from_records(judgments)
    n = len(judgments)
    if n == 0:
        raise ValueError("no judgments to aggregate")
    gid = judgments.goal_id
    max_goal = int(gid.max())
    G = max_goal + 1 if num_goals is None else int(num_goals)
    if max_goal >= G:
        raise ValueError(f"goal_id {max_goal} is not below num_goals {G}")

    reward = judgments.reward
    optimal = judgments.optimal_reward.copy()
    baseline = judgments.baseline_reward.copy()
    advantage = judgments.advantage.copy()
    if optimal_by_goal is not None:
        fill = np.isnan(optimal)
        optimal[fill] = _per_goal(optimal_by_goal, G)[gid[fill]]
    if baseline_by_goal is not None:
        fill = np.isnan(baseline)
        baseline[fill] = _per_goal(baseline_by_goal, G)[gid[fill]]
    fill = np.isnan(advantage) & np.isfinite(baseline)
    advantage[fill] = reward[fill] - baseline[fill]

    names = experiment_keys(judgments)
    exp_idx, exps = _index(names)
    E = len(exps)
    seg = exp_idx * G + gid
    reg = _aggregate_np(judgments.regret, seg, E * G)
    adv = _aggregate_np(advantage, seg, E * G, np.isfinite(advantage))
    known = np.isfinite(optimal) & np.isfinite(baseline)
    r_known = _aggregate_np(np.where(known, reward, 0), seg, E * G, known)
    o_known = _aggregate_np(np.where(known, optimal, 0), seg, E * G, known)
    b_known = _aggregate_np(np.where(known, baseline, 0), seg, E * G, known)

    def per_exp(agg):
        return jax.tree.map(lambda a: a.reshape(E, G), agg)

    reg, adv = per_exp(reg), per_exp(adv)
    r_known, o_known, b_known = per_exp(r_known), per_exp(o_known), per_exp(b_known)
    reg_tot = jax.tree.map(np.asarray, regret_lib.total(reg))
    adv_tot = jax.tree.map(np.asarray, regret_lib.total(adv))
    lo, hi = _interval_np(reg, ci_level)
    tlo, thi = _interval_np(reg_tot, ci_level)

    def score(r_sum, o_sum, b_sum, count):
        if count <= 0:
            return None
        den = float(np.float32(o_sum) - np.float32(b_sum))
        if den == 0.0:
            return None
        return _num((float(r_sum) - float(b_sum)) / den)

    diverged = set(diverged_variants or ())
    for name, ext in zip(names, judgments.extra, strict=True):
        if ext and ext.get("diverged") is True:
            diverged.add(name)
    caps = {
        f: _capacity(getattr(judgments, f), exp_idx, E)
        for f in ("hidden_dim", "buffer_size", "seed")
    }
    strategies = _capacity_str(judgments.strategy, exp_idx, E)

    experiments = []
    for e, name in enumerate(exps):
        entry: dict[str, Any] = {"variant": name}
        if strategies[e] is not None and strategies[e] != name:
            entry["strategy"] = strategies[e]
        for f in ("hidden_dim", "buffer_size", "seed"):
            if caps[f][e] is not False:
                entry[f] = caps[f][e]
        count = int(reg_tot.count[e, 0])
        kn = int(r_known.count[e].sum())
        entry.update(
            episodes=count,
            sum_regret=_num(reg_tot.sum[e, 0]),
            avg_regret=_num(reg_tot.mean[e, 0]),
            avg_regret_ci95=_ci(tlo[e, 0], thi[e, 0]),
            avg_advantage=_num(adv_tot.mean[e, 0]) if adv_tot.count[e, 0] > 0 else None,
            normalized_score=score(
                r_known.sum[e].sum(), o_known.sum[e].sum(), b_known.sum[e].sum(), kn
            ),
            diverged=name in diverged,
        )
        goals = {}
        for g in range(G):
            c = int(reg.count[e, g])
            if c == 0:
                goals[str(g)] = {
                    "count": 0, "sum_regret": None, "avg_regret": None,
                    "avg_regret_ci95": None, "avg_advantage": None, "normalized_score": None,
                }  # fmt: skip
                continue
            goals[str(g)] = {
                "count": c,
                "sum_regret": _num(reg.sum[e, g]),
                "avg_regret": _num(reg.mean[e, g]),
                "avg_regret_ci95": _ci(lo[e, g], hi[e, g]),
                "avg_advantage": _num(adv.mean[e, g]) if adv.count[e, g] > 0 else None,
                "normalized_score": score(
                    r_known.sum[e, g], o_known.sum[e, g], b_known.sum[e, g],
                    int(r_known.count[e, g]),
                ),
            }  # fmt: skip
        entry["goals"] = goals
        experiments.append(entry)

    return {
        "schema": STATS_SCHEMA,
        "generated_at": utc_now(),
        "source": source,
        "ci_level": ci_level,
        "num_goals": G,
        "episodes": n,
        "experiments": experiments,
        "groups": _groups(judgments, advantage, ci_level),
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
    idx, uniq = _index(keys)
    K = len(uniq)
    reg = _aggregate_np(judgments.regret[rows], idx, K)
    adv_rows = advantage[rows]
    adv = _aggregate_np(adv_rows, idx, K, np.isfinite(adv_rows))
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


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def _write_tensorboard(judgments: Judgments, stats: dict, tb_dir: Path) -> list[str]:
    """Returns the TensorBoard runs written: one per experiment, one step per epoch."""
    from augnes_jax import tensorboard_io

    G = int(stats["num_goals"])
    names = experiment_keys(judgments)
    exp_idx, exps = _index(names)
    epoch = np.maximum(judgments.epoch, 0)  # rows without an epoch count as epoch 0
    ep_idx, epochs = _index(epoch.tolist())
    T = len(epochs)
    seg = (exp_idx * T + ep_idx) * G + judgments.goal_id
    reg = _aggregate_np(judgments.regret, seg, len(exps) * T * G)
    adv_v = judgments.advantage
    adv = _aggregate_np(adv_v, seg, len(exps) * T * G, np.isfinite(adv_v))
    order = np.argsort(exp_idx * T + ep_idx, kind="stable")
    cell = (exp_idx * T + ep_idx)[order]
    starts = np.searchsorted(cell, np.arange(len(exps) * T))
    ends = np.searchsorted(cell, np.arange(len(exps) * T), side="right")
    written = []
    for e, name in enumerate(exps):
        safe = name.replace(os.sep, "_").replace("/", "_")
        # names come from the log: ".", ".." (or nothing) would write beside or above tb_dir
        run_dir = tb_dir / (safe if safe.strip(".") else safe.replace(".", "_") or "_")
        info = stats["experiments"][e]
        with tensorboard_io.RunWriter(run_dir) as w:
            w.custom_scalars(tensorboard_io.regret_layout(G))
            for t in sorted(range(T), key=lambda t: epochs[t]):
                c = e * T + t
                if starts[c] == ends[c]:
                    continue
                rows = order[starts[c] : ends[c]]
                sl = slice(c * G, (c + 1) * G)
                tensorboard_io.write_regret_summaries(
                    w,
                    int(epochs[t]),
                    jax.tree.map(lambda a, sl=sl: a[sl], reg),
                    jax.tree.map(lambda a, sl=sl: a[sl], adv),
                    judgments.regret[rows],
                    judgments.goal_id[rows],
                )
            hp = {k: info[k] for k in ("hidden_dim", "buffer_size", "seed") if info.get(k) is not None}
            hp["variant"] = name
            w.hparams(hp, {"regret/avg": info["avg_regret"] or 0.0})
        written.append(run_dir.name)
    return written


def _write_parquet(judgments: Judgments, path: Path) -> Path:
    """Returns ``path`` after writing the judgments' columns to it as Parquet, atomically."""
    buf = io.BytesIO()
    judgments.to_polars().write_parquet(buf)
    return write_bytes_atomic(path, buf.getvalue())


def _fmt(x: float | None, digits: int = 4) -> str:
    return "-" if x is None else f"{x:.{digits}g}"


def _print_table(stats: dict, out_path: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    level = int(round(stats["ci_level"] * 100))
    for exp in stats["experiments"]:
        title = (
            f"{exp['variant']}: {exp['episodes']} episodes, avg regret "
            f"{_fmt(exp['avg_regret'])}"
        )
        table = Table(title=title)
        table.add_column("goal", justify="right")
        table.add_column("count", justify="right")
        table.add_column("avg regret", justify="right")
        table.add_column(f"{level}% CI", justify="right")
        table.add_column("avg advantage", justify="right")
        for g, row in exp["goals"].items():
            ci = row["avg_regret_ci95"]
            table.add_row(
                g,
                str(row["count"]),
                _fmt(row["avg_regret"]),
                "-" if ci is None else f"[{_fmt(ci[0])}, {_fmt(ci[1])}]",
                _fmt(row["avg_advantage"]),
            )
        console.print(table)
    console.print(f"wrote {out_path}")


def main(argv: Sequence[str] | None = None) -> int:
    """Returns the exit status of ``python -m augnes_jax.stats`` (0 ok, 2 bad input)."""
    parser = ArgumentParser(
        prog="python -m augnes_jax.stats",
        description="Aggregate a judgments log into strategy_stats.json (per goal regret).",
    )
    parser.add_argument("judgments", help="judgments.jsonl (one JudgmentMemoryEntry per line)")
    parser.add_argument("--out", help="output path (default: strategy_stats.json beside it)")
    parser.add_argument("--tb", help="also write TensorBoard runs under this directory")
    parser.add_argument("--parquet", help="also write the judgments' columns to this Parquet file")
    parser.add_argument("--num-goals", type=int, help="number of goals (default: max id + 1)")
    parser.add_argument("--ci-level", type=float, default=0.95, help="interval level")
    args = parser.parse_args(argv)
    return run_command("augnes_jax.stats", lambda: _run(args))


def _run(args: argparse.Namespace) -> int:
    if not 0.0 < args.ci_level < 1.0:
        raise UserError(f"--ci-level: must lie in (0, 1), got {args.ci_level}")
    path = Path(args.judgments)
    out = Path(args.out) if args.out else path.parent / "strategy_stats.json"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        judgments = read_judgments(path)
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    try:
        stats = build_strategy_stats(
            judgments, source=str(path), num_goals=args.num_goals, ci_level=args.ci_level
        )
    except ValueError as e:
        raise UserError(f"{path}: {e}") from None
    # a sweep's run directory has one writer at a time
    with run_lock.acquire_if_present(out.parent, command="augnes_jax.stats") or contextlib.nullcontext():
        write_strategy_stats(out, stats)
        if args.tb:
            _write_tensorboard(judgments, stats, Path(args.tb))
        if args.parquet:
            _write_parquet(judgments, Path(args.parquet))
    _print_table(stats, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
