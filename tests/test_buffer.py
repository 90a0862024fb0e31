"""The traced-capacity ring buffer against a NumPy ring-buffer model."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from augnes_jax import buffer as rb

CAPACITIES = np.array([3, 5, 8], np.int32)
MAX_SIZE = 8


class NumpyRing:
    """Reference: a ring buffer written one item at a time."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.slots: dict[int, int] = {}
        self.count = 0

    def add(self, ids, mask):
        for item, valid in zip(ids, mask, strict=True):
            if valid:
                self.slots[self.count % self.capacity] = item
                self.count += 1

    @property
    def size(self):
        return min(self.count, self.capacity)


def _item():
    return {"id": jnp.int32(0), "x": jnp.zeros((2,), jnp.float32)}


def _batch(ids):
    ids = np.asarray(ids, np.int32)
    return {"id": ids, "x": np.stack([ids * 1.5, -ids], axis=1).astype(np.float32)}


PAD = 11  # every add is padded to this many rows (extra rows invalid): one compile


@jax.jit
def _vadd_padded(state, batch, mask):
    return jax.vmap(rb.add)(state, batch, mask)


def _vadd(state, batch, mask):
    n = mask.shape[1]
    batch = jax.tree.map(
        lambda x: np.concatenate([x, np.zeros((3, PAD - n, *x.shape[2:]), x.dtype)], 1), batch
    )
    mask = np.concatenate([mask, np.zeros((3, PAD - n), bool)], 1)
    return _vadd_padded(state, batch, mask)


_vsample = jax.jit(jax.vmap(rb.sample, in_axes=(0, 0, None)), static_argnums=2)
_add = jax.jit(rb.add)
_init = jax.jit(rb.init, static_argnums=1)


@jax.jit
def _vinit():
    return jax.vmap(rb.init, in_axes=(None, None, 0))(_item(), MAX_SIZE, jnp.asarray(CAPACITIES))


ops = st.lists(
    st.lists(st.booleans(), min_size=1, max_size=PAD),  # one add: its per-variant-shared mask
    min_size=1,
    max_size=6,
)


def _replay(ops, per_variant: bool):
    """Returns ``(state, refs, next_id)``: ``ops`` added to 3 vmapped variants and to NumPy rings."""
    state = _vinit()
    refs = [NumpyRing(int(c)) for c in CAPACITIES]
    next_id = 1
    for mask in ops:
        ids = np.arange(next_id, next_id + len(mask))
        next_id += len(mask)
        # Per-variant masks: each variant drops a different subset of the same batch.
        masks = np.stack([np.roll(mask, v) if per_variant else np.asarray(mask) for v in range(3)])
        batch = jax.tree.map(lambda x: np.broadcast_to(x, (3, *x.shape)), _batch(ids))
        state = _vadd(state, batch, masks)
        for v, ref in enumerate(refs):
            ref.add(ids, masks[v])
    return state, refs, next_id


@settings(max_examples=25, deadline=None)
@given(ops=ops, per_variant=st.booleans())
def test_vmapped_add_matches_numpy_ring(ops, per_variant):
    state, refs, _ = _replay(ops, per_variant)
    for v, ref in enumerate(refs):
        assert int(state.count[v]) == ref.count
        assert int(rb.size(jax.tree.map(lambda x, v=v: x[v], state))) == ref.size
        stored = np.asarray(state.data["id"][v])
        for slot, item in ref.slots.items():
            assert stored[slot] == item
            np.testing.assert_array_equal(state.data["x"][v, slot], [item * 1.5, -item])
        # Slots never written (beyond the capacity, or not reached yet) still hold zeros.
        untouched = [s for s in range(MAX_SIZE) if s not in ref.slots]
        assert np.all(stored[untouched] == 0)


@settings(max_examples=15, deadline=None)
@given(ops=ops)
def test_sample_only_returns_live_items(ops):
    state, refs, next_id = _replay(ops, per_variant=False)
    keys = jax.random.split(jax.random.key(next_id), 3)
    drawn = _vsample(state, keys, 64)
    for v, ref in enumerate(refs):
        assert bool(rb.can_sample(jax.tree.map(lambda x, v=v: x[v], state), 1)) == (ref.size > 0)
        if ref.size == 0:
            continue
        live = set(ref.slots.values())
        assert set(np.asarray(drawn["id"][v]).tolist()) <= live


def test_add_keeps_only_the_last_capacity_items_of_one_big_batch():
    state = _init(_item(), MAX_SIZE, 3)
    state = _add(state, _batch(np.arange(1, 8)))  # 7 items into capacity 3
    # Items 5, 6, 7 are items number 4, 5, 6 (0-based) -> slots 1, 2, 0.
    np.testing.assert_array_equal(np.asarray(state.data["id"]), [7, 5, 6, 0, 0, 0, 0, 0])
    assert int(state.count) == 7 and int(rb.size(state)) == 3


def test_mask_none_equals_all_true_and_capacity_is_clipped():
    a = _add(_init(_item(), 4, 99), _batch([1, 2, 3, 4, 5]))
    b = _add(_init(_item(), 4, 99), _batch([1, 2, 3, 4, 5]), jnp.ones((5,), bool))
    assert int(a.capacity) == 4
    np.testing.assert_array_equal(a.data["id"], b.data["id"])
    np.testing.assert_array_equal(a.data["id"], [5, 2, 3, 4])


def test_sample_is_uniform_over_the_valid_prefix():
    state = _add(_init(_item(), 10, 10), _batch([1, 2, 3, 4, 5]))
    n = 50_000
    drawn = np.asarray(rb.sample(state, jax.random.key(0), n)["id"])
    counts = np.bincount(drawn, minlength=11)
    assert counts[0] == 0 and counts[6:].sum() == 0  # never an unwritten slot
    # Multinomial std of a count is sqrt(n p (1-p)) ~ 89; 5 std is a loose, non-flaky bound.
    np.testing.assert_allclose(counts[1:6], n / 5, atol=450)


def test_valid_mask_and_empty_buffer():
    state = _init(_item(), 6, 4)
    assert not bool(rb.can_sample(state, 1))
    assert not np.any(rb.valid_mask(state))
    state = _add(state, _batch([1, 2, 3, 4, 5, 6]), jnp.array([1, 0, 1, 0, 1, 0], bool))
    np.testing.assert_array_equal(rb.valid_mask(state), [1, 1, 1, 0, 0, 0])
    assert bool(rb.can_sample(state, 3)) and not bool(rb.can_sample(state, 4))


def test_init_rejects_empty_storage():
    with pytest.raises(ValueError, match="max_size"):
        rb.init(_item(), 0, 1)


@pytest.mark.parametrize("n, keep, capacity", [(23, 7, 5), (23, 5, 5), (10, 10, 16), (40, 12, 12)])
def test_add_after_equals_adding_the_whole_stream(n, keep, capacity):
    stream = {"x": np.arange(n, dtype=np.float32) * 1.5, "g": np.arange(n, dtype=np.int32) % 3}
    whole = rb.add(rb.init({"x": np.float32(0), "g": np.int32(0)}, 16, capacity), stream)
    tail = {k: v[n - keep:] for k, v in stream.items()}
    part = rb.add_after(rb.init({"x": np.float32(0), "g": np.int32(0)}, 16, capacity), n - keep, tail)
    assert int(part.count) == int(whole.count) == n
    live = min(n, capacity)
    for k in stream:
        np.testing.assert_array_equal(np.asarray(part.data[k])[:live], np.asarray(whole.data[k])[:live])
