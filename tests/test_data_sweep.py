"""The data-only capacity sweep on a transitions file (python -m augnes_jax.sweep data.path=FILE)."""

from __future__ import annotations

import json

import jax
import numpy as np
import polars as pl
import pytest

from augnes_jax import data_sweep, sweep
from augnes_jax.config import load_config
from augnes_jax.world_model_stats import WorldModelStats
from tests.test_transitions import bad_cases, reacher_transitions

SMALL = [
    "epochs=2",
    "variants.hidden_dims=[4,32]",
    "variants.buffer_sizes=[600,3000]",
    "variants.seeds=[0]",
    "world_model.train_steps_per_epoch=150",
    "world_model.batch_size=64",
    "world_model.k_steps=[1,5]",
    "meta.epsilon=0.05",
]


@pytest.fixture(scope="module")
def arrays():
    return reacher_transitions(num_episodes=60)


@pytest.fixture(scope="module")
def data_file(tmp_path_factory, arrays):
    path = tmp_path_factory.mktemp("data") / "reacher.npz"
    np.savez(path, **arrays)
    return path


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, data_file):
    out = tmp_path_factory.mktemp("runs") / "run"
    assert sweep.main(["--run-dir", str(out), "--no-progress", f"data.path={data_file}", *SMALL]) == 0
    return out


def test_wider_models_fit_the_held_out_rows_better(run_dir):
    stats = json.loads((run_dir / "world_model_stats.json").read_text())["variants"]
    assert sorted(stats) == ["h32-b3000-s0", "h32-b600-s0", "h4-b3000-s0", "h4-b600-s0"]
    for b in (600, 3000):
        narrow, wide = (stats[f"h{h}-b{b}-s0"]["epochs"][-1] for h in (4, 32))
        assert wide["val_mse"] < narrow["val_mse"]
    last = stats["h32-b3000-s0"]["epochs"][-1]
    assert len(last["per_dim_mse"]) == 6 and set(last["k_step_mse"]) == {"1", "5"}
    assert last["k_step_mse"]["1"] < last["k_step_mse"]["5"]
    assert len(last["per_goal_mse"]) == 8  # reacher's 8 goals, all in the file
    assert (run_dir / "config.yaml").is_file()
    assert {p.name for p in (run_dir / "tb").iterdir()} == set(stats)


def test_val_mse_equals_a_numpy_computation_on_the_held_out_rows(run_dir, data_file):
    cfg = load_config(None, [f"data.path={data_file}", *SMALL])
    data = data_sweep.prepare(cfg)
    fits = data_sweep.make_fits(data)
    for epoch in range(cfg.epochs):
        for fit in fits:
            fit.epoch(cfg, epoch)
    saved = WorldModelStats.from_file(run_dir / "world_model_stats.json")
    held = data.held_out
    episodes = set(held.episode_id.tolist())
    assert not episodes & set(data.train.episode_id.tolist())
    for fit in fits:
        for i, v in enumerate(fit.bucket.variants):
            state = jax.tree.map(lambda x, i=i: x[i], fit.states)
            pred = np.asarray(fit.wm.predict_next(state, held.obs, held.action), np.float64)
            mse = np.mean((pred - held.next_obs.astype(np.float64)) ** 2)
            per_dim = np.mean((pred - held.next_obs) ** 2, axis=0)
            per_goal = [np.mean((pred - held.next_obs)[held.goal_id == g] ** 2) if (held.goal_id == g).any()
                        else None for g in range(8)]
            assert any(x is None for x in per_goal) and sum(x is not None for x in per_goal) >= 4
            entry = saved.latest(v.name)
            np.testing.assert_allclose(entry["val_mse"], mse, rtol=1e-4)
            np.testing.assert_allclose(entry["per_dim_mse"], per_dim, rtol=1e-4)
            assert [entry["per_goal_mse"][str(g)] is None for g in range(8)] == [x is None for x in per_goal]
            np.testing.assert_allclose([entry["per_goal_mse"][str(g)] for g in range(8) if per_goal[g] is not None],
                                       [x for x in per_goal if x is not None], rtol=1e-4)
            # open-loop 5 steps along the held-out sequences, one predict_next at a time
            obs = data.obs_seq[:, 0]
            for k in range(5):
                obs = np.asarray(fit.wm.predict_next(state, obs, data.action_seq[:, k]))
            np.testing.assert_allclose(entry["k_step_mse"]["5"], np.mean((obs - data.obs_seq[:, 5]) ** 2), rtol=1e-4)
            # the buffer keeps the most recent buffer_size training rows
            kept = min(v.buffer_size, data.train.num_rows)
            stored = np.asarray(fit.buffers.data["obs"][i])
            assert {r.tobytes() for r in stored[:kept]} == {r.tobytes() for r in data.train.obs[-kept:]}


def test_decision_is_on_model_error(run_dir):
    doc = json.loads((run_dir / "decision.json").read_text())
    stats = json.loads((run_dir / "world_model_stats.json").read_text())["variants"]
    assert doc["decided_on"] == "model_error" and doc["relative"] is True
    mse = {h: np.mean([stats[f"h{h}-b{b}-s0"]["epochs"][-1]["val_mse"] for b in (600, 3000)]) for h in (4, 32)}
    gain = (mse[4] - mse[32]) / mse[4]
    assert doc["gains"][0]["gain"] == pytest.approx(gain)
    assert doc["decision"] == ("keep" if gain < 0.05 else "expand")
    assert "decided on model error" in doc["reason"]
    # the run leaves the dashboard of what it decided on, as an env sweep does
    from augnes_jax.dashboard import DATA_PLOTS

    drawn = sorted(p.name for p in (run_dir / "plots").glob("*.png"))
    assert "val_mse_vs_width.png" in drawn and set(drawn) <= set(DATA_PLOTS)


def test_decide_on_model_error_by_hand():
    decide = data_sweep.decide_on_model_error
    d = decide({4: [1.0, 1.2], 8: [0.5], 16: [0.49]}, epsilon=0.1, relative=True, epoch=0)
    assert (d.decision, d.recommended_hidden_dim) == ("keep", 8)
    assert d.gains[0]["gain"] == pytest.approx((1.1 - 0.5) / 1.1)
    d = decide({4: [1.0], 8: [0.5], 16: [0.2]}, epsilon=0.1, relative=True, epoch=0)
    assert (d.decision, d.recommended_hidden_dim) == ("expand", 16)
    d = decide({4: [1.0], 8: [0.5], 16: [0.2]}, epsilon=0.4, relative=False, epoch=0)
    assert (d.decision, d.recommended_hidden_dim) == ("keep", 8)  # 0.5 >= 0.4, then 0.3 < 0.4


@pytest.mark.parametrize("case", sorted(bad_cases(reacher_transitions(2, 10))))
def test_bad_data_exits_2_with_one_line_and_writes_nothing(tmp_path, capsys, arrays, case):
    data, expected = bad_cases(arrays)[case]
    path = tmp_path / "bad.npz"
    np.savez(path, **data)
    out = tmp_path / "run"
    assert sweep.main(["--run-dir", str(out), "--no-progress", f"data.path={path}", *SMALL]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and expected in err, err
    assert not out.exists()


def test_missing_file_and_bad_holdout_exit_2(tmp_path, capsys):
    out = tmp_path / "run"
    assert sweep.main(["--run-dir", str(out), f"data.path={tmp_path / 'none.npz'}"]) == 2
    assert "no such file" in capsys.readouterr().err
    assert sweep.main(["--run-dir", str(out), "data.path=x.npz", "data.holdout_fraction=1.5"]) == 2
    assert "data.holdout_fraction" in capsys.readouterr().err
    assert not out.exists()


def test_learned_reward_heads_on_a_file_with_rewards(tmp_path, data_file, arrays):
    out = tmp_path / "heads"
    args = ["--run-dir", str(out), "--no-progress", f"data.path={data_file}", "world_model.reward=learned",
            "epochs=2", "variants.hidden_dims=[32]", "variants.buffer_sizes=[3000]", "variants.seeds=[0]",
            "world_model.train_steps_per_epoch=200", "world_model.batch_size=64", "world_model.k_steps=[1,5]"]
    assert sweep.main(args) == 0
    last = json.loads((out / "world_model_stats.json").read_text())["variants"]["h32-b3000-s0"]["epochs"][-1]
    # the reward head explains at least half of the reward's spread (predicting the mean would not)
    assert last["reward_mse"] < 0.5 * float(np.var(arrays["reward"])), (last["reward_mse"], np.var(arrays["reward"]))
    assert set(last["per_goal_reward_mse"]) <= {str(g) for g in range(8)} and last["per_goal_reward_mse"]
    assert 0.0 <= last["termination_accuracy"] <= 1.0 and set(last["k_step_mse"]) == {"1", "5"}


def test_learned_reward_without_rewards_in_the_file_is_one_line(tmp_path, arrays, capsys):
    path = tmp_path / "no_reward.npz"
    np.savez(path, **{k: v for k, v in arrays.items() if k != "reward"})
    out = tmp_path / "run"
    assert sweep.main(["--run-dir", str(out), f"data.path={path}", "world_model.reward=learned"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "world_model.reward" in err and "'reward' array" in err
    assert not out.exists()


def parquet_bad_cases(arrays):
    nan_obs = arrays["obs"].copy()
    nan_obs[[7, 9, 11]] = np.nan
    n = arrays["obs"].shape[0]
    reward = pl.Series("reward", arrays["reward"]).scatter(13, None)
    return {
        "missing": (pl.DataFrame({k: v for k, v in arrays.items() if k != "next_obs"}), "missing array 'next_obs'"),
        "width": (pl.DataFrame({**arrays, "next_obs": arrays["next_obs"][:, :4]}),
                  f"array 'next_obs' must be [N, 6] like obs, got shape [{n}, 4]"),
        "nan": (pl.DataFrame({**arrays, "obs": nan_obs}), "3 rows hold NaN or Inf (first: array 'obs' row 7)"),
        "list": (pl.DataFrame({**arrays, "obs": [list(r) for r in arrays["obs"]]}),
                 "array 'obs' is a variable-length list column"),
        "null": (pl.DataFrame({**arrays}).with_columns(reward), "array 'reward' row 13: missing value (null)"),
    }


@pytest.mark.parametrize("case", ["missing", "width", "nan", "list", "null"])
def test_bad_parquet_exits_2_with_one_line_and_writes_nothing(tmp_path, capsys, arrays, case):
    frame, expected = parquet_bad_cases(arrays)[case]
    path = tmp_path / "bad.parquet"
    frame.write_parquet(path)
    out = tmp_path / "run"
    assert sweep.main(["--run-dir", str(out), "--no-progress", f"data.path={path}", *SMALL]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and expected in err and str(path) in err, err
    assert not out.exists()


def test_decision_says_how_many_rows_were_used(run_dir):
    data = json.loads((run_dir / "decision.json").read_text())["data"]
    assert data["rows"] == 60 * 50 == data["train_rows"] + data["held_out_rows"]
    assert data["held_out_rows"] == 12 * 50 == data["eval_rows"]  # round(0.2 * 60) episodes, all evaluated on
    assert data["buffer_rows"] == min(3000, data["train_rows"]) and data["split"] == "episode"
    assert data["k_step_sequences"] == data["held_out_k_step_sequences"] == 12 * 10


def test_the_data_sweep_orders_widths_as_the_env_sweep_whose_transitions_it_reads(tmp_path):
    """The env-driven sweep's own replay buffer, saved to .npz, read back by the data-only sweep."""
    from tests.sweep_configs import TINY

    widths = ["variants.hidden_dims=[2,32]", "variants.seeds=[0]", "variants.buffer_sizes=[2000]",
              "samples_per_epoch=1000", "world_model.train_steps_per_epoch=200", "planner.random_collect_epochs=2"]
    cfg = load_config(None, [x for x in TINY if not x.startswith(("variants.", "samples_per_epoch", "world_model.t"))]
                      + widths)
    env_run = sweep.Sweep(cfg, tmp_path / "env_run", progress=False)
    env_run.run()
    # random collection with common keys: every variant's buffer holds the same transitions
    host = jax.device_get(env_run.runs[0].buffers)
    n = int(min(host.count[0], host.capacity[0]))
    rows = {k: np.asarray(host.data[k][0][:n]) for k in ("obs", "action", "next_obs", "goal_id", "reward",
                                                           "terminated")}
    np.savez(tmp_path / "own.npz", **rows)
    data_run = tmp_path / "data_run"
    assert sweep.main(["--run-dir", str(data_run), "--no-progress", f"data.path={tmp_path / 'own.npz'}",
                       *[x for x in widths if x.startswith(("variants.", "world_model."))], "epochs=2"]) == 0

    def val_mse(run) -> dict[int, float]:
        stats = json.loads((run / "world_model_stats.json").read_text())["variants"]
        return {v["hidden_dim"]: v["epochs"][-1]["val_mse"] for v in stats.values()}

    env_mse, data_mse = val_mse(tmp_path / "env_run"), val_mse(data_run)
    assert sorted(env_mse, key=env_mse.get) == sorted(data_mse, key=data_mse.get) == [32, 2]


def test_a_data_only_sweep_over_several_depths_is_one_clear_config_error(data_file):
    from augnes_jax.config import ConfigError

    with pytest.raises(ConfigError, match="variants.num_layers"):
        load_config(None, [f"data.path={data_file}", "variants.num_layers=[1,2]"])
    assert load_config(None, [f"data.path={data_file}", "variants.num_layers=[1]"]).variants.num_layers == (1,)
    seeded = load_config(None, [f"data.path={data_file}", "data.mode=seed", "variants.num_layers=[1,2]"])
    assert list(seeded.variants.num_layers) == [1, 2]
