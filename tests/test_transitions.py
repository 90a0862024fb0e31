"""Transitions files: reading, checking, the held-out split and contiguous sequences."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from augnes_jax import envs
from augnes_jax.rollout import random_policy, rollout_jit
from augnes_jax.transitions import DataError, contiguous_windows, load_transitions, split_by_episode


def reacher_transitions(num_episodes: int = 40, episode_length: int = 50, seed: int = 0) -> dict[str, np.ndarray]:
    """Returns random-policy reacher transitions (valid steps only) as the arrays of a file."""
    env = envs.make("reacher")
    params = env.default_params(episode_length=episode_length)
    goals = jnp.asarray(np.arange(num_episodes) % env.num_goals, jnp.int32)
    keys = jax.random.split(jax.random.key(seed), num_episodes)
    res = rollout_jit(env, params, random_policy(env), None, keys, goals, episode_length)
    tr = jax.device_get(res.transitions)
    valid = np.asarray(tr.valid)
    episode = np.broadcast_to(np.arange(num_episodes)[:, None], valid.shape)
    return {
        "obs": np.asarray(tr.obs)[valid], "action": np.asarray(tr.action)[valid],
        "next_obs": np.asarray(tr.next_obs)[valid], "goal_id": np.asarray(tr.goal_id)[valid],
        "reward": np.asarray(tr.reward)[valid], "terminated": np.asarray(tr.terminated)[valid],
        "episode_id": episode[valid],
    }


@pytest.fixture(scope="module")
def arrays():
    return reacher_transitions()


def save(tmp_path, arrays, name="t.npz"):
    path = tmp_path / name
    np.savez(path, **arrays)
    return path


def test_load_returns_the_file_arrays(tmp_path, arrays):
    t = load_transitions(save(tmp_path, arrays))
    assert t.num_rows == arrays["obs"].shape[0] == 40 * 50
    np.testing.assert_array_equal(t.obs, arrays["obs"].astype(np.float32))
    np.testing.assert_array_equal(t.action, arrays["action"].astype(np.float32))
    np.testing.assert_array_equal(t.episode_id, arrays["episode_id"])
    assert t.num_goals == int(arrays["goal_id"].max()) + 1


def test_discrete_actions_are_one_hot(tmp_path):
    obs = np.arange(8, dtype=np.float32).reshape(4, 2)
    t = load_transitions(save(tmp_path, {"obs": obs, "next_obs": obs + 1, "action": np.array([0, 2, 1, 2])}))
    np.testing.assert_array_equal(t.action, [[1, 0, 0], [0, 0, 1], [0, 1, 0], [0, 0, 1]])
    np.testing.assert_array_equal(t.goal_id, [0, 0, 0, 0])
    assert t.episode_id is None and t.reward is None


def test_split_by_episode_never_shares_an_episode(tmp_path, arrays):
    t = load_transitions(save(tmp_path, arrays))
    train, held = split_by_episode(t, 0.2, seed=3)
    train_eps, held_eps = set(train.episode_id.tolist()), set(held.episode_id.tolist())
    assert not train_eps & held_eps
    assert train_eps | held_eps == set(range(40))
    assert len(held_eps) == 8  # round(0.2 * 40)
    assert train.num_rows + held.num_rows == t.num_rows
    # rows keep the file's order, so every episode's steps stay in time order
    for eps, part in ((held_eps, held), (train_eps, train)):
        np.testing.assert_array_equal(part.obs, t.obs[np.isin(t.episode_id, list(eps))])
    other_train, _ = split_by_episode(t, 0.2, seed=4)
    assert set(other_train.episode_id.tolist()) != train_eps


def test_split_without_episode_ids_is_by_row_and_seeded(tmp_path):
    obs = np.arange(20, dtype=np.float32).reshape(10, 2)
    t = load_transitions(save(tmp_path, {"obs": obs, "next_obs": obs, "action": obs}))
    train, held = split_by_episode(t, 0.3, seed=0)
    assert held.num_rows == 3 and train.num_rows == 7
    assert not set(train.obs[:, 0].tolist()) & set(held.obs[:, 0].tolist())
    again, _ = split_by_episode(t, 0.3, seed=0)
    np.testing.assert_array_equal(again.obs, train.obs)


def test_contiguous_windows_stay_inside_one_episode(tmp_path, arrays):
    t = load_transitions(save(tmp_path, arrays))
    _, held = split_by_episode(t, 0.2, seed=0)
    obs_seq, act_seq = contiguous_windows(held, 5)
    assert obs_seq.shape == (8 * 10, 6, 6) and act_seq.shape == (8 * 10, 5, 2)  # 10 windows per 50-step episode
    # by hand: the first window is the first held-out episode's first five steps
    first = held.episode_id == held.episode_id[0]
    np.testing.assert_array_equal(obs_seq[0, :5], held.obs[first][:5])
    np.testing.assert_array_equal(obs_seq[0, 5], held.next_obs[first][4])
    np.testing.assert_array_equal(act_seq[1], held.action[first][5:10])
    assert contiguous_windows(held._replace(episode_id=None), 5)[0].shape[0] == 0


def test_contiguous_windows_restart_after_a_break(tmp_path):
    obs = np.arange(12, dtype=np.float32)[:, None]
    next_obs = obs + 1
    next_obs[8] = 100.0  # row 8 does not lead to row 9
    terminated = np.arange(12) == 3
    t = load_transitions(save(tmp_path, {"obs": obs, "next_obs": next_obs, "action": obs, "terminated": terminated,
                                         "episode_id": np.zeros(12, np.int64)}))
    obs_seq, act_seq = contiguous_windows(t, 2)
    # runs: rows 0-3 (3 terminates), 4-8 (8 breaks the chain), 9-11
    np.testing.assert_array_equal(act_seq[:, 0, 0], [0, 2, 4, 6, 9])
    np.testing.assert_array_equal(obs_seq[:, :, 0], [[0, 1, 2], [2, 3, 4], [4, 5, 6], [6, 7, 8], [9, 10, 11]])


def bad_cases(arrays):
    n = arrays["obs"].shape[0]
    nan_obs = arrays["obs"].copy()
    nan_obs[[7, 9, 11]] = np.nan
    inf_act = arrays["action"].astype(np.float32).copy()
    inf_act[5, 1] = np.inf
    drop = lambda name: {k: v for k, v in arrays.items() if k != name}  # noqa: E731
    return {
        "missing": (drop("next_obs"), "missing array 'next_obs'"),
        "length": ({**arrays, "reward": arrays["reward"][:-3]}, f"array 'reward' has {n - 3} rows, obs has {n} (row {n - 3}"),
        "obs_dims": ({**arrays, "obs": arrays["obs"][:, :, None]}, "array 'obs' must be [N, d]"),
        "next_obs_dims": ({**arrays, "next_obs": arrays["next_obs"][:, :4]}, "array 'next_obs' must be [N, 6]"),
        "goal_dims": ({**arrays, "goal_id": arrays["goal_id"][:, None]}, "array 'goal_id' must be [N]"),
        "negative_goal": ({**arrays, "goal_id": np.where(np.arange(n) == 4, -1, arrays["goal_id"])},
                          "array 'goal_id' row 4: negative value -1"),
        "nan": ({**arrays, "obs": nan_obs}, "3 rows hold NaN or Inf (first: array 'obs' row 7)"),
        "inf_action": ({**arrays, "action": inf_act}, "1 rows hold NaN or Inf (first: array 'action' row 5)"),
    }


@pytest.mark.parametrize("case", ["missing", "length", "obs_dims", "next_obs_dims", "goal_dims", "negative_goal",
                                  "nan", "inf_action"])
def test_bad_data_is_one_line_naming_array_and_row(tmp_path, arrays, case):
    data, expected = bad_cases(arrays)[case]
    path = save(tmp_path, data)
    with pytest.raises(DataError) as info:
        load_transitions(path)
    msg = str(info.value)
    assert "\n" not in msg and str(path) in msg and expected in msg, msg


def test_drop_nonfinite_drops_exactly_those_rows(tmp_path, arrays):
    data, _ = bad_cases(arrays)["nan"]
    t = load_transitions(save(tmp_path, data), drop_nonfinite=True)
    keep = np.setdiff1d(np.arange(arrays["obs"].shape[0]), [7, 9, 11])
    np.testing.assert_array_equal(t.obs, arrays["obs"][keep])
    np.testing.assert_array_equal(t.episode_id, arrays["episode_id"][keep])


def test_unreadable_files_are_data_errors(tmp_path):
    text = tmp_path / "x.npz"
    text.write_text("not a zip")
    for path, expected in ((tmp_path / "none.npz", "no such file"), (text, "cannot read as .npz")):
        with pytest.raises(DataError, match=expected):
            load_transitions(path)
