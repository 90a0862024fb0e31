"""Environment contract, exact value iteration and the oracle planner, for every registered env."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from augnes_jax.envs import GridWorld, make, registered_envs, value_iteration
from augnes_jax.envs.gridworld import GridParams, parse_layout
from augnes_jax.planner import PlannerSettings, make_mpc_policy, simulator_model
from augnes_jax.rollout import random_policy, rollout_jit

ENV_NAMES = sorted(registered_envs())


@pytest.mark.parametrize("name", ENV_NAMES)
def test_contract_shapes_and_flags(name):
    env = make(name)
    params = env.default_params(episode_length=7)
    assert env.num_goals == env.goals(params).shape[0] >= 2
    obs, state = jax.jit(env.reset)(jax.random.key(0), params, 1)
    assert obs.shape == env.observation_spec().shape == (env.obs_dim,)
    action = env.sample_action(jax.random.key(1))
    assert action.shape == env.action_spec().shape
    assert env.action_features(action).shape == (env.action_feature_dim,)
    step = jax.jit(env.step)
    for t in range(7):
        out = step(jax.random.key(2 + t), state, action, params)
        state = out.state
        # terminated and truncated are separate flags and never both set
        assert not (bool(out.terminated) and bool(out.truncated))
        if bool(out.terminated):
            break
    assert bool(out.terminated) or bool(out.truncated)
    np.testing.assert_allclose(env.obs_from_state(env.state_from_obs(out.obs, 0, params)), out.obs, atol=1e-5)


@pytest.mark.parametrize("name", ENV_NAMES)
def test_reward_from_obs_matches_step_reward(name):
    env = make(name)
    params = env.default_params()
    keys = jax.random.split(jax.random.key(3), 16)
    goals = jnp.arange(16) % env.num_goals
    res = rollout_jit(env, params, random_policy(env), None, keys, goals, 5)
    tr = res.transitions
    r = jax.vmap(jax.vmap(env.reward_from_obs, in_axes=(0, 0, 0, 0, None)), in_axes=(0, 0, 0, 0, None))(
        tr.obs, tr.action, tr.next_obs, tr.goal_id, params)
    np.testing.assert_allclose(np.where(tr.valid, r, 0.0), tr.reward, atol=1e-5)


def _brute_force_optimal(walls, goal, start, horizon):
    """Best return over all 4^horizon action sequences by plain Python search."""
    moves = [(-1, 0), (1, 0), (0, -1), (0, 1)]
    h, w = walls.shape
    best = -horizon
    for seq in itertools.product(range(4), repeat=horizon):
        r, c = start
        for t, a in enumerate(seq):
            nr, nc = r + moves[a][0], c + moves[a][1]
            if 0 <= nr < h and 0 <= nc < w and not walls[nr, nc]:
                r, c = nr, nc
            if (r, c) == tuple(goal):
                best = max(best, -(t + 1))
                break
    return best


def test_value_iteration_equals_brute_force_and_greedy_achieves_it():
    layout = ("#####", "#..G#", "#.#.#", "#...#", "#####")
    walls, goals = parse_layout(layout)
    horizon = 6
    values = np.asarray(value_iteration(jnp.asarray(walls), jnp.asarray(goals[0]), horizon))
    free = [(r, c) for r in range(5) for c in range(5) if not walls[r, c] and (r, c) != tuple(goals[0])]
    for cell in free:
        assert values[horizon, cell[0], cell[1]] == _brute_force_optimal(walls, goals[0], cell, horizon)

    # The greedy policy w.r.t. V achieves V in the environment.
    env = GridWorld()
    params = GridParams(walls=jnp.asarray(walls), goal_cells=jnp.asarray(goals), max_steps=horizon)
    for cell in free:
        state = env.state_from_obs(jnp.asarray(cell, jnp.float32), 0, params)
        total = 0.0
        for t in range(horizon):
            qs = []
            for a in range(4):
                out = env.step(jax.random.key(0), state, jnp.int32(a), params)
                nxt = 0.0 if bool(out.terminated) else values[horizon - t - 1][tuple(np.asarray(out.state.pos))]
                qs.append(-1.0 + nxt)
            out = env.step(jax.random.key(0), state, jnp.int32(int(np.argmax(qs))), params)
            total += float(out.reward)
            state = out.state
            if bool(out.terminated):
                break
        assert total == values[horizon, cell[0], cell[1]]


def test_exact_optimal_return_is_minus_shortest_path():
    env = make("gridworld")
    params = env.default_params()
    # goal 0 sits at (1, 1); from (3, 3) the shortest path is 4 moves
    state = env.state_from_obs(jnp.asarray([3.0, 3.0]), 0, params)
    assert float(env.exact_optimal_return(state, params)) == -4.0


def test_oracle_planner_beats_random_on_every_goal_of_the_continuous_task():
    env = make("reacher")
    params = env.default_params(episode_length=30)
    goals = jnp.repeat(jnp.arange(env.num_goals), 2)
    keys = jax.random.split(jax.random.key(7), goals.shape[0])
    settings = PlannerSettings(horizon=8, num_samples=48, num_elites=6, iterations=2)
    oracle = make_mpc_policy(env, simulator_model(env), settings)
    # common random numbers: both policies start from the same states (clone marks the deliberate reuse)
    opt = rollout_jit(env, params, oracle, params, jax.random.clone(keys), goals, 30, policy_sees_state=True).returns.reshape(env.num_goals, 2).mean(1)
    rnd = rollout_jit(env, params, random_policy(env), None, keys, goals, 30).returns.reshape(env.num_goals, 2).mean(1)
    # a wide margin on every goal: the oracle closes at least 40% of the random policy's distance cost
    assert np.all(np.asarray(opt) > 0.6 * np.asarray(rnd)), (opt, rnd)


def test_reacher_matches_numpy_reference():
    from augnes_jax.envs.numpy_reference import reacher_obs, reacher_reward, reacher_step

    env = make("reacher")
    params = env.default_params(episode_length=20)
    keys = jax.random.split(jax.random.key(11), 32)
    goals = jnp.arange(32) % env.num_goals
    res = rollout_jit(env, params, random_policy(env), None, keys, goals, 20)
    q = np.asarray(res.initial_state.q, np.float64)
    dq = np.asarray(res.initial_state.dq, np.float64)
    goal_xy = np.asarray(params.goals)[np.asarray(goals)]
    for t in range(20):
        q, dq = reacher_step(q, dq, np.asarray(res.transitions.action[:, t], np.float64))
        np.testing.assert_allclose(res.transitions.next_obs[:, t], reacher_obs(q, dq), atol=2e-4)
        np.testing.assert_allclose(res.transitions.reward[:, t], reacher_reward(q, goal_xy), atol=2e-4)
        # re-sync to the JAX state so float32 drift cannot compound over the horizon
        q = np.stack([np.arctan2(res.transitions.next_obs[:, t, 1], res.transitions.next_obs[:, t, 0]),
                      np.arctan2(res.transitions.next_obs[:, t, 3], res.transitions.next_obs[:, t, 2])], 1).astype(np.float64)
        dq = np.asarray(res.transitions.next_obs[:, t, 4:], np.float64)


def test_gridworld_matches_numpy_reference():
    from augnes_jax.envs.numpy_reference import grid_step

    env = make("gridworld")
    params = env.default_params(episode_length=40)
    keys = jax.random.split(jax.random.key(12), 16)
    res = rollout_jit(env, params, random_policy(env), None, keys, jnp.arange(16) % 4, 40)
    tr = res.transitions
    pos = np.asarray(res.initial_state.pos)
    walls = np.asarray(params.walls)
    for t in range(40):
        nxt = grid_step(pos, np.asarray(tr.action[:, t]), walls)
        valid = np.asarray(tr.valid[:, t])
        np.testing.assert_array_equal(tr.next_obs[:, t][valid], nxt[valid].astype(np.float32))
        pos = np.where(valid[:, None], nxt, pos)
