"""Jitted policy roll-outs: ``lax.scan`` over time, ``vmap`` over parallel environments.

This is the seed's ``sample_transitions``. Every parallel environment plays exactly one episode
aimed at its own goal. Once an episode is done (terminated or truncated) its environment is
frozen: later steps are marked ``valid = False`` and earn no reward, so per-episode returns are
exact and invalid transitions never reach a buffer.

Common random numbers: the start state of episode ``i`` depends only on ``keys[i]``'s reset key
and step ``t``'s policy key only on ``keys[i]`` and ``t``. Two roll-outs given the same keys
and goals (an agent and its oracle twin, say) start in the same states and see the same noise.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from augnes_jax.envs.base import Environment

# (policy_params, obs[obs_dim] (or (obs, state)), goal_id[], key) -> action
Policy = Callable[[Any, jax.Array, jax.Array, jax.Array], jax.Array]


class Transitions(NamedTuple):
    """A batch of transitions; every field has leading axes ``[N, T]`` (or ``[B]`` once flat)."""

    obs: jax.Array  # [N, T, obs_dim]
    action: jax.Array  # [N, T, action_dim] continuous, [N, T] int32 discrete
    next_obs: jax.Array  # [N, T, obs_dim]
    reward: jax.Array  # [N, T]
    terminated: jax.Array  # [N, T] bool
    truncated: jax.Array  # [N, T] bool
    goal_id: jax.Array  # [N, T] int32
    valid: jax.Array  # [N, T] bool: the episode was still running at this step


class RolloutResult(NamedTuple):
    """Transitions ``[N, T]`` plus per-episode summaries ``[N]``."""

    transitions: Transitions
    returns: jax.Array  # [N] undiscounted episode return
    lengths: jax.Array  # [N] number of valid steps
    initial_state: Any  # env state pytree with leading axis [N]


@functools.cache
def random_policy(env: Environment) -> Policy:
    """Returns a policy that ignores its inputs and acts uniformly at random.

    Cached per environment object, so repeated calls give the same function and a jitted
    roll-out that takes it as a static argument compiles once.
    """

    def policy(policy_params, obs, goal_id, key):
        del policy_params, obs, goal_id
        return env.sample_action(key)

    return policy


def episode_keys(key: jax.Array, num_envs: int) -> jax.Array:
    """Returns ``[num_envs]`` per-episode keys derived from ``key``."""
    return jax.random.split(key, num_envs)


def rollout(
    env: Environment,
    env_params: Any,
    policy: Policy,
    policy_params: Any,
    keys: jax.Array,
    goal_ids: jax.Array,
    num_steps: int,
    policy_sees_state: bool = False,
) -> RolloutResult:
    """Returns the :class:`RolloutResult` of one episode per ``(keys[i], goal_ids[i])``.

    Args:
      env: the environment (static).
      env_params: its parameters.
      policy: ``(policy_params, obs, goal_id, key) -> action`` for one environment (static).
      policy_params: shared by every episode (vmap this function to vary it).
      keys: ``[N]`` typed keys, one per episode.
      goal_ids: ``[N]`` int goal ids.
      num_steps: static number of steps ``T``; episodes longer than that are cut.
      policy_sees_state: static; the policy is given ``(obs, state)`` instead of ``obs`` (a
        planner on the true simulator, :func:`augnes_jax.planner.simulator_model`).
    """
    reset_keys, step_keys = jax.vmap(lambda k: tuple(jax.random.split(k)))(keys)
    obs0, state0 = jax.vmap(env.reset, in_axes=(0, None, 0))(reset_keys, env_params, goal_ids)

    def one_step(carry, t):
        obs, state, done = carry
        k = jax.vmap(lambda kk: jax.random.fold_in(kk, t))(step_keys)
        k_pol, k_env = jax.vmap(lambda kk: tuple(jax.random.split(kk)))(k)
        seen = (obs, state) if policy_sees_state else obs
        action = jax.vmap(policy, in_axes=(None, 0, 0, 0))(policy_params, seen, goal_ids, k_pol)
        out = jax.vmap(env.step, in_axes=(0, 0, 0, None))(k_env, state, action, env_params)
        valid = ~done
        keep = lambda new, old: jnp.where(  # noqa: E731
            jnp.reshape(valid, valid.shape + (1,) * (new.ndim - 1)), new, old
        )
        next_state = jax.tree.map(keep, out.state, state)
        next_obs = keep(out.obs, obs)
        reward = jnp.where(valid, out.reward, 0.0)
        terminated = out.terminated & valid
        truncated = out.truncated & valid
        new_done = done | terminated | truncated
        tr = Transitions(obs, action, next_obs, reward, terminated, truncated, goal_ids, valid)
        return (next_obs, next_state, new_done), tr

    done0 = jnp.zeros(goal_ids.shape, bool)
    _, tr = jax.lax.scan(one_step, (obs0, state0, done0), jnp.arange(num_steps))
    tr = jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1), tr)  # [T, N, ...] -> [N, T, ...]
    returns = jnp.sum(tr.reward, axis=1)
    lengths = jnp.sum(tr.valid, axis=1).astype(jnp.int32)
    return RolloutResult(tr, returns, lengths, state0)


rollout_jit = jax.jit(rollout, static_argnames=("env", "policy", "num_steps", "policy_sees_state"))


def flatten(transitions: Transitions) -> Transitions:
    """Returns ``transitions`` with the ``[N, T]`` axes merged into one ``[N * T]`` axis."""
    return jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), transitions)
