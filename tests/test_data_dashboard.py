"""The dashboard of a data-only run draws the model errors its decision used, with the values it used."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from augnes_jax import dashboard, sweep
from augnes_jax.dashboard_model_error import model_error_table
from tests.test_transitions import reacher_transitions

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
CFG = [
    "epochs=2",
    "variants.hidden_dims=[4,16]",
    "variants.buffer_sizes=[300,600]",
    "variants.seeds=[0,1]",
    "world_model.train_steps_per_epoch=30",
    "world_model.batch_size=64",
    "world_model.k_steps=[1,5]",
    "world_model.reward=learned",
]
MEAN = "mean over buffer sizes and seeds"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("data_dash")
    path = root / "reacher.npz"
    np.savez(path, **reacher_transitions(num_episodes=20))
    out = root / "run"
    assert sweep.main(["--run-dir", str(out), "--no-progress", f"data.path={path}", *CFG]) == 0
    return out


def _docs(run_dir):
    return (json.loads((run_dir / "world_model_stats.json").read_text()),
            json.loads((run_dir / "decision.json").read_text()))


def _hand_means(run_dir, pick) -> dict[int, float]:
    """Returns per width the mean of ``pick(entry)`` over the variants' entries of the decision's epoch (nulls left out)."""
    stats, decision = _docs(run_dir)
    by_width: dict[int, list[float]] = {}
    for v in stats["variants"].values():
        entry = next(e for e in v["epochs"] if e["epoch"] == decision["epoch"])
        if pick(entry) is not None:
            by_width.setdefault(v["hidden_dim"], []).append(pick(entry))
    return {w: float(np.mean(x)) for w, x in sorted(by_width.items())}


def _line(ax, label):
    (ln,) = [ln for ln in ax.lines if ln.get_label() == label]
    return np.asarray(ln.get_xdata(), np.float64), np.asarray(ln.get_ydata(), np.float64)


def _recommended_x(ax) -> list[float]:
    return [float(ln.get_xdata()[0]) for ln in ax.lines if ln.get_label().startswith("recommended")]


def test_the_cli_writes_the_model_error_pngs(run_dir, capsys):
    import matplotlib.image as mpimg

    assert dashboard.main([str(run_dir)]) == 0
    printed = capsys.readouterr().out.split()
    assert [p.rsplit("/", 1)[1] for p in printed] == list(dashboard.DATA_PLOTS)
    for p in printed:
        path = run_dir / "plots" / p.rsplit("/", 1)[1]
        assert path.read_bytes()[:8] == PNG_SIGNATURE
        img = mpimg.imread(path)
        assert float(img[..., :3].var()) > 0, f"{path.name} is blank"
    assert not (run_dir / "plots" / "regret_vs_hidden_dim.png").exists()  # no regret in a data run


def test_val_mse_plot_draws_the_means_the_points_and_the_gain_rule(run_dir):
    stats, decision = _docs(run_dir)
    ax, gain_ax = dashboard.figures(run_dir)["val_mse_vs_width.png"].axes
    means = _hand_means(run_dir, lambda e: e["val_mse"])
    xs, ys = _line(ax, MEAN)
    assert list(xs) == [4, 16] and ys == pytest.approx([means[4], means[16]], rel=1e-12)
    # the decision's own table holds the same means
    assert [c["val_mse"] for c in decision["capacities"]] == pytest.approx(list(ys), rel=1e-12)
    points = sorted(tuple(p) for c in ax.collections for p in np.asarray(c.get_offsets()))
    want = sorted((v["hidden_dim"], next(e for e in v["epochs"] if e["epoch"] == decision["epoch"])["val_mse"])
                  for v in stats["variants"].values())
    assert len(points) == 8 and np.allclose(points, want, rtol=1e-12)
    assert _recommended_x(ax) == [decision["recommended"]["hidden_dim"]]
    # the gain panel: the relative gain 4 -> 16 from the hand means, against epsilon, coloured by the rule
    (bar,) = gain_ax.patches
    gain = (means[4] - means[16]) / means[4]
    assert bar.get_height() == pytest.approx(gain, rel=1e-9) == decision["gains"][0]["gain"]
    (eps_line,) = [ln for ln in gain_ax.lines if ln.get_label().startswith("epsilon")]
    assert float(eps_line.get_ydata()[0]) == decision["epsilon"] == 0.5
    below = gain < decision["epsilon"]
    assert decision["gains"][0]["below_epsilon"] == below
    green = tuple(np.round(bar.get_facecolor()[:3], 3))
    assert green == ((0.173, 0.627, 0.173) if below else (1.0, 0.498, 0.055))  # tab:green / tab:orange
    assert gain_ax.get_title().startswith("keep hidden_dim 4" if below else "expand beyond 16")


def test_goal_k_step_and_reward_plots_draw_the_hand_means(run_dir):
    figs = dashboard.figures(run_dir)
    stats, _ = _docs(run_dir)
    # goals absent from the held-out rows have a null error: they get no line
    goals = sorted({g for v in stats["variants"].values() for g, x in v["epochs"][-1]["per_goal_mse"].items()
                    if x is not None}, key=int)
    assert 2 <= len(goals) < 8
    ax = figs["goal_val_mse_vs_width.png"].axes[0]
    for g in goals:
        xs, ys = _line(ax, f"goal={g}")
        want = _hand_means(run_dir, lambda e, g=g: e["per_goal_mse"][g])
        assert list(xs) == list(want) and ys == pytest.approx(list(want.values()), rel=1e-12)
    assert len([ln for ln in ax.lines if ln.get_label().startswith("goal=")]) == len(goals)
    ax = figs["k_step_mse_vs_width.png"].axes[0]
    for k in ("1", "5"):
        _, ys = _line(ax, f"k={k}")
        assert ys == pytest.approx(list(_hand_means(run_dir, lambda e, k=k: e["k_step_mse"][k]).values()), rel=1e-12)
    reward_ax, term_ax = figs["reward_mse_vs_width.png"].axes
    for ax, key in ((reward_ax, "reward_mse"), (term_ax, "termination_bce")):
        _, ys = _line(ax, MEAN)
        assert ys == pytest.approx(list(_hand_means(run_dir, lambda e, key=key: e[key]).values()), rel=1e-12)


def test_plots_without_k_step_or_reward_errors_are_left_out(run_dir, tmp_path):
    """A run without episode ids (no k-step sequences) nor reward heads, that decided to expand."""
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    stats, decision = _docs(copy)
    for v in stats["variants"].values():
        for e in v["epochs"]:
            e["k_step_mse"] = {}
            for key in ("reward_mse", "per_goal_reward_mse", "termination_bce", "termination_accuracy"):
                e.pop(key)
    decision.update(decision="expand", recommended={"hidden_dim": 16})
    decision["gains"][0].update(gain=0.9, below_epsilon=False)
    (copy / "world_model_stats.json").write_text(json.dumps(stats))
    (copy / "decision.json").write_text(json.dumps(decision))
    figs = dashboard.figures(copy)
    assert list(figs) == ["val_mse_vs_width.png", "goal_val_mse_vs_width.png"]
    ax, gain_ax = figs["val_mse_vs_width.png"].axes
    assert _recommended_x(ax) == [16]
    assert gain_ax.patches[0].get_height() == 0.9
    assert gain_ax.get_title() == "expand beyond 16: every gain is at least epsilon"
    t = model_error_table(copy)
    assert t.widths == [4, 16] and t.epoch == decision["epoch"] and len(t.variants) == 8


def test_a_data_run_without_its_statistics_is_one_line(run_dir, tmp_path, capsys):
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    (copy / "world_model_stats.json").unlink()
    assert dashboard.main([str(copy)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "world_model_stats.json" in err[0]
