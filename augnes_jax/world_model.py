"""The explicit world model: a masked flax MLP that predicts the state change Δs from (s, a).

Pure core: every function here is jittable, vmappable over a leading variant axis and does no I/O.

Widths under one vmap
  Parameters are allocated at a bucket's ``max_width`` (static). Each variant carries
  ``mask: float[max_width]`` whose first ``hidden_dim`` entries are 1 (a traced leaf), applied
  after every hidden activation. Initial weights are drawn element by element from
  ``fold_in(key, layer * 2**28 + row * 2**14 + col)`` and scaled by the *effective* fan-in, so
  the active block of a masked width-h model equals a dense width-h model initialised with the
  same key, whatever the bucket (widths and input sizes must stay below 2**14). Outgoing weights of masked units start at zero and the optimizer's updates are
  masked, so masked weights never move (weight decay included); :meth:`WorldModel.grow` can
  therefore unmask units without changing the function.

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
from collections.abc import Callable, Mapping
from typing import Any

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import struct

from augnes_jax import buffer as rb

PyTree = Any
_MIN_STD = 1e-6
_MAX_INIT_DIM = 16384  # layer (4 bits), row and col (14 bits each) share one uint32 counter
_UIDS = itertools.count()


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
class WorldModelState:
    """Everything one variant's world model carries between steps.

    Attributes:
      params: flax params ``{"params": {"hidden_0": ..., ["hidden_1": ...], "out": ...}}`` at
        the bucket's ``max_width``; kernels are ``hidden_0: [in, max_width]``,
        ``hidden_1: [max_width, max_width]`` and ``out: [obs_dim, max_width]`` (transposed,
        see :class:`OutputDense`).
      opt_state: optax state of the model's optimizer.
      normalizer: :class:`Normalizer`.
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


class OutputDense(nn.Module):
    """A dense layer whose kernel is stored ``[features, in]`` (transposed w.r.t. nn.Dense).

    With this layout the kernel's gradient ``g^T h`` has the few output features as rows; XLA's
    CPU matmul computes that shape about ten times faster than ``h^T g`` with a thin output,
    which at width 256 was a tenth of a whole training step.
    """

    features: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Returns ``x @ kernel.T + bias`` ``[..., features]`` for ``x: [..., in]``."""
        kernel = self.param(
            "kernel",
            nn.initializers.lecun_normal(in_axis=1, out_axis=0),
            (self.features, x.shape[-1]),
        )
        bias = self.param("bias", nn.initializers.zeros_init(), (self.features,))
        y = jax.lax.dot_general(x, kernel, (((x.ndim - 1,), (1,)), ((), ())))
        return y + jnp.broadcast_to(bias, y.shape)


class MaskedMLP(nn.Module):
    """A 1- or 2-hidden-layer MLP whose hidden units are switched off by a mask after activation.

    Attributes:
      max_width: allocated hidden width.
      num_layers: number of hidden layers (1 or 2).
      out_dim: output size.
    """

    max_width: int
    num_layers: int
    out_dim: int

    @nn.compact
    def __call__(self, x: jax.Array, mask: jax.Array) -> jax.Array:
        """Returns the output ``[..., out_dim]`` for inputs ``x: [..., in_dim]``."""
        h = x
        for i in range(self.num_layers):
            h = nn.Dense(self.max_width, name=f"hidden_{i}")(h)
            h = nn.swish(h) * jnp.broadcast_to(mask.astype(h.dtype), h.shape)
        return OutputDense(self.out_dim, name="out")(h)


def _field(batch: Any, name: str) -> jax.Array:
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
        _field(data, "obs"), _field(data, "action"), _field(data, "next_obs"), weight
    )
    nonempty = rb.size(buffer_state) > 0
    return jax.tree.map(lambda new, old: jnp.where(nonempty, new, old), fresh, fallback)


def unit_mask(hidden_dim: int | jax.Array, max_width: int) -> jax.Array:
    """Returns ``float32[max_width]`` with ones on the first `hidden_dim` units."""
    return (jnp.arange(max_width) < hidden_dim).astype(jnp.float32)


def _unit_float(bits: jax.Array) -> jax.Array:
    """Returns a float32 in [0, 1) from the top 23 bits of a uint32."""
    one = jax.lax.bitcast_convert_type((bits >> 9) | jnp.uint32(0x3F800000), jnp.float32)
    return one - 1.0


def _normal_at(key: jax.Array, counter: jax.Array) -> jax.Array:
    """Returns one standard normal determined by (key, counter).

    The two words of ``fold_in(key, counter)`` are already threefry output; Box-Muller turns
    them into a normal without a second random-bits kernel (it compiles about twice as fast as
    ``jax.random.normal`` on a folded key, which matters for every eager ``init``).
    """
    words = jax.random.key_data(jax.random.fold_in(key, counter))
    radius = jnp.sqrt(-2.0 * jnp.log(1.0 - _unit_float(words[0])))
    return radius * jnp.cos(2.0 * jnp.pi * _unit_float(words[1]))


def _normal_grids(key: jax.Array, shapes: list[tuple[int, int]]) -> list[jax.Array]:
    """Returns standard normals, one ``[rows, cols]`` array per shape (at most 16 shapes).

    Entry (i, j) of grid g is drawn from the counter ``g * 2**28 + i * 2**14 + j``, so it never
    depends on the grid's size: a narrower grid is exactly the top-left block of a wider one.
    All grids come from one vectorised draw, one random-bits kernel to compile.
    """
    counters = []
    for g, (rows, cols) in enumerate(shapes):
        counter = (
            jnp.uint32(g << 28)
            + jnp.arange(rows, dtype=jnp.uint32)[:, None] * jnp.uint32(_MAX_INIT_DIM)
            + jnp.arange(cols, dtype=jnp.uint32)[None, :]
        )
        counters.append(counter.reshape(-1))
    flat = jax.vmap(_normal_at, in_axes=(None, 0))(key, jnp.concatenate(counters))
    out, start = [], 0
    for rows, cols in shapes:
        out.append(flat[start : start + rows * cols].reshape(rows, cols))
        start += rows * cols
    return out


def param_mask(params: PyTree, mask: jax.Array) -> PyTree:
    """Returns a 0/1 tree shaped like `params`: 1 where a weight belongs to the active network."""
    out: dict[str, dict[str, jax.Array]] = {}
    for name, layer in params["params"].items():
        rows = layer["kernel"].shape[0]
        # Columns are hidden units in every kernel (hidden_0: [in, width], hidden_1: [width,
        # width], out: [out, width]); only hidden_1's rows are hidden units too.
        row = mask if name == "hidden_1" else jnp.ones((rows,), mask.dtype)
        col = mask
        bias = jnp.ones((rows,), mask.dtype) if name == "out" else col
        out[name] = {"kernel": row[:, None] * col[None, :], "bias": bias}
    return {"params": out}


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
    if num_layers not in (1, 2):
        raise ValueError(f"num_layers must be 1 or 2, got {num_layers}")
    dims = (
        ("obs_dim", obs_dim),
        ("act_dim", act_dim),
        ("obs_dim + act_dim", obs_dim + act_dim),
        ("max_width", max_width),
    )
    for name, value in dims:
        if not 0 < value < _MAX_INIT_DIM:
            raise ValueError(f"{name} must be in [1, {_MAX_INIT_DIM}), got {value}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    in_dim = obs_dim + act_dim
    module = MaskedMLP(max_width=max_width, num_layers=num_layers, out_dim=obs_dim)
    # Global-norm clipping happens in the step itself, so the norm it needs (also the finiteness
    # check and a metric) is computed once.
    optimizer = optax.adamw(learning_rate, weight_decay=weight_decay)

    def init_params(key: jax.Array, hidden_dim: int | jax.Array) -> PyTree:
        """Returns params at max_width whose active block matches a dense width-h init."""
        h = jnp.asarray(hidden_dim, jnp.float32)
        active_row = (jnp.arange(max_width) < hidden_dim)[:, None]
        shapes = [(in_dim, max_width)] + [(max_width, max_width)] * (num_layers - 1)
        grids = _normal_grids(key, [*shapes, (obs_dim, max_width)])
        layers = {
            "hidden_0": {
                "kernel": grids[0] / jnp.sqrt(float(in_dim)),
                "bias": jnp.zeros((max_width,), jnp.float32),
            }
        }
        if num_layers == 2:
            # Outgoing weights of masked units start at 0 so grow() leaves the function unchanged.
            layers["hidden_1"] = {
                "kernel": jnp.where(active_row, grids[1] / jnp.sqrt(h), 0.0),
                "bias": jnp.zeros((max_width,), jnp.float32),
            }
        layers["out"] = {  # stored [obs_dim, max_width], see OutputDense
            "kernel": jnp.where(active_row.T, grids[-1] / jnp.sqrt(h), 0.0),
            "bias": jnp.zeros((obs_dim,), jnp.float32),
        }
        return {"params": layers}

    def init(key: jax.Array, hidden_dim: int | jax.Array) -> WorldModelState:
        """Returns a fresh state of effective width `hidden_dim` (may be traced)."""
        hidden_dim = jnp.clip(jnp.asarray(hidden_dim, jnp.int32), 1, max_width)
        params = init_params(key, hidden_dim)
        zero = jnp.zeros((), jnp.int32)
        return WorldModelState(
            params=params,
            opt_state=optimizer.init(params),
            normalizer=identity_normalizer(obs_dim, act_dim),
            mask=unit_mask(hidden_dim, max_width),
            hidden_dim=hidden_dim,
            step=zero,
            nonfinite_updates=zero,
            samples_seen=zero,
        )

    def _normalized_inputs(normalizer: Normalizer, obs: jax.Array, action: jax.Array) -> jax.Array:
        obs_n = (obs - normalizer.obs_mean) / normalizer.obs_std
        act_n = (action - normalizer.act_mean) / normalizer.act_std
        return jnp.concatenate([obs_n, act_n], axis=-1)

    def _apply_one(params, normalizer, mask, obs, action):
        """Returns the normalised Δobs ``[d]`` for one sample ``obs[d], action[a]``."""
        return module.apply(params, _normalized_inputs(normalizer, obs, action), mask)

    def loss(params: PyTree, normalizer: Normalizer, mask: jax.Array, batch: Any) -> jax.Array:
        """Returns the mean squared error of the normalised Δobs over a batch ``[B]``."""
        obs = _field(batch, "obs").astype(jnp.float32)
        action = _field(batch, "action").astype(jnp.float32)
        next_obs = _field(batch, "next_obs").astype(jnp.float32)
        chex.assert_shape([obs, next_obs], (None, obs_dim))
        chex.assert_shape(action, (None, act_dim))
        n = normalizer
        target = (next_obs - obs - n.delta_mean[None, :]) / n.delta_std[None, :]
        pred = jax.vmap(_apply_one, in_axes=(None, None, None, 0, 0))(
            params, normalizer, mask, obs, action
        )
        return jnp.mean(jnp.square(pred - target))

    def _update(state: WorldModelState, batch: Any, enabled: jax.Array):
        value, grads = jax.value_and_grad(loss)(state.params, state.normalizer, state.mask, batch)
        grad_norm = optax.tree.norm(grads)
        # The norm is finite iff every gradient is; finite gradients give finite adam updates.
        finite = jnp.isfinite(value) & jnp.isfinite(grad_norm)
        apply = finite & enabled
        scale = grad_clip / jnp.maximum(grad_norm, grad_clip)  # optax.clip_by_global_norm
        grads = jax.tree.map(lambda g: g * scale, grads)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        updates = jax.tree.map(jnp.multiply, updates, param_mask(updates, state.mask))
        # A select (not a cond) keeps the skip per variant under vmap.
        params = jax.tree.map(lambda p, u: jnp.where(apply, p + u, p), state.params, updates)
        opt_state = jax.tree.map(
            lambda new, old: jnp.where(apply, new, old), opt_state, state.opt_state
        )
        batch_n = jnp.asarray(_field(batch, "obs").shape[0], jnp.int32)
        state = state.replace(
            params=params,
            opt_state=opt_state,
            step=state.step + apply.astype(jnp.int32),
            nonfinite_updates=state.nonfinite_updates + (enabled & ~finite).astype(jnp.int32),
            samples_seen=state.samples_seen + jnp.where(enabled, batch_n, 0),
        )
        metrics = {"loss": value, "grad_norm": grad_norm, "finite": finite}
        return state, metrics

    def train_step(state: WorldModelState, batch: Any) -> tuple[WorldModelState, dict]:
        """Returns the state after one masked adamw step on `batch` and the step's metrics.

        The update is skipped (and ``nonfinite_updates`` incremented) when the loss or any
        gradient is not finite. Metrics: ``loss``, ``grad_norm``, ``finite``.
        """
        return _update(state, batch, jnp.asarray(True))

    def train_epoch(
        state: WorldModelState, buffer_state: rb.BufferState, key: jax.Array, num_steps: int
    ) -> tuple[WorldModelState, dict]:
        """Returns the state after `num_steps` minibatch steps sampled from `buffer_state`.

        The normalizer is first recomputed from the buffer's live items, then every minibatch
        index of the epoch is drawn (uniformly with replacement from the live items) before a
        ``lax.scan`` over the steps. Nothing is trained while the buffer is empty. Metrics: ``train_loss`` (mean normalised loss over the
        finite steps, NaN if none), ``grad_norm`` (mean), ``nonfinite_updates`` and
        ``samples_seen`` (running totals of the state).
        """
        state = state.replace(normalizer=normalizer_from_buffer(buffer_state, state.normalizer))
        enabled = rb.can_sample(buffer_state, 1)
        data = buffer_state.data
        fields = {name: _field(data, name) for name in ("obs", "action", "next_obs")}

        # Every minibatch index of the epoch in one draw: one random-bits kernel instead of one
        # per step inside the loop (on a CPU that loop costs as much as a small matmul).
        indices = rb.sample_indices(buffer_state, key, num_steps * batch_size)

        def body(carry: WorldModelState, index: jax.Array):
            batch = {name: leaf[index] for name, leaf in fields.items()}
            return _update(carry, batch, enabled)

        state, per_step = jax.lax.scan(body, state, indices.reshape(num_steps, batch_size))
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

    def _batched(fn):
        @functools.wraps(fn)
        def wrapper(state, obs, action):
            obs = jnp.asarray(obs, jnp.float32)
            action = jnp.asarray(action, jnp.float32)
            chex.assert_axis_dimension(obs, -1, obs_dim)
            chex.assert_axis_dimension(action, -1, act_dim)
            lead = obs.shape[:-1]
            if action.shape[:-1] != lead:
                raise ValueError(f"obs {obs.shape} and action {action.shape} batch shapes differ")
            # Close over `state`: it may be any object with params/normalizer/mask attributes.
            flat = jax.vmap(lambda o, a: fn(state, o, a))(
                obs.reshape(-1, obs_dim), action.reshape(-1, act_dim)
            )
            return flat.reshape(*lead, obs_dim)

        return wrapper

    @_batched
    def predict_delta(state: Any, obs: jax.Array, action: jax.Array) -> jax.Array:
        """Returns Δobs ``[..., d]`` in original units for ``obs[..., d], action[..., a]``.

        `state` is a pytree with ``params``, ``normalizer`` and ``mask`` attributes (a
        :class:`WorldModelState`, or a lighter view of one).
        """
        n = state.normalizer
        out = _apply_one(state.params, n, state.mask, obs, action)
        return out * n.delta_std + n.delta_mean

    def predict_next(state: Any, obs: jax.Array, action: jax.Array) -> jax.Array:
        """Returns the predicted next observation ``obs + Δobs`` ``[..., d]``."""
        return jnp.asarray(obs, jnp.float32) + predict_delta(state, obs, action)

    def grow(state: WorldModelState, new_hidden_dim: int | jax.Array) -> WorldModelState:
        """Returns the state with the first `new_hidden_dim` units active (never fewer than now).

        Newly active units have zero outgoing weights (masked weights never move), so the
        model's predictions are unchanged at this moment; their incoming weights are the random
        values drawn at init, so they start learning at the next step.
        """
        new = jnp.clip(jnp.asarray(new_hidden_dim, jnp.int32), state.hidden_dim, max_width)
        return state.replace(mask=unit_mask(new, max_width), hidden_dim=new)

    return WorldModel(
        obs_dim=obs_dim,
        act_dim=act_dim,
        max_width=max_width,
        num_layers=num_layers,
        batch_size=batch_size,
        module=module,
        optimizer=optimizer,
        # Jitted so that an eager call compiles one program instead of dozens of small ops.
        init=jax.jit(init),
        init_params=jax.jit(init_params),
        loss=loss,
        train_step=train_step,
        train_epoch=train_epoch,
        predict_delta=jax.jit(predict_delta),
        predict_next=jax.jit(predict_next),
        grow=grow,
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
