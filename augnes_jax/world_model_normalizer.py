"""Standardisation of the world model's inputs ``(obs, action)`` and target ``Δobs``.

Pure core: jittable, no I/O. Means and stds are computed from the valid part of the ring buffer;
they live in the model's state and are refreshed at the start of every training epoch.
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


NORMALIZER_FIELDS = ("obs_mean", "obs_std", "act_mean", "act_std", "delta_mean", "delta_std")


def batch_field(batch: Any, name: str) -> jax.Array:
    """Returns field `name` of a transition batch given as a mapping or as an object."""
    return batch[name] if isinstance(batch, Mapping) else getattr(batch, name)


def identity_normalizer(obs_dim: int, act_dim: int) -> Normalizer:
    """Returns a normalizer with zero means and unit stds."""
    zeros_o, zeros_a = jnp.zeros((obs_dim,), jnp.float32), jnp.zeros((act_dim,), jnp.float32)
    return Normalizer(
        obs_mean=zeros_o,
        obs_std=jnp.ones_like(zeros_o),
        act_mean=zeros_a,
        act_std=jnp.ones_like(zeros_a),
        delta_mean=zeros_o,
        delta_std=jnp.ones_like(zeros_o),
    )


def _masked_moments(x: jax.Array, weight: jax.Array, n: jax.Array) -> tuple[jax.Array, jax.Array]:
    w = weight[:, None]
    mean = jnp.sum(x * w, axis=0) / n
    var = jnp.sum(jnp.square(x - mean[None, :]) * w, axis=0) / n
    std = jnp.sqrt(var)
    # A constant feature would otherwise be divided by ~0; leave it unscaled instead.
    return mean, jnp.where(std > _MIN_STD, std, 1.0)


def compute_normalizer(
    obs: jax.Array, action: jax.Array, next_obs: jax.Array, weight: jax.Array | None = None
) -> Normalizer:
    """Returns the normalizer of a transition set ``obs[N, d], action[N, a], next_obs[N, d]``.

    ``weight: float[N]`` (0 or 1) selects the rows that count; at least one must be set.
    """
    obs = obs.astype(jnp.float32)
    action = action.astype(jnp.float32)
    delta = next_obs.astype(jnp.float32) - obs
    weight = jnp.ones(obs.shape[:1], jnp.float32) if weight is None else weight.astype(jnp.float32)
    n = jnp.maximum(jnp.sum(weight), 1.0)
    obs_mean, obs_std = _masked_moments(obs, weight, n)
    act_mean, act_std = _masked_moments(action, weight, n)
    delta_mean, delta_std = _masked_moments(delta, weight, n)
    return Normalizer(obs_mean, obs_std, act_mean, act_std, delta_mean, delta_std)


def normalizer_from_buffer(buffer_state: rb.BufferState, fallback: Normalizer) -> Normalizer:
    """Returns the normalizer of the buffer's live items ``[0, size)``, or `fallback` if empty."""
    data = buffer_state.data
    weight = rb.valid_mask(buffer_state).astype(jnp.float32)
    fresh = compute_normalizer(
        batch_field(data, "obs"), batch_field(data, "action"), batch_field(data, "next_obs"), weight
    )
    nonempty = rb.size(buffer_state) > 0
    return jax.tree.map(lambda new, old: jnp.where(nonempty, new, old), fresh, fallback)
