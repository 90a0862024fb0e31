"""The dashboard's transition-pattern plot: true against predicted Δs over a 2-D state slice.

Drawn for the best and the smallest model of a run, from its checkpoints and the environment's
``transition_slice``. An environment without one gets :func:`sampled_slice`: its own transitions
under a random policy, one per cell of a grid over the first two observation dimensions. The
plot is skipped with a warning (never an error) only when a checkpoint or the environment cannot
be loaded, so that does not cost the other plots.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from augnes_jax import checkpoint_meta
from augnes_jax.dashboard_plots import PlotData, empty_note, new_figure, set_title
from augnes_jax.evidence import VariantEvidence

log = logging.getLogger(__name__)

__all__ = [
    "EnvFactory",
    "WorldModelLoader",
    "arrow_dims",
    "default_sources",
    "pick_models",
    "plot_transition",
    "predict_delta",
    "sampled_slice",
    "slice_grid",
]


WorldModelLoader = Callable[[Path, str], Any]
EnvFactory = Callable[[str], Any]


def default_sources() -> tuple[WorldModelLoader | None, EnvFactory | None]:
    """Returns the package's world-model loader and environment factory (None where unavailable)."""
    loader = env_factory = None
    try:
        import augnes_jax

        loader = getattr(augnes_jax, "load_world_model", None)
        if loader is None:
            from augnes_jax.inference import load_world_model as loader
    except ImportError as e:
        log.warning("transition_pattern.png skipped: no world-model loader (%s)", e)
    try:
        from augnes_jax.envs import make as env_factory
    except ImportError as e:
        log.warning("transition_pattern.png skipped: no environment registry (%s)", e)
    return loader, env_factory


def slice_grid(info: dict, num: int) -> tuple[np.ndarray, np.ndarray, bool]:
    """Returns ``(xs [nx], ys [ny], discrete)`` for a slice whose flat index is ``row * nx + col``."""
    if info.get("grid_x") is not None:
        return np.asarray(info["grid_x"], np.float64), np.asarray(info["grid_y"], np.float64), False
    if info.get("grid") is not None:
        g = np.asarray(info["grid"], np.float64)
        return g, g, False
    if info.get("grid_shape") is not None:
        ny, nx = (int(x) for x in info["grid_shape"])
        return np.arange(nx, dtype=np.float64), np.arange(ny, dtype=np.float64), True
    n = math.isqrt(num)
    return np.arange(n, dtype=np.float64), np.arange(n, dtype=np.float64), False


def arrow_dims(info: dict, d: int) -> tuple[int, int]:
    """Returns the state dims drawn as arrow (x, y) components, matched by name to the axes."""
    dims = [int(x) for x in (info.get("dims") or [0, min(1, d - 1)])][:2]
    names = list(info.get("dim_names") or [])
    xname, yname = str(info.get("x", "")), str(info.get("y", ""))
    named = {n: i for i, n in enumerate(names)}
    if xname in named and yname in named:
        return named[xname], named[yname]
    return dims[0], dims[1] if len(dims) > 1 else dims[0]


def sampled_slice(env: Any, params: Any, n: int, episodes: int = 256, seed: int = 0):
    """Returns ``(obs[n*n, d], action[n*n, a], true_delta[n*n, d], info)`` from the env's own steps.

    Random-policy episodes over every goal are binned on an ``n x n`` grid over observation
    dimensions 0 and 1 (their observed range); each cell holds the first transition that falls in
    it (its goal in ``info["goal_id"]``), and cells no transition reached hold NaN. ``env`` has the full interface
    (:func:`augnes_jax.envs.adapt`).
    """
    import jax

    from augnes_jax.rollout import random_policy, rollout_jit

    length = int(getattr(params, "max_steps", 0) or 0) or 50
    keys = jax.random.split(jax.random.key(seed), episodes)
    goals = jax.numpy.arange(episodes) % env.num_goals
    tr = jax.device_get(rollout_jit(env, params, random_policy(env), None, keys, goals, length).transitions)
    valid = np.asarray(tr.valid).reshape(-1)
    obs = np.asarray(tr.obs, np.float64).reshape(valid.size, -1)[valid]
    nxt = np.asarray(tr.next_obs, np.float64).reshape(valid.size, -1)[valid]
    feats = np.asarray(jax.vmap(env.action_features)(jax.numpy.asarray(tr.action).reshape((valid.size,) + tr.action.shape[2:])))[valid]
    d = obs.shape[1]
    ix, iy = 0, min(1, d - 1)
    edges = [np.linspace(obs[:, i].min(), obs[:, i].max() + 1e-9, n + 1) for i in (ix, iy)]
    cx = np.clip(np.searchsorted(edges[0], obs[:, ix], side="right") - 1, 0, n - 1)
    cy = np.clip(np.searchsorted(edges[1], obs[:, iy], side="right") - 1, 0, n - 1)
    cell = cy * n + cx
    cells, first = np.unique(cell, return_index=True)
    out_obs = np.zeros((n * n, d), np.float32)
    out_act = np.zeros((n * n, feats.shape[1]), np.float32)
    delta = np.full((n * n, d), np.nan)
    out_goal = np.zeros(n * n, np.int32)
    out_obs[cells], out_act[cells], delta[cells] = obs[first], feats[first], nxt[first] - obs[first]
    out_goal[cells] = np.asarray(tr.goal_id).reshape(-1)[valid][first]
    centres = [0.5 * (e[:-1] + e[1:]) for e in edges]
    info = {"x": f"obs[{ix}]", "y": f"obs[{iy}]", "grid_x": centres[0], "grid_y": centres[1], "dims": [ix, iy],
            "goal_id": out_goal}
    return out_obs, out_act, delta, info


def predict_delta(model: Any, obs: np.ndarray, action: np.ndarray, goal_id: Any = None) -> np.ndarray:
    """Returns the model's predicted Δs ``[N, D]`` for a batch (vmapped if it predicts one row).

    A model with reward heads (``model.learn_reward``) is conditioned on ``goal_id`` (goal 0
    when None).
    """
    if getattr(model, "learn_reward", False):
        goals = np.zeros(len(obs), np.int32) if goal_id is None else np.asarray(goal_id, np.int32)
        predict = lambda o, a, g: model.predict_delta(o, a, g)  # noqa: E731
        args = (obs, action, goals)
    else:
        predict = lambda o, a: model.predict_delta(o, a)  # noqa: E731
        args = (obs, action)
    pred = np.asarray(predict(*args), np.float64)
    if pred.shape[0] != obs.shape[0]:
        import jax

        pred = np.asarray(jax.vmap(predict)(*args), np.float64)
    return pred


def pick_models(d: PlotData) -> list[tuple[str, list[VariantEvidence]]]:
    """Returns the roles drawn ("best", "smallest"), each with its candidates in order of preference.

    Later candidates stand in where an earlier one is not in the checkpoint (an ``auto`` run
    renames the variants it grows).
    """
    if not d.evidence:
        return []
    best = sorted(d.evidence, key=lambda e: (e.avg_regret, e.hidden_dim, e.name))
    smallest = sorted(d.evidence, key=lambda e: (e.num_params or e.hidden_dim, e.hidden_dim, e.buffer_size, e.avg_regret))
    return [("best", best), ("smallest", smallest)]


def plot_transition(
    d: PlotData, dpi: int, run_dir: Path, loader: WorldModelLoader | None, env_factory: EnvFactory | None, n: int,
):  # fmt: skip
    """Returns the transition-pattern figure (best and smallest model), or None when skipped."""
    if loader is None or env_factory is None:
        return None
    picks = pick_models(d)
    if not picks:
        log.warning("transition_pattern.png skipped: no evidence to pick a model from")
        return None
    from augnes_jax.checkpoint_meta import UnknownVariantError

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
            env = env_factory(checkpoint_meta.env_name(model.meta))
            slicer = getattr(env, "transition_slice", None)
            if slicer is None:
                from augnes_jax.envs import adapt

                env = adapt(env)
                obs, action, true_delta, info = sampled_slice(env, env.default_params(), n)
            else:
                obs, action, true_delta, info = slicer(env.default_params(), n)
            obs, action = np.asarray(obs), np.asarray(action)
            true_delta = np.asarray(true_delta, np.float64)
            pred = predict_delta(model, obs, action, (info or {}).get("goal_id"))
            pred[np.isnan(true_delta).any(axis=1)] = np.nan  # a cell no transition reached shows nothing
        except Exception as e:  # a missing or unreadable checkpoint must not cost the other plots
            log.warning("transition_pattern.png skipped: cannot load %s (%s: %s)", ev.name, type(e).__name__, e)
            return None
        panels.append((role, ev, true_delta, pred, dict(info or {})))

    fig = new_figure(figsize=(11.0, 4.6), dpi=dpi)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (role, ev, true_delta, pred, info) in zip(axes, panels, strict=True):
        xs, ys, discrete = slice_grid(info, len(true_delta))
        nx, ny = len(xs), len(ys)
        err = np.linalg.norm(pred - true_delta, axis=1)
        if nx * ny != len(err):
            empty_note(ax, f"slice of {len(err)} points is not a grid")
            continue
        grid_err = err.reshape(ny, nx)
        dx = (xs[1] - xs[0]) if nx > 1 else 1.0
        dy = (ys[1] - ys[0]) if ny > 1 else 1.0
        extent = (xs[0] - dx / 2, xs[-1] + dx / 2, ys[0] - dy / 2, ys[-1] + dy / 2)
        im = ax.imshow(grid_err, origin="lower", extent=extent, aspect="auto", cmap="Reds", interpolation="nearest")
        fig.colorbar(im, ax=ax, label="|predicted Δs - true Δs|")
        ix, iy = arrow_dims(info, true_delta.shape[1])
        gx, gy = np.meshgrid(xs, ys, indexing="xy")
        step = max(1, math.ceil(max(nx, ny) / 12))  # at most 12 arrows per side: readable
        sl = (slice(None, None, step), slice(None, None, step))
        scale_ref = max(np.nanmax(np.abs(true_delta[:, [ix, iy]])), np.nanmax(np.abs(pred[:, [ix, iy]])), 1e-12)
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
        mse = float(np.nanmean((pred - true_delta) ** 2))  # cells no transition reached are NaN
        set_title(ax, f"{role}: {ev.name} (slice MSE {mse:.3g})", fontsize=10)
        ax.legend(loc="upper right", fontsize=7)
    fig.suptitle("Transition pattern: true vs predicted Δs over a 2-D state slice")
    return fig
