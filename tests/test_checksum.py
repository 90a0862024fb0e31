"""Array checksums: the device's equal the host's for every dtype a checkpoint holds, and any
changed word changes them."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from augnes_jax.checksum import device_checksums, host_checksums

M = 1 << 32


def _reference(a: np.ndarray) -> list[int]:
    """Fletcher-style sums over the array's words, in plain Python integers."""
    a = np.asarray(a)
    if a.dtype == np.bool_:
        a = a.astype(np.uint8)
    words = [int(w) for w in a.view({1: np.uint8, 2: np.uint16, 4: np.uint32}[a.dtype.itemsize]).ravel()]
    return [sum(words) % M, sum(w * (i % 65521 + 1) for i, w in enumerate(words)) % M, len(words)]


def _tree():
    k = jax.random.key(3)
    return {
        "f32": jax.random.normal(k, (70001,)),  # past the weight's modulus
        "i32": jnp.arange(-50, 50, dtype=jnp.int32).reshape(10, 10),
        "u8": jnp.arange(256, dtype=jnp.uint8),
        "i8": jnp.arange(-128, 128, dtype=jnp.int8),
        "bool": jnp.asarray([True, False, True, True]),
        "bf16": jnp.linspace(-3, 3, 17, dtype=jnp.bfloat16),
        "f16": jnp.linspace(-3, 3, 17, dtype=jnp.float16),
        "empty": jnp.zeros((0, 3)),
    }


def test_device_and_host_checksums_equal_a_plain_python_reference():
    host = jax.device_get(_tree())
    expected = sorted(_reference(x) for x in jax.tree.leaves(host))
    assert host_checksums(host) == expected
    assert device_checksums(_tree()) == expected


def test_typed_keys_are_checked_by_their_key_data():
    keys = jax.random.split(jax.random.key(0), 5)
    assert device_checksums({"k": keys}) == host_checksums({"k": np.asarray(jax.random.key_data(keys))})


@pytest.mark.parametrize("leaf", ["f32", "i32", "u8", "bool", "bf16"])
def test_any_changed_word_changes_the_checksums(leaf):
    host = jax.device_get(_tree())
    before = host_checksums(host)
    a = np.array(host[leaf])
    flat = a.reshape(-1).view(np.uint8)
    flat[len(flat) // 2] ^= 1 if leaf == "bool" else 0x10
    host[leaf] = a
    assert host_checksums(host) != before


def test_swapped_words_change_the_second_sum():
    a = np.arange(8, dtype=np.uint32)
    b = a.copy()
    b[[2, 5]] = b[[5, 2]]
    (s1a, s2a, _), (s1b, s2b, _) = host_checksums([a]) + host_checksums([b])
    assert s1a == s1b and s2a != s2b


def test_an_eight_byte_dtype_is_refused_on_both_sides():
    with pytest.raises(TypeError, match="no checksum for dtype"):
        host_checksums([np.zeros(3, np.complex64)])
    with pytest.raises(TypeError, match="no checksum for dtype"):
        device_checksums([jnp.zeros(3, jnp.complex64)])

