"""Checksums of array trees: computed on the device when a checkpoint is saved, on the host when
it is restored, with the same result.

Orbax reads back a checkpoint whose array bytes were overwritten without an error: the damaged
values simply come back. A checkpoint therefore records, for every saved item, one checksum per
array, and a restore recomputes them from what it read (see :mod:`augnes_jax.checkpoint`).

The checksum of an array is ``(s1, s2, n)`` over its ``n`` little-endian words (32-bit words
for 4-byte dtypes, the zero-extended values of 1- and 2-byte ones):
``s1 = sum(w) mod 2**32`` and ``s2 = sum(w * (i mod 65521 + 1)) mod 2**32``, a Fletcher-style
pair whose second sum also notices moved words. An item's checksums are kept as a sorted list,
so they do not depend on the order in which a container type lists its leaves.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["device_checksums", "host_checksums"]

_WEIGHT_MOD = 65521


def _words_device(x: jax.Array) -> jax.Array:
    if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
        x = jax.random.key_data(x)
    if x.dtype == jnp.bool_:
        x = x.astype(jnp.uint8)
    size = x.dtype.itemsize
    unsigned = {1: jnp.uint8, 2: jnp.uint16, 4: jnp.uint32}
    if size not in unsigned:
        raise TypeError(f"no checksum for dtype {x.dtype}")
    return jax.lax.bitcast_convert_type(x, unsigned[size]).astype(jnp.uint32).ravel()


def _sums_device(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    w = _words_device(x)
    weight = jax.lax.iota(jnp.uint32, w.size) % _WEIGHT_MOD + 1
    return jnp.sum(w, dtype=jnp.uint32), jnp.sum(w * weight, dtype=jnp.uint32)


@jax.jit
def _tree_sums(tree: Any) -> list[tuple[jax.Array, jax.Array]]:
    return [_sums_device(x) for x in jax.tree.leaves(tree)]


def device_checksums(tree: Any) -> list[list[int]]:
    """Returns the sorted ``[s1, s2, n]`` of every array leaf of ``tree`` (computed where it lives)."""
    leaves = jax.tree.leaves(tree)
    if not leaves:
        return []
    sums = jax.device_get(_tree_sums(tree))
    sizes = [int(np.prod(_words_shape(x))) for x in leaves]
    return sorted([int(a), int(b), n] for (a, b), n in zip(sums, sizes, strict=True))


def _words_shape(x: Any) -> tuple[int, ...]:
    if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
        return jax.random.key_data(x).shape
    return tuple(x.shape)


def _words_host(x: Any) -> np.ndarray:
    a = np.ascontiguousarray(np.asarray(x))
    if a.dtype == np.bool_:
        a = a.astype(np.uint8)
    size = a.dtype.itemsize
    unsigned = {1: np.uint8, 2: np.uint16, 4: np.uint32}
    if size not in unsigned:
        raise TypeError(f"no checksum for dtype {a.dtype}")
    return a.view(unsigned[size]).ravel().astype(np.uint64)


def host_checksums(tree: Any) -> list[list[int]]:
    """Returns the sorted ``[s1, s2, n]`` of every array leaf of a host (NumPy) tree."""
    out = []
    for x in jax.tree.leaves(tree):
        w = _words_host(x)
        weight = np.arange(w.size, dtype=np.uint64) % _WEIGHT_MOD + 1
        s1 = int(w.sum(dtype=np.uint64) % (1 << 32))
        s2 = int((w * weight).sum(dtype=np.uint64) % (1 << 32))
        out.append([s1, s2, int(w.size)])
    return sorted(out)
