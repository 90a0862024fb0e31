"""Model-predictive control over any dynamics function: CEM, discrete CEM and random shooting.

A dynamics function maps ``(dyn_params, obs, action) -> next_obs`` for one environment. The same
planner code runs on a learned world model (``dyn_params`` = the model's state) and on the true
dynamics (:func:`true_dynamics`, ``dyn_params`` = the environment's params): the latter is the
oracle that defines a goal's optimal return where no exact solver exists. Imagined transitions
are scored with the environment's known reward (``env.reward_from_obs``), so the only thing a
world model can get wrong is the dynamics.

Everything is pure and jittable; :func:`make_mpc_policy` returns a policy with the roll-out
signature ``(dyn_params, obs, goal_id, key) -> action``, so ``jax.vmap`` over ``dyn_params``
plans with every capacity variant's model at once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp

from augnes_jax.envs.base import Environment
from augnes_jax.rollout import Policy

Dynamics = Callable[[Any, jax.Array, jax.Array], jax.Array]


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


def true_dynamics(env: Environment) -> Dynamics:
    """Returns the environment's own dynamics as an ``(env_params, obs, action) -> next_obs`` map."""

    def dynamics(env_params, obs, action):
        state = env.state_from_obs(obs, jnp.zeros((), jnp.int32), env_params)
        return env.step(jax.random.key(0), state, action, env_params).obs

    return dynamics


def sequence_returns(
    env: Environment, env_params: Any, dynamics: Dynamics, dyn_params: Any,
    obs: jax.Array, goal_id: jax.Array, actions: jax.Array,
) -> jax.Array:
    """Returns the imagined returns ``[S]`` of action sequences ``actions[S, H, ...]`` from ``obs``.

    Rewards stop after an imagined terminal observation; sequences that are still running at the
    horizon add the environment's planning heuristic.
    """

    def one(seq):
        def body(carry, a):
            o, alive = carry
            nxt = dynamics(dyn_params, o, a)
            r = env.reward_from_obs(o, a, nxt, goal_id, env_params)
            term = env.terminal_from_obs(nxt, goal_id, env_params)
            return (nxt, alive & ~term), jnp.where(alive, r, 0.0)

        (last, alive), rewards = jax.lax.scan(body, (obs, jnp.ones((), bool)), seq)
        tail = jnp.where(alive, env.planning_heuristic(last, goal_id, env_params), 0.0)
        return jnp.sum(rewards) + tail

    return jax.vmap(one)(actions)


def plan(
    env: Environment, env_params: Any, dynamics: Dynamics, dyn_params: Any,
    obs: jax.Array, goal_id: jax.Array, key: jax.Array, settings: PlannerSettings,
) -> jax.Array:
    """Returns the first action of the best plan found from ``obs`` for ``goal_id``."""
    if env.discrete:
        return _plan_discrete(env, env_params, dynamics, dyn_params, obs, goal_id, key, settings)
    return _plan_continuous(env, env_params, dynamics, dyn_params, obs, goal_id, key, settings)


def _plan_continuous(env, env_params, dynamics, dyn_params, obs, goal_id, key, s: PlannerSettings):
    h, a = s.horizon, env.action_dim
    iterations = 1 if s.method == "random_shooting" else s.iterations

    def iteration(carry, i):
        mean, std, best_seq, best_ret = carry
        k = jax.random.fold_in(key, i)
        if s.method == "random_shooting":
            seqs = jax.random.uniform(k, (s.num_samples, h, a), minval=-1.0, maxval=1.0)
        else:
            seqs = jnp.clip(mean[None] + std[None] * jax.random.normal(k, (s.num_samples, h, a)), -1.0, 1.0)
        rets = sequence_returns(env, env_params, dynamics, dyn_params, obs, goal_id, seqs)
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


def _plan_discrete(env, env_params, dynamics, dyn_params, obs, goal_id, key, s: PlannerSettings):
    h, n = s.horizon, env.num_actions
    iterations = 1 if s.method == "random_shooting" else s.iterations

    def iteration(carry, i):
        logits, best_seq, best_ret = carry
        k = jax.random.fold_in(key, i)
        seqs = jax.random.categorical(k, logits[None], shape=(s.num_samples, h))
        rets = sequence_returns(env, env_params, dynamics, dyn_params, obs, goal_id, seqs)
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
    env: Environment, env_params: Any, dynamics: Dynamics, settings: PlannerSettings,
    exploration_noise: float = 0.0,
) -> Policy:
    """Returns an MPC policy ``(dyn_params, obs, goal_id, key) -> action``.

    With ``exploration_noise > 0`` continuous actions get Gaussian noise of that std (then
    clipped) and discrete actions are replaced by a uniform one with that probability.
    """

    def policy(dyn_params, obs, goal_id, key):
        k_plan, k_noise, k_mix = jax.random.split(key, 3)
        action = plan(env, env_params, dynamics, dyn_params, obs, goal_id, k_plan, settings)
        if exploration_noise > 0.0:
            if env.discrete:
                rand = env.sample_action(k_noise)
                action = jnp.where(jax.random.uniform(k_mix) < exploration_noise, rand, action)
            else:
                action = jnp.clip(action + exploration_noise * jax.random.normal(k_noise, action.shape), -1.0, 1.0)
        return action

    return policy
