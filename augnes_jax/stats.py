"""``python -m augnes_jax.stats``: aggregate a judgments log into ``strategy_stats.json``.

``python -m augnes_jax.stats JUDGMENTS.jsonl [--out PATH] [--tb DIR] [--parquet FILE]``
aggregates any judgments log (from augnes_jax or another system), writes
``strategy_stats.json`` atomically, optionally TensorBoard summaries and the log's columns as
Parquet (atomically), and prints a per-goal table. A bad input is one line on stderr naming the
file and line, exit status 2, and nothing written.

``--tb DIR`` writes one run per variant, named ``h{H}-b{B}-s{S}`` from the rows' own
``hidden_dim``, ``buffer_size`` and ``seed`` fields, whatever the ``variant`` strings are
called: the controller, ``python -m augnes_jax.meta RUN`` with ``DIR = RUN/tb``, decides on
them. A log without those fields gets a warning that the controller has nothing to compare.

The document itself is built by :mod:`augnes_jax.strategy_stats`; its builders are re-exported
here (``from augnes_jax.stats import build_strategy_stats, write_strategy_stats``).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import warnings
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import jax
import numpy as np

from augnes_jax import run_lock
from augnes_jax.cli import ArgumentParser, run_command
from augnes_jax.errors import UserError
from augnes_jax.evidence import DIVERGED_TAG
from augnes_jax.files import write_bytes_atomic
from augnes_jax.judgment_evidence import (
    CAPACITY_FIELDS,
    CapacityFieldsError,
    GroupKey,
    capacity_variants,
    diverged_groups,
    epoch_aggregates,
    variant_groups,
)
from augnes_jax.judgments import Judgments, read_judgments
from augnes_jax.strategy_stats import (
    build_strategy_stats,
    experiment_keys,
    write_strategy_stats,
)
from augnes_jax.variants import parse_variant_name, variant_name

__all__ = [
    "build_strategy_stats",
    "experiment_keys",
    "main",
    "run_names",
    "tensorboard_warnings",
    "write_strategy_stats",
]


def _write_tensorboard(judgments: Judgments, stats: dict, tb_dir: Path) -> list[str]:
    """Returns the TensorBoard runs written: one per variant, one step per epoch.

    A variant is an experiment with one capacity (:func:`augnes_jax.judgment_evidence.
    variant_groups`); its run is named ``h{H}-b{B}-s{S}`` from its fields, so the controller
    (``python -m augnes_jax.meta``) reads it. See :func:`run_names` for the others.
    """
    from augnes_jax import tensorboard_io

    G = int(stats["num_goals"])
    group_idx, groups = variant_groups(judgments)
    agg = epoch_aggregates(judgments, group_idx, len(groups), G)
    epochs, T = agg.epochs, len(agg.epochs)
    order = np.argsort(agg.cell, kind="stable")
    cell = agg.cell[order]
    starts = np.searchsorted(cell, np.arange(len(groups) * T))
    ends = np.searchsorted(cell, np.arange(len(groups) * T), side="right")
    diverged = diverged_groups(judgments, group_idx)
    info = {e["variant"]: e for e in stats["experiments"]}
    written = []
    for k, name in enumerate(run_names(groups)):
        run_dir = tb_dir / name
        with tensorboard_io.RunWriter(run_dir) as w:
            w.custom_scalars(tensorboard_io.regret_layout(G))
            for t in sorted(range(T), key=lambda t: epochs[t]):
                c = k * T + t
                if starts[c] == ends[c]:
                    continue
                rows = order[starts[c] : ends[c]]
                sl = slice(c * G, (c + 1) * G)
                tensorboard_io.write_regret_summaries(
                    w,
                    int(epochs[t]),
                    jax.tree.map(lambda a, sl=sl: a[sl], agg.regret),
                    jax.tree.map(lambda a, sl=sl: a[sl], agg.advantage),
                    judgments.regret[rows],
                    judgments.goal_id[rows],
                )
            if k in diverged:
                w.scalars(diverged[k], {DIVERGED_TAG: 1.0})
            key = groups[k]
            hp = {f: getattr(key, f) for f in CAPACITY_FIELDS if getattr(key, f) >= 0}
            hp["variant"] = key.experiment
            w.hparams(hp, {"regret/avg": info[key.experiment]["avg_regret"] or 0.0})
        written.append(run_dir.name)
    return written


def _safe(name: str) -> str:
    """Returns ``name`` as one directory name inside the TensorBoard folder."""
    safe = name.replace(os.sep, "_").replace("/", "_")
    # names come from the log: ".", ".." (or nothing) would write beside or above tb_dir
    return safe if safe.strip(".") else safe.replace(".", "_") or "_"


def run_names(groups: Sequence[GroupKey]) -> list[str]:
    """Returns the TensorBoard run name of each group (see :func:`variant_groups`).

    A group with all three capacity fields, and the only one with its capacity, is named
    ``h{H}-b{B}-s{S}`` from them, whatever its experiment is called. Every other group keeps
    its experiment's name; ``@`` and its capacity fields are added when the experiment has
    other such groups, or when the name alone would read as a variant name (or be one already
    taken), so the controller never reads a run under capacities its rows do not state.
    """
    triples = Counter(g[1:] for g in groups if g.complete)
    named = [variant_name(g.hidden_dim, g.buffer_size, g.seed, g.depth) if g.complete and triples[g[1:]] == 1
             else None for g in groups]  # fmt: skip
    own = Counter(g.experiment for g, n in zip(groups, named, strict=True) if n is None)
    taken = set(filter(None, named))
    out = []
    for g, n in zip(groups, named, strict=True):
        if n is None:
            n = _safe(g.experiment)
            if own[g.experiment] > 1 or parse_variant_name(n) is not None or n in taken:
                fields = "-".join(f"{f[0]}{getattr(g, f)}" for f in CAPACITY_FIELDS if getattr(g, f) >= 0)
                n = f"{n}@{fields or 'none'}"
        out.append(n)
    return out


def tensorboard_warnings(judgments: Judgments) -> list[str]:
    """Returns why the controller would find nothing, or not every variant, in the runs."""
    _, groups = variant_groups(judgments)
    try:
        capacity_variants(judgments, groups)
    except CapacityFieldsError as e:
        return [f"{e}; the TensorBoard runs keep their experiments' names"]
    return []


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
            for line in tensorboard_warnings(judgments):
                print(f"warning: {line}", file=sys.stderr)
        if args.parquet:
            _write_parquet(judgments, Path(args.parquet))
    _print_table(stats, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
