"""Capacity dashboard: PNG plots of a sweep's capacity-performance evidence.

``python -m augnes_jax.dashboard RUN_DIR [--out DIR]`` writes into ``RUN/plots/``:

- ``regret_vs_hidden_dim.png``: avg regret against hidden_dim, one line per buffer_size, with
  95% bands (the controller's interval method);
- ``advantage_vs_hidden_dim.png``: avg advantage against hidden_dim;
- ``regret_vs_buffer_size.png``: avg regret against buffer_size, one line per hidden_dim;
- ``goal_regret_heatmap.png``: avg regret per goal (rows) and capacity (columns);
- ``val_mse_vs_capacity.png``: world-model validation MSE against hidden_dim;
- ``regret_by_epoch.png``: ``regret/avg`` by epoch, one line per variant;
- ``goal_verdicts.png``: regret per goal and width with each goal's verdict;
- ``scaling_curve.png``: regret against parameters with the fitted curve, its band and the
  predicted next point;
- ``transition_pattern.png``: true against predicted Δs over a 2-D slice of the state space,
  for the best and the smallest model (needs checkpoints and the environment's
  ``transition_slice``; skipped with a warning when they are not available).

A data-only run (``decision.json`` says ``"decided_on": "model_error"``) has no regret: it gets
the model-error plots of :mod:`augnes_jax.dashboard_model_error` instead (``DATA_PLOTS``), which
draw what its decision used.

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
import os
import sys
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

from augnes_jax import dashboard_model_error, files
from augnes_jax.cli import ArgumentParser, non_negative_float, run_command
from augnes_jax.dashboard_plots import EVIDENCE_PLOTS, PlotData
from augnes_jax.dashboard_scaling import ANALYSIS_PLOTS
from augnes_jax.dashboard_transition import (
    EnvFactory,
    WorldModelLoader,
    default_sources,
    plot_transition,
)
from augnes_jax.errors import UserError
from augnes_jax.meta import MetaJudgmentController, run_dir_problem, run_settings

log = logging.getLogger(__name__)

__all__ = ["DATA_PLOTS", "PLOTS", "figures", "main", "render"]

TRANSITION_PLOT = "transition_pattern.png"
PLOTS = (*EVIDENCE_PLOTS, *ANALYSIS_PLOTS, TRANSITION_PLOT)
DATA_PLOTS = dashboard_model_error.MODEL_ERROR_PLOTS  # a data-only run's, decided on model error


def _save(fig, path: Path) -> Path:
    """Returns ``path`` after writing the figure as PNG atomically (temp file + rename)."""
    buf = io.BytesIO()
    # Fast zlib level: the PNGs are small and re-rendered every epoch.
    fig.savefig(buf, format="png", pil_kwargs={"compress_level": 1})
    return files.write_bytes_atomic(path, buf.getvalue())


def _recommended(run_dir: Path, ctrl: MetaJudgmentController, prefer_controller: bool) -> dict[str, Any]:
    path = run_dir / "decision.json"
    if not prefer_controller and path.exists():
        try:
            rec = files.read_json(path).get("recommended") or {}
            out = {"hidden_dim": rec.get("hidden_dim"), "buffer_size": rec.get("buffer_size")}
            return {**out, "num_layers": rec["num_layers"]} if "num_layers" in rec else out
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
    arguments are those of :func:`render`. A data-only run gets its ``DATA_PLOTS`` instead
    (:func:`augnes_jax.dashboard_model_error.figures`; ``names`` then name those).
    """
    if controller is None and dashboard_model_error.decided_on_model_error(run_dir):
        return dashboard_model_error.figures(run_dir, dpi=dpi, names=names)
    wanted = set(PLOTS if names is None else names)
    if unknown := wanted - set(PLOTS):
        raise ValueError(f"unknown dashboard figures: {sorted(unknown)}")
    run_dir = Path(run_dir)
    given = controller is not None
    if controller is None:
        controller = _controller_for(run_dir, epsilon)
    if controller.decision is None:
        controller.update()
    d = PlotData(controller, _recommended(run_dir, controller, prefer_controller=given), bootstrap_samples, run_dir)
    figs = {name: plot(d, dpi) for name, plot in {**EVIDENCE_PLOTS, **ANALYSIS_PLOTS}.items() if name in wanted}
    if TRANSITION_PLOT not in wanted:
        return figs
    if world_model_loader is None or env_factory is None:
        default_loader, default_env = default_sources()
        world_model_loader = world_model_loader or default_loader
        env_factory = env_factory or default_env
    t = plot_transition(d, dpi, run_dir, world_model_loader, env_factory, slice_points)
    if t is not None:
        figs[TRANSITION_PLOT] = t
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

    parser = ArgumentParser(prog="python -m augnes_jax.dashboard", description="Write the capacity dashboard PNGs.")
    parser.add_argument("run_dir", metavar="RUN_DIR")
    parser.add_argument("--out", default=None, help="output folder (default RUN_DIR/plots)")
    parser.add_argument("--epsilon", type=non_negative_float, default=None, help="for the recommended mark without decision.json")
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
