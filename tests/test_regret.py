"""Per-goal regret aggregation: values checked against float64 NumPy, hand numbers and SciPy."""

import functools

import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats
from hypothesis import given, settings

from augnes_jax import regret
from augnes_jax.statistics import student_t_quantile


def reference(values, goal_ids, num_goals, mask=None):
    """Float64 NumPy per-goal count, sum, mean, m2, min, max (the independent reference)."""
    v = np.asarray(values, np.float64)
    g = np.asarray(goal_ids)
    keep = (g >= 0) & (g < num_goals)
    if mask is not None:
        keep &= np.asarray(mask, bool)
    v, g = v[keep], g[keep]
    count = np.bincount(g, minlength=num_goals)
    total = np.bincount(g, weights=v, minlength=num_goals)
    mean = np.divide(total, count, out=np.zeros(num_goals), where=count > 0)
    m2 = np.bincount(g, weights=(v - mean[g]) ** 2, minlength=num_goals)
    lo = np.full(num_goals, np.inf)
    hi = np.full(num_goals, -np.inf)
    np.minimum.at(lo, g, v)
    np.maximum.at(hi, g, v)
    return dict(count=count, sum=total, mean=mean, m2=m2, min=lo, max=hi)


def assert_close(got, want, rtol, atol):
    got = np.asarray(got, np.float64)
    err = np.abs(got - want)
    bound = atol + rtol * np.abs(want)
    assert np.all(err <= bound), f"max excess {np.max(err - bound)} at {np.argmax(err - bound)}"


def assert_matches(agg, ref, rtol=2e-6, atol=1e-5):
    """Float32 aggregate against the float64 reference; tolerances scale with the data."""
    np.testing.assert_array_equal(np.asarray(agg.count), ref["count"])
    count = ref["count"]
    scale = 1.0 + np.abs(ref["mean"])
    assert_close(agg.sum, ref["sum"], rtol, atol * np.maximum(count, 1) * scale)
    assert_close(agg.mean, ref["mean"], rtol, atol * scale)
    assert_close(agg.m2, ref["m2"], 1e-4, 1e-4 * (1 + ref["m2"].max(initial=0)))
    # min and max are exact: they pick one of the float32 inputs.
    np.testing.assert_array_equal(np.asarray(agg.min), ref["min"].astype(np.float32))
    np.testing.assert_array_equal(np.asarray(agg.max), ref["max"].astype(np.float32))


def test_episode_regret_and_advantage_by_hand():
    reward = jnp.array([[1.0, 2.5], [0.0, -1.0]])
    optimal = jnp.array([[3.0, 3.0], [0.5, 0.5]])
    baseline = jnp.array([[0.0, 1.0], [-2.0, -2.0]])
    np.testing.assert_allclose(regret.episode_regret(reward, optimal), [[2.0, 0.5], [0.5, 1.5]])
    np.testing.assert_allclose(regret.episode_advantage(reward, baseline), [[1.0, 1.5], [2.0, 1.0]])


def test_aggregate_by_hand():
    # goal 0: 1, 3   goal 1: (none)   goal 2: 2, 4, 6   goal 3: 5
    values = jnp.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    goals = jnp.array([0, 2, 0, 2, 3, 2])
    agg = regret.aggregate(values, goals, 4)
    np.testing.assert_array_equal(agg.count, [2, 0, 3, 1])
    np.testing.assert_allclose(agg.sum, [4.0, 0.0, 12.0, 5.0])
    np.testing.assert_allclose(agg.mean, [2.0, 0.0, 4.0, 5.0])
    np.testing.assert_allclose(agg.m2, [2.0, 0.0, 8.0, 0.0])
    np.testing.assert_allclose(agg.min, [1.0, np.inf, 2.0, 5.0])
    np.testing.assert_allclose(agg.max, [3.0, -np.inf, 6.0, 5.0])
    np.testing.assert_allclose(agg.variance(), [2.0, np.nan, 4.0, np.nan])


def test_mask_and_out_of_range_goals_are_ignored():
    values = jnp.array([1.0, 100.0, 3.0, 7.0, 9.0])
    goals = jnp.array([0, 0, 1, 5, -1])
    mask = jnp.array([True, False, True, True, True])
    agg = regret.aggregate(values, goals, 2, mask)
    dense = regret.aggregate(jnp.array([1.0, 3.0]), jnp.array([0, 1]), 2)
    for a, b in zip(jax.tree.leaves(agg), jax.tree.leaves(dense), strict=True):
        np.testing.assert_array_equal(a, b)


N_PAD = 256  # hypothesis rows are padded (and masked) to one length: one compilation


def padded(values, goals, mask):
    """Returns the rows padded to N_PAD with masked-out entries."""
    n = len(values)
    v = np.zeros(N_PAD, np.float32)
    g = np.zeros(N_PAD, np.int32)
    m = np.zeros(N_PAD, bool)
    v[:n], g[:n], m[:n] = values, goals, mask
    return v, g, m


goal_rows = st.integers(min_value=0, max_value=N_PAD).flatmap(
    lambda n: st.tuples(
        # XLA on CPU flushes subnormals to zero, so they are left out.
        st.lists(st.floats(-1e3, 1e3, width=32, allow_subnormal=False), min_size=n, max_size=n),
        st.lists(st.integers(0, 7), min_size=n, max_size=n),
        st.lists(st.booleans(), min_size=n, max_size=n),
    )
)


@settings(max_examples=40, deadline=None)
@given(goal_rows, st.sampled_from([1, 3, 8]), st.booleans())
def test_aggregate_equals_float64_reference(rows, num_goals, use_mask):
    values, goals, mask = rows
    keep = np.asarray(mask, bool) if use_mask else np.ones(len(values), bool)
    v, g, m = padded(values, goals, keep)
    agg = regret.aggregate(jnp.asarray(v), jnp.asarray(g), num_goals, jnp.asarray(m))
    # The reference sees only the rows that exist; ids >= num_goals are ignored by both.
    assert_matches(agg, reference(v[m], g[m], num_goals), atol=2e-5)


@pytest.mark.parametrize("num_goals, skewed", [(3, False), (1000, False), (1000, True)])
def test_chunked_sums_stay_accurate_over_many_rows(num_goals, skewed):
    # 400k rows around 1000: a single float32 accumulator per goal drifts by ~1e-3 relative.
    rng = np.random.default_rng(0)
    n = 400_000
    values = (1000.0 + rng.normal(0, 3, n)).astype(np.float32)
    goals = rng.integers(0, num_goals, n)
    if skewed:  # nine rows in ten belong to goal 0
        goals[rng.random(n) < 0.9] = 0
    agg = regret.aggregate(jnp.asarray(values), jnp.asarray(goals, np.int32), num_goals)
    ref = reference(values, goals, num_goals)
    np.testing.assert_array_equal(np.asarray(agg.count), ref["count"])
    assert np.max(np.abs(np.asarray(agg.sum) - ref["sum"]) / ref["sum"]) < 1e-6
    assert np.max(np.abs(np.asarray(agg.mean) - ref["mean"]) / ref["mean"]) < 1e-6
    assert np.max(np.abs(np.asarray(agg.m2) - ref["m2"]) / ref["m2"]) < 1e-4


@settings(max_examples=30, deadline=None)
@given(goal_rows, goal_rows)
def test_merge_of_parts_equals_aggregate_of_union(rows_a, rows_b):
    G = 8
    va, ga, ma = padded(rows_a[0], rows_a[1], np.ones(len(rows_a[0]), bool))
    vb, gb, mb = padded(rows_b[0], rows_b[1], np.ones(len(rows_b[0]), bool))
    a = regret.aggregate(jnp.asarray(va), jnp.asarray(ga), G, jnp.asarray(ma))
    b = regret.aggregate(jnp.asarray(vb), jnp.asarray(gb), G, jnp.asarray(mb))
    merged = jax.jit(regret.merge)(a, b)
    union = [np.concatenate(x) for x in ((va, vb), (ga, gb), (ma, mb))]
    whole = regret.aggregate(*(jnp.asarray(x) for x in union[:2]), G, jnp.asarray(union[2]))
    np.testing.assert_array_equal(merged.count, whole.count)
    for name in ("sum", "mean", "m2"):
        assert_close(getattr(merged, name), np.asarray(getattr(whole, name), np.float64),
                     1e-5, 1e-3 * (1 + np.abs(np.asarray(whole.sum)).max()))  # fmt: skip
    np.testing.assert_array_equal(merged.min, whole.min)
    np.testing.assert_array_equal(merged.max, whole.max)
    keep = union[2]
    assert_matches(merged, reference(union[0][keep], union[1][keep], G), atol=2e-5)


def test_empty_is_the_identity_of_merge_and_update_folds_in():
    a = regret.aggregate(jnp.array([1.0, 2.0, 4.0]), jnp.array([0, 0, 2]), 3)
    for left, right in ((regret.empty(3), a), (a, regret.empty(3))):
        m = regret.merge(left, right)
        for x, y in zip(jax.tree.leaves(m), jax.tree.leaves(a), strict=True):
            np.testing.assert_array_equal(x, y)
    folded = regret.update(a, jnp.array([3.0]), jnp.array([0]))
    np.testing.assert_array_equal(folded.count, [3, 0, 1])
    np.testing.assert_allclose(folded.mean, [2.0, 0.0, 4.0])
    np.testing.assert_allclose(folded.m2, [2.0, 0.0, 0.0])


@settings(max_examples=8, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_vmap_over_variants_equals_a_loop(seed):
    V, n, G = 4, 64, 5
    rng = np.random.default_rng(seed)
    values = rng.normal(2.0, 3.0, (V, n)).astype(np.float32)
    goals = rng.integers(0, G, (V, n)).astype(np.int32)
    mask = rng.random((V, n)) < 0.8
    fn = jax.jit(jax.vmap(functools.partial(regret.aggregate, num_goals=G)))
    batched = fn(jnp.asarray(values), jnp.asarray(goals), mask=jnp.asarray(mask))
    assert batched.count.shape == (V, G)
    for v in range(V):
        single = regret.aggregate(jnp.asarray(values[v]), jnp.asarray(goals[v]), G, jnp.asarray(mask[v]))
        for x, y in zip(jax.tree.leaves(batched), jax.tree.leaves(single), strict=True):
            np.testing.assert_allclose(np.asarray(x)[v], y, rtol=1e-6, atol=1e-6)
        assert_matches(single, reference(values[v], goals[v], G, mask[v]))


def test_total_equals_aggregating_all_goals_as_one():
    rng = np.random.default_rng(1)
    values = rng.normal(0.5, 2.0, 500).astype(np.float32)
    goals = rng.integers(0, 6, 500).astype(np.int32)
    goals[goals == 4] = 3  # goal 4 stays empty
    agg = regret.aggregate(jnp.asarray(values), jnp.asarray(goals), 6)
    tot = regret.total(agg)
    ref = reference(values, np.zeros(500, np.int64), 1)
    assert tot.count.shape == (1,)
    assert_matches(tot, ref, atol=2e-5)
    # vmappable over a leading axis
    stacked = jax.tree.map(lambda x: jnp.stack([x, x]), agg)
    both = jax.vmap(regret.total)(stacked)
    np.testing.assert_allclose(both.m2[:, 0], [tot.m2[0]] * 2, rtol=1e-6)


def test_confidence_interval_by_hand_and_nan_below_two_episodes():
    # goal 0: 1,2,3,4 -> mean 2.5, s = sqrt(5/3), se = s/2, t_{0.975,3} = 3.182446305
    # goal 1: one episode -> NaN; goal 2: none -> NaN
    agg = regret.aggregate(jnp.array([1.0, 2.0, 3.0, 4.0, 9.0]), jnp.array([0, 0, 0, 0, 1]), 3)
    lo, hi = regret.confidence_interval(agg, level=0.95)
    half = 3.182446305 * np.sqrt(5.0 / 3.0) / 2.0
    np.testing.assert_allclose([lo[0], hi[0]], [2.5 - half, 2.5 + half], rtol=1e-5)
    assert np.isnan(lo[1]) and np.isnan(hi[1]) and np.isnan(lo[2]) and np.isnan(hi[2])


@pytest.mark.parametrize("level", [0.5, 0.8, 0.9, 0.95, 0.99, 0.999])
def test_student_t_quantile_matches_scipy(level):
    df = np.array([1, 2, 3, 4, 5, 7, 10, 15, 16, 17, 30, 100, 1e3, 1e5, 1e7], np.float32)
    p = (1 + level) / 2
    got = np.asarray(jax.jit(student_t_quantile)(p, df))
    want = scipy.stats.t.ppf(p, df.astype(np.float64))
    np.testing.assert_allclose(got, want, rtol=5e-5)


def test_confidence_interval_matches_scipy_over_sizes():
    rng = np.random.default_rng(2)
    sizes = [2, 3, 5, 20, 200]
    goals = np.concatenate([np.full(s, g) for g, s in enumerate(sizes)]).astype(np.int32)
    values = rng.normal(1.0, 2.0, goals.shape[0]).astype(np.float32)
    lo, hi = regret.confidence_interval(regret.aggregate(jnp.asarray(values), jnp.asarray(goals), 5), 0.9)
    for g in range(5):
        x = values[goals == g].astype(np.float64)
        want = scipy.stats.t.interval(0.9, len(x) - 1, loc=x.mean(), scale=scipy.stats.sem(x))
        np.testing.assert_allclose([lo[g], hi[g]], want, rtol=1e-4, atol=1e-5)
