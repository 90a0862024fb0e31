"""Roll-outs are deterministic in their keys, freeze finished episodes and sum rewards exactly."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from augnes_jax.envs import make
from augnes_jax.rollout import flatten, random_policy, rollout_jit


@pytest.mark.parametrize("name", ["reacher", "gridworld"])
def test_same_key_bit_identical_different_key_different(name):
    env = make(name)
    params = env.default_params(episode_length=12)
    goals = jnp.arange(8) % env.num_goals
    a = rollout_jit(env, params, random_policy(env), None, jax.random.split(jax.random.key(1), 8), goals, 12)
    b = rollout_jit(env, params, random_policy(env), None, jax.random.split(jax.random.key(1), 8), goals, 12)
    c = rollout_jit(env, params, random_policy(env), None, jax.random.split(jax.random.key(2), 8), goals, 12)
    for x, y in zip(jax.tree.leaves(a.transitions), jax.tree.leaves(b.transitions), strict=True):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a.transitions.obs, c.transitions.obs)
    assert not np.array_equal(a.transitions.action, c.transitions.action)


def test_matches_python_loop_and_freezes_after_termination():
    env = make("gridworld")
    params = env.default_params(episode_length=25)
    keys = jax.random.split(jax.random.key(5), 6)
    goals = jnp.arange(6) % env.num_goals
    res = rollout_jit(env, params, random_policy(env), None, keys, goals, 25)
    tr = res.transitions
    # The same episode replayed step by step in Python with the recorded actions.
    for i in range(6):
        state = jax.tree.map(lambda x, i=i: x[i], res.initial_state)
        total, steps = 0.0, 0
        for t in range(25):
            out = env.step(jax.random.key(0), state, tr.action[i, t], params)
            np.testing.assert_array_equal(out.obs, tr.next_obs[i, t])
            total += float(out.reward)
            steps += 1
            state = out.state
            if bool(out.terminated) or bool(out.truncated):
                break
        assert res.returns[i] == total
        assert res.lengths[i] == steps
        assert not np.any(tr.valid[i, steps:])
        assert np.all(tr.reward[i, steps:] == 0.0)


def test_flatten_and_sizes():
    env = make("reacher")
    params = env.default_params(episode_length=50)
    n = 128  # 128 x 50 = 6400 transitions: the default per-call collection size
    res = rollout_jit(env, params, random_policy(env), None, jax.random.split(jax.random.key(0), n), jnp.zeros(n, jnp.int32), 50)
    flat = flatten(res.transitions)
    assert flat.obs.shape == (6400, 6) and flat.action.shape == (6400, 2)
    assert int(flat.valid.sum()) == 6400
