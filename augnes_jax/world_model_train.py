"""Training the world model: its state, the masked adamw step and a scanned epoch of steps.

Pure core: every function here is jittable, vmappable over a leading variant axis and does no
I/O. The functions take a static :class:`TrainSpec` first;
:func:`augnes_jax.world_model.make_world_model` binds it.

The optimizer's updates are masked with :func:`~augnes_jax.world_model_net.param_mask`, so
masked weights never move (weight decay included) and a masked width-h model trains like a
dense width-h one.

With reward and termination heads (``TrainSpec.learn_reward``) the loss is the sum of three
terms, each a mean over the batch: the normalised-Δobs MSE (also averaged over the observation
dimensions, as without heads), the normalised-reward MSE and the sigmoid binary cross-entropy
of the termination logit against the stored ``terminated`` flag. The goal enters as a one-hot
of the stored ``goal_id``.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import chex
import jax
import jax.numpy as jnp
import optax
from flax import struct

from augnes_jax import buffer as rb
from augnes_jax.world_model_net import HEAD_OUTPUTS, MaskedMLP, apply_one, param_mask
from augnes_jax.world_model_normalizer import Normalizer, batch_field, normalizer_from_buffer

PyTree = Any


@struct.dataclass
class WorldModelState:
    """Everything one variant's world model carries between steps.

    Attributes:
      params: flax params ``{"params": {"hidden_0": ..., ["hidden_1": ...], "out": ...}}`` at
        the bucket's ``max_width``; kernels are ``hidden_0: [in, max_width]``,
        ``hidden_1: [max_width, max_width]`` and ``out: [out, max_width]`` (transposed,
        see :class:`~augnes_jax.world_model_net.OutputDense`).
      opt_state: optax state of the model's optimizer.
      normalizer: :class:`~augnes_jax.world_model_normalizer.Normalizer` (a
        :class:`~augnes_jax.world_model_normalizer.HeadNormalizer` for a model with heads).
      mask: ``float32[max_width]``, 1 on the first ``hidden_dim`` units.
      hidden_dim: int32 scalar, the effective width.
      step: int32 scalar, optimizer updates applied.
      nonfinite_updates: int32 scalar, updates skipped because the loss or a gradient was not
        finite.
      samples_seen: int32 scalar, training samples drawn from the buffer.
    """

    params: PyTree
    opt_state: PyTree
    normalizer: Normalizer
    mask: jax.Array
    hidden_dim: jax.Array
    step: jax.Array
    nonfinite_updates: jax.Array
    samples_seen: jax.Array


@dataclasses.dataclass(frozen=True, eq=False)
class TrainSpec:
    """The static parts of training.

    Attributes:
      module: the flax :class:`~augnes_jax.world_model_net.MaskedMLP`.
      optimizer: the optax adamw transformation; the step clips the gradients' global norm
        before it and masks its updates after it.
      obs_dim, act_dim: observation and action feature sizes.
      grad_clip: global-norm gradient clip.
      batch_size: minibatch size sampled by :func:`train_epoch`.
      num_goals: number of goals G (the one-hot's size when `learn_reward`).
      learn_reward: whether the model has reward and termination heads.
    """

    module: MaskedMLP
    optimizer: optax.GradientTransformation
    obs_dim: int
    act_dim: int
    grad_clip: float
    batch_size: int
    num_goals: int = 0
    learn_reward: bool = False

    @property
    def in_dim(self) -> int:
        """Returns the network's input size: obs, action features and (with heads) the goal one-hot."""
        return self.obs_dim + self.act_dim + (self.num_goals if self.learn_reward else 0)

    @property
    def out_dim(self) -> int:
        """Returns the network's output size: Δobs and (with heads) the reward and termination logit."""
        return self.obs_dim + (HEAD_OUTPUTS if self.learn_reward else 0)

    @property
    def fields(self) -> tuple[str, ...]:
        """Returns the transition fields that training reads."""
        base = ("obs", "action", "next_obs")
        return (*base, "goal_id", "reward", "terminated") if self.learn_reward else base


def goal_one_hot(spec: TrainSpec, goal_id: jax.Array) -> jax.Array:
    """Returns the float32 one-hot ``[..., num_goals]`` of integer goal ids ``[...]``."""
    return jax.nn.one_hot(jnp.asarray(goal_id, jnp.int32), spec.num_goals, dtype=jnp.float32)


def head_loss(spec: TrainSpec, pred: jax.Array, target: jax.Array, normalizer: Normalizer, batch: Any) -> jax.Array:
    """Returns the loss of a model with heads: Δobs MSE + reward MSE + termination BCE (batch means).

    ``pred: [B, d + 2]`` is the network's output, ``target: [B, d]`` the normalised Δobs.
    """
    d = spec.obs_dim
    reward = batch_field(batch, "reward").astype(jnp.float32)
    terminated = batch_field(batch, "terminated").astype(jnp.float32)
    chex.assert_shape([reward, terminated], (pred.shape[0],))
    reward_n = (reward - normalizer.reward_mean) / normalizer.reward_std
    delta_mse = jnp.mean(jnp.square(pred[:, :d] - target))
    reward_mse = jnp.mean(jnp.square(pred[:, d] - reward_n))
    bce = jnp.mean(optax.sigmoid_binary_cross_entropy(pred[:, d + 1], terminated))
    return delta_mse + reward_mse + bce


def loss(spec: TrainSpec, params: PyTree, normalizer: Normalizer, mask: jax.Array, batch: Any) -> jax.Array:
    """Returns the mean squared error of the normalised Δobs over a batch ``[B]``.

    With heads (``spec.learn_reward``) it returns :func:`head_loss`; the batch then also needs
    ``goal_id``, ``reward`` and ``terminated`` ``[B]``.
    """
    obs = batch_field(batch, "obs").astype(jnp.float32)
    action = batch_field(batch, "action").astype(jnp.float32)
    next_obs = batch_field(batch, "next_obs").astype(jnp.float32)
    chex.assert_shape([obs, next_obs], (None, spec.obs_dim))
    chex.assert_shape(action, (None, spec.act_dim))
    n = normalizer
    target = (next_obs - obs - n.delta_mean[None, :]) / n.delta_std[None, :]
    if spec.learn_reward:
        goal = goal_one_hot(spec, batch_field(batch, "goal_id"))
        pred = jax.vmap(functools.partial(apply_one, spec.module), in_axes=(None, None, None, 0, 0, 0))(
            params, normalizer, mask, obs, action, goal
        )
        return head_loss(spec, pred, target, normalizer, batch)
    pred = jax.vmap(functools.partial(apply_one, spec.module), in_axes=(None, None, None, 0, 0))(
        params, normalizer, mask, obs, action
    )
    return jnp.mean(jnp.square(pred - target))


def _update(spec: TrainSpec, state: WorldModelState, batch: Any, enabled: jax.Array):
    value, grads = jax.value_and_grad(functools.partial(loss, spec))(
        state.params, state.normalizer, state.mask, batch
    )
    grad_norm = optax.tree.norm(grads)
    # The norm is finite iff every gradient is; finite gradients give finite adam updates.
    finite = jnp.isfinite(value) & jnp.isfinite(grad_norm)
    apply = finite & enabled
    scale = spec.grad_clip / jnp.maximum(grad_norm, spec.grad_clip)  # optax.clip_by_global_norm
    grads = jax.tree.map(lambda g: g * scale, grads)
    updates, opt_state = spec.optimizer.update(grads, state.opt_state, state.params)
    updates = jax.tree.map(jnp.multiply, updates, param_mask(updates, state.mask))
    # A select (not a cond) keeps the skip per variant under vmap.
    params = jax.tree.map(lambda p, u: jnp.where(apply, p + u, p), state.params, updates)
    opt_state = jax.tree.map(lambda new, old: jnp.where(apply, new, old), opt_state, state.opt_state)
    batch_n = jnp.asarray(batch_field(batch, "obs").shape[0], jnp.int32)
    state = state.replace(
        params=params,
        opt_state=opt_state,
        step=state.step + apply.astype(jnp.int32),
        nonfinite_updates=state.nonfinite_updates + (enabled & ~finite).astype(jnp.int32),
        samples_seen=state.samples_seen + jnp.where(enabled, batch_n, 0),
    )
    metrics = {"loss": value, "grad_norm": grad_norm, "finite": finite}
    return state, metrics


def train_step(spec: TrainSpec, state: WorldModelState, batch: Any) -> tuple[WorldModelState, dict]:
    """Returns the state after one masked adamw step on `batch` and the step's metrics.

    The update is skipped (and ``nonfinite_updates`` incremented) when the loss or any gradient
    is not finite. Metrics: ``loss``, ``grad_norm``, ``finite``.
    """
    return _update(spec, state, batch, jnp.asarray(True))


def train_epoch(
    spec: TrainSpec, state: WorldModelState, buffer_state: rb.BufferState, key: jax.Array, num_steps: int
) -> tuple[WorldModelState, dict]:
    """Returns the state after `num_steps` minibatch steps sampled from `buffer_state`.

    The normalizer is first recomputed from the buffer's live items, then every minibatch index
    of the epoch is drawn (uniformly with replacement from the live items) before a
    ``lax.scan`` over the steps. Nothing is trained while the buffer is empty. Metrics:
    ``train_loss`` (mean normalised loss over the finite steps, NaN if none), ``grad_norm``
    (mean), ``nonfinite_updates`` and ``samples_seen`` (running totals of the state).
    """
    state = state.replace(normalizer=normalizer_from_buffer(buffer_state, state.normalizer))
    enabled = rb.can_sample(buffer_state, 1)
    data = buffer_state.data
    fields = {name: batch_field(data, name) for name in spec.fields}

    # Every minibatch index of the epoch in one draw: one random-bits kernel instead of one per
    # step inside the loop (on a CPU that loop costs as much as a small matmul).
    indices = rb.sample_indices(buffer_state, key, num_steps * spec.batch_size)

    def body(carry: WorldModelState, index: jax.Array):
        batch = {name: leaf[index] for name, leaf in fields.items()}
        return _update(spec, carry, batch, enabled)

    state, per_step = jax.lax.scan(body, state, indices.reshape(num_steps, spec.batch_size))
    good = per_step["finite"] & enabled
    n_good = jnp.sum(good.astype(jnp.float32))
    loss_sum = jnp.sum(jnp.where(good, per_step["loss"], 0.0))
    metrics = {
        "train_loss": jnp.where(n_good > 0, loss_sum / jnp.maximum(n_good, 1.0), jnp.nan),
        "grad_norm": jnp.mean(per_step["grad_norm"]),
        "nonfinite_updates": state.nonfinite_updates,
        "samples_seen": state.samples_seen,
    }
    return state, metrics
