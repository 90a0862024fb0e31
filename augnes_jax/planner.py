"""Model-predictive control over any model of the environment: CEM, discrete CEM and random shooting.

A planner imagines with a :class:`Model`: ``step(params, carry, action, goal_id, key) ->
(carry, reward, done)`` and ``value(params, carry, goal_id)``, an estimate added where a
sequence is still running at the horizon. Three models are built here:

* :func:`simulator_model`: the environment itself. The carry is ``(obs, state)`` and each step is
  the environment's own ``step`` on a copy of the true simulator state, with its own reward,
  termination and truncation. This is the oracle that defines a goal's optimal return where no
  exact solver exists; it needs nothing from the environment beyond the minimal contract.
* :func:`observation_model`: any dynamics ``(dyn_params, obs, action) -> next_obs`` (a learned
  world model) scored with the environment's known ``reward_from_obs`` / ``terminal_from_obs``,
  so the only thing the model can get wrong is the dynamics.
* :func:`learned_model`: a world model that also predicts the reward and the termination, for an
  environment that does not state them as functions of observations.

Actions are planned in ``[-1, 1]`` (or as indices for a discrete env); the environment adapter
(:mod:`augnes_jax.envs.contract`) maps them to the env's own bounds.

Everything is pure and jittable; :func:`make_mpc_policy` returns a policy with the roll-out
signature ``(params, carry, goal_id, key) -> action``, so ``jax.vmap`` over ``params`` plans
with every capacity variant's model at once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from augnes_jax.envs.base import Environment
from augnes_jax.rollout import Policy

Dynamics = Callable[[Any, jax.Array, jax.Array], jax.Array]
# (params, obs, action, goal_id) -> (next_obs, reward, termination probability)
StepPredictor = Callable[[Any, jax.Array, jax.Array, jax.Array], tuple[jax.Array, jax.Array, jax.Array]]


@dataclass(frozen=True)
class PlannerSettings:
    """Static planner settings (shapes and counts)."""

    method: str = "cem"  # cem | random_shooting
    horizon: int = 10
    num_samples: int = 64
    num_elites: int = 8
    iterations: int = 3
    init_std: float = 0.6  # continuous CEM: initial std of the action distribution
    min_std: float = 0.05
    smoothing: float = 0.1  # discrete CEM: mix this much of the uniform distribution back in

    @classmethod
    def from_config(cls, cfg) -> PlannerSettings:
        """Returns settings from a ``PlannerConfig`` section."""
        return cls(method=cfg.method, horizon=cfg.horizon, num_samples=cfg.num_samples,
                   num_elites=cfg.num_elites, iterations=cfg.iterations)


class Model(NamedTuple):
    """What a planner imagines with.

    Attributes:
      step: ``(params, carry, action, goal_id, key) -> (carry, reward, done)``.
      value: ``(params, carry, goal_id) -> value`` added at the horizon to running sequences.
      stochastic: whether ``step`` uses its key; otherwise it is given None and no key is drawn.
    """

    step: Callable[..., tuple[Any, jax.Array, jax.Array]]
    value: Callable[..., jax.Array]
    stochastic: bool = False


def simulator_model(env: Environment) -> Model:
    """Returns the environment itself as a model; ``params`` are its env params.

    The carry is ``(obs, state)``: imagined steps run the env's own ``step`` on a copy of the
    true state, so rewards, termination and truncation are the env's, at the state's own time.
    """

    def step(env_params, carry, action, goal_id, key):
        del goal_id
        out = env.step(key, carry[1], action, env_params)
        return (out.obs, out.state), out.reward, out.terminated | out.truncated

    def value(env_params, carry, goal_id):
        return env.planning_heuristic(carry[0], goal_id, env_params)

    return Model(step, value, stochastic=True)


def true_dynamics(env: Environment) -> Dynamics:
    """Returns the env's own dynamics as ``(env_params, obs, action) -> next_obs`` (a perfect model).

    It needs ``state_from_obs``: the observation must determine the state (time aside).
    """

    def dynamics(env_params, obs, action):
        state = env.state_from_obs(obs, jnp.zeros((), jnp.int32), env_params)
        return env.step(jax.random.key(0), state, action, env_params).obs

    return dynamics


def observation_model(env: Environment, env_params: Any, dynamics: Dynamics) -> Model:
    """Returns ``dynamics`` scored with the env's known reward and termination; the carry is the obs."""

    def step(dyn_params, obs, action, goal_id, key):
        del key
        nxt = dynamics(dyn_params, obs, action)
        r = env.reward_from_obs(obs, action, nxt, goal_id, env_params)
        term = env.terminal_from_obs(nxt, goal_id, env_params)
        return nxt, r, term

    def value(dyn_params, obs, goal_id):
        del dyn_params
        return env.planning_heuristic(obs, goal_id, env_params)

    return Model(step, value)


def learned_model(
    env: Environment, env_params: Any, predict: StepPredictor, *, env_reward: bool, env_termination: bool,
) -> Model:
    """Returns a model that predicts the next observation, the reward and the termination.

    ``predict(params, obs, action, goal_id) -> (next_obs, reward, termination probability)``.
    With ``env_reward`` / ``env_termination`` the env's own ``reward_from_obs`` /
    ``terminal_from_obs`` replace the predicted ones. A predicted probability above one half
    ends the imagined episode.
    """

    def step(params, obs, action, goal_id, key):
        del key
        nxt, reward, p_term = predict(params, obs, action, goal_id)
        if env_reward:
            reward = env.reward_from_obs(obs, action, nxt, goal_id, env_params)
        term = env.terminal_from_obs(nxt, goal_id, env_params) if env_termination else p_term > 0.5
        return nxt, reward, term

    def value(params, obs, goal_id):
        del params
        return env.planning_heuristic(obs, goal_id, env_params)

    return Model(step, value)


def sequence_returns(
    model: Model, params: Any, start: Any, goal_id: jax.Array, actions: jax.Array, key: jax.Array,
) -> jax.Array:
    """Returns the imagined returns ``[S]`` of action sequences ``actions[S, H, ...]`` from ``start``.

    Rewards stop after an imagined end of the episode; sequences still running at the horizon
    add the model's ``value``. Every sequence sees the same step keys (common random numbers);
    ``key`` is used only by a stochastic model (it may be None otherwise).
    """
    step_keys = None
    if model.stochastic:
        step_keys = jax.vmap(lambda t: jax.random.fold_in(key, t))(jnp.arange(actions.shape[1]))

    def one(seq):
        def body(carry, xs):
            c, alive = carry
            a, k = xs
            nxt, r, done = model.step(params, c, a, goal_id, k)
            return (nxt, alive & ~done), jnp.where(alive, r, 0.0)

        (last, alive), rewards = jax.lax.scan(body, (start, jnp.ones((), bool)), (seq, step_keys))
        tail = jnp.where(alive, model.value(params, last, goal_id), 0.0)
        return jnp.sum(rewards) + tail

    return jax.vmap(one)(actions)


def plan(
    env: Environment, model: Model, params: Any, start: Any, goal_id: jax.Array, key: jax.Array,
    settings: PlannerSettings,
) -> jax.Array:
    """Returns the first action of the best plan found from ``start`` for ``goal_id``.

    ``start`` is the model's carry: the observation for a learned model, ``(obs, state)`` for
    :func:`simulator_model`. ``env`` gives only the action space.
    """
    # Imagined steps draw their keys from a stream that no CEM iteration uses.
    iterations = 1 if settings.method == "random_shooting" else settings.iterations
    k_sim = jax.random.fold_in(key, iterations) if model.stochastic else None

    def returns(seqs):
        return sequence_returns(model, params, start, goal_id, seqs, k_sim)

    if env.discrete:
        return _plan_discrete(env.num_actions, returns, key, settings)
    return _plan_continuous(env.action_dim, returns, key, settings)


def _plan_continuous(a: int, returns, key, s: PlannerSettings):
    h = s.horizon
    iterations = 1 if s.method == "random_shooting" else s.iterations

    def iteration(carry, i):
        mean, std, best_seq, best_ret = carry
        k = jax.random.fold_in(key, i)
        if s.method == "random_shooting":
            seqs = jax.random.uniform(k, (s.num_samples, h, a), minval=-1.0, maxval=1.0)
        else:
            seqs = jnp.clip(mean[None] + std[None] * jax.random.normal(k, (s.num_samples, h, a)), -1.0, 1.0)
        rets = returns(seqs)
        top_ret, top_idx = jax.lax.top_k(rets, s.num_elites)
        elites = seqs[top_idx]
        new_mean = jnp.mean(elites, axis=0)
        new_std = jnp.maximum(jnp.std(elites, axis=0), s.min_std)
        better = top_ret[0] > best_ret
        best_seq = jnp.where(better, elites[0], best_seq)
        best_ret = jnp.where(better, top_ret[0], best_ret)
        return (new_mean, new_std, best_seq, best_ret), None

    init = (jnp.zeros((h, a)), jnp.full((h, a), s.init_std), jnp.zeros((h, a)), jnp.asarray(-jnp.inf))
    (_, _, best_seq, _), _ = jax.lax.scan(iteration, init, jnp.arange(iterations))
    return best_seq[0]


def _plan_discrete(n: int, returns, key, s: PlannerSettings):
    h = s.horizon
    iterations = 1 if s.method == "random_shooting" else s.iterations

    def iteration(carry, i):
        logits, best_seq, best_ret = carry
        k = jax.random.fold_in(key, i)
        seqs = jax.random.categorical(k, logits[None], shape=(s.num_samples, h))
        rets = returns(seqs)
        top_ret, top_idx = jax.lax.top_k(rets, s.num_elites)
        elites = seqs[top_idx]
        freq = jnp.mean(jax.nn.one_hot(elites, n), axis=0)
        probs = (1.0 - s.smoothing) * freq + s.smoothing / n
        better = top_ret[0] > best_ret
        best_seq = jnp.where(better, elites[0], best_seq)
        best_ret = jnp.where(better, top_ret[0], best_ret)
        return (jnp.log(probs), best_seq, best_ret), None

    init = (jnp.zeros((h, n)), jnp.zeros((h,), jnp.int32), jnp.asarray(-jnp.inf))
    (_, best_seq, _), _ = jax.lax.scan(iteration, init, jnp.arange(iterations))
    return best_seq[0]


def make_mpc_policy(
    env: Environment, model: Model, settings: PlannerSettings, exploration_noise: float = 0.0,
) -> Policy:
    """Returns an MPC policy ``(params, carry, goal_id, key) -> action`` planning with ``model``.

    With ``exploration_noise > 0`` continuous actions get Gaussian noise of that std (then
    clipped) and discrete actions are replaced by a uniform one with that probability. A policy
    over :func:`simulator_model` needs the roll-out's state: roll it out with
    ``policy_sees_state=True``.
    """

    def policy(params, carry, goal_id, key):
        k_plan, k_noise, k_mix = jax.random.split(key, 3)
        action = plan(env, model, params, carry, goal_id, k_plan, settings)
        if exploration_noise > 0.0:
            if env.discrete:
                rand = env.sample_action(k_noise)
                action = jnp.where(jax.random.uniform(k_mix) < exploration_noise, rand, action)
            else:
                action = jnp.clip(action + exploration_noise * jax.random.normal(k_noise, action.shape), -1.0, 1.0)
        return action

    return policy
