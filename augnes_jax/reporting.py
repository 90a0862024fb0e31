"""What a sweep shows: the progress bar while it runs, the summary table and the dashboard at the end."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from augnes_jax import files
from augnes_jax.variants import Variant
from augnes_jax.world_model_stats import WorldModelStats

__all__ = ["latest_val_mse", "print_summary", "progress", "render_dashboard", "summary"]

log = logging.getLogger("augnes_jax.sweep")


def latest_val_mse(wm_stats: WorldModelStats, name: str) -> float | None:
    """Returns the validation error of variant ``name``'s latest recorded epoch, None before one."""
    entry = wm_stats.latest(name)
    return None if entry is None else entry.get("val_mse")


@contextlib.contextmanager
def progress(show: bool, total: int, start_epoch: int, variants: Callable[[], Sequence[Variant]],
             wm_stats: Callable[[], WorldModelStats]):
    """Yields ``advance(epoch)``; shows a rich progress bar with an ETA when ``show``.

    ``variants`` and ``wm_stats`` return the current variants and statistics when called.
    """
    if not show:
        yield lambda epoch: None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    n_var = len(variants())
    with Progress(TextColumn("[bold]sweep[/] {task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), transient=False) as bar:
        task = bar.add_task(f"{n_var} variants, {total} epochs (compiling...)", total=total, completed=start_epoch)

        def advance(epoch: int) -> None:
            stats = wm_stats()
            best = min((latest_val_mse(stats, v.name) or np.inf) for v in variants())
            bar.update(task, completed=epoch + 1,
                       description=f"{n_var} variants, epoch {epoch + 1}/{total}, best val_mse {best:.2e}")

        yield advance


def summary(run_dir: Path, variants: Sequence[Variant], *, params: dict[str, int], wm_stats: WorldModelStats,
            diverged: set[str], wall_s: float, flop_fraction: float, decision: Any,
            epoch_times: list[float], checkpoint_times: list[float]) -> dict[str, Any]:
    """Returns the final summary of a sweep: one row per variant and the run's figures."""
    stats_path = run_dir / "strategy_stats.json"
    stats = files.read_json(stats_path) if stats_path.exists() else {"experiments": []}
    by_name = {e["variant"]: e for e in stats.get("experiments", []) if "variant" in e}
    rows = []
    for v in variants:
        e = by_name.get(v.name, {})
        rows.append({
            "variant": v.name, "params": params.get(v.name), "val_mse": latest_val_mse(wm_stats, v.name),
            "avg_regret": e.get("avg_regret"), "avg_regret_ci95": e.get("avg_regret_ci95"),
            "avg_advantage": e.get("avg_advantage"), "diverged": v.name in diverged,
        })
    return {"run_dir": str(run_dir), "rows": rows, "wall_s": wall_s,
            "useful_flop_fraction": flop_fraction,
            "decision": getattr(decision, "decision", None),
            # seconds per epoch run by this process (compute + artifacts) and spent starting
            # each epoch's checkpoint save; their ratio is the checkpoint overhead
            "epoch_times": list(epoch_times), "checkpoint_times": list(checkpoint_times)}


def _fmt(x, spec: str = ".4g") -> str:
    return "-" if x is None else format(x, spec)


def print_summary(summary: dict[str, Any], tb_root: Path) -> None:
    """Prints the summary table, the run directory and the TensorBoard command."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title="capacity sweep")
    for col in ("variant", "params", "val MSE", "avg regret ± 95% CI", "advantage", "status"):
        table.add_column(col, justify="right" if col not in ("variant", "status") else "left")
    for r in summary["rows"]:
        ci = r["avg_regret_ci95"]
        ci_s = f" ± {(ci[1] - ci[0]) / 2:.3f}" if ci and None not in ci else ""
        table.add_row(r["variant"], _fmt(r["params"], "d"), _fmt(r["val_mse"], ".3e"),
                      f"{_fmt(r['avg_regret'], '.3f')}{ci_s}", _fmt(r["avg_advantage"], ".3f"),
                      "[red]diverged[/]" if r["diverged"] else "ok")
    console.print(table)
    console.print(f"useful-FLOP fraction {summary['useful_flop_fraction']:.2f} · wall {summary['wall_s']:.1f}s"
                  + (f" · controller: {summary['decision']}" if summary.get("decision") else ""))
    console.print(f"run directory: {summary['run_dir']}")
    rel = os.path.relpath(tb_root)
    console.print(f"tensorboard --logdir {tb_root if rel.startswith('..') else rel}")


def render_dashboard(run_dir: Path, controller: Any, epsilon: float) -> None:
    """Writes the capacity dashboard PNGs to ``plots/``; a plotting failure never fails the sweep."""
    import jax

    from augnes_jax import dashboard

    loader = None
    if jax.process_count() > 1:
        def loader(run_dir, variant):
            # orbax coordinates a checkpoint read across every process, and only process 0
            # renders: the read would wait for the others forever
            raise RuntimeError(f"not drawn by a multi-process run; run python -m augnes_jax.dashboard {run_dir}")
    try:
        dashboard.render(run_dir, controller=controller, epsilon=epsilon, world_model_loader=loader)
    except Exception as e:  # noqa: BLE001 - plots are a convenience on top of the artifacts
        log.warning("capacity dashboard not rendered: %s", e)
