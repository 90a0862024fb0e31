"""The dashboard's diagnosis plots: per-goal verdicts across widths, the fitted scaling curve, and
cost against regret with the Pareto front.

Both draw from the controller's decision (``decision.analysis``: the per-goal verdicts and the
scaling fit of :mod:`augnes_jax.decision_analysis`) and its evidence windows. :data:`ANALYSIS_PLOTS`
lists them by PNG name.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from augnes_jax.dashboard_plots import PlotData, empty_note, new_figure, set_title
from augnes_jax.scaling import curve_band, ladder_matrix

__all__ = ["ANALYSIS_PLOTS", "goal_width_matrix", "pareto_front", "plot_cost_regret", "plot_goal_verdicts",
           "plot_scaling_curve"]

VERDICT_COLORS = {"capacity_limited": "#d95f02", "data_limited": "#1b9e77", "planner_limited": "#7570b3",
                  "solved": "#66a61e", "inconclusive": "#999999"}  # fmt: skip


def goal_width_matrix(d: PlotData) -> tuple[list[int], list[int], np.ndarray] | None:
    """Returns ``(goals, widths, regret [G, W])``: mean over seeds on the width ladder at the recommended buffer_size."""
    b = d.recommended.get("buffer_size")
    evs = [e for e in d.evidence if e.buffer_size == b and e.goal_regret]
    if not evs:
        return None
    goals = sorted({g for e in evs for g in e.goal_regret})
    widths = sorted({e.hidden_dim for e in evs})
    mat = np.full((len(goals), len(widths)), np.nan)
    for j, h in enumerate(widths):
        for i, g in enumerate(goals):
            vals = [e.goal_regret[g] for e in evs if e.hidden_dim == h and g in e.goal_regret]
            if vals:
                mat[i, j] = float(np.mean(vals))
    return goals, widths, mat


def plot_goal_verdicts(d: PlotData, dpi: int):
    """Returns the figure of mean regret per goal (rows) and width (columns), each row labelled with its verdict."""
    fig = new_figure(figsize=(7.4, 4.2), dpi=dpi)
    ax = fig.subplots()
    fig.subplots_adjust(right=0.72)  # room for the verdict labels
    data = goal_width_matrix(d)
    goals_doc = d.analysis.get("goals", {})
    if data is None:
        empty_note(ax, "no per-goal regret yet")
    else:
        goals, widths, mat = data
        im = ax.imshow(mat, aspect="auto", cmap="magma_r", interpolation="nearest", origin="lower")
        fig.colorbar(im, ax=ax, label="avg regret", pad=0.3)
        ax.set_xticks(range(len(widths)), [str(h) for h in widths])
        ax.set_yticks(range(len(goals)), [str(g) for g in goals])
        for i, g in enumerate(goals):
            verdict = goals_doc.get(str(g), {}).get("verdict", "n/a")
            ax.text(len(widths) - 0.4, i, verdict, va="center", ha="left", fontsize=8,
                    color=VERDICT_COLORS.get(verdict, "black"), clip_on=False)  # fmt: skip
        rec = d.recommended.get("hidden_dim")
        if rec in widths:
            ax.axvline(widths.index(rec), color="cyan", linewidth=2.0, label=f"recommended hidden_dim={rec}")
            ax.legend(loc="lower left", fontsize=7)
    ax.set_xlabel(f"hidden_dim (buffer_size {d.recommended.get('buffer_size')})")
    ax.set_ylabel("goal id")
    set_title(ax, "Regret per goal and width, with each goal's verdict")
    return fig


def plot_scaling_curve(d: PlotData, dpi: int):
    """Returns the figure of regret against parameters with the fitted curve, its 95% band and the predicted next point."""
    fig = new_figure(dpi=dpi)
    ax = fig.subplots()
    sc: dict[str, Any] = d.analysis.get("scaling") or {}
    b = d.recommended.get("buffer_size")
    widths, seeds, y, _ = ladder_matrix(d.evidence, b, None)
    if not widths or sc.get("N") is None:
        empty_note(ax, "no width ladder yet")
        set_title(ax, "Scaling curve")
        return fig
    n = np.asarray(sc["N"], np.float64)
    ax.plot(n, y.mean(0), "o", color="black", label=f"avg regret ({len(seeds)} seeds)")
    if len(seeds) >= 2:
        ax.errorbar(n, y.mean(0), yerr=y.std(0, ddof=1) / np.sqrt(len(seeds)), fmt="none", color="black", capsize=3)
    if sc.get("a") is not None:
        n_next = sc["N_next"]
        grid = np.geomspace(n.min(), max(n.max(), n_next), 64)
        fit, lo, hi = curve_band(n, y, grid, np.random.default_rng([d.seed, 15, 3]))
        (line,) = ax.plot(grid, fit, label=f"{sc['a']:.3g} N^-{sc['b']:.3g} + {sc['c']:.3g}")
        ax.fill_between(grid, lo, hi, color=line.get_color(), alpha=0.2, linewidth=0, label="95% band (seeds)")
        f_from = sc["a"] * sc["N_from"] ** -sc["b"] + sc["c"]
        g_lo, g_hi = sc["predicted_next_gain_ci95"]
        y_next = f_from - sc["predicted_next_gain"]
        ax.errorbar([n_next], [y_next], yerr=[[y_next - (f_from - g_hi)], [(f_from - g_lo) - y_next]], fmt="none",
                    color="crimson", capsize=4)  # fmt: skip
        ax.plot([n_next], [y_next], "D", color="crimson", label=f"predicted h{sc['next_width']}: {sc['advice']}")
    ax.set_xscale("log")
    ax.set_xlabel(f"parameters ({sc.get('N_unit')}), log scale")
    ax.set_ylabel("avg regret")
    set_title(ax, f"Scaling curve (buffer_size {b}){'' if sc.get('trusted') else ': fit not trusted'}")
    ax.legend(fontsize=7, loc="upper right")
    return fig


def pareto_front(cost: np.ndarray, regret: np.ndarray) -> np.ndarray:
    """Returns the mask of points no other point dominates (no more cost and no more regret, one of
    them strictly less)."""
    cost, regret = np.asarray(cost, np.float64), np.asarray(regret, np.float64)
    no_worse = (cost[None, :] <= cost[:, None]) & (regret[None, :] <= regret[:, None])
    better = (cost[None, :] < cost[:, None]) | (regret[None, :] < regret[:, None])
    return ~np.any(no_worse & better, axis=1)


def plot_cost_regret(d: PlotData, dpi: int):
    """Returns the figure of each capacity's cost against its mean regret, the Pareto front marked.

    The cost is the measured control latency under ``meta.cost: latency_ms``, else the parameter
    count; a capacity without it is left out.
    """
    fig = new_figure(figsize=(6.4, 4.2), dpi=dpi)
    ax = fig.subplots()
    cost_doc = d.analysis.get("cost")
    measure = cost_doc.get("measure") if isinstance(cost_doc, dict) else None
    attr = "latency_ms" if measure == "latency_ms" else "num_params"
    points = []
    for cap in sorted(d.groups):
        c, r = d.mean(cap, attr), d.mean(cap, "avg_regret")
        if c is not None and r is not None:
            points.append((cap, c, r))
    if not points:
        empty_note(ax, f"no capacity has both a {attr} and a regret yet")
        return fig
    cost = np.asarray([p[1] for p in points])
    regret = np.asarray([p[2] for p in points])
    front = pareto_front(cost, regret)
    ax.scatter(cost[~front], regret[~front], color="#999999", label="dominated")
    order = np.argsort(cost[front])
    ax.plot(cost[front][order], regret[front][order], "o-", color="#d95f02", label="Pareto front")
    for (h, b), c, r in points:
        ax.annotate(f"h{h}-b{b}", (c, r), textcoords="offset points", xytext=(4, 4), fontsize=7)
    if cost.min() > 0:
        ax.set_xscale("log")
    ax.set_xlabel("parameters" if attr == "num_params" else "control latency (ms per step)")
    ax.set_ylabel("avg regret (mean over seeds)")
    ax.legend(fontsize=8)
    set_title(ax, "cost against regret")
    return fig


ANALYSIS_PLOTS: dict[str, Callable[[PlotData, int], Any]] = {
    "goal_verdicts.png": plot_goal_verdicts,
    "scaling_curve.png": plot_scaling_curve,
    "cost_regret.png": plot_cost_regret,
}
