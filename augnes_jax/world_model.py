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
  Inputs ``(obs, action)`` and the target ``Δobs = next_obs - obs`` are standardised with means
  and stds computed from the valid part of the ring buffer; they live in the state
  (:class:`Normalizer`) and are refreshed at the start of every :meth:`WorldModel.train_epoch`.

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
    NORMALIZER_FIELDS,
    Normalizer,
    compute_normalizer,
    identity_normalizer,
    normalizer_from_buffer,
)
from augnes_jax.world_model_train import TrainSpec, WorldModelState

__all__ = [
    "LAYOUT",
    "NORMALIZER_FIELDS",
    "MaskedMLP",
    "Normalizer",
    "OutputDense",
    "TrainSpec",
    "WorldModel",
    "WorldModelState",
    "compute_normalizer",
    "dense_params",
    "flops_per_sample",
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
      module: the flax :class:`MaskedMLP`.
      optimizer: the optax adamw transformation; train_step clips the gradients' global norm
        before it and masks its updates after it.
      init: ``(key, hidden_dim) -> WorldModelState``.
      init_params: ``(key, hidden_dim) -> params``.
      loss: ``(params, normalizer, mask, batch) -> scalar`` normalised MSE of Δobs.
      train_step: ``(state, batch) -> (state, metrics)``.
      train_epoch: ``(state, buffer_state, key, num_steps) -> (state, metrics)``.
      predict_delta: ``(state, obs[..., d], action[..., a]) -> Δobs[..., d]`` original units.
      predict_next: ``(state, obs, action) -> next_obs[..., d]``.
      grow: ``(state, new_hidden_dim) -> state``.
      uid: a number unique to this instance (names its jitted functions for chex).
    """

    obs_dim: int
    act_dim: int
    max_width: int
    num_layers: int
    batch_size: int
    module: MaskedMLP
    optimizer: optax.GradientTransformation
    init: Callable[..., WorldModelState]
    init_params: Callable[..., PyTree]
    loss: Callable[..., jax.Array]
    train_step: Callable[..., tuple[WorldModelState, dict[str, jax.Array]]]
    train_epoch: Callable[..., tuple[WorldModelState, dict[str, jax.Array]]]
    predict_delta: Callable[..., jax.Array]
    predict_next: Callable[..., jax.Array]
    grow: Callable[..., WorldModelState]
    uid: int = dataclasses.field(default_factory=lambda: next(_UIDS))


def init_state(spec: TrainSpec, key: jax.Array, hidden_dim: int | jax.Array) -> WorldModelState:
    """Returns a fresh state of effective width `hidden_dim` (may be traced)."""
    module = spec.module
    hidden_dim = jnp.clip(jnp.asarray(hidden_dim, jnp.int32), 1, module.max_width)
    params = init_params(key, hidden_dim, in_dim=spec.obs_dim + spec.act_dim, out_dim=spec.obs_dim,
                         max_width=module.max_width, num_layers=module.num_layers)
    zero = jnp.zeros((), jnp.int32)
    return WorldModelState(
        params=params,
        opt_state=spec.optimizer.init(params),
        normalizer=identity_normalizer(spec.obs_dim, spec.act_dim),
        mask=unit_mask(hidden_dim, module.max_width),
        hidden_dim=hidden_dim,
        step=zero,
        nonfinite_updates=zero,
        samples_seen=zero,
    )


def predict_delta(spec: TrainSpec, state: Any, obs: Any, action: Any) -> jax.Array:
    """Returns Δobs ``[..., d]`` in original units for ``obs[..., d], action[..., a]``.

    `state` is a pytree with ``params``, ``normalizer`` and ``mask`` attributes (a
    :class:`WorldModelState`, or a lighter view of one).
    """
    obs_dim, act_dim = spec.obs_dim, spec.act_dim
    obs = jnp.asarray(obs, jnp.float32)
    action = jnp.asarray(action, jnp.float32)
    chex.assert_axis_dimension(obs, -1, obs_dim)
    chex.assert_axis_dimension(action, -1, act_dim)
    lead = obs.shape[:-1]
    if action.shape[:-1] != lead:
        raise ValueError(f"obs {obs.shape} and action {action.shape} batch shapes differ")

    def one(o: jax.Array, a: jax.Array) -> jax.Array:
        n = state.normalizer
        out = apply_one(spec.module, state.params, n, state.mask, o, a)
        return out * n.delta_std + n.delta_mean

    flat = jax.vmap(one)(obs.reshape(-1, obs_dim), action.reshape(-1, act_dim))
    return flat.reshape(*lead, obs_dim)


def predict_next(spec: TrainSpec, state: Any, obs: Any, action: Any) -> jax.Array:
    """Returns the predicted next observation ``obs + Δobs`` ``[..., d]``."""
    return jnp.asarray(obs, jnp.float32) + predict_delta(spec, state, obs, action)


def grow(max_width: int, state: WorldModelState, new_hidden_dim: int | jax.Array) -> WorldModelState:
    """Returns the state with the first `new_hidden_dim` units active (never fewer than now).

    Newly active units have zero outgoing weights (masked weights never move), so the model's
    predictions are unchanged at this moment; their incoming weights are the random values drawn
    at init, so they start learning at the next step.
    """
    new = jnp.clip(jnp.asarray(new_hidden_dim, jnp.int32), state.hidden_dim, max_width)
    return state.replace(mask=unit_mask(new, max_width), hidden_dim=new)


def _check_sizes(obs_dim: int, act_dim: int, max_width: int, num_layers: int, batch_size: int) -> None:
    """Raises ValueError naming the first size a world model cannot have."""
    if num_layers not in (1, 2):
        raise ValueError(f"num_layers must be 1 or 2, got {num_layers}")
    dims = (
        ("obs_dim", obs_dim),
        ("act_dim", act_dim),
        ("obs_dim + act_dim", obs_dim + act_dim),
        ("max_width", max_width),
    )
    for name, value in dims:
        if not 0 < value < MAX_INIT_DIM:
            raise ValueError(f"{name} must be in [1, {MAX_INIT_DIM}), got {value}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")


def make_world_model(
    obs_dim: int,
    act_dim: int,
    max_width: int,
    num_layers: int = 2,
    learning_rate: float = 3e-3,
    weight_decay: float = 1e-5,
    grad_clip: float = 1.0,
    batch_size: int = 256,
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
    """
    _check_sizes(obs_dim, act_dim, max_width, num_layers, batch_size)
    module = MaskedMLP(max_width=max_width, num_layers=num_layers, out_dim=obs_dim)
    # Global-norm clipping happens in the step itself, so the norm it needs (also the finiteness
    # check and a metric) is computed once.
    optimizer = optax.adamw(learning_rate, weight_decay=weight_decay)
    spec = TrainSpec(module=module, optimizer=optimizer, obs_dim=obs_dim, act_dim=act_dim,
                     grad_clip=grad_clip, batch_size=batch_size)
    sizes = {"in_dim": obs_dim + act_dim, "out_dim": obs_dim, "max_width": max_width, "num_layers": num_layers}
    return WorldModel(
        obs_dim=obs_dim,
        act_dim=act_dim,
        max_width=max_width,
        num_layers=num_layers,
        batch_size=batch_size,
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


def num_params(obs_dim: int, act_dim: int, hidden_dim: int, num_layers: int) -> int:
    """Returns the parameter count of a dense model of width `hidden_dim` (weights + biases)."""
    in_dim = obs_dim + act_dim
    count = in_dim * hidden_dim + hidden_dim
    if num_layers == 2:
        count += hidden_dim * hidden_dim + hidden_dim
    return count + hidden_dim * obs_dim + obs_dim


def flops_per_sample(obs_dim: int, act_dim: int, hidden_dim: int, num_layers: int) -> int:
    """Returns the matmul FLOPs of one training sample (forward + backward) at this width.

    Forward costs 2 FLOPs per multiply-add; backward costs the same again for weight gradients
    and again for input gradients of every layer but the first (no gradient w.r.t. the data).
    Call it with ``hidden_dim`` for useful FLOPs and with the bucket's ``max_width`` for the
    FLOPs actually executed.
    """
    in_dim = obs_dim + act_dim
    first = in_dim * hidden_dim
    rest = hidden_dim * obs_dim + (hidden_dim * hidden_dim if num_layers == 2 else 0)
    return 2 * (first + rest) * 2 + 2 * rest
