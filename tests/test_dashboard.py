"""Capacity dashboard: every plot is a real, non-blank PNG, and the plotted values are the evidence."""

from __future__ import annotations

import logging
import types

import numpy as np
import pytest
from synthetic_runs import build_run

from augnes_jax import dashboard, files
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


def test_plotted_values_are_the_controller_evidence(tmp_path):
    run = _run(tmp_path)
    ctrl = _controller(tmp_path)
    ctrl.update()
    d = dashboard._Data(ctrl, dict(ctrl.decision.recommended), bootstrap_samples=300)
    for h in (8, 16, 32):
        for b in (100, 400):
            assert d.mean((h, b), "avg_regret") == pytest.approx(run.expected_avg_regret(h, b, 2), abs=1e-9)
            lo, hi = d.regret_ci[(h, b)]
            assert lo <= d.mean((h, b), "avg_regret") <= hi
    goals, caps, mat = dashboard._goal_matrix(d, tmp_path)
    assert goals == [0, 1, 2]
    assert caps == sorted((h, b) for h in (8, 16, 32) for b in (100, 400))
    for j, (h, b) in enumerate(caps):
        for g in goals:
            ref = np.mean([np.mean([c[g] for c in run.cells[f"h{h}-b{b}-s{s}"][-2:]]) for s in (0, 1)])
            assert mat[g, j] == pytest.approx(ref, abs=1e-6)


def test_goal_heatmap_falls_back_to_strategy_stats(tmp_path):
    _run(tmp_path, write_goal_tags=False)
    experiments = [
        {"variant": f"h{h}-b{b}-s0", "hidden_dim": h, "buffer_size": b, "seed": 0,
         "goals": {"0": {"avg_regret": h / 10}, "1": {"avg_regret": b / 1000}}}
        for h in (8, 16, 32) for b in (100, 400)
    ]  # fmt: skip
    files.write_json_atomic(tmp_path / "strategy_stats.json", {"schema": 1, "experiments": experiments})
    ctrl = _controller(tmp_path)
    ctrl.update()
    d = dashboard._Data(ctrl, dict(ctrl.decision.recommended), bootstrap_samples=100)
    goals, caps, mat = dashboard._goal_matrix(d, tmp_path)
    assert goals == [0, 1]
    for j, (h, b) in enumerate(caps):
        assert mat[0, j] == pytest.approx(h / 10) and mat[1, j] == pytest.approx(b / 1000)


def test_recommended_mark_comes_from_decision_json(tmp_path):
    _run(tmp_path)
    ctrl = _controller(tmp_path)
    computed = dict(ctrl.update().recommended)
    assert dashboard._recommended(tmp_path, ctrl, prefer_controller=False) == computed  # no decision.json yet
    files.write_json_atomic(tmp_path / "decision.json", {"recommended": {"hidden_dim": 8, "buffer_size": 400}})
    assert dashboard._recommended(tmp_path, ctrl, prefer_controller=False) == {"hidden_dim": 8, "buffer_size": 400}
    assert dashboard._recommended(tmp_path, ctrl, prefer_controller=True) == computed


def test_arrow_components_follow_the_axes():
    grid = {"x": "col", "y": "row", "grid_shape": (5, 7), "dims": [0, 1], "dim_names": ["row", "col"]}
    assert dashboard._arrow_dims(grid, 2) == (1, 0)  # x is the column: Δcol along x
    reacher = {"x": "q1 (rad)", "y": "q2 (rad)", "grid": np.zeros(21), "dims": [4, 5],
               "dim_names": ["cos q1", "sin q1", "cos q2", "sin q2", "dq1", "dq2"]}  # fmt: skip
    assert dashboard._arrow_dims(reacher, 6) == (4, 5)
    xs, ys, discrete = dashboard._slice_grid(grid, 35)
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


def test_transition_error_field_is_the_model_error(tmp_path, monkeypatch):
    _run(tmp_path, hidden_dims=(8, 16), buffer_sizes=(100,))
    env = _FakeEnv()
    captured = {}
    real_imshow = None

    def spy(self, X, *args, **kwargs):
        captured.setdefault("fields", []).append(np.asarray(X))
        return real_imshow(self, X, *args, **kwargs)

    from matplotlib.axes import Axes

    real_imshow = Axes.imshow
    monkeypatch.setattr(Axes, "imshow", spy)
    dashboard.render(
        tmp_path, epsilon=0.05, world_model_loader=lambda r, v: _FakeModel("point", env.truth),
        env_factory=lambda n: env,
    )  # fmt: skip
    expected = np.linalg.norm(0.5 * env.truth, axis=1).reshape(7, 7)
    errs = [f for f in captured["fields"] if f.shape == (7, 7)]
    assert len(errs) == 2  # best and smallest
    for f in errs:
        np.testing.assert_allclose(f, expected, rtol=1e-12)


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
def test_transition_plot_on_the_real_environment_slices(tmp_path, env_name, monkeypatch):
    envs = pytest.importorskip("augnes_jax.envs")
    env = envs.make(env_name)
    if not hasattr(env, "transition_slice"):
        pytest.skip(f"{env_name} has no transition_slice")
    _run(tmp_path, hidden_dims=(8, 16), buffer_sizes=(100,))
    from matplotlib.axes import Axes

    n = 9
    captured = []
    real_imshow = Axes.imshow
    monkeypatch.setattr(Axes, "imshow", lambda self, X, *a, **k: captured.append(np.asarray(X)) or real_imshow(self, X, *a, **k))
    _, _, truth, info = env.transition_slice(env.default_params(), n)
    truth = np.asarray(truth, np.float64)
    paths = dashboard.render(
        tmp_path, epsilon=0.05, world_model_loader=lambda r, v: _FakeModel(env_name, truth),
        env_factory=envs.make, slice_points=n,
    )  # fmt: skip
    assert paths[-1].name == "transition_pattern.png"
    _assert_png(paths[-1])
    xs, ys, _ = dashboard._slice_grid(dict(info), len(truth))
    expected = np.linalg.norm(0.5 * truth, axis=1).reshape(len(ys), len(xs))
    fields = [f for f in captured if f.shape == expected.shape]
    assert len(fields) == 2
    for f in fields:
        np.testing.assert_allclose(f, expected, rtol=1e-6)
