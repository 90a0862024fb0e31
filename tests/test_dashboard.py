"""Capacity dashboard: every plot is a real, non-blank PNG, and the plotted values are the evidence."""

from __future__ import annotations

import logging
import math
import types

import numpy as np
import pytest
from synthetic_runs import build_run

from augnes_jax import dashboard, envs, files
from augnes_jax.dashboard_transition import arrow_dims, slice_grid
from augnes_jax.decision import avg_regret_ci
from augnes_jax.meta import MetaJudgmentController

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
F = {8: 1.0, 16: 0.6, 32: 0.5}


def _run(tmp_path, **kw):
    kw.setdefault("hidden_dims", (8, 16, 32))
    kw.setdefault("buffer_sizes", (100, 400))
    kw.setdefault("seeds", (0, 1))
    kw.setdefault("num_goals", 3)
    kw.setdefault("true_regret", lambda h, b, e, g: F[h] + 0.2 * g + (0.05 if b == 100 else 0.0) + 0.1 / (e + 1))
    kw.setdefault("seed_noise", 0.01)
    kw.setdefault("cell_noise", 0.02)
    return build_run(tmp_path, 3, **kw)


def _controller(tmp_path, epsilon=0.05) -> MetaJudgmentController:
    return MetaJudgmentController(tmp_path, epsilon=epsilon)


def _assert_png(path):
    import matplotlib.image as mpimg

    assert path.read_bytes()[:8] == PNG_SIGNATURE, path
    img = mpimg.imread(path)
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100, path
    assert float(img[..., :3].var()) > 0, f"{path.name} is blank"


class _FakeModel:
    """A world model whose prediction is the true Δs scaled by 0.5 (known error)."""

    def __init__(self, env_name, truth):
        self.meta = {"env": env_name}
        self._truth = truth

    def predict_delta(self, obs, action):
        del action
        return 0.5 * self._truth[: len(obs)]


class _FakeEnv:
    """A 2-D point mass: Δs = (-0.1 x, -0.1 y) on a 7 x 7 grid; a reacher-like slice contract."""

    def __init__(self):
        g = np.linspace(-1.0, 1.0, 7)
        x, y = np.meshgrid(g, g, indexing="xy")
        self.obs = np.stack([x.ravel(), y.ravel()], axis=1)
        self.truth = -0.1 * self.obs
        self.grid = g

    def default_params(self):
        return None

    def transition_slice(self, params, n):
        del params, n
        info = {"x": "x", "y": "y", "grid": self.grid, "dims": [0, 1], "dim_names": ["px", "py"]}
        return self.obs, np.zeros((len(self.obs), 1)), self.truth, info


def test_every_plot_is_a_valid_nonblank_png(tmp_path):
    _run(tmp_path)
    env = _FakeEnv()
    loaded = []

    def loader(run_dir, variant):
        loaded.append(variant)
        return _FakeModel("point", env.truth)

    paths = dashboard.render(tmp_path, epsilon=0.05, world_model_loader=loader, env_factory=lambda name: env)
    assert [p.name for p in paths] == list(dashboard.PLOTS)
    assert all(p.parent == tmp_path / "plots" for p in paths)
    for p in paths:
        _assert_png(p)
    # The best model has the lowest regret (a width-32 variant); the smallest is a width-8 one.
    assert loaded[0].startswith("h32-") and loaded[1].startswith("h8-")
    assert not list((tmp_path / "plots").glob(".*.tmp"))


def test_missing_transition_sources_skip_only_that_plot(tmp_path, caplog):
    _run(tmp_path)

    def broken_loader(run_dir, variant):
        raise FileNotFoundError(f"{run_dir}/checkpoints: no checkpoint")

    with caplog.at_level(logging.WARNING, logger="augnes_jax.dashboard"):
        paths = dashboard.render(tmp_path, epsilon=0.05, world_model_loader=broken_loader, env_factory=lambda n: None)
    assert [p.name for p in paths] == list(dashboard.PLOTS[:-1])
    for p in paths:
        _assert_png(p)
    assert "transition_pattern.png skipped" in caplog.text
    # The default sources (real loader and env registry, or their absence) also never fail the render.
    with caplog.at_level(logging.WARNING, logger="augnes_jax.dashboard"):
        paths = dashboard.render(tmp_path, out_dir=tmp_path / "other", epsilon=0.05)
    assert {p.name for p in paths} >= set(dashboard.PLOTS[:-1])
    for p in paths:
        _assert_png(p)


def _lines(ax) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Returns the plotted lines by label, the recommended mark left out."""
    return {
        ln.get_label(): (np.asarray(ln.get_xdata(), np.float64), np.asarray(ln.get_ydata(), np.float64))
        for ln in ax.lines if not ln.get_label().startswith("recommended")
    }  # fmt: skip


def _bands(ax) -> list[dict[float, tuple[float, float]]]:
    """Returns each ``fill_between`` band, in drawing order, as ``{x: (lo, hi)}``."""
    from matplotlib.collections import PolyCollection

    out = []
    for c in ax.collections:
        if isinstance(c, PolyCollection):
            v = c.get_paths()[0].vertices
            out.append({float(x): (v[v[:, 0] == x, 1].min(), v[v[:, 0] == x, 1].max()) for x in np.unique(v[:, 0])})
    return out


def _recommended_x(ax) -> list[float]:
    return [float(ln.get_xdata()[0]) for ln in ax.lines if ln.get_label().startswith("recommended")]


def _figures(run_dir, ctrl=None, **kw):
    kw.setdefault("world_model_loader", lambda r, v: None)
    kw.setdefault("env_factory", lambda n: None)
    return dashboard.figures(run_dir, controller=ctrl, epsilon=0.05, **kw)


def _window_mean(series, k):
    return float(np.mean([np.float32(x) for x in series[-k:]]))


T975_1 = math.tan(math.pi * 0.475)  # Student-t 97.5% quantile with 1 degree of freedom


def test_regret_plots_draw_the_evidence_means_and_the_controller_bands(tmp_path):
    run = _run(tmp_path)
    ctrl = _controller(tmp_path)
    ctrl.update()
    figs = _figures(tmp_path, ctrl, bootstrap_samples=300)
    assert list(figs) == list(dashboard.PLOTS[:-1])
    k = ctrl.k_last
    caps = sorted({(e.hidden_dim, e.buffer_size) for e in ctrl.evidence})
    for name, lines_of, x_of in (
        ("regret_vs_hidden_dim.png", [f"buffer_size={b}" for b in (100, 400)], lambda h, b: h),
        ("regret_vs_buffer_size.png", [f"hidden_dim={h}" for h in (8, 16, 32)], lambda h, b: b),
    ):
        ax = figs[name].axes[0]
        assert ax.get_xscale() == "log"
        lines = _lines(ax)
        assert list(lines) == lines_of
        for label, band in zip(lines_of, _bands(ax), strict=True):
            xs, ys = lines[label]
            fixed = int(label.split("=")[1])
            pairs = [(int(x), fixed) if "buffer" in label else (fixed, int(x)) for x in xs]
            assert sorted(xs) == list(xs) and len(xs) == (3 if "buffer" in label else 2)
            for (h, b), x, y in zip(pairs, xs, ys, strict=True):
                assert x_of(h, b) == x
                assert y == pytest.approx(run.expected_avg_regret(h, b, k), abs=1e-9)
                # the band is the controller's interval: the bootstrap hulled with the seed t-interval
                seeds = [np.mean(run.regret_avg[f"h{h}-b{b}-s{s}"][-k:]) for s in (0, 1)]
                half = T975_1 * np.std(seeds, ddof=1) / math.sqrt(2)
                lo, hi = band[x]
                assert lo <= y - half + 1e-4 and hi >= y + half - 1e-4
                evs = sorted((e for e in ctrl.evidence if (e.hidden_dim, e.buffer_size) == (h, b)), key=lambda e: e.seed)
                rng = np.random.default_rng([ctrl.seed, 7, caps.index((h, b))])
                assert (lo, hi) == pytest.approx(avg_regret_ci(evs, bootstrap_samples=300, rng=rng), abs=1e-9)
    rec = ctrl.decision.recommended
    assert _recommended_x(figs["regret_vs_hidden_dim.png"].axes[0]) == [rec["hidden_dim"]]
    assert _recommended_x(figs["regret_vs_buffer_size.png"].axes[0]) == [rec["buffer_size"]]


def test_advantage_and_model_error_plots_draw_the_seed_means(tmp_path):
    run = _run(tmp_path)
    ctrl = _controller(tmp_path)
    ctrl.update()
    figs = _figures(tmp_path, ctrl)
    k = ctrl.k_last
    adv = figs["advantage_vs_hidden_dim.png"].axes[0]
    mse = figs["val_mse_vs_capacity.png"].axes[0]
    assert mse.get_yscale() == "log"
    for b, adv_band in zip((100, 400), _bands(adv), strict=True):
        xs, ys = _lines(adv)[f"buffer_size={b}"]
        assert list(xs) == [8, 16, 32]
        for h, y in zip((8, 16, 32), ys, strict=True):
            seeds = [_window_mean([1.0 - a for a in run.regret_avg[f"h{h}-b{b}-s{s}"]], k) for s in (0, 1)]
            assert y == pytest.approx(np.mean(seeds), abs=1e-6)
            half = T975_1 * np.std(seeds, ddof=1) / math.sqrt(2)
            assert adv_band[h] == pytest.approx((np.mean(seeds) - half, np.mean(seeds) + half), abs=1e-5)
        xs, ys = _lines(mse)[f"buffer_size={b}"]
        assert list(xs) == [8, 16, 32]
        # the synthetic runs write val_mse = 1/h + 0.001 * epoch, the same for every seed
        want = [_window_mean([1.0 / h + 0.001 * e for e in range(3)], k) for h in (8, 16, 32)]
        np.testing.assert_allclose(ys, want, rtol=1e-6)
    rec = ctrl.decision.recommended
    assert _recommended_x(adv) == _recommended_x(mse) == [rec["hidden_dim"]]


def test_goal_heatmap_draws_the_per_goal_window_means(tmp_path):
    run = _run(tmp_path)
    ctrl = _controller(tmp_path)
    ctrl.update()
    ax = _figures(tmp_path, ctrl)["goal_regret_heatmap.png"].axes[0]
    caps = sorted((h, b) for h in (8, 16, 32) for b in (100, 400))
    assert [t.get_text() for t in ax.get_xticklabels()] == [f"h{h}\nb{b}" for h, b in caps]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["0", "1", "2"]
    mat = np.asarray(ax.images[0].get_array())
    assert mat.shape == (3, len(caps))
    for j, (h, b) in enumerate(caps):
        for g in range(3):
            ref = np.mean([np.mean([c[g] for c in run.cells[f"h{h}-b{b}-s{s}"][-2:]]) for s in (0, 1)])
            assert mat[g, j] == pytest.approx(ref, abs=1e-6)
    rec = ctrl.decision.recommended
    (box,) = ax.patches
    assert box.get_x() == caps.index((rec["hidden_dim"], rec["buffer_size"])) - 0.5


def test_goal_heatmap_falls_back_to_strategy_stats(tmp_path):
    _run(tmp_path, write_goal_tags=False)
    experiments = [
        {"variant": f"h{h}-b{b}-s0", "hidden_dim": h, "buffer_size": b, "seed": 0,
         "goals": {"0": {"avg_regret": h / 10}, "1": {"avg_regret": b / 1000}}}
        for h in (8, 16, 32) for b in (100, 400)
    ]  # fmt: skip
    files.write_json_atomic(tmp_path / "strategy_stats.json", {"schema": 1, "experiments": experiments})
    ax = _figures(tmp_path, bootstrap_samples=100)["goal_regret_heatmap.png"].axes[0]
    caps = sorted((h, b) for h in (8, 16, 32) for b in (100, 400))
    mat = np.asarray(ax.images[0].get_array())
    np.testing.assert_allclose(mat, [[h / 10 for h, _ in caps], [b / 1000 for _, b in caps]])


def test_regret_by_epoch_draws_every_variant_curve(tmp_path):
    from matplotlib.collections import LineCollection

    run = _run(tmp_path)
    ax = _figures(tmp_path)["regret_by_epoch.png"].axes[0]
    segs = [s for c in ax.collections if isinstance(c, LineCollection) for s in c.get_segments()]
    got = sorted(tuple(map(tuple, s)) for s in segs)
    want = sorted(tuple((float(e), v) for e, v in enumerate(vals)) for vals in run.regret_avg.values())
    assert len(got) == len(run.names) == 12
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-6)


def test_recommended_mark_comes_from_decision_json(tmp_path):
    _run(tmp_path)
    ctrl = _controller(tmp_path)
    computed = dict(ctrl.update().recommended)
    assert computed != {"hidden_dim": 8, "buffer_size": 400}
    ax = _figures(tmp_path)["regret_vs_hidden_dim.png"].axes[0]
    assert _recommended_x(ax) == [computed["hidden_dim"]]  # no decision.json yet
    files.write_json_atomic(tmp_path / "decision.json", {"recommended": {"hidden_dim": 8, "buffer_size": 400}})
    figs = _figures(tmp_path)
    assert _recommended_x(figs["regret_vs_hidden_dim.png"].axes[0]) == [8]
    assert _recommended_x(figs["regret_vs_buffer_size.png"].axes[0]) == [400]
    # a controller handed in by the caller is the fresher source
    ctrl = _controller(tmp_path)
    ctrl.update()
    assert _recommended_x(_figures(tmp_path, ctrl)["regret_vs_hidden_dim.png"].axes[0]) == [computed["hidden_dim"]]


def test_arrow_components_follow_the_axes():
    grid = {"x": "col", "y": "row", "grid_shape": (5, 7), "dims": [0, 1], "dim_names": ["row", "col"]}
    assert arrow_dims(grid, 2) == (1, 0)  # x is the column: Δcol along x
    reacher = {"x": "q1 (rad)", "y": "q2 (rad)", "grid": np.zeros(21), "dims": [4, 5],
               "dim_names": ["cos q1", "sin q1", "cos q2", "sin q2", "dq1", "dq2"]}  # fmt: skip
    assert arrow_dims(reacher, 6) == (4, 5)
    xs, ys, discrete = slice_grid(grid, 35)
    assert (len(xs), len(ys), discrete) == (7, 5, True)


def test_cli(tmp_path, capsys):
    assert dashboard.main([str(tmp_path / "missing")]) == 2
    assert "no such directory" in capsys.readouterr().err
    assert dashboard.main([str(tmp_path)]) == 2
    assert "no TensorBoard runs" in capsys.readouterr().err
    _run(tmp_path, hidden_dims=(8, 16), buffer_sizes=(100,))
    assert dashboard.main([str(tmp_path), "--out", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out.split()
    assert [p.rsplit("/", 1)[1] for p in printed][:6] == list(dashboard.PLOTS[:6])
    for name in dashboard.PLOTS[:6]:
        _assert_png(tmp_path / "out" / name)


def _transition_panels(fig):
    """Returns ``(title, error image, [(U, V) of each quiver])`` for each panel of the figure."""
    from matplotlib.quiver import Quiver

    out = []
    for ax in fig.axes:
        if ax.images and any(isinstance(c, Quiver) for c in ax.collections):
            arrows = [(np.asarray(c.U).ravel(), np.asarray(c.V).ravel()) for c in ax.collections if isinstance(c, Quiver)]
            out.append((ax.get_title(), np.asarray(ax.images[0].get_array()), arrows))
    return out


def test_transition_pattern_draws_the_model_error_and_both_delta_fields(tmp_path):
    _run(tmp_path, hidden_dims=(8, 16), buffer_sizes=(100,))
    env = _FakeEnv()
    figs = _figures(tmp_path, world_model_loader=lambda r, v: _FakeModel("point", env.truth), env_factory=lambda n: env)
    panels = _transition_panels(figs["transition_pattern.png"])
    assert [t.split(":")[0] for t, _, _ in panels] == ["best", "smallest"]
    assert panels[0][0].startswith("best: h16-") and panels[1][0].startswith("smallest: h8-")
    expected = np.linalg.norm(0.5 * env.truth, axis=1).reshape(7, 7)
    for _, err, arrows in panels:
        np.testing.assert_allclose(err, expected, rtol=1e-12)
        (tu, tv), (pu, pv) = arrows  # true, then predicted; all 7 x 7 points drawn
        np.testing.assert_allclose(tu, env.truth[:, 0], rtol=1e-12)
        np.testing.assert_allclose(tv, env.truth[:, 1], rtol=1e-12)
        np.testing.assert_allclose(pu, 0.5 * env.truth[:, 0], rtol=1e-12)
        np.testing.assert_allclose(pv, 0.5 * env.truth[:, 1], rtol=1e-12)


def test_empty_evidence_still_draws_labelled_placeholders(tmp_path):
    from tensorboardX import SummaryWriter

    w = SummaryWriter(logdir=str(tmp_path / "tb" / "h8-b100-s0"))
    w.add_scalar("world_model/val_mse", 0.5, 0)  # a run without regret yet
    w.close()
    ctrl = _controller(tmp_path)
    paths = dashboard.render(tmp_path, controller=ctrl, world_model_loader=lambda r, v: None, env_factory=lambda n: None)
    assert [p.name for p in paths] == list(dashboard.PLOTS[:-1])
    for p in paths:
        _assert_png(p)
    figs = _figures(tmp_path, ctrl)
    placeholder = {name: [t.get_text() for t in fig.axes[0].texts] for name, fig in figs.items()}
    assert placeholder == {
        "regret_vs_hidden_dim.png": ["no evidence yet"], "advantage_vs_hidden_dim.png": ["no evidence yet"],
        "regret_vs_buffer_size.png": ["no evidence yet"], "goal_regret_heatmap.png": ["no per-goal regret yet"],
        "val_mse_vs_capacity.png": ["no world_model/val_mse yet"], "regret_by_epoch.png": ["no evidence yet"],
        "goal_verdicts.png": ["no per-goal regret yet"], "scaling_curve.png": ["no width ladder yet"],
        "cost_regret.png": ["no capacity has both a num_params and a regret yet"],
    }  # fmt: skip
    assert not any(_lines(fig.axes[0]) for fig in figs.values())


def test_render_reuses_an_updated_controller(tmp_path):
    _run(tmp_path)
    ctrl = _controller(tmp_path)
    ctrl.update()
    calls = []
    original = ctrl.update
    ctrl.update = types.MethodType(lambda self: calls.append(1) or original(), ctrl)
    dashboard.render(tmp_path, controller=ctrl, world_model_loader=lambda r, v: None, env_factory=lambda n: None)
    assert calls == []  # no second read of the event files


@pytest.mark.parametrize("env_name", ["reacher", "gridworld"])
def test_transition_plot_on_the_real_environment_slices(tmp_path, env_name):
    env = envs.make(env_name)
    assert callable(getattr(env, "transition_slice", None)), f"{env_name} lost its transition_slice"
    _run(tmp_path, hidden_dims=(8, 16), buffer_sizes=(100,))
    n = 9
    _, _, truth, info = env.transition_slice(env.default_params(), n)
    truth = np.asarray(truth, np.float64)
    figs = _figures(
        tmp_path, world_model_loader=lambda r, v: _FakeModel(env_name, truth), env_factory=envs.make, slice_points=n,
    )  # fmt: skip
    panels = _transition_panels(figs["transition_pattern.png"])
    xs, ys, _ = slice_grid(dict(info), len(truth))
    expected = np.linalg.norm(0.5 * truth, axis=1).reshape(len(ys), len(xs))
    assert len(panels) == 2
    ix, iy = arrow_dims(dict(info), truth.shape[1])
    for _, err, ((tu, tv), (pu, pv)) in panels:
        np.testing.assert_allclose(err, expected, rtol=1e-6)
        np.testing.assert_allclose(np.stack([tu, tv]), truth[:, [ix, iy]].T, rtol=1e-6)
        np.testing.assert_allclose(np.stack([pu, pv]), 0.5 * truth[:, [ix, iy]].T, rtol=1e-6)
    paths = dashboard.render(
        tmp_path, epsilon=0.05, world_model_loader=lambda r, v: _FakeModel(env_name, truth), env_factory=envs.make,
        slice_points=n,
    )  # fmt: skip
    assert paths[-1].name == "transition_pattern.png"
    _assert_png(paths[-1])


def test_goal_verdict_plot_draws_the_ladder_means_and_each_verdict(tmp_path):
    run = _run(tmp_path)
    ctrl = _controller(tmp_path)
    ctrl.update()
    ax = _figures(tmp_path, ctrl)["goal_verdicts.png"].axes[0]
    b = ctrl.decision.recommended["buffer_size"]
    mat = np.asarray(ax.images[0].get_array())
    for j, h in enumerate((8, 16, 32)):
        for g in range(3):
            ref = np.mean([np.mean([c[g] for c in run.cells[f"h{h}-b{b}-s{s}"][-2:]]) for s in (0, 1)])
            assert mat[g, j] == pytest.approx(ref, abs=1e-6)
    verdicts = [t.get_text() for t in ax.texts]
    assert verdicts == [ctrl.decision.analysis["goals"][str(g)]["verdict"] for g in range(3)]


def test_scaling_plot_draws_the_fit_and_the_predicted_next_point(tmp_path):
    _run(tmp_path)
    ctrl = _controller(tmp_path)
    ctrl.update()
    sc = ctrl.decision.analysis["scaling"]
    ax = _figures(tmp_path, ctrl)["scaling_curve.png"].axes[0]
    lines = _lines(ax)
    fit_label = next(k for k in lines if k.endswith(f"+ {sc['c']:.3g}"))
    x, y = lines[fit_label]
    np.testing.assert_allclose(y, sc["a"] * x ** -sc["b"] + sc["c"], rtol=1e-9)
    points = lines[next(k for k in lines if k.startswith("avg regret"))]
    np.testing.assert_allclose(points[0], sc["N"])
    np.testing.assert_allclose(points[1], sc["mean_regret"], rtol=1e-12)
    nx, ny = lines[next(k for k in lines if k.startswith("predicted"))]
    f_from = sc["a"] * sc["N_from"] ** -sc["b"] + sc["c"]
    assert (nx[0], ny[0]) == pytest.approx((sc["N_next"], f_from - sc["predicted_next_gain"]))
    (band,) = _bands(ax)
    assert all(lo <= hi for lo, hi in band.values())


def test_an_env_without_a_transition_slice_gets_one_from_its_own_steps():
    """Each filled cell holds a real transition whose Δs equals the point mass's equations in NumPy."""
    import importlib.util
    from pathlib import Path

    from augnes_jax.dashboard_transition import sampled_slice, slice_grid
    from augnes_jax.envs import adapt

    path = Path(__file__).resolve().parents[1] / "examples" / "pointmass.py"
    spec = importlib.util.spec_from_file_location("pointmass_for_slice", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    inner = module.PointMass()
    env = adapt(inner)
    obs, action, delta, info = sampled_slice(env, env.default_params(episode_length=20), 8, episodes=64)
    filled = ~np.isnan(delta[:, 0])
    assert obs.shape == (64, 4) and action.shape == (64, 2) and 20 <= filled.sum() <= 64
    vel = (1.0 - inner.damping * inner.dt) * obs[:, 2:] + inner.dt * np.clip(action, -1, 1)
    pos = np.clip(obs[:, :2] + inner.dt * vel, -1.0, 1.0)
    expected = np.concatenate([pos - obs[:, :2], vel - obs[:, 2:]], axis=1)
    np.testing.assert_allclose(delta[filled], expected[filled], atol=1e-5)
    xs, ys, discrete = slice_grid(info, len(delta))
    assert (len(xs), len(ys), discrete) == (8, 8, False)
    cells = np.flatnonzero(filled)
    half_x, half_y = (xs[1] - xs[0]) / 2, (ys[1] - ys[0]) / 2
    assert np.all(np.abs(obs[cells, 0] - xs[cells % 8]) <= half_x + 1e-6)
    assert np.all(np.abs(obs[cells, 1] - ys[cells // 8]) <= half_y + 1e-6)


def test_the_pareto_front_equals_a_brute_force_search():
    from augnes_jax.dashboard_scaling import pareto_front

    rng = np.random.default_rng(3)
    for _ in range(50):
        n = int(rng.integers(1, 12))
        cost = rng.integers(0, 5, n).astype(float)  # ties on purpose
        regret = rng.integers(0, 5, n).astype(float)
        expected = [not any(cost[j] <= cost[i] and regret[j] <= regret[i] and (cost[j] < cost[i] or regret[j] < regret[i])
                            for j in range(n)) for i in range(n)]
        assert pareto_front(cost, regret).tolist() == expected
