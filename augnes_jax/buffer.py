"""A pure ring buffer whose capacity is a traced value, so variants of different sizes share one vmap.

flashbax fixes a buffer's capacity in its array shapes. Here the storage is allocated once at a
static ``max_size`` and every buffer carries its own ``capacity`` (``<= max_size``) as a traced
int32: item ``i`` (counting every valid item ever added) goes to slot ``i % capacity`` and
sampling draws uniformly from the valid prefix ``[0, min(count, capacity))``. A sweep over
``buffer_size`` is then ``jax.vmap(init, in_axes=(None, None, 0))`` instead of one compile per size.

All functions are pure and jittable; none does I/O::

    state = buffer.init(item_example, max_size=10_000, capacity=5_000)
    state = buffer.add(state, batch, mask)            # batch leaves: [B, ...]
    items = buffer.sample(state, key, batch_size=256)  # leaves: [batch_size, ...]

``count`` is an int32, so a single buffer accepts at most 2**31 - 1 items in its lifetime.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

PyTree = Any


@struct.dataclass
class BufferState:
    """Storage and write position of one ring buffer.

    Attributes:
      data: the stored items; every leaf has a leading axis of length ``max_size``.
      count: int32 scalar, number of valid items ever written (not capped).
      capacity: int32 scalar (traced), number of slots in use, ``1 <= capacity <= max_size``.
    """

    data: PyTree
    count: jax.Array
    capacity: jax.Array


def init(item_example: PyTree, max_size: int, capacity: int | jax.Array) -> BufferState:
    """Returns an empty buffer with storage for `max_size` items shaped like `item_example`.

    Args:
      item_example: one item (no leading axis); only its leaves' shapes and dtypes are used.
      max_size: static allocation size (the largest capacity in a sweep).
      capacity: traced capacity of this buffer, clipped to ``[1, max_size]``.
    """
    if max_size < 1:
        raise ValueError(f"max_size must be >= 1, got {max_size}")
    data = jax.tree.map(
        lambda x: jnp.zeros((max_size, *jnp.shape(x)), jnp.asarray(x).dtype), item_example
    )
    capacity = jnp.clip(jnp.asarray(capacity, jnp.int32), 1, max_size)
    return BufferState(data=data, count=jnp.zeros((), jnp.int32), capacity=capacity)


def max_size(state: BufferState) -> int:
    """Returns the static allocation size of the buffer's storage."""
    return jax.tree.leaves(state.data)[0].shape[0]


def size(state: BufferState) -> jax.Array:
    """Returns the number of items that can be sampled: ``min(count, capacity)`` (int32)."""
    return jnp.minimum(state.count, state.capacity)


def can_sample(state: BufferState, n: int | jax.Array = 1) -> jax.Array:
    """Returns whether the buffer holds at least `n` items (bool scalar)."""
    return size(state) >= n


def valid_mask(state: BufferState) -> jax.Array:
    """Returns ``bool[max_size]``, true on the slots that hold a live item (``[0, size)``)."""
    return jnp.arange(max_size(state), dtype=jnp.int32) < size(state)


def add(state: BufferState, batch: PyTree, mask: jax.Array | None = None) -> BufferState:
    """Returns the buffer with the valid items of `batch` appended in order.

    Args:
      state: the buffer.
      batch: items with a leading axis ``[B, ...]``, same structure as the stored items.
      mask: ``bool[B]``, which items are valid; ``None`` means all of them.

    Valid items keep their order: the r-th valid item goes to slot ``(count + r) % capacity``.
    When more than ``capacity`` valid items arrive in one call only the last ``capacity`` are
    written; the others would be overwritten anyway, and skipping them means the scatter never
    sees duplicate indices (whose write order XLA leaves undefined).
    """
    leaves = jax.tree.leaves(batch)
    num = leaves[0].shape[0]
    size_max = max_size(state)
    valid = jnp.ones((num,), bool) if mask is None else jnp.asarray(mask, bool).reshape(num)
    rank = jnp.cumsum(valid.astype(jnp.int32)) - 1
    num_valid = jnp.sum(valid.astype(jnp.int32))
    keep = valid & (rank >= num_valid - state.capacity)
    slot = jnp.mod(state.count + rank, state.capacity)
    # Out-of-range rows are dropped by the scatter; they may repeat, but they are never written.
    index = jnp.where(keep, slot, size_max)

    def write(stored, new):
        return stored.at[index].set(new.astype(stored.dtype), mode="drop")

    data = jax.tree.map(write, state.data, batch)
    return state.replace(data=data, count=state.count + num_valid)


def add_after(state: BufferState, skipped: int | jax.Array, batch: PyTree) -> BufferState:
    """Returns an empty buffer given ``batch``, the last items of a longer stream, as if all of it came.

    The ``skipped`` items before ``batch`` only move the write position: adding every item of the
    stream in order would leave ``batch``'s items in the same slots (item ``i`` at ``i % capacity``)
    with the same ``count``, since the skipped ones are overwritten or never kept.
    """
    return add(state.replace(count=jnp.full_like(state.count, skipped)), batch)


def sample(state: BufferState, key: jax.Array, batch_size: int) -> PyTree:
    """Returns `batch_size` items drawn uniformly with replacement from ``[0, size)``.

    Leaves have shape ``[batch_size, ...]``. An empty buffer returns slot 0 (zeros); callers
    check :func:`can_sample` first or mask the result.
    """
    index = sample_indices(state, key, batch_size)
    return jax.tree.map(lambda d: d[index], state.data)


def sample_indices(state: BufferState, key: jax.Array, batch_size: int) -> jax.Array:
    """Returns ``int32[batch_size]`` slot indices drawn uniformly from ``[0, size)``."""
    high = jnp.maximum(size(state), 1)
    return jax.random.randint(key, (batch_size,), 0, high, dtype=jnp.int32)
