"""The full interface the toolkit builds over a minimal-contract env (augnes_jax.envs.contract), and
the oracle that plans on the true simulator state."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from augnes_jax.envs import EnvContractError, StepOutput, adapt, make, provided
from augnes_jax.epoch import EpochSettings, make_reference_fn
from augnes_jax.planner import PlannerSettings


class Recorder:
    """Continuous, bounds [0, 1] x [-2, 2]; the observation is the action the env received."""

    num_goals, obs_dim, action_dim = 1, 2, 2
    action_low = np.array([0.0, -2.0])
    action_high = np.array([1.0, 2.0])

    def default_params(self, episode_length=None):
        return jnp.asarray(episode_length or 3)

    def reset(self, key, params, goal_id):
        return jnp.zeros(2), jnp.zeros((), jnp.int32)

    def step(self, key, state, action, params):
        t = state + 1
        return action, t, jnp.sum(action), False, t >= params  # a 5-tuple, a Python bool, an array


class HiddenCode:
    """Discrete: the reward of step t is 1 when the action equals a hidden code bit, else 0.

    The observation is always zero, so only a planner on the true state can find the code.
    """

    num_goals, obs_dim, discrete, num_actions = 2, 1, True, 2
    CODES = np.array([[1, 0, 1], [0, 0, 1]])

    def default_params(self, episode_length=None):
        return jnp.asarray(self.CODES)

    def reset(self, key, params, goal_id):
        return jnp.zeros(1), (jnp.asarray(goal_id, jnp.int32), jnp.zeros((), jnp.int32))

    def step(self, key, state, action, params):
        goal, t = state
        reward = (action == params[goal, jnp.minimum(t, 2)]).astype(jnp.float32)
        return StepOutput(jnp.zeros(1), (goal, t + 1), reward, jnp.zeros((), bool), t + 1 >= 3)


def test_planned_actions_are_mapped_to_the_env_bounds_and_steps_normalised():
    env = adapt(Recorder())
    params = env.default_params()
    _, state = env.reset(jax.random.key(0), params, 0)
    out = jax.jit(env.step)(jax.random.key(1), state, jnp.asarray([-1.0, 0.5]), params)
    np.testing.assert_allclose(out.obs, [0.0, 1.0])  # low + (a + 1) / 2 * (high - low)
    out = env.step(jax.random.key(1), state, jnp.asarray([1.0, -1.0]), params)
    np.testing.assert_allclose(out.obs, [1.0, -2.0])
    assert isinstance(out, StepOutput)
    assert (out.reward.dtype, out.terminated.dtype, out.truncated.dtype) == (jnp.float32, jnp.bool_, jnp.bool_)
    samples = jax.vmap(env.sample_action)(jax.random.split(jax.random.key(2), 500))
    assert samples.shape == (500, 2) and float(samples.min()) >= -1.0 and float(samples.max()) <= 1.0
    assert (env.known_reward, env.known_termination, env.exact, env.oracle) == (
        False, False, False, "true_dynamics_planner")


def test_what_an_env_provides_decides_the_oracle_and_the_reward_source():
    grid, reacher = adapt(make("gridworld")), adapt(make("reacher"))
    assert (grid.exact, grid.oracle, grid.known_reward) == (True, "value_iteration", True)
    assert (reacher.exact, reacher.oracle, reacher.known_reward) == (False, "true_dynamics_planner", True)

    class Solved(HiddenCode):
        def exact_optimal_return(self, state, params):
            return jnp.float32(3.0)

    solved = adapt(Solved())
    assert (solved.exact, solved.oracle) == (True, "exact_solver")
    no_reward = Solved()
    no_reward.reward_from_obs = None  # set to None: absent
    assert provided(no_reward, "reward_from_obs") is None and not adapt(no_reward).known_reward
    # the wrapper answers what it supplies and forwards the rest
    assert adapt(make("gridworld")).goals(make("gridworld").default_params()).shape == (4, 2)


@pytest.mark.parametrize(("attr", "value", "message"), [
    ("obs_dim", 0, "obs_dim must be a positive integer, got 0"),
    ("num_goals", None, "num_goals must be a positive integer, got None"),
    ("action_high", np.array([1.0, -3.0]), "action bounds must be finite with action_low < action_high"),
    ("action_low", np.zeros(3), "action_low and action_high must be scalars or have length action_dim=2"),
])
def test_a_broken_contract_is_one_line_naming_the_attribute(attr, value, message):
    env = Recorder()
    setattr(env, attr, value)
    with pytest.raises(EnvContractError) as e:
        adapt(env, label="my.mod:Recorder")
    assert str(e.value).startswith(f"my.mod:Recorder: {message}") and "\n" not in str(e.value)


def test_the_oracle_plans_on_the_true_state_and_matches_brute_force():
    """The observation says nothing, so only the true state (the hidden code) gives return 3."""
    env = adapt(HiddenCode())
    params = env.default_params()
    planner = PlannerSettings(method="cem", horizon=3, num_samples=64, num_elites=4, iterations=2)
    settings = EpochSettings(episode_length=3, samples_per_epoch=3, train_steps=1, planner=planner,
                             collect_planner=planner, exploration_noise=0.0, k_steps=(1,))
    goals = jnp.asarray([0, 1, 0, 1], jnp.int32)
    optimal, baseline = make_reference_fn(env, params, settings)(jax.random.split(jax.random.key(4), 4), goals)

    def brute_force(goal):
        best = -np.inf
        for seq in itertools.product(range(2), repeat=3):
            _, state = env.reset(jax.random.key(0), params, goal)
            total = 0.0
            for a in seq:
                out = env.step(jax.random.key(0), state, jnp.int32(a), params)
                total, state = total + float(out.reward), out.state
            best = max(best, total)
        return best

    np.testing.assert_array_equal(np.asarray(optimal), [brute_force(int(g)) for g in goals])
    assert np.all(np.asarray(optimal) == 3.0) and np.all(np.asarray(baseline) <= 3.0)
