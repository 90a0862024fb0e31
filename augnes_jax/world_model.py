"""The explicit world model: a masked flax MLP that predicts the state change Δs from (s, a).

Pure core: every function here is jittable, vmappable over a leading variant axis and does no I/O.
This module is the world model's public face: :func:`make_world_model` bundles the pure functions
of three narrower modules over one static configuration, and their public names are re-exported
here.

- :mod:`augnes_jax.world_model_net`: the masked network, its weight layout (:func:`param_mask`,
  :func:`dense_params`) and its position-keyed initial weights.
- :mod:`augnes_jax.world_model_normalizer`: standardisation of inputs and target.
- :mod:`augnes_jax.world_model_train`: :class:`WorldModelState`, the masked adamw step and the
  scanned training epoch.

Widths under one vmap
  Parameters are allocated at a bucket's ``max_width`` (static). Each variant carries
  ``mask: float[max_width]`` whose first ``hidden_dim`` entries are 1 (a traced leaf), applied
  after every hidden activation. Initial weights are scaled by the *effective* fan-in, so the
  active block of a masked width-h model equals a dense width-h model initialised with the same
  key, whatever the bucket (widths and input sizes must stay below 2**14). Outgoing weights of
  masked units start at zero and the optimizer's updates are masked, so masked weights never move
  (weight decay included); :meth:`WorldModel.grow` can therefore unmask units without changing
  the function.

Normalisation
  Inputs ``(obs, action)`` and the target ``Δobs = next_obs - obs`` (with heads, the reward too)
  are standardised with means and stds computed from the valid part of the ring buffer; they
  live in the state (:class:`Normalizer`, or :class:`HeadNormalizer` with heads) and are
  refreshed at the start of every :meth:`WorldModel.train_epoch`.

Reward and termination heads
  With ``learn_reward=True`` (and ``num_goals >= 1``) the input also holds the goal's one-hot
  and the network predicts, beside Δobs, the reward and a termination logit, as mbrl-lib's
  ``learned_rewards`` does: an environment without ``reward_from_obs`` / ``terminal_from_obs``
  can then be planned on the model alone (:meth:`WorldModel.predict_step`). The goal is an
  input, so every prediction of such a model needs the goal id. Without heads (the default)
  the state, the network and every result are what they were before heads existed.

Activation
  ``swish`` (SiLU): smooth, so open-loop roll-outs and planner costs are differentiable without
  ReLU kinks, and unlike ``tanh`` it does not saturate on large normalised inputs.

Typical use::

    wm = make_world_model(obs_dim=6, act_dim=2, max_width=256, num_layers=2,
                          learning_rate=3e-3, weight_decay=1e-5, grad_clip=1.0, batch_size=256)
    states = jax.vmap(wm.init)(keys, hidden_dims)                      # [V] variants
    epoch = jitted_train_epoch(wm, num_steps=300)                       # jit(vmap(train_epoch))
    states, metrics = epoch(states, buffers, epoch_keys)
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
from collections.abc import Callable
from typing import Any

import chex
import jax
import jax.numpy as jnp
import optax

from augnes_jax import world_model_train as train
from augnes_jax.world_model_net import (
    HEAD_OUTPUTS,
    LAYOUT,
    MAX_INIT_DIM,
    MaskedMLP,
    OutputDense,
    apply_one,
    dense_params,
    hidden_width,
    init_params,
    param_mask,
    unit_mask,
)
from augnes_jax.world_model_normalizer import (
    HEAD_NORMALIZER_FIELDS,
    NORMALIZER_FIELDS,
    HeadNormalizer,
    Normalizer,
    compute_normalizer,
    identity_normalizer,
    normalizer_from_buffer,
)
from augnes_jax.world_model_train import TrainSpec, WorldModelState, goal_one_hot

__all__ = [
    "HEAD_NORMALIZER_FIELDS",
    "HEAD_OUTPUTS",
    "LAYOUT",
    "NORMALIZER_FIELDS",
    "HeadNormalizer",
    "MaskedMLP",
    "Normalizer",
    "OutputDense",
    "TrainSpec",
    "WorldModel",
    "WorldModelState",
    "compute_normalizer",
    "dense_params",
    "flops_per_sample",
    "head_sizes",
    "hidden_width",
    "identity_normalizer",
    "jitted_train_epoch",
    "make_world_model",
    "normalizer_from_buffer",
    "num_params",
    "param_mask",
    "unit_mask",
]

PyTree = Any
_UIDS = itertools.count()


@dataclasses.dataclass(frozen=True, eq=False)
class WorldModel:
    """A world model's static configuration and its pure functions (built by make_world_model).

    Attributes:
      obs_dim, act_dim, max_width, num_layers, batch_size: static sizes.
      num_goals: number of goals G (the goal one-hot's size when `learn_reward`).
      learn_reward: whether the model has reward and termination heads.
      module: the flax :class:`MaskedMLP`.
      optimizer: the optax adamw transformation; train_step clips the gradients' global norm
        before it and masks its updates after it.
      init: ``(key, hidden_dim) -> WorldModelState``.
      init_params: ``(key, hidden_dim) -> params``.
      loss: ``(params, normalizer, mask, batch) -> scalar`` normalised MSE of Δobs (with heads:
        plus the normalised-reward MSE and the termination cross-entropy).
      train_step: ``(state, batch) -> (state, metrics)``.
      train_epoch: ``(state, buffer_state, key, num_steps) -> (state, metrics)``.
      predict_delta: ``(state, obs[..., d], action[..., a], goal_id=None) -> Δobs[..., d]`` in
        original units. ``goal_id`` (int, broadcast to ``[...]``) is required with heads and
        ignored without.
      predict_next: ``(state, obs, action, goal_id=None) -> next_obs[..., d]``.
      predict_step: ``(state, obs, action, goal_id) -> (next_obs[..., d], reward[...],
        terminal_prob[...])`` in original units; raises ValueError without heads.
      predict_heads: ``(state, obs, action, goal_id) -> (Δobs[..., d], reward[...],
        termination_logit[...])``; raises ValueError without heads.
      grow: ``(state, new_hidden_dim) -> state``.
      uid: a number unique to this instance (names its jitted functions for chex).
    """

    obs_dim: int
    act_dim: int
    max_width: int
    num_layers: int
    batch_size: int
    num_goals: int
    learn_reward: bool
    module: MaskedMLP
    optimizer: optax.GradientTransformation
    init: Callable[..., WorldModelState]
    init_params: Callable[..., PyTree]
    loss: Callable[..., jax.Array]
    train_step: Callable[..., tuple[WorldModelState, dict[str, jax.Array]]]
    train_epoch: Callable[..., tuple[WorldModelState, dict[str, jax.Array]]]
    predict_delta: Callable[..., jax.Array]
    predict_next: Callable[..., jax.Array]
    predict_step: Callable[..., tuple[jax.Array, jax.Array, jax.Array]]
    predict_heads: Callable[..., tuple[jax.Array, jax.Array, jax.Array]]
    grow: Callable[..., WorldModelState]
    uid: int = dataclasses.field(default_factory=lambda: next(_UIDS))


def init_state(spec: TrainSpec, key: jax.Array, hidden_dim: int | jax.Array) -> WorldModelState:
    """Returns a fresh state of effective width `hidden_dim` (may be traced)."""
    module = spec.module
    hidden_dim = jnp.clip(jnp.asarray(hidden_dim, jnp.int32), 1, module.max_width)
    params = init_params(key, hidden_dim, in_dim=spec.in_dim, out_dim=spec.out_dim,
                         max_width=module.max_width, num_layers=module.num_layers)
    zero = jnp.zeros((), jnp.int32)
    return WorldModelState(
        params=params,
        opt_state=spec.optimizer.init(params),
        normalizer=identity_normalizer(spec.obs_dim, spec.act_dim, reward=spec.learn_reward),
        mask=unit_mask(hidden_dim, module.max_width),
        hidden_dim=hidden_dim,
        step=zero,
        nonfinite_updates=zero,
        samples_seen=zero,
    )


def _check_batch(spec: TrainSpec, obs: Any, action: Any) -> tuple[jax.Array, jax.Array]:
    """Returns ``obs[..., d]`` and ``action[..., a]`` as float32, checked to share a batch shape."""
    obs = jnp.asarray(obs, jnp.float32)
    action = jnp.asarray(action, jnp.float32)
    chex.assert_axis_dimension(obs, -1, spec.obs_dim)
    chex.assert_axis_dimension(action, -1, spec.act_dim)
    if action.shape[:-1] != obs.shape[:-1]:
        raise ValueError(f"obs {obs.shape} and action {action.shape} batch shapes differ")
    return obs, action


def predict_heads(
    spec: TrainSpec, state: Any, obs: Any, action: Any, goal_id: Any
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Returns ``(Δobs[..., d], reward[...], termination_logit[...])`` of a model with heads.

    Δobs and the reward are in original units. ``goal_id`` is an integer array broadcast to the
    batch shape ``[...]`` (one goal for a whole batch is a scalar).

    Raises:
      ValueError: the model has no heads, or the batch shapes differ.
    """
    if not spec.learn_reward:
        raise ValueError("reward and termination predictions need a model built with learn_reward=True")
    obs, action = _check_batch(spec, obs, action)
    lead, d = obs.shape[:-1], spec.obs_dim
    goal = goal_one_hot(spec, jnp.broadcast_to(jnp.asarray(goal_id, jnp.int32), lead))

    def one(o: jax.Array, a: jax.Array, g: jax.Array) -> jax.Array:
        return apply_one(spec.module, state.params, state.normalizer, state.mask, o, a, g)

    flat = jax.vmap(one)(obs.reshape(-1, d), action.reshape(-1, spec.act_dim), goal.reshape(-1, spec.num_goals))
    n = state.normalizer
    delta = flat[:, :d] * n.delta_std[None, :] + n.delta_mean[None, :]
    reward = flat[:, d] * n.reward_std + n.reward_mean
    return delta.reshape(*lead, d), reward.reshape(lead), flat[:, d + 1].reshape(lead)


def predict_delta(spec: TrainSpec, state: Any, obs: Any, action: Any, goal_id: Any = None) -> jax.Array:
    """Returns Δobs ``[..., d]`` in original units for ``obs[..., d], action[..., a]``.

    `state` is a pytree with ``params``, ``normalizer`` and ``mask`` attributes (a
    :class:`WorldModelState`, or a lighter view of one). A model with heads needs ``goal_id``
    (see :func:`predict_heads`); a model without ignores it.
    """
    if spec.learn_reward:
        if goal_id is None:
            raise ValueError("a world model with reward heads needs goal_id to predict")
        return predict_heads(spec, state, obs, action, goal_id)[0]
    obs_dim, act_dim = spec.obs_dim, spec.act_dim
    obs, action = _check_batch(spec, obs, action)
    lead = obs.shape[:-1]

    def one(o: jax.Array, a: jax.Array) -> jax.Array:
        n = state.normalizer
        out = apply_one(spec.module, state.params, n, state.mask, o, a)
        return out * n.delta_std + n.delta_mean

    flat = jax.vmap(one)(obs.reshape(-1, obs_dim), action.reshape(-1, act_dim))
    return flat.reshape(*lead, obs_dim)


def predict_next(spec: TrainSpec, state: Any, obs: Any, action: Any, goal_id: Any = None) -> jax.Array:
    """Returns the predicted next observation ``obs + Δobs`` ``[..., d]`` (``goal_id`` as in predict_delta)."""
    return jnp.asarray(obs, jnp.float32) + predict_delta(spec, state, obs, action, goal_id)


def predict_step(
    spec: TrainSpec, state: Any, obs: Any, action: Any, goal_id: Any
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Returns ``(next_obs[..., d], reward[...], terminal_prob[...])`` of a model with heads.

    The reward is in original units and ``terminal_prob`` is the sigmoid of the termination
    logit. ``goal_id`` is broadcast to the batch shape.

    Raises:
      ValueError: the model has no heads.
    """
    delta, reward, logit = predict_heads(spec, state, obs, action, goal_id)
    return jnp.asarray(obs, jnp.float32) + delta, reward, jax.nn.sigmoid(logit)


def grow(max_width: int, state: WorldModelState, new_hidden_dim: int | jax.Array) -> WorldModelState:
    """Returns the state with the first `new_hidden_dim` units active (never fewer than now).

    Newly active units have zero outgoing weights (masked weights never move), so the model's
    predictions are unchanged at this moment; their incoming weights are the random values drawn
    at init, so they start learning at the next step.
    """
    new = jnp.clip(jnp.asarray(new_hidden_dim, jnp.int32), state.hidden_dim, max_width)
    return state.replace(mask=unit_mask(new, max_width), hidden_dim=new)


def _check_sizes(
    obs_dim: int, act_dim: int, max_width: int, num_layers: int, batch_size: int, num_goals: int, learn_reward: bool
) -> None:
    """Raises ValueError naming the first size a world model cannot have."""
    if num_layers not in (1, 2):
        raise ValueError(f"num_layers must be 1 or 2, got {num_layers}")
    if num_goals < 0:
        raise ValueError(f"num_goals must be >= 0, got {num_goals}")
    if learn_reward and num_goals < 1:
        raise ValueError(f"learn_reward needs num_goals >= 1, got {num_goals}")
    extra_in, extra_out = head_sizes(num_goals, learn_reward)
    dims = (
        ("obs_dim", obs_dim),
        ("act_dim", act_dim),
        ("obs_dim + act_dim" + (" + num_goals" if learn_reward else ""), obs_dim + act_dim + extra_in),
        ("obs_dim" + (" + 2" if learn_reward else ""), obs_dim + extra_out),
        ("max_width", max_width),
    )
    for name, value in dims:
        if not 0 < value < MAX_INIT_DIM:
            raise ValueError(f"{name} must be in [1, {MAX_INIT_DIM}), got {value}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")


def _no_heads(*args: Any, **kwargs: Any) -> Any:
    del args, kwargs
    raise ValueError("reward and termination predictions need a model built with learn_reward=True")


def make_world_model(
    obs_dim: int,
    act_dim: int,
    max_width: int,
    num_layers: int = 2,
    learning_rate: float = 3e-3,
    weight_decay: float = 1e-5,
    grad_clip: float = 1.0,
    batch_size: int = 256,
    *,
    num_goals: int = 0,
    learn_reward: bool = False,
) -> WorldModel:
    """Returns a :class:`WorldModel` whose functions close over these static hyperparameters.

    Args:
      obs_dim: observation size d.
      act_dim: action feature size a.
      max_width: allocated hidden width (the bucket's largest ``hidden_dim``).
      num_layers: hidden layers, 1 or 2.
      learning_rate: adamw learning rate.
      weight_decay: adamw decoupled weight decay (masked weights are never decayed).
      grad_clip: global-norm gradient clip.
      batch_size: minibatch size sampled by ``train_epoch``.
      num_goals: number of goals G; the size of the goal one-hot when `learn_reward`.
      learn_reward: add reward and termination heads conditioned on the goal (needs
        ``num_goals >= 1``); training then reads ``goal_id``, ``reward`` and ``terminated``.
    """
    _check_sizes(obs_dim, act_dim, max_width, num_layers, batch_size, num_goals, learn_reward)
    extra_in, extra_out = head_sizes(num_goals, learn_reward)
    module = MaskedMLP(max_width=max_width, num_layers=num_layers, out_dim=obs_dim + extra_out)
    # Global-norm clipping happens in the step itself, so the norm it needs (also the finiteness
    # check and a metric) is computed once.
    optimizer = optax.adamw(learning_rate, weight_decay=weight_decay)
    spec = TrainSpec(module=module, optimizer=optimizer, obs_dim=obs_dim, act_dim=act_dim,
                     grad_clip=grad_clip, batch_size=batch_size, num_goals=num_goals, learn_reward=learn_reward)
    sizes = {"in_dim": spec.in_dim, "out_dim": spec.out_dim, "max_width": max_width, "num_layers": num_layers}
    heads = {
        "predict_step": jax.jit(functools.partial(predict_step, spec)) if learn_reward else _no_heads,
        "predict_heads": jax.jit(functools.partial(predict_heads, spec)) if learn_reward else _no_heads,
    }
    return WorldModel(
        obs_dim=obs_dim,
        act_dim=act_dim,
        max_width=max_width,
        num_layers=num_layers,
        batch_size=batch_size,
        num_goals=num_goals,
        learn_reward=learn_reward,
        module=module,
        optimizer=optimizer,
        # Jitted so that an eager call compiles one program instead of dozens of small ops.
        init=jax.jit(functools.partial(init_state, spec)),
        init_params=jax.jit(functools.partial(init_params, **sizes)),
        loss=functools.partial(train.loss, spec),
        train_step=functools.partial(train.train_step, spec),
        train_epoch=functools.partial(train.train_epoch, spec),
        predict_delta=jax.jit(functools.partial(predict_delta, spec)),
        predict_next=jax.jit(functools.partial(predict_next, spec)),
        grow=functools.partial(grow, max_width),
        **heads,
    )


def jitted_train_epoch(
    wm: WorldModel, num_steps: int, *, vmap: bool = True, max_traces: int = 1
) -> Callable[..., tuple[WorldModelState, dict]]:
    """Returns ``jit([vmap](train_epoch))`` guarded by ``chex.assert_max_traces``.

    Call it as ``fn(states, buffer_states, keys)``; with ``vmap=True`` every argument has a
    leading variant axis ``[V]``. Retracing more than `max_traces` times raises, which catches
    accidental shape or static-argument changes between epochs.
    """
    one = functools.partial(wm.train_epoch, num_steps=num_steps)
    many = jax.vmap(one) if vmap else one

    def train_epoch(states, buffer_states, keys):
        return many(states, buffer_states, keys)

    # chex counts traces per function name and source: naming the function after this model
    # instance and its static arguments lets separate models (buckets, runs) trace once each,
    # while re-creating the jitted function for the same model still counts as a retrace.
    train_epoch.__name__ = f"train_epoch_m{wm.uid}_n{num_steps}_{'vmap' if vmap else 'single'}"
    return jax.jit(chex.assert_max_traces(train_epoch, n=max_traces))


def head_sizes(num_goals: int, learn_reward: bool) -> tuple[int, int]:
    """Returns ``(extra_in, extra_out)``: what reward heads add to the network's input and output.

    With heads the input gains the goal one-hot (``num_goals``) and the output the reward and
    the termination logit (2); without, both are 0.
    """
    return (num_goals, HEAD_OUTPUTS) if learn_reward else (0, 0)


def num_params(obs_dim: int, act_dim: int, hidden_dim: int, num_layers: int, extra_in: int = 0,
               extra_out: int = 0) -> int:
    """Returns the parameter count of a dense model of width `hidden_dim` (weights + biases).

    ``extra_in`` / ``extra_out`` are the sizes reward heads add (:func:`head_sizes`).
    """
    in_dim = obs_dim + act_dim + extra_in
    out_dim = obs_dim + extra_out
    count = in_dim * hidden_dim + hidden_dim
    if num_layers == 2:
        count += hidden_dim * hidden_dim + hidden_dim
    return count + hidden_dim * out_dim + out_dim


def flops_per_sample(obs_dim: int, act_dim: int, hidden_dim: int, num_layers: int, extra_in: int = 0,
                     extra_out: int = 0) -> int:
    """Returns the matmul FLOPs of one training sample (forward + backward) at this width.

    Forward costs 2 FLOPs per multiply-add; backward costs the same again for weight gradients
    and again for input gradients of every layer but the first (no gradient w.r.t. the data).
    Call it with ``hidden_dim`` for useful FLOPs and with the bucket's ``max_width`` for the
    FLOPs actually executed. ``extra_in`` / ``extra_out`` are the sizes reward heads add
    (:func:`head_sizes`).
    """
    in_dim = obs_dim + act_dim + extra_in
    first = in_dim * hidden_dim
    rest = hidden_dim * (obs_dim + extra_out) + (hidden_dim * hidden_dim if num_layers == 2 else 0)
    return 2 * (first + rest) * 2 + 2 * rest
