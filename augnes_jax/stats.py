"""``python -m augnes_jax.stats``: aggregate a judgments log into ``strategy_stats.json``.

``python -m augnes_jax.stats JUDGMENTS.jsonl [--out PATH] [--tb DIR] [--parquet FILE]``
aggregates any judgments log (from augnes_jax or another system), writes
``strategy_stats.json`` atomically, optionally TensorBoard summaries and the log's columns as
Parquet (atomically), and prints a per-goal table. A bad input is one line on stderr naming the
file and line, exit status 2, and nothing written.

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
from collections.abc import Sequence
from pathlib import Path

import jax
import numpy as np

from augnes_jax import run_lock
from augnes_jax.cli import ArgumentParser, run_command
from augnes_jax.errors import UserError
from augnes_jax.files import write_bytes_atomic
from augnes_jax.judgments import Judgments, read_judgments
from augnes_jax.strategy_stats import (
    aggregate_np,
    build_strategy_stats,
    experiment_keys,
    index_keys,
    write_strategy_stats,
)

__all__ = [
    "build_strategy_stats",
    "experiment_keys",
    "main",
    "write_strategy_stats",
]


def _write_tensorboard(judgments: Judgments, stats: dict, tb_dir: Path) -> list[str]:
    """Returns the TensorBoard runs written: one per experiment, one step per epoch."""
    from augnes_jax import tensorboard_io

    G = int(stats["num_goals"])
    names = experiment_keys(judgments)
    exp_idx, exps = index_keys(names)
    epoch = np.maximum(judgments.epoch, 0)  # rows without an epoch count as epoch 0
    ep_idx, epochs = index_keys(epoch.tolist())
    T = len(epochs)
    seg = (exp_idx * T + ep_idx) * G + judgments.goal_id
    reg = aggregate_np(judgments.regret, seg, len(exps) * T * G)
    adv_v = judgments.advantage
    adv = aggregate_np(adv_v, seg, len(exps) * T * G, np.isfinite(adv_v))
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
