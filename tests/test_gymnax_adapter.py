"""The gymnax adapter against gymnax itself: the same states, keys and actions give the same
observations, rewards and terminations as the env's own ``step_env``; the adapter never
auto-resets; the FourRooms optimum equals a search over action sequences run on gymnax's own
dynamics; bad options are one line."""

import collections
import itertools
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

gymnax = pytest.importorskip("gymnax", reason="gymnax is not importable: install the extra augnes_jax[gymnax]")

from augnes_jax.config import load_config  # noqa: E402
from augnes_jax.envs import EnvLookupError, check_env, make  # noqa: E402
from augnes_jax.envs.base import StepOutput  # noqa: E402
from augnes_jax.envs.gymnax_adapter import GymnaxEnv  # noqa: E402

ROOM_GOALS = [[2, 2], [2, 10], [10, 2], [10, 10]]
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _leaves_equal(a, b, tol=0.0):
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(la) == len(lb)
    for x, y in zip(la, lb, strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=tol, atol=tol)


def _walk(env, params, goal_id, steps, seed, gym_action, tol=0.0):
    """Steps the adapter with random actions and, from each same state, gymnax's own step_env.

    ``tol``: a torque the test maps by hand may differ from the adapter's in the last bit.
    """
    gym_env = gymnax.make(env.env_id)[0]
    key = jax.random.key(seed)
    obs, state = env.reset(jax.random.fold_in(key, 0), params, goal_id)
    adapter_step = jax.jit(env.step)
    own_step = jax.jit(gym_env.step_env)
    for t in range(steps):
        action = env.sample_action(jax.random.fold_in(key, 1000 + t))
        k_step = jax.random.fold_in(key, 1 + t)
        out = adapter_step(k_step, state, action, params)
        g_obs, g_state, g_reward, g_done, _ = own_step(jax.random.clone(k_step), state, gym_action(action), params.env)
        np.testing.assert_allclose(np.asarray(out.obs), np.asarray(g_obs, np.float32).ravel(), rtol=tol, atol=tol)
        assert float(out.reward) == pytest.approx(float(g_reward), rel=tol, abs=tol)
        assert bool(out.terminated) == bool(g_done)
        _leaves_equal(out.state, g_state, tol)
        assert bool(out.truncated) == (t + 1 == params.max_steps and not bool(g_done))
        if bool(out.terminated) or bool(out.truncated):
            return out, t + 1
        state = out.state
    return out, steps


def test_fourrooms_steps_equal_gymnax_step_env_and_goals_go_into_the_state():
    env = make("gymnax:FourRooms-misc", goals=ROOM_GOALS, params={"resample_init_pos": True})
    assert (env.num_goals, env.obs_dim, env.discrete, env.num_actions) == (4, 4, True, 4)
    params = env.default_params(episode_length=25)
    gym_env, gym_params = gymnax.make("FourRooms-misc")
    assert params.env.fail_prob == gym_params.fail_prob == 1.0 / 3  # slips kept: keys must match too
    ends = collections.Counter()
    for seed in range(6):
        goal_id = seed % 4
        # reset: gymnax's own start cell, the configured goal, the observation recomputed
        g_obs, g_state = gym_env.reset_env(jax.random.fold_in(jax.random.key(seed), 0),
                                           params.env.replace(resample_init_pos=True))
        obs, state = env.reset(jax.random.fold_in(jax.random.key(seed), 0), params, goal_id)
        np.testing.assert_array_equal(np.asarray(state.pos), np.asarray(g_state.pos))
        np.testing.assert_array_equal(np.asarray(state.goal), ROOM_GOALS[goal_id])
        np.testing.assert_array_equal(obs, np.concatenate([np.asarray(g_state.pos), ROOM_GOALS[goal_id]]))
        out, length = _walk(env, params, goal_id, 25, seed, lambda a: a)
        ends["terminated" if bool(out.terminated) else "truncated"] += 1
        if bool(out.truncated):
            assert length == 25 and int(out.state.time) == 25  # the episode is not reset
    assert ends["truncated"] >= 1


def test_pendulum_steps_equal_gymnax_step_env_with_actions_mapped_to_its_bounds():
    env = make("gymnax:Pendulum-v1", params={"max_torque": 3.0})
    assert (env.num_goals, env.obs_dim, env.discrete, env.action_dim) == (1, 3, False, 1)
    params = env.default_params(episode_length=12)
    assert env.goals(params).shape == (1, 0)
    # actions in [-1, 1] reach gymnax as torques in [-3, 3] (the overridden bound)
    out, length = _walk(env, params, 0, 12, 3, lambda a: 3.0 * a, tol=1e-6)
    assert length == 12 and bool(out.truncated) and not bool(out.terminated)
    np.testing.assert_allclose(env.env_action(jnp.asarray([-1.0]), params.env), [-3.0])
    np.testing.assert_allclose(env.env_action(jnp.asarray([0.25]), params.env), [0.75])
    np.testing.assert_allclose(env.env_action(jnp.asarray([7.0]), params.env), [3.0])  # clipped to [-1, 1] first


def test_gymnax_own_step_resets_where_the_adapter_continues():
    env = make("gymnax:Pendulum-v1")
    params = env.default_params(episode_length=3)
    gym_env = gymnax.make("Pendulum-v1")[0]
    _, state = env.reset(jax.random.key(0), params, 0)
    gym_state = state
    for t in range(3):
        out = env.step(jax.random.key(10 + t), state, jnp.asarray([0.5]), params)
        gym_out = gym_env.step(jax.random.key(10 + t), gym_state, jnp.asarray([1.0]), params.env)
        state, gym_state = out.state, gym_out[1]
    assert bool(out.truncated) and bool(gym_out[4])
    assert int(state.time) == 3 and int(gym_state.time) == 0  # gymnax started a new episode


class NaiveGymnaxPendulum:
    """What a user writes first: gymnax's own (auto-resetting) step behind the minimal contract."""

    num_goals, obs_dim, action_dim = 1, 3, 1
    action_low, action_high = -2.0, 2.0

    def __init__(self):
        self.env, self.params = gymnax.make("Pendulum-v1")

    def default_params(self, episode_length=None):
        return self.params.replace(max_steps_in_episode=episode_length or 200)

    def reset(self, key, params, goal_id):
        return self.env.reset(key, params)

    def step(self, key, state, action, params):
        obs, state, reward, terminated, truncated, _ = self.env.step(key, state, action, params)
        return StepOutput(obs, state, reward.astype(jnp.float32), terminated, truncated & ~terminated)


def test_check_env_catches_gymnax_auto_reset_and_passes_the_adapter():
    problems = check_env(NaiveGymnaxPendulum())
    assert len(problems) == 1 and problems[0].startswith("step:") and "auto-reset" in problems[0], problems
    assert check_env(make("gymnax:Pendulum-v1")) == []


@pytest.mark.parametrize("example", ["gymnax_fourrooms.yaml", "gymnax_pendulum.yaml"])
def test_example_configs_build_envs_that_pass_check_env(example):
    cfg = load_config(EXAMPLES / example)
    env = make(cfg.env.name, **cfg.env.kwargs)
    assert env.num_goals == (4 if "fourrooms" in example else 1)
    assert check_env(env, episode_length=6) == []


SMALL_MAP = ("xxxxxxx",
             "x     x",
             "x xxx x",
             "x   x x",
             "xxxxxxx")


def _small_maze(fail_prob):
    env = GymnaxEnv("FourRooms-misc", goals=[[1, 5]], params={"fail_prob": fail_prob})
    env.gymnax_env.env_map = jnp.asarray([[c == " " for c in row] for row in SMALL_MAP])
    return env


def _free_cells():
    return [(r, c) for r, row in enumerate(SMALL_MAP) for c, ch in enumerate(row) if ch == " "]


def _bfs(goal):
    dist = {goal: 0}
    queue = collections.deque([goal])
    while queue:
        r, c = queue.popleft()
        for dr, dc in ((-1, 0), (0, 1), (1, 0), (0, -1)):
            n = (r + dr, c + dc)
            if SMALL_MAP[n[0]][n[1]] == " " and n not in dist:
                dist[n] = dist[(r, c)] + 1
                queue.append(n)
    return dist


def test_fourrooms_exact_optimum_equals_search_over_gymnax_own_moves():
    """Deterministic moves: the optimum equals the best of all action sequences run by gymnax."""
    env = _small_maze(0.0)
    horizon = 5
    params = env.default_params(episode_length=horizon)
    goal = jnp.asarray([1, 5], jnp.int32)
    seqs = jnp.asarray(list(itertools.product(range(4), repeat=horizon)), jnp.int32)  # [4^5, 5]
    gym = env.gymnax_env

    @jax.jit
    def best_return(pos, time):
        def run(seq):
            def body(carry, a):
                state, alive = carry
                _, nxt, reward, done, _ = gym.step_env(jax.random.key(0), state, a, params.env)
                return (nxt, alive & ~done), jnp.where(alive, reward, 0.0)

            start = env.state_template.replace(pos=pos, goal=goal, time=time)
            _, rewards = jax.lax.scan(body, (start, jnp.ones((), bool)), seq[: horizon])
            return jnp.sum(jnp.where(jnp.arange(horizon) < horizon - time, rewards, 0.0))

        return jnp.max(jax.vmap(run)(seqs))

    dist = _bfs((1, 5))
    checked = 0
    for cell in _free_cells():
        for time in (0, 2):
            state = env.state_template.replace(pos=jnp.asarray(cell, jnp.int32), goal=goal, time=jnp.int32(time))
            exact = float(env.exact_optimal_return(state, params))
            assert exact == float(best_return(jnp.asarray(cell, jnp.int32), jnp.int32(time))), (cell, time)
            if cell != (1, 5):  # the shortest path decides it
                assert exact == float(dist[cell] <= horizon - time), (cell, time)
            checked += 1
    assert checked == 2 * len(_free_cells())
    assert {float(dist[c] <= 5) for c in _free_cells() if c != (1, 5)} == {0.0, 1.0}  # both outcomes occur


def _expectimax(cell, steps, goal, slip):
    """Optimal probability of entering ``goal`` within ``steps`` moves when moves slip (plain Python)."""
    if steps == 0:
        return 0.0
    moves = ((-1, 0), (0, 1), (1, 0), (0, -1))

    def outcome(a):
        n = (cell[0] + moves[a][0], cell[1] + moves[a][1])
        n = n if SMALL_MAP[n[0]][n[1]] == " " else cell
        return 1.0 if n == goal else _expectimax(n, steps - 1, goal, slip)

    values = [outcome(a) for a in range(4)]
    return max((1 - slip) * v + slip * sum(values) / 4 for v in values)


def test_fourrooms_exact_optimum_with_slipping_moves_equals_expectimax():
    env = _small_maze(0.3)
    params = env.default_params(episode_length=4)
    for cell in _free_cells():
        state = env.state_template.replace(pos=jnp.asarray(cell, jnp.int32), goal=jnp.asarray([1, 5], jnp.int32),
                                           time=jnp.int32(0))
        expected = _expectimax(cell, 4, (1, 5), 0.3 * 4 / 3)
        assert float(env.exact_optimal_return(state, params)) == pytest.approx(expected, abs=1e-6), cell


@pytest.mark.parametrize(("kwargs", "needle"), [
    ({"params": {"fail_probability": 0.1}}, "env.kwargs.params.fail_probability: FourRooms-misc EnvParams has no field"),
    ({"goals": [[1, 1], [2, 2, 2]]}, "env.kwargs.goals[1]: has length 3, the state field 'goal' has 2"),
    ({"goals": [[1, 1]], "goal_field": "target"}, "env.kwargs.goal_field: FourRooms-misc state has no field 'target'"),
    ({"params": {"fail_prob": "often"}}, "env.kwargs.params.fail_prob: expected a number"),
    ({"goals": [[2, 2], [6, 1]]}, "env.kwargs.goals[1]: cell [6, 1] is not a free cell of the 13x13 map"),
])
def test_bad_options_are_one_line_naming_the_key(kwargs, needle):
    with pytest.raises(EnvLookupError) as e:
        make("gymnax:FourRooms-misc", **kwargs)
    assert needle in str(e.value) and "\n" not in str(e.value)
    assert str(e.value).startswith("gymnax:FourRooms-misc: ")


def test_unknown_gymnax_id_is_one_line():
    with pytest.raises(EnvLookupError) as e:
        make("gymnax:FourRoom-misc")
    assert str(e.value).startswith("gymnax:FourRoom-misc: unknown gymnax id 'FourRoom-misc'; gymnax has ")
    assert "FourRooms-misc" in str(e.value) and "\n" not in str(e.value)


def test_naming_a_gymnax_env_imports_no_gymnax():
    code = ("import sys, augnes_jax.envs as e\n"
            "from augnes_jax.envs import registry as r\n"
            "assert r.is_known('gymnax:FourRooms-misc') and r.import_path('gymnax:Pendulum-v1') == 'gymnax:Pendulum-v1'\n"
            "assert r.declared_num_goals('gymnax:Pendulum-v1') == 1\n"
            "assert r.declared_num_goals('gymnax:FourRooms-misc', {'goals': [[1, 1], [2, 2]]}) == 2\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('gymnax', 'matplotlib')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
