"""The capacity dashboard's evidence plots: one matplotlib ``Figure`` per PNG, never pyplot.

Each plot draws from a :class:`PlotData`: the controller's evidence windows grouped by
capacity, with the regret bands of :func:`augnes_jax.decision.avg_regret_ci` (the controller's
interval method) and Student-t bands over seeds for the other quantities. Capacity axes are
logarithmic and the recommended capacity is marked. :data:`EVIDENCE_PLOTS` lists them by PNG name.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from augnes_jax import files
from augnes_jax.decision import avg_regret_ci
from augnes_jax.evidence import (
    GOAL_REGRET_RE,
    REGRET_TAG,
    VariantData,
    VariantEvidence,
    group_by_capacity,
    mean_or_none,
)
from augnes_jax.meta import MetaJudgmentController
from augnes_jax.statistics import t_interval

log = logging.getLogger(__name__)

__all__ = [
    "EVIDENCE_PLOTS",
    "PlotData",
    "empty_note",
    "new_figure",
    "plot_advantage_vs_hidden",
    "plot_goal_heatmap",
    "plot_regret_by_epoch",
    "plot_regret_vs_buffer",
    "plot_regret_vs_hidden",
    "plot_val_mse",
    "set_title",
]

_FIGSIZE = (6.4, 4.2)


# ---------------------------------------------------------------------------------- helpers


def new_figure(figsize=_FIGSIZE, dpi: int = 80):
    """Returns a matplotlib ``Figure`` on the Agg canvas with the dashboard's fixed margins."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure, SubplotParams

    # Fixed margins that fit the labels: cheaper than a layout engine, re-run every epoch.
    return Figure(figsize=figsize, dpi=dpi, subplotpars=SubplotParams(left=0.12, right=0.96, bottom=0.13, top=0.91))


def _log2_axis(ax, values: Sequence[int], axis: str = "x") -> None:
    values = sorted(set(int(v) for v in values))
    if axis == "x":
        ax.set_xscale("log", base=2)
        if values:
            ax.set_xticks(values, [str(v) for v in values])
            ax.minorticks_off()
    else:
        ax.set_yscale("log", base=2)
        if values:
            ax.set_yticks(values, [str(v) for v in values])


def set_title(ax, text: str, **kwargs: Any) -> None:
    """Sets the title of ``ax`` at a fixed height."""
    # An explicit y skips matplotlib's automatic title placement, a costly tight-bbox search.
    ax.set_title(text, y=1.0, **kwargs)


def empty_note(ax, text: str = "no evidence yet") -> None:
    """Writes ``text`` in the middle of an axes that has nothing to draw."""
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=12)


def _seed_band(values: Sequence[float | None]) -> tuple[float, float, float] | None:
    """Returns ``(mean, lo, hi)`` of a Student-t 95% interval over seeds (None if no finite value)."""
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], np.float64)
    if len(v) == 0:
        return None
    m = float(v.mean())
    ci = t_interval(v)
    return (m, m, m) if ci is None else (m, *ci)


class PlotData:
    """The evidence the plots share, computed once per render.

    Args:
      ctrl: an updated controller (its variants, evidence windows and bootstrap seed).
      recommended: the recommended capacity to mark, ``{"hidden_dim": ..., "buffer_size": ...}``.
      bootstrap_samples: replicates of the regret bands' bootstrap.
      run_dir: the run directory (``strategy_stats.json`` fills the goal heatmap without goal tags).

    In a sweep over depths the plots show the variants of the recommended depth (``recommended``'s
    ``num_layers``, else the controller's), as the decision's analysis does.
    """

    def __init__(self, ctrl: MetaJudgmentController, recommended: dict[str, Any], bootstrap_samples: int, run_dir: Path):
        self.run_dir = run_dir
        self.seed = ctrl.seed
        self.analysis: dict[str, Any] = dict(ctrl.decision.analysis) if ctrl.decision is not None else {}
        depth = recommended.get("num_layers")
        if depth is None and ctrl.decision is not None:
            depth = ctrl.decision.recommended.get("num_layers")
        self.variants: list[VariantData] = [v for v in ctrl.variants if depth is None or v.num_layers == depth]
        self.evidence: list[VariantEvidence] = [e for e in ctrl.evidence if depth is None or e.num_layers == depth]
        self.recommended = recommended
        self.groups = group_by_capacity(self.evidence)
        self.hidden_dims = sorted({h for h, _ in self.groups})
        self.buffer_sizes = sorted({b for _, b in self.groups})
        self.regret_ci: dict[tuple[int, int], tuple[float, float]] = {}
        for i, (cap, evs) in enumerate(sorted(self.groups.items())):
            rng = np.random.default_rng([ctrl.seed, 7, i])
            self.regret_ci[cap] = avg_regret_ci(evs, bootstrap_samples=bootstrap_samples, rng=rng)

    def mean(self, cap: tuple[int, int], attr: str) -> float | None:
        """Returns the mean over seeds of an evidence attribute of capacity ``cap`` (finite values)."""
        return mean_or_none(getattr(e, attr) for e in self.groups.get(cap, []))


def _mark_recommended(ax, value: int | None, label: str) -> None:
    if value is not None:
        ax.axvline(value, color="crimson", linestyle="--", linewidth=1.2, label=f"recommended {label}={value}")


def _k(d: PlotData) -> int:
    return max((len(e.steps) for e in d.evidence), default=0)


def _legend(ax) -> None:
    handles, _ = ax.get_legend_handles_labels()
    if handles:
        ax.legend(fontsize=8, loc="upper right")  # "best" costs a search over every data point


# ------------------------------------------------------------------------------------ plots


def plot_regret_vs_hidden(d: PlotData, dpi: int):
    """Returns the figure of avg regret against hidden_dim, one line per buffer_size, with the controller's 95% bands."""
    fig = new_figure(dpi=dpi)
    ax = fig.subplots()
    if not d.evidence:
        empty_note(ax)
    for b in d.buffer_sizes:
        hs = [h for h in d.hidden_dims if (h, b) in d.groups]
        y = [d.mean((h, b), "avg_regret") for h in hs]
        lo = [d.regret_ci[(h, b)][0] for h in hs]
        hi = [d.regret_ci[(h, b)][1] for h in hs]
        (line,) = ax.plot(hs, y, marker="o", label=f"buffer_size={b}")
        ax.fill_between(hs, lo, hi, color=line.get_color(), alpha=0.2, linewidth=0)
    _mark_recommended(ax, d.recommended.get("hidden_dim"), "hidden_dim")
    _log2_axis(ax, d.hidden_dims)
    ax.set_xlabel("hidden_dim (log scale)")
    ax.set_ylabel(f"avg regret (last {_k(d)} epochs, 95% band)")
    set_title(ax, "Regret against model width")
    _legend(ax)
    return fig


def plot_advantage_vs_hidden(d: PlotData, dpi: int):
    """Returns the figure of avg advantage against hidden_dim, one line per buffer_size, with t bands over seeds."""
    fig = new_figure(dpi=dpi)
    ax = fig.subplots()
    if not d.evidence:
        empty_note(ax)
    for b in d.buffer_sizes:
        hs, y, lo, hi = [], [], [], []
        for h in d.hidden_dims:
            band = _seed_band([e.avg_advantage for e in d.groups.get((h, b), [])])
            if band is not None:
                hs.append(h)
                y.append(band[0])
                lo.append(band[1])
                hi.append(band[2])
        if not hs:
            continue
        (line,) = ax.plot(hs, y, marker="o", label=f"buffer_size={b}")
        ax.fill_between(hs, lo, hi, color=line.get_color(), alpha=0.2, linewidth=0)
    _mark_recommended(ax, d.recommended.get("hidden_dim"), "hidden_dim")
    _log2_axis(ax, d.hidden_dims)
    ax.set_xlabel("hidden_dim (log scale)")
    ax.set_ylabel("avg advantage (reward - baseline)")
    set_title(ax, "Advantage against model width")
    _legend(ax)
    return fig


def plot_regret_vs_buffer(d: PlotData, dpi: int):
    """Returns the figure of avg regret against buffer_size, one line per hidden_dim, with the controller's 95% bands."""
    fig = new_figure(dpi=dpi)
    ax = fig.subplots()
    if not d.evidence:
        empty_note(ax)
    for h in d.hidden_dims:
        bs = [b for b in d.buffer_sizes if (h, b) in d.groups]
        y = [d.mean((h, b), "avg_regret") for b in bs]
        lo = [d.regret_ci[(h, b)][0] for b in bs]
        hi = [d.regret_ci[(h, b)][1] for b in bs]
        (line,) = ax.plot(bs, y, marker="o", label=f"hidden_dim={h}")
        ax.fill_between(bs, lo, hi, color=line.get_color(), alpha=0.2, linewidth=0)
    _mark_recommended(ax, d.recommended.get("buffer_size"), "buffer_size")
    _log2_axis(ax, d.buffer_sizes)
    ax.set_xlabel("buffer_size (log scale)")
    ax.set_ylabel(f"avg regret (last {_k(d)} epochs, 95% band)")
    set_title(ax, "Regret against replay buffer size")
    _legend(ax)
    return fig


def _goal_matrix(d: PlotData) -> tuple[list[int], list[tuple[int, int]], np.ndarray] | None:
    """Returns ``(goal ids, capacities, regret [G, C])`` from TensorBoard, else strategy_stats.json."""
    caps = sorted(d.groups)
    by_name = {v.name: v for v in d.variants}
    per_cap: dict[tuple[int, int], dict[int, list[float]]] = {}
    for cap, evs in d.groups.items():
        for e in evs:
            v = by_name.get(e.name)
            if v is None:
                continue
            steps = np.asarray(e.steps)
            for tag, (s, vals) in v.series.items():
                m = GOAL_REGRET_RE.match(tag)
                if m is None:
                    continue
                x = vals[np.isin(s, steps) & np.isfinite(vals)]
                if len(x):
                    per_cap.setdefault(cap, {}).setdefault(int(m.group(1)), []).append(float(x.mean()))
    if not per_cap:
        per_cap = _goal_regret_from_stats(d.run_dir)
        caps = sorted(per_cap)
    if not per_cap:
        return None
    goals = sorted({g for m in per_cap.values() for g in m})
    mat = np.full((len(goals), len(caps)), np.nan)
    for j, cap in enumerate(caps):
        for i, g in enumerate(goals):
            vals = per_cap.get(cap, {}).get(g)
            if vals:
                mat[i, j] = float(np.mean(vals))
    return goals, caps, mat


def _goal_regret_from_stats(run_dir: Path) -> dict[tuple[int, int], dict[int, list[float]]]:
    path = run_dir / "strategy_stats.json"
    if not path.exists():
        return {}
    try:
        stats = files.read_json(path)
    except (ValueError, OSError) as e:
        log.warning("cannot read %s: %s", path, e)
        return {}
    out: dict[tuple[int, int], dict[int, list[float]]] = {}
    for exp in stats.get("experiments", []) if isinstance(stats, dict) else []:
        h, b = exp.get("hidden_dim"), exp.get("buffer_size")
        if not isinstance(h, int) or not isinstance(b, int):
            continue
        for g, agg in (exp.get("goals") or {}).items():
            val = agg.get("avg_regret") if isinstance(agg, dict) else None
            if isinstance(val, (int, float)) and str(g).isdigit():
                out.setdefault((h, b), {}).setdefault(int(g), []).append(float(val))
    return out


def plot_goal_heatmap(d: PlotData, dpi: int):
    """Returns the figure of avg regret per goal (rows) and capacity (columns)."""
    fig = new_figure(figsize=(max(6.4, 0.5 * len(d.groups) + 2.5), 4.2), dpi=dpi)
    ax = fig.subplots()
    fig.subplots_adjust(bottom=0.2)  # room for the two-line capacity labels
    data = _goal_matrix(d)
    if data is None:
        empty_note(ax, "no per-goal regret yet")
    else:
        goals, caps, mat = data
        im = ax.imshow(mat, aspect="auto", cmap="magma_r", interpolation="nearest", origin="lower")
        fig.colorbar(im, ax=ax, label="avg regret")
        labels = [f"h{h}\nb{b}" for h, b in caps]
        ax.set_xticks(range(len(caps)), labels, fontsize=7)
        ax.set_yticks(range(len(goals)), [str(g) for g in goals])
        rec = (d.recommended.get("hidden_dim"), d.recommended.get("buffer_size"))
        if rec in caps:
            j = caps.index(rec)
            from matplotlib.patches import Rectangle

            ax.add_patch(
                Rectangle((j - 0.5, -0.5), 1, len(goals), fill=False, edgecolor="cyan", linewidth=2.5, label="recommended")
            )
            ax.get_xticklabels()[j].set_fontweight("bold")
            ax.legend(loc="upper right", fontsize=7)
    ax.set_xlabel("capacity (hidden_dim, buffer_size), increasing")
    ax.set_ylabel("goal id")
    set_title(ax, "Avg regret per goal and capacity")
    return fig


def plot_val_mse(d: PlotData, dpi: int):
    """Returns the figure of world-model validation MSE against hidden_dim, with t bands over seeds."""
    fig = new_figure(dpi=dpi)
    ax = fig.subplots()
    drew = False
    for b in d.buffer_sizes:
        hs, y, lo, hi = [], [], [], []
        for h in d.hidden_dims:
            band = _seed_band([e.val_mse for e in d.groups.get((h, b), [])])
            if band is not None and band[0] > 0:
                hs.append(h)
                y.append(band[0])
                lo.append(max(band[1], band[0] * 1e-3))
                hi.append(band[2])
        if hs:
            drew = True
            (line,) = ax.plot(hs, y, marker="o", label=f"buffer_size={b}")
            ax.fill_between(hs, lo, hi, color=line.get_color(), alpha=0.2, linewidth=0)
    if drew:
        ax.set_yscale("log")
    else:
        empty_note(ax, "no world_model/val_mse yet")
    _mark_recommended(ax, d.recommended.get("hidden_dim"), "hidden_dim")
    _log2_axis(ax, d.hidden_dims)
    ax.set_xlabel("hidden_dim (log scale)")
    ax.set_ylabel("world model validation MSE (log scale)")
    set_title(ax, "Model error against capacity")
    _legend(ax)
    return fig


def plot_regret_by_epoch(d: PlotData, dpi: int):
    """Returns the figure of ``regret/avg`` by epoch, one line per variant (diverged ones dotted grey)."""
    import matplotlib as mpl
    from matplotlib.lines import Line2D

    fig = new_figure(dpi=dpi)
    ax = fig.subplots()
    widths = sorted({v.hidden_dim for v in d.variants})
    cmap = mpl.colormaps["viridis"]
    color = {h: cmap(i / max(1, len(widths) - 1)) for i, h in enumerate(widths)}
    styles = ["-", "--", ":", "-."]
    bstyle = {b: styles[i % len(styles)] for i, b in enumerate(sorted({v.buffer_size for v in d.variants}))}
    rec = (d.recommended.get("hidden_dim"), d.recommended.get("buffer_size"))
    from matplotlib.collections import LineCollection

    # One collection per line style instead of one Line2D per variant: 64 variants draw fast.
    groups: dict[str, tuple[list, list, list]] = {}
    for v in d.variants:
        s = v.series.get(REGRET_TAG)
        if s is None or len(s[0]) == 0:
            continue
        if v.diverged:
            style, col, lw = ":", "0.6", 0.8
        else:
            style, col = bstyle[v.buffer_size], color[v.hidden_dim]
            lw = 2.2 if (v.hidden_dim, v.buffer_size) == rec else 0.9
        segs, cols, lws = groups.setdefault(style, ([], [], []))
        segs.append(np.column_stack([s[0], s[1]]))
        cols.append(col)
        lws.append(lw)
    for style, (segs, cols, lws) in groups.items():
        ax.add_collection(LineCollection(segs, colors=cols, linewidths=lws, linestyles=style, alpha=0.85))
    drew = bool(groups)
    if drew:
        ax.autoscale_view()
    if not drew:
        empty_note(ax)
    handles = [Line2D([], [], color=color[h], label=f"hidden_dim={h}") for h in widths]
    if len(bstyle) > 1:
        handles += [Line2D([], [], color="k", linestyle=ls, label=f"buffer_size={b}") for b, ls in bstyle.items()]
    if rec[0] is not None:
        handles.append(Line2D([], [], color="k", linewidth=2.2, label=f"recommended h{rec[0]}-b{rec[1]}"))
    if any(v.diverged for v in d.variants):
        handles.append(Line2D([], [], color="0.6", linestyle=":", label="diverged (excluded)"))
    if handles:
        ax.legend(handles=handles, fontsize=7, loc="upper right")
    ax.set_xlabel("epoch")
    ax.set_ylabel("avg regret (regret/avg)")
    set_title(ax, f"Regret by epoch, {len(d.variants)} variants")
    return fig


EVIDENCE_PLOTS: dict[str, Callable[[PlotData, int], Any]] = {
    "regret_vs_hidden_dim.png": plot_regret_vs_hidden,
    "advantage_vs_hidden_dim.png": plot_advantage_vs_hidden,
    "regret_vs_buffer_size.png": plot_regret_vs_buffer,
    "goal_regret_heatmap.png": plot_goal_heatmap,
    "val_mse_vs_capacity.png": plot_val_mse,
    "regret_by_epoch.png": plot_regret_by_epoch,
}
"""The evidence plots by PNG name, in the dashboard's order: ``plot(data, dpi) -> Figure``."""
