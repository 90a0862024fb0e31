"""The MPC planner against exact answers: value iteration on the gridworld, a perfect model."""

import jax
import jax.numpy as jnp
import numpy as np

from augnes_jax.envs import make, value_iteration
from augnes_jax.planner import (
    PlannerSettings,
    make_mpc_policy,
    observation_model,
    plan,
    sequence_returns,
    simulator_model,
    true_dynamics,
)
from augnes_jax.rollout import rollout_jit


def test_sequence_returns_equal_a_python_rollout_of_the_true_dynamics():
    env = make("reacher")
    params = env.default_params()
    obs, state = env.reset(jax.random.key(0), params, 2)
    seqs = jax.random.uniform(jax.random.key(1), (5, 6, 2), minval=-1, maxval=1)
    key = jax.random.key(2)
    got = sequence_returns(observation_model(env, params, true_dynamics(env)), params, obs, jnp.int32(2), seqs, key)
    on_state = sequence_returns(simulator_model(env), params, (obs, state), jnp.int32(2), seqs, key)
    for i in range(5):
        s, total = state, 0.0
        for t in range(6):
            out = env.step(jax.random.key(0), s, seqs[i, t], params)
            total += float(out.reward)
            s = out.state
        assert abs(float(got[i]) - total) < 1e-4
        assert abs(float(on_state[i]) - total) < 1e-4


def test_discrete_planner_picks_value_iteration_optimal_actions():
    env = make("gridworld")
    params = env.default_params(episode_length=30)
    goal_id = 0
    goal = params.goal_cells[goal_id]
    values = np.asarray(value_iteration(params.walls, goal, 30))[30]
    settings = PlannerSettings(method="cem", horizon=8, num_samples=128, num_elites=12, iterations=3)
    walls = np.asarray(params.walls)
    cells = [(r, c) for r in range(walls.shape[0]) for c in range(walls.shape[1])
             if not walls[r, c] and (r, c) != tuple(np.asarray(goal))]
    # only cells whose goal is within the planning horizon: there the optimum is visible to the planner
    cells = [c for c in cells if -values[c] <= 8]
    obs = jnp.asarray(cells, jnp.float32)
    keys = jax.random.split(jax.random.key(3), len(cells))
    model = observation_model(env, params, true_dynamics(env))
    act = jax.jit(jax.vmap(lambda o, k: plan(env, model, params, o, jnp.int32(goal_id), k, settings)))(obs, keys)
    optimal = 0
    for cell, a in zip(cells, np.asarray(act), strict=True):
        state = env.state_from_obs(jnp.asarray(cell, jnp.float32), goal_id, params)
        out = env.step(jax.random.key(0), state, jnp.int32(a), params)
        q = -1.0 + (0.0 if bool(out.terminated) else values[tuple(np.asarray(out.state.pos))])
        optimal += q == values[cell]
        # a sampling planner may miss the optimum, but never by more than one detour (2 steps)
        assert q >= values[cell] - 2, (cell, int(a), q, values[cell])
    assert optimal >= 0.9 * len(cells), f"{optimal}/{len(cells)} optimal first actions"


def test_a_model_equal_to_the_true_dynamics_has_zero_regret():
    """The agent's planner on a perfect model and the oracle, under common random numbers, tie."""
    env = make("reacher")
    params = env.default_params(episode_length=15)
    settings = PlannerSettings(horizon=5, num_samples=16, num_elites=4, iterations=2)
    true = true_dynamics(env)

    def perfect_model(model_params, obs, action):
        return obs + (true(model_params["env"], obs, action) - obs)

    oracle = make_mpc_policy(env, observation_model(env, params, true), settings)
    agent = make_mpc_policy(env, observation_model(env, params, perfect_model), settings)
    keys = jax.random.split(jax.random.key(9), 8)
    goals = jnp.arange(8) % env.num_goals
    opt = rollout_jit(env, params, oracle, params, jax.random.clone(keys), goals, 15).returns
    got = rollout_jit(env, params, agent, {"env": params}, jax.random.clone(keys), goals, 15).returns
    np.testing.assert_allclose(got, opt, atol=1e-4)
