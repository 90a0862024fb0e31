"""The world model's masked network: its flax modules, weight layout and initial weights.

Pure core: every function here is jittable and does no I/O.

Layout
  Params are ``{"params": {"hidden_0": ..., ["hidden_1": ...], "out": ...}}`` at a bucket's
  ``max_width`` W. Kernels are ``hidden_0: [in, W]``, ``hidden_1: [W, W]`` and ``out: [out, W]``
  (stored transposed, see :class:`OutputDense`); the biases of the hidden layers are ``[W]``,
  that of ``out`` is ``[out]``. :data:`LAYOUT` names the axes that index hidden
  units; :func:`param_mask` (the weights of the active network) and :func:`dense_params` (those
  weights cut down to a dense network) both read it.

Initial weights
  Drawn element by element from ``fold_in(key, layer * 2**28 + row * 2**14 + col)`` and scaled
  by the *effective* fan-in, so the active block of a masked width-h model equals a dense width-h
  model initialised with the same key, whatever the bucket (widths and input sizes must stay
  below 2**14). Outgoing weights of masked units start at zero.

Inputs and outputs
  Without heads the input is ``[obs, action]`` (``in = obs_dim + act_dim``) and the output the
  normalised Δobs (``out = obs_dim``). With reward and termination heads the input also holds
  the goal's one-hot ``[num_goals]`` and the output gains two entries (:data:`HEAD_OUTPUTS`):
  the normalised reward and the termination logit, in that order after Δobs. The heads share
  the hidden layers, so every rule above holds for them unchanged.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

PyTree = Any
MAX_INIT_DIM = 16384  # layer (4 bits), row and col (14 bits each) share one uint32 counter
HEAD_OUTPUTS = 2  # the reward and the termination logit, after Δobs


class LayerLayout(NamedTuple):
    """Which parts of one layer index hidden units.

    Attributes:
      kernel_axes: the kernel's axes whose entries are hidden units.
      hidden_bias: whether the bias is indexed by hidden units.
    """

    kernel_axes: tuple[int, ...]
    hidden_bias: bool


LAYOUT: dict[str, LayerLayout] = {
    "hidden_0": LayerLayout(kernel_axes=(1,), hidden_bias=True),  # [in, W]
    "hidden_1": LayerLayout(kernel_axes=(0, 1), hidden_bias=True),  # [W, W]
    "out": LayerLayout(kernel_axes=(1,), hidden_bias=False),  # [obs_dim, W], transposed
}


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


def apply_one(
    module: MaskedMLP,
    params: PyTree,
    normalizer: Any,
    mask: jax.Array,
    obs: jax.Array,
    action: jax.Array,
    goal: jax.Array | None = None,
) -> jax.Array:
    """Returns the network's output ``[out]`` for one sample ``obs[d], action[a]``.

    Without heads the output is the normalised Δobs ``[d]``; with heads, `goal` is the goal's
    one-hot ``[num_goals]`` (appended to the input as it is) and the output is ``[d + 2]``: the
    normalised Δobs, the normalised reward and the termination logit. `normalizer` is a
    :class:`~augnes_jax.world_model_normalizer.Normalizer`.
    """
    obs_n = (obs - normalizer.obs_mean) / normalizer.obs_std
    act_n = (action - normalizer.act_mean) / normalizer.act_std
    parts = [obs_n, act_n] if goal is None else [obs_n, act_n, goal.astype(obs_n.dtype)]
    return module.apply(params, jnp.concatenate(parts, axis=-1), mask)


def _layout(name: str) -> LayerLayout:
    try:
        return LAYOUT[name]
    except KeyError:
        raise ValueError(f"unexpected layer {name!r} in params") from None


def unit_mask(hidden_dim: int | jax.Array, max_width: int) -> jax.Array:
    """Returns ``float32[max_width]`` with ones on the first `hidden_dim` units."""
    return (jnp.arange(max_width) < hidden_dim).astype(jnp.float32)


def param_mask(params: PyTree, mask: jax.Array) -> PyTree:
    """Returns a 0/1 tree shaped like `params`: 1 where a weight belongs to the active network.

    Raises:
      ValueError: `params` holds a layer that is not in :data:`LAYOUT`.
    """
    out: dict[str, dict[str, jax.Array]] = {}
    for name, layer in params["params"].items():
        axes, hidden_bias = _layout(name)
        rows = layer["kernel"].shape[0]
        # Columns are hidden units in every kernel; rows only where the layout says so.
        row = mask if 0 in axes else jnp.ones((rows,), mask.dtype)
        col = mask
        bias = col if hidden_bias else jnp.ones((rows,), mask.dtype)
        out[name] = {"kernel": row[:, None] * col[None, :], "bias": bias}
    return {"params": out}


def hidden_width(params: PyTree) -> int:
    """Returns the allocated hidden width W of `params` (the size of their hidden-unit axes)."""
    first = params["params"]["hidden_0"]
    return int(first["kernel"].shape[LAYOUT["hidden_0"].kernel_axes[0]])


def dense_params(params: PyTree, hidden_dim: int) -> PyTree:
    """Returns the params of a dense width-`hidden_dim` network cut from masked `params`.

    Every hidden-unit axis is sliced to its first `hidden_dim` entries, which are the active
    units (:func:`unit_mask`); works on NumPy and JAX arrays alike.

    Raises:
      ValueError: `params` holds a layer that is not in :data:`LAYOUT`.
    """
    keep = slice(0, hidden_dim)
    out: dict[str, dict[str, Any]] = {}
    for name, layer in params["params"].items():
        axes, hidden_bias = _layout(name)
        kernel, bias = layer["kernel"], layer["bias"]
        index = tuple(keep if axis in axes else slice(None) for axis in range(kernel.ndim))
        out[name] = {"kernel": kernel[index], "bias": bias[keep] if hidden_bias else bias}
    return {"params": out}


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


def normal_grids(key: jax.Array, shapes: list[tuple[int, int]]) -> list[jax.Array]:
    """Returns standard normals, one ``[rows, cols]`` array per shape (at most 16 shapes).

    Entry (i, j) of grid g is drawn from the counter ``g * 2**28 + i * 2**14 + j``, so it never
    depends on the grid's size: a narrower grid is exactly the top-left block of a wider one.
    All grids come from one vectorised draw, one random-bits kernel to compile.
    """
    counters = []
    for g, (rows, cols) in enumerate(shapes):
        counter = (
            jnp.uint32(g << 28)
            + jnp.arange(rows, dtype=jnp.uint32)[:, None] * jnp.uint32(MAX_INIT_DIM)
            + jnp.arange(cols, dtype=jnp.uint32)[None, :]
        )
        counters.append(counter.reshape(-1))
    flat = jax.vmap(_normal_at, in_axes=(None, 0))(key, jnp.concatenate(counters))
    out, start = [], 0
    for rows, cols in shapes:
        out.append(flat[start : start + rows * cols].reshape(rows, cols))
        start += rows * cols
    return out


def init_params(
    key: jax.Array, hidden_dim: int | jax.Array, *, in_dim: int, out_dim: int, max_width: int, num_layers: int
) -> PyTree:
    """Returns params at `max_width` whose active block matches a dense width-`hidden_dim` init."""
    h = jnp.asarray(hidden_dim, jnp.float32)
    active_row = (jnp.arange(max_width) < hidden_dim)[:, None]
    shapes = [(in_dim, max_width)] + [(max_width, max_width)] * (num_layers - 1)
    grids = normal_grids(key, [*shapes, (out_dim, max_width)])
    layers = {
        "hidden_0": {
            "kernel": grids[0] / jnp.sqrt(float(in_dim)),
            "bias": jnp.zeros((max_width,), jnp.float32),
        }
    }
    if num_layers == 2:
        # Outgoing weights of masked units start at 0 so growing leaves the function unchanged.
        layers["hidden_1"] = {
            "kernel": jnp.where(active_row, grids[1] / jnp.sqrt(h), 0.0),
            "bias": jnp.zeros((max_width,), jnp.float32),
        }
    layers["out"] = {  # stored [out_dim, max_width], see OutputDense
        "kernel": jnp.where(active_row.T, grids[-1] / jnp.sqrt(h), 0.0),
        "bias": jnp.zeros((out_dim,), jnp.float32),
    }
    return {"params": layers}
