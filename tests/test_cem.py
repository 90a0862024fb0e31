"""CEM on toy problems whose optimum is known, and against a NumPy re-implementation of its update.

The toy problems make every time step a separate quadratic (continuous) or table lookup
(discrete) whose minimiser is known, so the optimal plan is known exactly. The NumPy reference
draws the same random numbers (the same ``jax.random`` calls on the same keys) and does the rest,
ranking, elite selection, the mean/std or frequency update, the best-so-far, itself.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from augnes_jax.envs.base import Environment
from augnes_jax.planner import PlannerSettings, observation_model, plan

HORIZON = 4
TARGETS = np.array([[0.6, -0.4], [-0.7, 0.2], [0.3, 0.5], [-0.2, -0.8]], np.float32)  # [H, A]
COSTS = np.array(  # [H, N]: the cost of each discrete action at each step; the optimum is the argmin
    [[0.9, 0.1, 0.5, 0.7], [0.3, 0.8, 0.05, 0.6], [0.4, 0.35, 0.9, 0.02], [0.15, 0.6, 0.7, 0.5]],
    np.float32,
)


class _Clock(Environment):
    """The observation is the step counter; the reward at step ``t`` depends on the action only."""

    obs_dim = 1
    num_goals = 1

    def terminal_from_obs(self, next_obs, goal_id, params):
        return jnp.zeros((), bool)


class QuadraticTargets(_Clock):
    """Reward ``-||a_t - target_t||^2``: the optimal plan is the target sequence."""

    discrete = False
    action_dim = TARGETS.shape[1]

    def reward_from_obs(self, obs, action, next_obs, goal_id, params):
        t = obs[0].astype(jnp.int32)
        return -jnp.sum((action - params[t]) ** 2)


class CostTable(_Clock):
    """Reward ``-cost[t, a_t]``: the optimal plan takes the cheapest action at every step."""

    discrete = True
    action_dim = 1
    num_actions = COSTS.shape[1]

    def reward_from_obs(self, obs, action, next_obs, goal_id, params):
        return -params[obs[0].astype(jnp.int32), action]


def clock_dynamics(dyn_params, obs, action):
    del dyn_params, action
    return obs + 1.0


def plan_many(env, table, settings, keys):
    """Returns the first planned action for each key, ``[K, ...]``."""
    obs = jnp.zeros((1,), jnp.float32)
    model = observation_model(env, jnp.asarray(table), clock_dynamics)
    one = lambda k: plan(env, model, None, obs, jnp.int32(0), k, settings)  # noqa: E731
    return np.asarray(jax.jit(jax.vmap(one))(keys))


def numpy_cem(key, s: PlannerSettings) -> np.ndarray:
    """Continuous CEM on ``TARGETS`` in NumPy; returns the first action of the best plan."""
    h, a = TARGETS.shape
    mean, std = np.zeros((h, a)), np.full((h, a), s.init_std)
    best_seq, best_ret = np.zeros((h, a)), -np.inf
    for i in range(s.iterations):
        noise = np.asarray(jax.random.normal(jax.random.fold_in(jax.random.clone(key), i), (s.num_samples, h, a)))
        seqs = np.clip(mean + std * noise, -1.0, 1.0)
        rets = -((seqs - TARGETS) ** 2).sum(axis=(1, 2))
        elites = seqs[np.argsort(-rets, kind="stable")[: s.num_elites]]
        mean, std = elites.mean(axis=0), np.maximum(elites.std(axis=0), s.min_std)
        if rets.max() > best_ret:
            best_seq, best_ret = seqs[np.argmax(rets)], rets.max()
    return best_seq[0]


def numpy_discrete_cem(key, s: PlannerSettings) -> int:
    """Discrete CEM on ``COSTS`` in NumPy; returns the first action of the best plan."""
    h, n = COSTS.shape
    probs = np.full((h, n), 1.0 / n, np.float32)
    best_seq, best_ret = np.zeros(h, int), -np.inf
    for i in range(s.iterations):
        logits = jnp.zeros((h, n)) if i == 0 else jnp.log(jnp.asarray(probs, jnp.float32))
        seqs = np.asarray(jax.random.categorical(jax.random.fold_in(jax.random.clone(key), i),
                                                 logits[None], shape=(s.num_samples, h)))
        rets = -COSTS[np.arange(h), seqs].sum(axis=1)
        elites = seqs[np.argsort(-rets, kind="stable")[: s.num_elites]]
        freq = np.stack([(elites == j).mean(axis=0) for j in range(n)], axis=-1)
        probs = ((1.0 - s.smoothing) * freq + s.smoothing / n).astype(np.float32)
        if rets.max() > best_ret:
            best_seq, best_ret = seqs[np.argmax(rets)], rets.max()
    return int(best_seq[0])


CONTINUOUS = PlannerSettings(horizon=HORIZON, num_samples=64, num_elites=8, min_std=1e-3)
DISCRETE = PlannerSettings(horizon=HORIZON, num_samples=32, num_elites=4, smoothing=0.05)


@pytest.mark.parametrize("iterations", [1, 2, 5])
def test_continuous_cem_equals_a_numpy_cem_with_top_k_elites(iterations):
    s = PlannerSettings(**{**CONTINUOUS.__dict__, "iterations": iterations})
    keys = jax.random.split(jax.random.key(11), 6)
    got = plan_many(QuadraticTargets(), TARGETS, s, jax.random.clone(keys))
    want = np.stack([numpy_cem(keys[i], s) for i in range(len(keys))])
    np.testing.assert_allclose(got, want, atol=1e-5)


@pytest.mark.parametrize("iterations", [1, 2, 5])
def test_discrete_cem_equals_a_numpy_cem_with_top_k_elites(iterations):
    s = PlannerSettings(**{**DISCRETE.__dict__, "iterations": iterations})
    keys = jax.random.split(jax.random.key(12), 8)
    got = plan_many(CostTable(), COSTS, s, jax.random.clone(keys))
    want = np.array([numpy_discrete_cem(keys[i], s) for i in range(len(keys))])
    np.testing.assert_array_equal(got, want)


def test_continuous_cem_converges_to_the_known_optimum_and_more_iterations_are_not_worse():
    keys = jax.random.split(jax.random.key(5), 32)
    errors = []
    for iterations in (1, 3, 6, 12):
        s = PlannerSettings(**{**CONTINUOUS.__dict__, "iterations": iterations})
        first = plan_many(QuadraticTargets(), TARGETS, s, jax.random.clone(keys))
        errors.append(float(np.mean(np.linalg.norm(first - TARGETS[0], axis=-1))))
    # the same keys give the same first iterations, so extra iterations can only refine
    assert all(b <= a for a, b in zip(errors, errors[1:], strict=False)), errors
    # best of 64 draws from N(0, 0.6^2) in 8 dimensions misses by ~0.5; a converged mean does not
    assert errors[0] > 0.3, errors
    assert errors[-1] < 0.03, errors


def test_discrete_cem_converges_to_the_cheapest_plan_and_more_iterations_are_not_worse():
    keys = jax.random.split(jax.random.key(6), 64)
    optimal = int(np.argmin(COSTS[0]))
    hits = []
    for iterations in (1, 2, 4):
        s = PlannerSettings(**{**DISCRETE.__dict__, "num_samples": 16, "iterations": iterations})
        hits.append(float(np.mean(plan_many(CostTable(), COSTS, s, jax.random.clone(keys)) == optimal)))
    assert all(b >= a for a, b in zip(hits, hits[1:], strict=False)), hits
    assert hits[-1] >= 0.95, hits
