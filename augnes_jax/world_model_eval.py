"""World-model error statistics, all in the original (unnormalised) units of the observation
(and of the reward, for a model with reward and termination heads).

Pure core, jitted with `wm` and the sizes static; vmap over a leading variant axis by closing
over everything but `state`::

    errs = jax.vmap(lambda s: one_step_errors(wm, s, obs, act, next_obs, goal_id, num_goals=G))(
        states)
"""

from __future__ import annotations

import functools
from typing import Any

import chex
import jax
import jax.numpy as jnp
import optax

from augnes_jax.world_model import WorldModel


def _per_goal_mean(per_sample: jax.Array, goal_id: jax.Array, num_goals: int) -> jax.Array:
    """Returns the mean of `per_sample` ``[N]`` per goal ``[G]`` (NaN for a goal with no sample)."""
    sums = jax.ops.segment_sum(per_sample, goal_id, num_segments=num_goals)
    counts = jax.ops.segment_sum(jnp.ones_like(per_sample), goal_id, num_segments=num_goals)
    return jnp.where(counts > 0, sums / jnp.maximum(counts, 1.0), jnp.nan)


def _head_errors(
    reward_pred: jax.Array, logit: jax.Array, reward: jax.Array, terminated: jax.Array, goal_id: jax.Array,
    num_goals: int,
) -> dict[str, jax.Array]:
    """Returns the reward head's squared error and the termination head's cross-entropy and accuracy."""
    chex.assert_equal_shape([reward_pred, reward, terminated])
    reward_sq = jnp.square(reward_pred - reward.astype(jnp.float32))
    label = terminated.astype(jnp.float32)
    predicted = (logit > 0.0).astype(jnp.float32)  # sigmoid(logit) > 0.5
    return {
        "reward_mse": jnp.mean(reward_sq),
        "per_goal_reward_mse": _per_goal_mean(reward_sq, goal_id, num_goals),
        "termination_bce": jnp.mean(optax.sigmoid_binary_cross_entropy(logit, label)),
        "termination_accuracy": jnp.mean((predicted == label).astype(jnp.float32)),
    }


@functools.partial(jax.jit, static_argnames=("wm", "num_goals"))
def one_step_errors(
    wm: WorldModel,
    state: Any,
    obs: jax.Array,
    action: jax.Array,
    next_obs: jax.Array,
    goal_id: jax.Array,
    num_goals: int,
    reward: jax.Array | None = None,
    terminated: jax.Array | None = None,
) -> dict[str, jax.Array]:
    """Returns one-step squared errors of the predicted next observation on a held-out set.

    Args:
      wm: the world model.
      state: a :class:`WorldModelState` (or anything with params, normalizer, mask).
      obs, next_obs: ``[N, d]``.
      action: ``[N, a]``.
      goal_id: ``int[N]`` in ``[0, num_goals)`` (also the model's input when it has heads).
      num_goals: static number of goals G.
      reward: ``float[N]`` observed rewards; used only by a model with heads.
      terminated: ``bool[N]`` observed terminations; used only by a model with heads.

    Returns:
      ``val_mse`` (scalar, mean over samples and dimensions), ``per_dim_mse`` ``[d]`` and
      ``per_goal_mse`` ``[G]`` (mean over that goal's samples and the dimensions; NaN for a goal
      with no sample). A model with heads, given `reward` and `terminated`, adds
      ``reward_mse`` (original units), ``per_goal_reward_mse`` ``[G]``, ``termination_bce``
      (sigmoid cross-entropy of the logit) and ``termination_accuracy`` (threshold 0.5).
    """
    chex.assert_rank([obs, action, next_obs], 2)
    chex.assert_equal_shape([obs, next_obs])
    chex.assert_shape(goal_id, (obs.shape[0],))
    goal_id = goal_id.astype(jnp.int32)
    heads = wm.learn_reward and reward is not None and terminated is not None
    if wm.learn_reward:
        delta, reward_pred, logit = wm.predict_heads(state, obs, action, goal_id)
        pred = obs.astype(jnp.float32) + delta
    else:
        pred = wm.predict_next(state, obs, action)
    sq = jnp.square(pred - next_obs.astype(jnp.float32))
    per_sample = jnp.mean(sq, axis=1)
    out = {
        "val_mse": jnp.mean(per_sample),
        "per_dim_mse": jnp.mean(sq, axis=0),
        "per_goal_mse": _per_goal_mean(per_sample, goal_id, num_goals),
    }
    if heads:
        out.update(_head_errors(reward_pred, logit, reward, terminated, goal_id, num_goals))
    return out


@functools.partial(jax.jit, static_argnames=("wm", "ks"))
def k_step_errors(
    wm: WorldModel,
    state: Any,
    obs_seq: jax.Array,
    action_seq: jax.Array,
    ks: tuple[int, ...],
    goal_id: jax.Array | None = None,
) -> dict[int, jax.Array]:
    """Returns the open-loop k-step MSE for every k in `ks`.

    The model is rolled out from ``obs_seq[:, 0]`` on its own predictions under the recorded
    actions, and its k-th prediction is compared with ``obs_seq[:, k]`` (mean over sequences and
    dimensions).

    Args:
      wm: the world model.
      state: a :class:`WorldModelState` (or anything with params, normalizer, mask).
      obs_seq: ``[N, T + 1, d]`` observed trajectories (no reset inside a sequence).
      action_seq: ``[N, T, a]`` the actions taken between them.
      ks: static horizons, each in ``[1, T]``.
      goal_id: ``int[N]``, each sequence's goal; needed by a model with heads (its goal is an
        input), ignored by one without.
    """
    chex.assert_rank([obs_seq, action_seq], 3)
    if not ks:
        return {}
    horizon = max(ks)
    if min(ks) < 1 or horizon > action_seq.shape[1] or horizon >= obs_seq.shape[1]:
        raise ValueError(
            f"ks {ks} must lie in [1, {min(action_seq.shape[1], obs_seq.shape[1] - 1)}]"
        )
    obs_seq = obs_seq.astype(jnp.float32)

    def step(obs, action):
        nxt = wm.predict_next(state, obs, action, goal_id)
        return nxt, nxt

    actions = jnp.swapaxes(action_seq[:, :horizon], 0, 1)
    _, preds = jax.lax.scan(step, obs_seq[:, 0], actions)  # [horizon, N, d]
    return {k: jnp.mean(jnp.square(preds[k - 1] - obs_seq[:, k])) for k in ks}
