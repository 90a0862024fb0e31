"""A transitions file seeds the env sweep's replay buffers (data.mode=seed), then the sweep goes on."""

from __future__ import annotations

import shutil

import jax
import numpy as np
import pytest

from augnes_jax import envs, sweep
from augnes_jax.buffer_seed import check_fits_env, extra_action_columns, seed_items
from augnes_jax.config import ConfigError, load_config
from augnes_jax.envs import adapt
from augnes_jax.sweep_setup import epoch_settings
from augnes_jax.transitions import DataError, load_transitions
from augnes_jax.transitions_stream import scan_file
from tests.sweep_configs import TINY
from tests.test_resume import artifacts, assert_same
from tests.test_transitions import reacher_transitions

# two buffer sizes around the file's 1000 rows: one keeps the most recent 400, one keeps them all
CFG = [x for x in TINY if not x.startswith(("variants.buffer_sizes", "variants.seeds"))] + [
    "variants.buffer_sizes=[400,1500]", "variants.seeds=[0]"]
ROWS = 1000
KEYS = ("obs", "action", "next_obs", "goal_id", "reward", "terminated")


@pytest.fixture(scope="module")
def arrays():
    a = reacher_transitions(num_episodes=20)  # 20 episodes x 50 steps
    assert a["obs"].shape[0] == ROWS
    return a


@pytest.fixture(scope="module")
def data_file(tmp_path_factory, arrays):
    path = tmp_path_factory.mktemp("data") / "reacher.npz"
    np.savez(path, **arrays)
    return path


def _file_items(arrays) -> dict[str, np.ndarray]:
    """Returns the file's rows as buffer items, computed here with NumPy."""
    return {"obs": arrays["obs"].astype(np.float32), "action": arrays["action"].astype(np.float32),
            "next_obs": arrays["next_obs"].astype(np.float32), "goal_id": arrays["goal_id"].astype(np.int32),
            "reward": arrays["reward"].astype(np.float32), "terminated": arrays["terminated"].astype(bool)}


def _ring(items: dict[str, np.ndarray], capacity: int) -> dict[str, np.ndarray]:
    """Returns slots ``[0, min(n, capacity))`` of a ring buffer that was given ``items`` in order."""
    n = len(items["obs"])
    out = {k: np.zeros((min(n, capacity), *v.shape[1:]), v.dtype) for k, v in items.items()}
    for i in range(max(0, n - capacity), n):  # the newest `capacity` rows, each at slot i % capacity
        for k, v in items.items():
            out[k][i % capacity] = v[i]
    return out


def _variant_buffers(s: sweep.Sweep) -> dict[str, dict]:
    """Returns each variant's buffer on the host: ``{"count", "capacity", "items"}`` (live slots only)."""
    out = {}
    for r in s.runs:
        host = jax.device_get(r.buffers)
        for i, v in enumerate(r.bucket.variants):
            size = int(min(host.count[i], host.capacity[i]))
            out[v.name] = {"count": int(host.count[i]), "capacity": int(host.capacity[i]),
                           "items": {k: np.asarray(host.data[k][i][:size]) for k in KEYS}}
    return out


def _first_epoch(cfg, run_dir):
    """Returns (initial buffers, epoch-0 collected counts per variant, buffers after epoch 0)."""
    s = sweep.Sweep(cfg, run_dir, progress=False)
    before = _variant_buffers(s)
    out = s.run_epoch(0)
    collected = {v.name: int(np.asarray(o.counts)[i].sum()) for r, o in zip(s.runs, out.buckets, strict=True)
                 for i, v in enumerate(r.bucket.variants)}
    return before, collected, _variant_buffers(s)


@pytest.fixture(scope="module")
def first_epochs(tmp_path_factory, data_file):
    root = tmp_path_factory.mktemp("first")
    seeded = _first_epoch(load_config(None, [*CFG, f"data.path={data_file}", "data.mode=seed"]), root / "seeded")
    plain = _first_epoch(load_config(None, CFG), root / "plain")
    return seeded, plain


def test_seeded_buffers_start_with_the_files_most_recent_rows(first_epochs, arrays):
    (before, _, _), (plain_before, _, _) = first_epochs
    items = _file_items(arrays)
    assert sorted(before) == ["h16-b1500-s0", "h16-b400-s0", "h4-b1500-s0", "h4-b400-s0"]
    for name, buf in before.items():
        assert buf["count"] == ROWS
        want = _ring(items, buf["capacity"])
        for k in KEYS:
            np.testing.assert_array_equal(buf["items"][k], want[k], err_msg=f"{name} {k}")
        assert plain_before[name]["count"] == 0
    # buffer_size 400: the last 400 rows, row 999 in slot 999 % 400
    np.testing.assert_array_equal(before["h4-b400-s0"]["items"]["obs"][199], items["obs"][999])
    np.testing.assert_array_equal(before["h4-b1500-s0"]["items"]["obs"], items["obs"])


def test_collection_adds_to_the_seeded_buffers(first_epochs, arrays):
    """After the first (random) collection: fill = min(rows + collected, buffer_size), the same new rows."""
    (_, collected, after), (_, plain_collected, plain_after) = first_epochs
    items = _file_items(arrays)
    for name, buf in after.items():
        c = collected[name]
        assert c == plain_collected[name] > 0  # the same random collection as without data
        assert buf["count"] == ROWS + c and plain_after[name]["count"] == c
        assert len(buf["items"]["obs"]) == min(ROWS + c, buf["capacity"])
        new = plain_after[name]["items"]  # c <= 400: the unseeded buffer holds exactly what was collected
        want = _ring({k: np.concatenate([items[k], new[k]]) for k in KEYS}, buf["capacity"])
        for k in KEYS:
            np.testing.assert_array_equal(buf["items"][k], want[k], err_msg=f"{name} {k}")


@pytest.fixture(scope="module")
def seeded_run(tmp_path_factory, data_file):
    run_dir = tmp_path_factory.mktemp("seeded") / "run"
    args = ["--no-progress", "--run-dir", str(run_dir), *CFG, f"data.path={data_file}", "data.mode=seed"]
    assert sweep.main(args) == 0
    return run_dir


def test_a_seeded_sweep_runs_end_to_end(seeded_run, data_file):
    saved = load_config(seeded_run / "config.yaml")
    assert saved.data.mode == "seed" and saved.data.path == str(data_file)
    for name in ("judgments.jsonl", "strategy_stats.json", "world_model_stats.json", "decision.json"):
        assert (seeded_run / name).is_file(), name
    a = artifacts(seeded_run)
    assert a["step"] == 1
    # every variant judged on 2 goals x 2 episodes in each of the 2 epochs
    assert len(a["judgments"]) == 2 * 4 * 4
    assert {r["variant"] for r in a["judgments"]} == {"h4-b400-s0", "h4-b1500-s0", "h16-b400-s0", "h16-b1500-s0"}


def test_resume_restores_the_seeded_buffers_without_reading_the_file(seeded_run, tmp_path, arrays):
    """Killed after epoch 0's checkpoint, resumed with the file gone: the same run, bit for bit."""
    run_dir = tmp_path / "run"
    shutil.copytree(seeded_run, run_dir)
    shutil.rmtree(run_dir / "checkpoints" / "1")  # as if killed before epoch 1's checkpoint
    moved = tmp_path / "reacher.npz"
    path = load_config(seeded_run / "config.yaml").data.path
    shutil.move(path, moved)  # a resume that re-read the file would fail
    try:
        assert sweep.main(["--no-progress", "--run-dir", str(run_dir), "--resume"]) == 0
    finally:
        shutil.move(moved, path)
    assert_same(artifacts(run_dir), artifacts(seeded_run))


def test_resume_before_any_checkpoint_seeds_again(seeded_run, tmp_path):
    """With no checkpoint to restore, the resumed run starts afresh: seeded, so it equals the run."""
    run_dir = tmp_path / "run"
    shutil.copytree(seeded_run, run_dir)
    shutil.rmtree(run_dir / "checkpoints")
    assert sweep.main(["--no-progress", "--run-dir", str(run_dir), "--resume"]) == 0
    assert_same(artifacts(run_dir), artifacts(seeded_run))


def _bad(arrays, **changes):
    out = dict(arrays)
    out.update(changes)
    return out


@pytest.mark.parametrize("case, needle", [
    ("obs_width", "array 'obs' has 5 columns, the env observes 6"),
    ("goal", "array 'goal_id' row 7: goal 8 is not below the env's 8 goals"),
    ("action_width", "array 'action' gives 3 action features per row, the env takes 2"),
    ("nan", "1 rows hold NaN or Inf (first: array 'obs' row 2)"),
])  # fmt: skip
def test_data_that_does_not_fit_the_env_exits_2_with_one_line_and_writes_nothing(tmp_path, capsys, arrays, case,
                                                                                   needle):
    bad = {
        "obs_width": lambda a: _bad(a, obs=a["obs"][:, :5], next_obs=a["next_obs"][:, :5]),
        "goal": lambda a: _bad(a, goal_id=np.where(np.arange(ROWS) == 7, 8, a["goal_id"])),
        "action_width": lambda a: _bad(a, action=np.concatenate([a["action"], a["action"][:, :1]], axis=1)),
        "nan": lambda a: _bad(a, obs=np.where(np.arange(ROWS)[:, None] == 2, np.nan, a["obs"])),
    }[case](arrays)
    path = tmp_path / "bad.npz"
    np.savez(path, **bad)
    run_dir = tmp_path / "run"
    code = sweep.main(["--no-progress", "--run-dir", str(run_dir), *CFG, f"data.path={path}", "data.mode=seed"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and needle in err[0] and str(path) in err[0], err
    assert not run_dir.exists()


@pytest.mark.parametrize("overrides, key", [
    (["data.mode=seed"], "data.mode"),
    (["data.mode=mix", "data.path=x.npz"], "data.mode"),
    (["world_model.reward=learned", "data.mode=seed", "data.path=FILE"], "world_model.reward"),
])  # fmt: skip
def test_config_errors_exit_2_and_write_nothing(tmp_path, capsys, arrays, overrides, key):
    path = tmp_path / "no_reward.npz"
    np.savez(path, **{k: v for k, v in arrays.items() if k != "reward"})
    run_dir = tmp_path / "run"
    overrides = [x.replace("FILE", str(path)) for x in overrides]
    code = sweep.main(["--no-progress", "--run-dir", str(run_dir), *CFG, *overrides])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and key in err[0], err
    assert not run_dir.exists()


def test_seed_mode_allows_auto_capacity_which_fit_mode_refuses(data_file):
    cfg = load_config(None, [f"data.path={data_file}", "data.mode=seed", "variants.capacity_mode=auto"])
    assert cfg.data.mode == "seed"
    with pytest.raises(ConfigError, match="variants.capacity_mode"):
        load_config(None, [f"data.path={data_file}", "variants.capacity_mode=auto"])


def test_a_discrete_envs_file_may_leave_out_its_highest_actions(tmp_path):
    env = envs.make("gridworld")  # 4 actions, 2-D observations, 4 goals
    action = np.array([0, 2, 1, 2, 0, 1, 2])
    obs = np.arange(14, dtype=np.float32).reshape(7, 2)
    np.savez(tmp_path / "g.npz", obs=obs, next_obs=obs + 1, action=action, goal_id=np.array([0, 3, 1, 2, 0, 1, 1]))
    assert load_transitions(tmp_path / "g.npz").action.shape == (7, 3)  # one-hot over the actions the file holds
    cfg = load_config(None, ["env.name=gridworld", f"data.path={tmp_path / 'g.npz'}", "data.mode=seed",
                             "data.chunk_rows=2", "variants.buffer_sizes=[5]"])
    seed = seed_items(cfg, adapt(env), epoch_settings(cfg, adapt(env)))
    assert int(seed.before) == 2  # the file's two oldest rows only move the write position
    np.testing.assert_array_equal(np.asarray(seed.items["action"]), np.eye(4, dtype=np.float32)[action[2:]])
    np.testing.assert_array_equal(np.asarray(seed.items["action"]),
                                  np.asarray(jax.vmap(env.action_features)(action[2:])))
    np.testing.assert_array_equal(np.asarray(seed.items["obs"]), obs[2:])
    scan = scan_file(tmp_path / "g.npz", chunk_rows=2, drop_nonfinite=False)
    check_fits_env(scan, env, 2)
    assert extra_action_columns(scan, env, 2) == 1
    np.savez(tmp_path / "h.npz", obs=obs, next_obs=obs, action=np.array([0, 1, 2, 0, 1, 5, 0]))
    with pytest.raises(DataError, match="array 'action' row 5: action 5 is outside the env's 4 actions"):
        extra_action_columns(scan_file(tmp_path / "h.npz", chunk_rows=2, drop_nonfinite=False), env, 2)
