"""World-model error statistics, all in the original (unnormalised) units of the observation.

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

from augnes_jax.world_model import WorldModel


@functools.partial(jax.jit, static_argnames=("wm", "num_goals"))
def one_step_errors(
    wm: WorldModel,
    state: Any,
    obs: jax.Array,
    action: jax.Array,
    next_obs: jax.Array,
    goal_id: jax.Array,
    num_goals: int,
) -> dict[str, jax.Array]:
    """Returns one-step squared errors of the predicted next observation on a held-out set.

    Args:
      wm: the world model.
      state: a :class:`WorldModelState` (or anything with params, normalizer, mask).
      obs, next_obs: ``[N, d]``.
      action: ``[N, a]``.
      goal_id: ``int[N]`` in ``[0, num_goals)``.
      num_goals: static number of goals G.

    Returns:
      ``val_mse`` (scalar, mean over samples and dimensions), ``per_dim_mse`` ``[d]`` and
      ``per_goal_mse`` ``[G]`` (mean over that goal's samples and the dimensions; NaN for a goal
      with no sample).
    """
    chex.assert_rank([obs, action, next_obs], 2)
    chex.assert_equal_shape([obs, next_obs])
    chex.assert_shape(goal_id, (obs.shape[0],))
    pred = wm.predict_next(state, obs, action)
    sq = jnp.square(pred - next_obs.astype(jnp.float32))
    per_sample = jnp.mean(sq, axis=1)
    goal_id = goal_id.astype(jnp.int32)
    sums = jax.ops.segment_sum(per_sample, goal_id, num_segments=num_goals)
    counts = jax.ops.segment_sum(jnp.ones_like(per_sample), goal_id, num_segments=num_goals)
    per_goal = jnp.where(counts > 0, sums / jnp.maximum(counts, 1.0), jnp.nan)
    return {
        "val_mse": jnp.mean(per_sample),
        "per_dim_mse": jnp.mean(sq, axis=0),
        "per_goal_mse": per_goal,
    }


@functools.partial(jax.jit, static_argnames=("wm", "ks"))
def k_step_errors(
    wm: WorldModel,
    state: Any,
    obs_seq: jax.Array,
    action_seq: jax.Array,
    ks: tuple[int, ...],
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
        nxt = wm.predict_next(state, obs, action)
        return nxt, nxt

    actions = jnp.swapaxes(action_seq[:, :horizon], 0, 1)
    _, preds = jax.lax.scan(step, obs_seq[:, 0], actions)  # [horizon, N, d]
    return {k: jnp.mean(jnp.square(preds[k - 1] - obs_seq[:, k])) for k in ks}
