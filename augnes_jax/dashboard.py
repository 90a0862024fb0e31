"""Capacity dashboard: PNG plots of a sweep's capacity-performance evidence.

``python -m augnes_jax.dashboard RUN_DIR [--out DIR]`` writes into ``RUN/plots/``:

- ``regret_vs_hidden_dim.png``: avg regret against hidden_dim, one line per buffer_size, with
  95% bands (the controller's interval method);
- ``advantage_vs_hidden_dim.png``: avg advantage against hidden_dim;
- ``regret_vs_buffer_size.png``: avg regret against buffer_size, one line per hidden_dim;
- ``goal_regret_heatmap.png``: avg regret per goal (rows) and capacity (columns);
- ``val_mse_vs_capacity.png``: world-model validation MSE against hidden_dim;
- ``regret_by_epoch.png``: ``regret/avg`` by epoch, one line per variant;
- ``transition_pattern.png``: true against predicted Δs over a 2-D slice of the state space,
  for the best and the smallest model (needs checkpoints and the environment's
  ``transition_slice``; skipped with a warning when they are not available).

The data come from the TensorBoard runs through the MetaJudgmentController's reader (the same
evidence windows it decides on); ``strategy_stats.json`` fills the goal heatmap when the runs
carry no per-goal tags. Capacity axes are logarithmic and the controller's recommended capacity
is marked (from ``decision.json`` when present, else computed). Rendering uses matplotlib's Agg
canvas through ``Figure`` objects, never pyplot's global state; :func:`figures` returns them
unsaved (what each plot draws), :func:`render` writes them.
"""

from __future__ import annotations

import io
import logging
import math
import os
import sys
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from augnes_jax import files
from augnes_jax.cli import ArgumentParser, run_command
from augnes_jax.errors import UserError
from augnes_jax.meta import (
    GOAL_REGRET_RE,
    REGRET_TAG,
    MetaJudgmentController,
    VariantData,
    VariantEvidence,
    avg_regret_ci,
    t_quantile_975,
)

log = logging.getLogger(__name__)

PLOTS = (
    "regret_vs_hidden_dim.png",
    "advantage_vs_hidden_dim.png",
    "regret_vs_buffer_size.png",
    "goal_regret_heatmap.png",
    "val_mse_vs_capacity.png",
    "regret_by_epoch.png",
    "transition_pattern.png",
)
_FIGSIZE = (6.4, 4.2)


# ---------------------------------------------------------------------------------- helpers


def _figure(figsize=_FIGSIZE, dpi: int = 80):
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure, SubplotParams

    # Fixed margins that fit the labels: cheaper than a layout engine, re-run every epoch.
    return Figure(figsize=figsize, dpi=dpi, subplotpars=SubplotParams(left=0.12, right=0.96, bottom=0.13, top=0.91))


def _save(fig, path: Path) -> Path:
    """Returns ``path`` after writing the figure as PNG atomically (temp file + rename)."""
    buf = io.BytesIO()
    # Fast zlib level: the PNGs are small and re-rendered every epoch.
    fig.savefig(buf, format="png", pil_kwargs={"compress_level": 1})
    return files.write_bytes_atomic(path, buf.getvalue())


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


def _title(ax, text: str, **kwargs: Any) -> None:
    # An explicit y skips matplotlib's automatic title placement, a costly tight-bbox search.
    ax.set_title(text, y=1.0, **kwargs)


def _empty(ax, text: str = "no evidence yet") -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=12)


def _group(evidence: Sequence[VariantEvidence]) -> dict[tuple[int, int], list[VariantEvidence]]:
    out: dict[tuple[int, int], list[VariantEvidence]] = {}
    for e in evidence:
        out.setdefault((e.hidden_dim, e.buffer_size), []).append(e)
    return out


def _seed_band(values: Sequence[float]) -> tuple[float, float, float] | None:
    """Returns ``(mean, lo, hi)`` of a Student-t 95% interval over seeds (None if no finite value)."""
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], np.float64)
    if len(v) == 0:
        return None
    m = float(v.mean())
    if len(v) < 2:
        return (m, m, m)
    half = t_quantile_975(len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v))
    return (m, m - half, m + half)


class _Data:
    """The evidence the plots share, computed once per render."""

    def __init__(self, ctrl: MetaJudgmentController, recommended: dict[str, Any], bootstrap_samples: int):
        self.variants: list[VariantData] = list(ctrl.variants)
        self.evidence: list[VariantEvidence] = list(ctrl.evidence)
        self.recommended = recommended
        self.groups = _group(self.evidence)
        self.hidden_dims = sorted({h for h, _ in self.groups})
        self.buffer_sizes = sorted({b for _, b in self.groups})
        self.regret_ci: dict[tuple[int, int], tuple[float, float]] = {}
        for i, (cap, evs) in enumerate(sorted(self.groups.items())):
            rng = np.random.default_rng([ctrl.seed, 7, i])
            self.regret_ci[cap] = avg_regret_ci(evs, bootstrap_samples=bootstrap_samples, rng=rng)

    def mean(self, cap: tuple[int, int], attr: str) -> float | None:
        vals = [getattr(e, attr) for e in self.groups.get(cap, [])]
        vals = [v for v in vals if v is not None and math.isfinite(v)]
        return float(np.mean(vals)) if vals else None


def _mark_recommended(ax, value: int | None, label: str) -> None:
    if value is not None:
        ax.axvline(value, color="crimson", linestyle="--", linewidth=1.2, label=f"recommended {label}={value}")


# ------------------------------------------------------------------------------------ plots


def _plot_regret_vs_hidden(d: _Data, dpi: int):
    fig = _figure(dpi=dpi)
    ax = fig.subplots()
    if not d.evidence:
        _empty(ax)
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
    _title(ax, "Regret against model width")
    _legend(ax)
    return fig


def _plot_advantage_vs_hidden(d: _Data, dpi: int):
    fig = _figure(dpi=dpi)
    ax = fig.subplots()
    if not d.evidence:
        _empty(ax)
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
    _title(ax, "Advantage against model width")
    _legend(ax)
    return fig


def _plot_regret_vs_buffer(d: _Data, dpi: int):
    fig = _figure(dpi=dpi)
    ax = fig.subplots()
    if not d.evidence:
        _empty(ax)
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
    _title(ax, "Regret against replay buffer size")
    _legend(ax)
    return fig


def _goal_matrix(d: _Data, run_dir: Path) -> tuple[list[int], list[tuple[int, int]], np.ndarray] | None:
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
        per_cap = _goal_regret_from_stats(run_dir)
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


def _plot_goal_heatmap(d: _Data, dpi: int, run_dir: Path):
    fig = _figure(figsize=(max(6.4, 0.5 * len(d.groups) + 2.5), 4.2), dpi=dpi)
    ax = fig.subplots()
    fig.subplots_adjust(bottom=0.2)  # room for the two-line capacity labels
    data = _goal_matrix(d, run_dir)
    if data is None:
        _empty(ax, "no per-goal regret yet")
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
    _title(ax, "Avg regret per goal and capacity")
    return fig


def _plot_val_mse(d: _Data, dpi: int):
    fig = _figure(dpi=dpi)
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
        _empty(ax, "no world_model/val_mse yet")
    _mark_recommended(ax, d.recommended.get("hidden_dim"), "hidden_dim")
    _log2_axis(ax, d.hidden_dims)
    ax.set_xlabel("hidden_dim (log scale)")
    ax.set_ylabel("world model validation MSE (log scale)")
    _title(ax, "Model error against capacity")
    _legend(ax)
    return fig


def _plot_regret_by_epoch(d: _Data, dpi: int):
    import matplotlib as mpl
    from matplotlib.lines import Line2D

    fig = _figure(dpi=dpi)
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
        _empty(ax)
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
    _title(ax, f"Regret by epoch, {len(d.variants)} variants")
    return fig


# ----------------------------------------------------------------------- transition pattern

WorldModelLoader = Callable[[Path, str], Any]
EnvFactory = Callable[[str], Any]


def _default_sources() -> tuple[WorldModelLoader | None, EnvFactory | None]:
    loader = env_factory = None
    try:
        import augnes_jax

        loader = getattr(augnes_jax, "load_world_model", None)
        if loader is None:
            from augnes_jax.checkpoint import load_world_model as loader
    except ImportError as e:
        log.warning("transition_pattern.png skipped: no world-model loader (%s)", e)
    try:
        from augnes_jax.envs import make as env_factory
    except ImportError as e:
        log.warning("transition_pattern.png skipped: no environment registry (%s)", e)
    return loader, env_factory


def _slice_grid(info: dict, num: int) -> tuple[np.ndarray, np.ndarray, bool]:
    """Returns ``(xs [nx], ys [ny], discrete)`` for a slice whose flat index is ``row * nx + col``."""
    if info.get("grid") is not None:
        g = np.asarray(info["grid"], np.float64)
        return g, g, False
    if info.get("grid_shape") is not None:
        ny, nx = (int(x) for x in info["grid_shape"])
        return np.arange(nx, dtype=np.float64), np.arange(ny, dtype=np.float64), True
    n = math.isqrt(num)
    return np.arange(n, dtype=np.float64), np.arange(n, dtype=np.float64), False


def _arrow_dims(info: dict, d: int) -> tuple[int, int]:
    """Returns the state dims drawn as arrow (x, y) components, matched by name to the axes."""
    dims = [int(x) for x in (info.get("dims") or [0, min(1, d - 1)])][:2]
    names = list(info.get("dim_names") or [])
    xname, yname = str(info.get("x", "")), str(info.get("y", ""))
    named = {n: i for i, n in enumerate(names)}
    if xname in named and yname in named:
        return named[xname], named[yname]
    return dims[0], dims[1] if len(dims) > 1 else dims[0]


def _predict(model: Any, obs: np.ndarray, action: np.ndarray) -> np.ndarray:
    pred = np.asarray(model.predict_delta(obs, action), np.float64)
    if pred.shape[0] != obs.shape[0]:
        import jax

        pred = np.asarray(jax.vmap(model.predict_delta)(obs, action), np.float64)
    return pred


def _pick_models(d: _Data) -> list[tuple[str, list[VariantEvidence]]]:
    """Returns the roles drawn ("best", "smallest"), each with its candidates in order of preference.

    Later candidates stand in where an earlier one is not in the checkpoint (an ``auto`` run
    renames the variants it grows).
    """
    if not d.evidence:
        return []
    best = sorted(d.evidence, key=lambda e: (e.avg_regret, e.hidden_dim, e.name))
    smallest = sorted(d.evidence, key=lambda e: (e.num_params or e.hidden_dim, e.hidden_dim, e.buffer_size, e.avg_regret))
    return [("best", best), ("smallest", smallest)]


def _plot_transition(
    d: _Data, dpi: int, run_dir: Path, loader: WorldModelLoader | None, env_factory: EnvFactory | None, n: int,
):  # fmt: skip
    if loader is None or env_factory is None:
        return None
    picks = _pick_models(d)
    if not picks:
        log.warning("transition_pattern.png skipped: no evidence to pick a model from")
        return None
    from augnes_jax.checkpoint import UnknownVariantError

    panels = []
    for role, candidates in picks:
        for i, ev in enumerate(candidates):
            try:
                model = loader(run_dir, ev.name)
                break
            except UnknownVariantError as e:
                if i + 1 == len(candidates):
                    log.warning("transition_pattern.png skipped: no variant of the run is in its checkpoint (%s)", e)
                    return None
            except Exception as e:  # a missing or unreadable checkpoint must not cost the other plots
                log.warning("transition_pattern.png skipped: cannot load %s (%s: %s)", ev.name, type(e).__name__, e)
                return None
        try:
            env = env_factory(model.meta["env"])
            slicer = getattr(env, "transition_slice", None)
            if slicer is None:
                log.warning("transition_pattern.png skipped: environment %s has no transition_slice", model.meta["env"])
                return None
            obs, action, true_delta, info = slicer(env.default_params(), n)
            obs, action = np.asarray(obs), np.asarray(action)
            true_delta = np.asarray(true_delta, np.float64)
            pred = _predict(model, obs, action)
        except Exception as e:  # a missing or unreadable checkpoint must not cost the other plots
            log.warning("transition_pattern.png skipped: cannot load %s (%s: %s)", ev.name, type(e).__name__, e)
            return None
        panels.append((role, ev, true_delta, pred, dict(info or {})))

    fig = _figure(figsize=(11.0, 4.6), dpi=dpi)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (role, ev, true_delta, pred, info) in zip(axes, panels, strict=True):
        xs, ys, discrete = _slice_grid(info, len(true_delta))
        nx, ny = len(xs), len(ys)
        err = np.linalg.norm(pred - true_delta, axis=1)
        if nx * ny != len(err):
            _empty(ax, f"slice of {len(err)} points is not a grid")
            continue
        grid_err = err.reshape(ny, nx)
        dx = (xs[1] - xs[0]) if nx > 1 else 1.0
        dy = (ys[1] - ys[0]) if ny > 1 else 1.0
        extent = (xs[0] - dx / 2, xs[-1] + dx / 2, ys[0] - dy / 2, ys[-1] + dy / 2)
        im = ax.imshow(grid_err, origin="lower", extent=extent, aspect="auto", cmap="Reds", interpolation="nearest")
        fig.colorbar(im, ax=ax, label="|predicted Δs - true Δs|")
        ix, iy = _arrow_dims(info, true_delta.shape[1])
        gx, gy = np.meshgrid(xs, ys, indexing="xy")
        step = max(1, math.ceil(max(nx, ny) / 12))  # at most 12 arrows per side: readable
        sl = (slice(None, None, step), slice(None, None, step))
        scale_ref = max(np.abs(true_delta[:, [ix, iy]]).max(), np.abs(pred[:, [ix, iy]]).max(), 1e-12)
        scale = scale_ref / (0.8 * step * min(abs(dx), abs(dy)))
        for field, colour, label in ((true_delta, "black", "true Δs"), (pred, "tab:blue", "predicted Δs")):
            u = field[:, ix].reshape(ny, nx)[sl]
            v = field[:, iy].reshape(ny, nx)[sl]
            ax.quiver(gx[sl], gy[sl], u, v, color=colour, angles="xy", scale_units="xy", scale=scale, width=0.004, label=label)
        if discrete:
            ax.invert_yaxis()
        names = list(info.get("dim_names") or [])
        comp = f"arrows: (Δ{names[ix]}, Δ{names[iy]})" if max(ix, iy) < len(names) else f"arrows: dims ({ix}, {iy})"
        ax.set_xlabel(f"{info.get('x', 'slice x')}   [{comp}]")
        ax.set_ylabel(str(info.get("y", "slice y")))
        mse = float(np.mean((pred - true_delta) ** 2))
        _title(ax, f"{role}: {ev.name} (slice MSE {mse:.3g})", fontsize=10)
        ax.legend(loc="upper right", fontsize=7)
    fig.suptitle("Transition pattern: true vs predicted Δs over a 2-D state slice")
    return fig


# ------------------------------------------------------------------------------------ render


def _k(d: _Data) -> int:
    return max((len(e.steps) for e in d.evidence), default=0)


def _legend(ax) -> None:
    handles, _ = ax.get_legend_handles_labels()
    if handles:
        ax.legend(fontsize=8, loc="upper right")  # "best" costs a search over every data point


def _recommended(run_dir: Path, ctrl: MetaJudgmentController, prefer_controller: bool) -> dict[str, Any]:
    path = run_dir / "decision.json"
    if not prefer_controller and path.exists():
        try:
            rec = files.read_json(path).get("recommended") or {}
            return {"hidden_dim": rec.get("hidden_dim"), "buffer_size": rec.get("buffer_size")}
        except (ValueError, OSError, AttributeError) as e:
            log.warning("cannot read %s (%s); using the controller's decision", path, e)
    decision = ctrl.decision if ctrl.decision is not None else ctrl.update()
    return dict(decision.recommended)


def figures(
    run_dir: str | os.PathLike,
    *,
    controller: MetaJudgmentController | None = None,
    epsilon: float | None = None,
    world_model_loader: WorldModelLoader | None = None,
    env_factory: EnvFactory | None = None,
    slice_points: int = 21,
    bootstrap_samples: int = 500,
    dpi: int = 80,
    names: Collection[str] | None = None,
) -> dict[str, Any]:
    """Returns the dashboard's matplotlib ``Figure`` objects by PNG name, in ``PLOTS`` order.

    Nothing is written. ``transition_pattern.png`` is left out when its sources are not
    available. ``names`` (PNG names of ``PLOTS``) limits which figures are drawn; the other
    arguments are those of :func:`render`.
    """
    wanted = set(PLOTS if names is None else names)
    if unknown := wanted - set(PLOTS):
        raise ValueError(f"unknown dashboard figures: {sorted(unknown)}")
    run_dir = Path(run_dir)
    given = controller is not None
    if controller is None:
        controller = _controller_for(run_dir, epsilon)
    if controller.decision is None:
        controller.update()
    d = _Data(controller, _recommended(run_dir, controller, prefer_controller=given), bootstrap_samples)
    draw = dict(zip(PLOTS[:6], [
        lambda: _plot_regret_vs_hidden(d, dpi),
        lambda: _plot_advantage_vs_hidden(d, dpi),
        lambda: _plot_regret_vs_buffer(d, dpi),
        lambda: _plot_goal_heatmap(d, dpi, run_dir),
        lambda: _plot_val_mse(d, dpi),
        lambda: _plot_regret_by_epoch(d, dpi),
    ], strict=True))  # fmt: skip
    figs = {name: plot() for name, plot in draw.items() if name in wanted}
    if PLOTS[6] not in wanted:
        return figs
    if world_model_loader is None or env_factory is None:
        default_loader, default_env = _default_sources()
        world_model_loader = world_model_loader or default_loader
        env_factory = env_factory or default_env
    t = _plot_transition(d, dpi, run_dir, world_model_loader, env_factory, slice_points)
    if t is not None:
        figs[PLOTS[6]] = t
    return figs


def render(
    run_dir: str | os.PathLike,
    *,
    out_dir: str | os.PathLike | None = None,
    controller: MetaJudgmentController | None = None,
    epsilon: float | None = None,
    world_model_loader: WorldModelLoader | None = None,
    env_factory: EnvFactory | None = None,
    slice_points: int = 21,
    bootstrap_samples: int = 500,
    dpi: int = 80,
) -> list[Path]:
    """Returns the paths of the PNGs written for ``run_dir`` (in ``PLOTS`` order).

    Args:
      run_dir: the run directory (``RUN/``).
      out_dir: where the PNGs go (default ``RUN/plots``).
      controller: an updated controller to reuse (its reader and evidence); by default one is
        built here with the settings of ``decision.json``, else of the run's config.
      epsilon: overrides the default controller's epsilon.
      world_model_loader, env_factory: sources for the transition plot; by default
        ``augnes_jax.load_world_model`` and ``augnes_jax.envs.make``.
      slice_points: grid points per side of the transition slice.
      bootstrap_samples: replicates of the regret bands' bootstrap.
      dpi: PNG resolution.
    """
    out = Path(out_dir) if out_dir is not None else Path(run_dir) / "plots"
    figs = figures(
        run_dir, controller=controller, epsilon=epsilon, world_model_loader=world_model_loader,
        env_factory=env_factory, slice_points=slice_points, bootstrap_samples=bootstrap_samples, dpi=dpi,
    )  # fmt: skip
    return [_save(fig, out / name) for name, fig in figs.items()]


def _controller_for(run_dir: Path, epsilon: float | None) -> MetaJudgmentController:
    """Returns a controller with the settings of the run's decision.json, else its config."""
    from augnes_jax.meta import run_settings

    settings = run_settings(run_dir)
    m = settings["meta"]
    kw: dict[str, Any] = {"epsilon": m.epsilon, "k_last": m.last_k_epochs, "relative": m.relative}
    path = run_dir / "decision.json"
    if path.exists():
        try:
            doc = files.read_json(path)
            for key, name, kind in (("epsilon", "epsilon", (int, float)), ("k_last", "k_last", int), ("relative", "relative", bool)):
                if isinstance(doc.get(key), kind) and not (kind is int and isinstance(doc.get(key), bool)):
                    kw[name] = doc[key]
        except (ValueError, OSError, AttributeError) as e:
            log.warning("cannot read %s (%s); using the run's config", path, e)
    if epsilon is not None:
        kw["epsilon"] = epsilon
    return MetaJudgmentController(run_dir, seed=settings["seed"], **kw)


def main(argv: Sequence[str] | None = None) -> int:
    """Returns the exit status of ``python -m augnes_jax.dashboard RUN_DIR [--out DIR]``."""
    from augnes_jax.config import ConfigError
    from augnes_jax.meta import _positive_float, run_dir_problem

    parser = ArgumentParser(prog="python -m augnes_jax.dashboard", description="Write the capacity dashboard PNGs.")
    parser.add_argument("run_dir", metavar="RUN_DIR")
    parser.add_argument("--out", default=None, help="output folder (default RUN_DIR/plots)")
    parser.add_argument("--epsilon", type=_positive_float, default=None, help="for the recommended mark without decision.json")
    args = parser.parse_args(argv)

    def body() -> int:
        run_dir = Path(args.run_dir)
        if (problem := run_dir_problem(run_dir)) is not None:
            raise UserError(problem)
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s", force=True)
        try:
            paths = render(run_dir, out_dir=args.out, epsilon=args.epsilon)
        except ConfigError as e:
            raise UserError(f"{run_dir / 'config.yaml'}: {e}") from None
        for p in paths:
            print(p)
        return 0

    return run_command("augnes_jax.dashboard", body)


if __name__ == "__main__":
    sys.exit(main())
