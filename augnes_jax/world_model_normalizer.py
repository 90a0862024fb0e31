"""Standardisation of the world model's inputs ``(obs, action)`` and targets ``Δobs`` (and reward).

Pure core: jittable, no I/O. Means and stds are computed from the valid part of the ring buffer;
they live in the model's state and are refreshed at the start of every training epoch.

A model without reward and termination heads carries a :class:`Normalizer`; one with heads
carries a :class:`HeadNormalizer`, which adds the reward's mean and std. Which one a state holds
is fixed when it is built, so a model without heads keeps the state layout it always had. The
goal one-hot and the termination flag are never normalised.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from augnes_jax import buffer as rb

_MIN_STD = 1e-6


@struct.dataclass
class Normalizer:
    """Per-dimension means and stds of the model's inputs and target.

    Attributes:
      obs_mean, obs_std: ``float[obs_dim]``.
      act_mean, act_std: ``float[act_dim]``.
      delta_mean, delta_std: ``float[obs_dim]`` of ``next_obs - obs``.
    """

    obs_mean: jax.Array
    obs_std: jax.Array
    act_mean: jax.Array
    act_std: jax.Array
    delta_mean: jax.Array
    delta_std: jax.Array


@struct.dataclass
class HeadNormalizer(Normalizer):
    """A :class:`Normalizer` that also standardises the reward target of a model with heads.

    Attributes:
      reward_mean, reward_std: float32 scalars of the stored rewards.
    """

    reward_mean: jax.Array
    reward_std: jax.Array


NORMALIZER_FIELDS = ("obs_mean", "obs_std", "act_mean", "act_std", "delta_mean", "delta_std")
HEAD_NORMALIZER_FIELDS = (*NORMALIZER_FIELDS, "reward_mean", "reward_std")


def batch_field(batch: Any, name: str) -> jax.Array:
    """Returns field `name` of a transition batch given as a mapping or as an object."""
    return batch[name] if isinstance(batch, Mapping) else getattr(batch, name)


def identity_normalizer(obs_dim: int, act_dim: int, *, reward: bool = False) -> Normalizer:
    """Returns a normalizer with zero means and unit stds (a :class:`HeadNormalizer` if `reward`)."""
    zeros_o, zeros_a = jnp.zeros((obs_dim,), jnp.float32), jnp.zeros((act_dim,), jnp.float32)
    base = Normalizer(
        obs_mean=zeros_o,
        obs_std=jnp.ones_like(zeros_o),
        act_mean=zeros_a,
        act_std=jnp.ones_like(zeros_a),
        delta_mean=zeros_o,
        delta_std=jnp.ones_like(zeros_o),
    )
    if not reward:
        return base
    return with_reward_moments(base, jnp.zeros((), jnp.float32), jnp.ones((), jnp.float32))


def with_reward_moments(normalizer: Normalizer, reward_mean: jax.Array, reward_std: jax.Array) -> HeadNormalizer:
    """Returns `normalizer`'s fields plus the reward's mean and std, as a :class:`HeadNormalizer`."""
    fields = {name: getattr(normalizer, name) for name in NORMALIZER_FIELDS}
    return HeadNormalizer(**fields, reward_mean=jnp.asarray(reward_mean, jnp.float32),
                          reward_std=jnp.asarray(reward_std, jnp.float32))


def _masked_moments(x: jax.Array, weight: jax.Array, n: jax.Array) -> tuple[jax.Array, jax.Array]:
    w = weight[:, None]
    mean = jnp.sum(x * w, axis=0) / n
    var = jnp.sum(jnp.square(x - mean[None, :]) * w, axis=0) / n
    std = jnp.sqrt(var)
    # A constant feature would otherwise be divided by ~0; leave it unscaled instead.
    return mean, jnp.where(std > _MIN_STD, std, 1.0)


def compute_normalizer(
    obs: jax.Array,
    action: jax.Array,
    next_obs: jax.Array,
    weight: jax.Array | None = None,
    reward: jax.Array | None = None,
) -> Normalizer:
    """Returns the normalizer of a transition set ``obs[N, d], action[N, a], next_obs[N, d]``.

    ``weight: float[N]`` (0 or 1) selects the rows that count; at least one must be set. With
    ``reward: float[N]`` the result is a :class:`HeadNormalizer` holding the reward's moments too.
    """
    obs = obs.astype(jnp.float32)
    action = action.astype(jnp.float32)
    delta = next_obs.astype(jnp.float32) - obs
    weight = jnp.ones(obs.shape[:1], jnp.float32) if weight is None else weight.astype(jnp.float32)
    n = jnp.maximum(jnp.sum(weight), 1.0)
    obs_mean, obs_std = _masked_moments(obs, weight, n)
    act_mean, act_std = _masked_moments(action, weight, n)
    delta_mean, delta_std = _masked_moments(delta, weight, n)
    base = Normalizer(obs_mean, obs_std, act_mean, act_std, delta_mean, delta_std)
    if reward is None:
        return base
    reward_mean, reward_std = _masked_moments(reward.astype(jnp.float32).reshape(-1, 1), weight, n)
    return with_reward_moments(base, reward_mean[0], reward_std[0])


def normalizer_from_buffer(buffer_state: rb.BufferState, fallback: Normalizer) -> Normalizer:
    """Returns the normalizer of the buffer's live items ``[0, size)``, or `fallback` if empty.

    The result has `fallback`'s type: a :class:`HeadNormalizer` fallback also gets the moments
    of the buffer's ``reward`` field.
    """
    data = buffer_state.data
    weight = rb.valid_mask(buffer_state).astype(jnp.float32)
    reward = batch_field(data, "reward") if isinstance(fallback, HeadNormalizer) else None
    fresh = compute_normalizer(
        batch_field(data, "obs"), batch_field(data, "action"), batch_field(data, "next_obs"), weight, reward
    )
    nonempty = rb.size(buffer_state) > 0
    return jax.tree.map(lambda new, old: jnp.where(nonempty, new, old), fresh, fallback)
