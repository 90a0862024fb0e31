"""The dashboard of a data-only sweep, whose ``decision.json`` says ``"decided_on": "model_error"``.

Such a run has no regret to plot: its decision is on world-model error, and these plots draw what
that decision used, read from ``world_model_stats.json`` (each variant's entry of the decision's
epoch) and ``decision.json``:

- ``val_mse_vs_width.png``: validation MSE per width, every variant a point (one colour per
  buffer size) and the mean over buffer sizes and seeds a line, the recommended width marked;
  beside it the gain in that mean from each width to the next against ``epsilon``, each step
  marked kept (below epsilon) or not: the rule that picked the width;
- ``goal_val_mse_vs_width.png``: the mean validation MSE per goal and width;
- ``k_step_mse_vs_width.png``: the mean open-loop k-step MSE per horizon and width (only where
  the held-out rows held k-step sequences);
- ``reward_mse_vs_width.png``: the reward head's held-out MSE per width, with the termination
  head's cross-entropy beside it where learned (only where the models learned reward heads).

:func:`model_error_table` returns the numbers the plots draw; :func:`figures` the ``Figure``
objects (matplotlib's Agg canvas, never pyplot).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Collection, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from augnes_jax import files
from augnes_jax.dashboard_plots import empty_note, new_figure, set_title
from augnes_jax.errors import UserError

__all__ = ["MODEL_ERROR_PLOTS", "ModelErrorTable", "decided_on_model_error", "figures", "model_error_table"]

MODEL_ERROR_PLOTS = ("val_mse_vs_width.png", "goal_val_mse_vs_width.png", "k_step_mse_vs_width.png",
                     "reward_mse_vs_width.png")


def decided_on_model_error(run_dir: str | Path) -> bool:
    """Returns whether the run's ``decision.json`` says it decided on model error (a data-only sweep)."""
    path = Path(run_dir) / "decision.json"
    if not path.is_file():
        return False
    try:
        doc = files.read_json(path)
    except (ValueError, OSError):
        return False
    return isinstance(doc, dict) and doc.get("decided_on") == "model_error"


def _finite_mean(values: Iterable[Any]) -> float | None:
    v = [float(x) for x in values if isinstance(x, (int, float)) and math.isfinite(x)]
    return float(np.mean(v)) if v else None


@dataclasses.dataclass(frozen=True)
class ModelErrorTable:
    """Every variant's model errors at the decision's epoch, and the decision.

    Attributes:
      epoch: the epoch the decision was taken on.
      variants: one row per variant: ``name``, ``hidden_dim``, ``buffer_size``, ``seed``,
        ``val_mse``, ``per_goal_mse`` (``{goal: mse}``), ``k_step_mse`` (``{k: mse}``) and, where
        learned, ``reward_mse`` and ``termination_bce`` (None: not finite or absent).
      decision: the ``decision.json`` document.
    """

    epoch: int
    variants: list[dict[str, Any]]
    decision: dict[str, Any]

    @property
    def widths(self) -> list[int]:
        """Returns the hidden_dims, increasing."""
        return sorted({v["hidden_dim"] for v in self.variants})

    def mean(self, metric: str, key: str | None = None) -> dict[int, float]:
        """Returns per width the mean of ``metric`` (``metric[key]`` for a dict) over its variants' finite values.

        Widths with no finite value are left out.
        """
        out = {}
        for w in self.widths:
            rows = [v.get(metric) for v in self.variants if v["hidden_dim"] == w]
            m = _finite_mean((r or {}).get(key) if key is not None else r for r in rows)
            if m is not None:
                out[w] = m
        return out

    def keys(self, metric: str) -> list[str]:
        """Returns the keys of a dict-valued metric over every variant, in numeric order."""
        return sorted({k for v in self.variants for k in (v.get(metric) or {})}, key=int)


def model_error_table(run_dir: str | Path) -> ModelErrorTable:
    """Returns the model errors a data-only run's decision used.

    Raises:
      UserError: ``decision.json`` or ``world_model_stats.json`` is missing or unreadable.
    """
    run_dir = Path(run_dir)
    docs = {}
    for name in ("decision.json", "world_model_stats.json"):
        try:
            docs[name] = files.read_json(run_dir / name)
        except (ValueError, OSError) as e:
            raise UserError(f"{run_dir / name}: cannot read ({e})") from None
    decision, stats = docs["decision.json"], docs["world_model_stats.json"]
    epoch = decision.get("epoch")
    rows = []
    for name, v in sorted((stats.get("variants") or {}).items()):
        entries = v.get("epochs") or []
        entry = next((e for e in entries if e.get("epoch") == epoch), entries[-1] if entries else {})
        rows.append({"name": name, **{k: v.get(k) for k in ("hidden_dim", "buffer_size", "seed")},
                     **{k: entry.get(k) for k in ("val_mse", "reward_mse", "termination_bce")},
                     "per_goal_mse": entry.get("per_goal_mse") or {}, "k_step_mse": entry.get("k_step_mse") or {}})
    return ModelErrorTable(epoch=int(epoch) if isinstance(epoch, int) else -1, variants=rows, decision=decision)


# ------------------------------------------------------------------------------------ plots


def _width_axis(ax, widths: list[int]) -> None:
    ax.set_xscale("log", base=2)
    if widths:
        ax.set_xticks(widths, [str(w) for w in widths])
        ax.xaxis.minorticks_off()
    ax.set_xlabel("hidden_dim (log scale)")


def _mark_recommended(ax, t: ModelErrorTable) -> None:
    width = (t.decision.get("recommended") or {}).get("hidden_dim")
    if isinstance(width, int):
        ax.axvline(width, color="crimson", linestyle="--", linewidth=1.2, label=f"recommended hidden_dim={width}")


def _legend(ax) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="best")  # a few points per axes: the search is cheap


def _log_y(ax, values: Iterable[float]) -> None:
    """Sets a logarithmic y axis where the values are positive and span a decade or more."""
    values = list(values)
    if values and min(values) > 0 and max(values) >= 10 * min(values):
        ax.set_yscale("log")


def _variant_points(ax, t: ModelErrorTable, metric: str) -> None:
    """Draws every variant's finite ``metric`` as a point, one colour per buffer size."""
    for b in sorted({v["buffer_size"] for v in t.variants}):
        pts = [(v["hidden_dim"], v[metric]) for v in t.variants
               if v["buffer_size"] == b and isinstance(v.get(metric), (int, float))]
        if pts:
            x, y = zip(*pts, strict=True)
            ax.scatter(x, y, s=18, alpha=0.7, label=f"variant, buffer_size={b}")


def _mean_line(ax, means: dict[int, float], label: str, **kw) -> None:
    ax.plot(list(means), list(means.values()), marker="o", label=label, **kw)


def _gain_panel(ax, t: ModelErrorTable) -> None:
    """Draws each width step's gain in mean val-MSE against epsilon: the decision's rule."""
    gains = [g for g in t.decision.get("gains") or [] if isinstance(g.get("gain"), (int, float))]
    eps = t.decision.get("epsilon")
    kind = "relative" if t.decision.get("relative", True) else "absolute"
    if not gains:
        empty_note(ax, "one width: nothing to compare")
    labels = [f"{g['from']['hidden_dim']}->{g['to']['hidden_dim']}" for g in gains]
    colors = ["tab:green" if g.get("below_epsilon") else "tab:orange" for g in gains]
    bars = ax.bar(range(len(gains)), [g["gain"] for g in gains], color=colors,
                  label=f"{kind} gain (green: below epsilon)")
    ax.bar_label(bars, fmt="%.3g", fontsize=8)
    ax.set_xticks(range(len(gains)), labels)
    if isinstance(eps, (int, float)):
        ax.axhline(eps, color="k", linestyle=":", linewidth=1.2, label=f"epsilon={eps:g}")
    ax.set_xlabel("hidden_dim step")
    ax.set_ylabel(f"{kind} val-MSE gain")
    rec = (t.decision.get("recommended") or {}).get("hidden_dim")
    title = (f"keep hidden_dim {rec}: its gain to the next width is below epsilon"
             if t.decision.get("decision") == "keep" else f"expand beyond {rec}: every gain is at least epsilon")
    set_title(ax, title, fontsize=9)
    _legend(ax)


def plot_val_mse(t: ModelErrorTable, dpi: int):
    """Returns validation MSE per width (variant points, mean line, recommended mark) and the gain rule."""
    fig = new_figure(figsize=(11.0, 4.2), dpi=dpi)
    ax, gain_ax = fig.subplots(1, 2, gridspec_kw={"width_ratios": [3, 2]})
    fig.subplots_adjust(left=0.07, right=0.98, wspace=0.28)
    means = t.mean("val_mse")
    if not means:
        empty_note(ax, "no finite val_mse")
    _variant_points(ax, t, "val_mse")
    _mean_line(ax, means, "mean over buffer sizes and seeds", color="k")
    _mark_recommended(ax, t)
    _log_y(ax, means.values())
    _width_axis(ax, t.widths)
    ax.set_ylabel("held-out validation MSE")
    set_title(ax, f"Model error against width (epoch {t.epoch})")
    _legend(ax)
    _gain_panel(gain_ax, t)
    return fig


def _lines_by_key(t: ModelErrorTable, metric: str, key_label: str, ylabel: str, title: str, dpi: int):
    fig = new_figure(dpi=dpi)
    ax = fig.subplots()
    drawn: list[float] = []
    for key in t.keys(metric):
        means = t.mean(metric, key)
        if means:
            _mean_line(ax, means, f"{key_label}={key}")
            drawn += means.values()
    if not drawn:
        empty_note(ax, f"no finite {metric}")
    _mark_recommended(ax, t)
    _log_y(ax, drawn)
    _width_axis(ax, t.widths)
    ax.set_ylabel(ylabel)
    set_title(ax, title)
    _legend(ax)
    return fig


def plot_goal_val_mse(t: ModelErrorTable, dpi: int):
    """Returns the mean validation MSE per goal against width, one line per goal."""
    return _lines_by_key(t, "per_goal_mse", "goal", "held-out validation MSE (mean over variants)",
                         "Model error per goal against width", dpi)


def plot_k_step_mse(t: ModelErrorTable, dpi: int):
    """Returns the mean open-loop k-step MSE against width, one line per horizon k."""
    return _lines_by_key(t, "k_step_mse", "k", "open-loop k-step MSE (mean over variants)",
                         "k-step model error against width", dpi)


def plot_reward_mse(t: ModelErrorTable, dpi: int):
    """Returns the reward head's MSE per width (and the termination head's cross-entropy where learned)."""
    heads = [m for m in ("reward_mse", "termination_bce") if t.mean(m)]
    fig = new_figure(figsize=(6.4 * len(heads), 4.2), dpi=dpi)
    axes = np.atleast_1d(fig.subplots(1, len(heads)))
    for ax, metric in zip(axes, heads, strict=True):
        _variant_points(ax, t, metric)
        _mean_line(ax, t.mean(metric), "mean over buffer sizes and seeds", color="k")
        _mark_recommended(ax, t)
        _width_axis(ax, t.widths)
        ax.set_ylabel(f"held-out {metric}")
        set_title(ax, f"{'Reward' if metric == 'reward_mse' else 'Termination'} head error against width")
        _legend(ax)
    return fig


_PLOTS = dict(zip(MODEL_ERROR_PLOTS, (plot_val_mse, plot_goal_val_mse, plot_k_step_mse, plot_reward_mse),
                  strict=True))


def _present(t: ModelErrorTable, name: str) -> bool:
    if name == "k_step_mse_vs_width.png":
        return any(t.mean("k_step_mse", k) for k in t.keys("k_step_mse"))
    if name == "reward_mse_vs_width.png":
        return bool(t.mean("reward_mse"))
    return True


def figures(run_dir: str | Path, *, dpi: int = 80, names: Collection[str] | None = None) -> dict[str, Any]:
    """Returns the data-only run's figures by PNG name, in ``MODEL_ERROR_PLOTS`` order (nothing written).

    The k-step and reward figures are left out where the run has no such errors; ``names``
    limits which figures are drawn.
    """
    wanted = set(MODEL_ERROR_PLOTS if names is None else names)
    if unknown := wanted - set(MODEL_ERROR_PLOTS):
        raise ValueError(f"unknown dashboard figures for a data-only run: {sorted(unknown)}")
    t = model_error_table(run_dir)
    return {name: plot(t, dpi) for name, plot in _PLOTS.items() if name in wanted and _present(t, name)}
