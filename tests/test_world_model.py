"""The masked world model, its evaluation and its stats file, checked against references."""

import json
import re
from datetime import UTC, datetime

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from augnes_jax import buffer as rb
from augnes_jax import world_model as W
from augnes_jax import world_model_eval as E
from augnes_jax.world_model_stats import WorldModelStats

OBS, ACT = 6, 2


# ----------------------------------------------------------------------------- references


def arm_step(q, dq, tau, dt=0.05, substeps=4):
    """Two-link planar arm (unit masses and lengths), semi-implicit Euler, float64."""
    a, b, c, damping = 5 / 3, 0.5, 1 / 3, 0.1
    for _ in range(substeps):
        c2, s2 = np.cos(q[:, 1]), np.sin(q[:, 1])
        m11, m12, m22 = a + 2 * b * c2, c + b * c2, np.full_like(c2, c)
        h1 = -b * s2 * (2 * dq[:, 0] * dq[:, 1] + dq[:, 1] ** 2)
        h2 = b * s2 * dq[:, 0] ** 2
        r1 = tau[:, 0] - h1 - damping * dq[:, 0]
        r2 = tau[:, 1] - h2 - damping * dq[:, 1]
        det = m11 * m22 - m12 * m12
        ddq = np.stack([(m22 * r1 - m12 * r2) / det, (m11 * r2 - m12 * r1) / det], axis=1)
        dq = dq + dt / substeps * ddq
        q = q + dt / substeps * dq
    return q, dq


def arm_obs(q, dq):
    return np.concatenate(
        [np.cos(q[:, :1]), np.sin(q[:, :1]), np.cos(q[:, 1:]), np.sin(q[:, 1:]), dq], axis=1
    ).astype(np.float32)


def arm_dataset(n, seed):
    """Returns obs [n, 6], action [n, 2], next_obs [n, 6] from random arm states."""
    rng = np.random.default_rng(seed)
    q = rng.uniform(-np.pi, np.pi, (n, 2))
    dq = rng.uniform(-3, 3, (n, 2))
    tau = rng.uniform(-1, 1, (n, 2))
    q2, dq2 = arm_step(q, dq, tau)
    return arm_obs(q, dq), tau.astype(np.float32), arm_obs(q2, dq2)


def np_swish(x):
    return x / (1.0 + np.exp(-x))


def np_predict_delta(params, normalizer, mask, obs, action):
    """Float64 NumPy forward pass of the masked MLP, in original units."""
    p = jax.tree.map(lambda x: np.asarray(x, np.float64), params["params"])
    n = jax.tree.map(lambda x: np.asarray(x, np.float64), normalizer)
    m = np.asarray(mask, np.float64)
    x = np.concatenate([(obs - n.obs_mean) / n.obs_std, (action - n.act_mean) / n.act_std], -1)
    h = np_swish(x @ p["hidden_0"]["kernel"] + p["hidden_0"]["bias"]) * m
    if "hidden_1" in p:
        h = np_swish(h @ p["hidden_1"]["kernel"] + p["hidden_1"]["bias"]) * m
    y = h @ p["out"]["kernel"].T + p["out"]["bias"]  # out kernel is stored [out, width]
    return y * n.delta_std + n.delta_mean


def _item():
    return {
        "obs": jnp.zeros((OBS,)),
        "action": jnp.zeros((ACT,)),
        "next_obs": jnp.zeros((OBS,)),
        "goal_id": jnp.int32(0),
    }


def _batch(obs, action, next_obs, goal_id=None):
    goal_id = np.zeros(len(obs), np.int32) if goal_id is None else goal_id
    return {"obs": obs, "action": action, "next_obs": next_obs, "goal_id": goal_id}


def _pick(tree, i):
    return jax.tree.map(lambda x: x[i], tree)


# ----------------------------------------------------------------------------- init and masks


def test_num_params_and_flops_are_hand_counts():
    # in=8, h=8: 8*8+8 + 8*8+8 + 8*6+6 = 198 parameters.
    assert W.num_params(OBS, ACT, 8, 2) == 198
    assert W.num_params(OBS, ACT, 8, 1) == 8 * 8 + 8 + 8 * 6 + 6
    # forward 2*(64+64+48) + weight grads 2*(64+64+48) + input grads 2*(64+48) = 928.
    assert W.flops_per_sample(OBS, ACT, 8, 2) == 928
    mask = W.unit_mask(8, 32)
    params = {
        "params": {
            "hidden_0": {"kernel": jnp.zeros((8, 32)), "bias": jnp.zeros(32)},
            "hidden_1": {"kernel": jnp.zeros((32, 32)), "bias": jnp.zeros(32)},
            "out": {"kernel": jnp.zeros((6, 32)), "bias": jnp.zeros(6)},
        }
    }
    active = sum(int(np.sum(m)) for m in jax.tree.leaves(W.param_mask(params, mask)))
    assert active == W.num_params(OBS, ACT, 8, 2)


@pytest.mark.parametrize("num_layers", [1, 2])
def test_dense_params_are_the_weights_param_mask_keeps(num_layers):
    wm = W.make_world_model(OBS, ACT, max_width=16, num_layers=num_layers)
    state = wm.init(jax.random.key(4), 16)
    # every weight nonzero, so the slice cannot pass by picking zeros
    params = jax.tree.map(lambda x: x + jnp.arange(1, x.size + 1, dtype=x.dtype).reshape(x.shape), state.params)
    h = 5
    dense = W.dense_params(jax.tree.map(np.asarray, params), h)
    kept = W.param_mask(params, W.unit_mask(h, 16))
    for p, m, d in zip(jax.tree.leaves(params), jax.tree.leaves(kept), jax.tree.leaves(dense), strict=True):
        # the active weights form the leading block, so in row-major order they are the dense ones
        np.testing.assert_array_equal(np.asarray(p)[np.asarray(m) == 1], np.ravel(d))
    assert sum(np.size(d) for d in jax.tree.leaves(dense)) == W.num_params(OBS, ACT, h, num_layers)
    small = W.make_world_model(OBS, ACT, max_width=h, num_layers=num_layers)
    shapes = jax.eval_shape(small.init_params, jax.random.key(0), h)
    assert jax.tree.map(np.shape, dense) == jax.tree.map(lambda x: x.shape, shapes)
    assert W.hidden_width(params) == 16 and W.hidden_width(dense) == h
    extra = {"params": {**params["params"], "extra": params["params"]["out"]}}
    for fn in (lambda: W.dense_params(extra, h), lambda: W.param_mask(extra, W.unit_mask(h, 16))):
        with pytest.raises(ValueError, match="unexpected layer 'extra' in params"):
            fn()


# ----------------------------------------------------------------------------- training


def test_masked_width_inits_and_trains_exactly_like_dense():
    num_layers = 2  # the one-layer network uses the same first and output layers
    hp = dict(num_layers=num_layers, learning_rate=1e-2, weight_decay=0.1, grad_clip=0.2)
    big = W.make_world_model(OBS, ACT, max_width=32, **hp)
    dense = W.make_world_model(OBS, ACT, max_width=8, **hp)
    # The same seed on purpose: a fresh key object each time keeps the reuse checker quiet.
    sb, sd = big.init(jax.random.key(7), 8), dense.init(jax.random.key(7), 8)
    shapes = jax.eval_shape(big.module.init, jax.random.key(3), jnp.zeros(OBS + ACT), jnp.zeros(32))
    assert jax.tree.map(lambda x: x.shape, shapes) == jax.tree.map(lambda x: x.shape, sb.params)
    np.testing.assert_array_equal(sb.mask, [1.0] * 8 + [0.0] * 24)
    pb, pd = sb.params["params"], sd.params["params"]
    # Same key, any bucket: the active block of the masked init is the dense init.
    np.testing.assert_array_equal(pb["hidden_0"]["kernel"][:, :8], pd["hidden_0"]["kernel"])
    np.testing.assert_array_equal(pb["out"]["kernel"][:, :8], pd["out"]["kernel"])
    assert np.all(np.asarray(pb["out"]["kernel"][:, 8:]) == 0)  # outgoing weights of masked units
    np.testing.assert_array_equal(pb["hidden_1"]["kernel"][:8, :8], pd["hidden_1"]["kernel"])
    assert np.all(np.asarray(pb["hidden_1"]["kernel"][8:]) == 0)

    obs, act, nxt = arm_dataset(25 * 32, seed=0)
    norm = W.compute_normalizer(obs, act, nxt)
    sb, sd = sb.replace(normalizer=norm), sd.replace(normalizer=norm)
    init_big = sb.params
    step_b, step_d = jax.jit(big.train_step), jax.jit(dense.train_step)
    clipped = 0
    for i in range(25):
        sl = slice(32 * i, 32 * (i + 1))
        batch = _batch(obs[sl], act[sl], nxt[sl])
        sb, mb = step_b(sb, batch)
        sd, md = step_d(sd, batch)
        np.testing.assert_allclose(mb["loss"], md["loss"], rtol=1e-5)
        clipped += int(md["grad_norm"] > 0.2)
    assert clipped > 0  # the clipping path was exercised
    assert int(sb.step) == int(sd.step) == 25
    pb, pd, p0 = sb.params["params"], sd.params["params"], init_big["params"]
    tol = dict(rtol=2e-5, atol=2e-6)
    np.testing.assert_allclose(pb["hidden_0"]["kernel"][:, :8], pd["hidden_0"]["kernel"], **tol)
    np.testing.assert_allclose(pb["hidden_0"]["bias"][:8], pd["hidden_0"]["bias"], **tol)
    np.testing.assert_allclose(pb["out"]["kernel"][:, :8], pd["out"]["kernel"], **tol)
    np.testing.assert_allclose(pb["out"]["bias"], pd["out"]["bias"], **tol)
    # Masked weights never moved, weight decay included.
    np.testing.assert_array_equal(pb["hidden_0"]["kernel"][:, 8:], p0["hidden_0"]["kernel"][:, 8:])
    np.testing.assert_array_equal(pb["out"]["kernel"][:, 8:], p0["out"]["kernel"][:, 8:])
    np.testing.assert_allclose(pb["hidden_1"]["kernel"][:8, :8], pd["hidden_1"]["kernel"], **tol)
    k, k0 = np.asarray(pb["hidden_1"]["kernel"]), np.asarray(p0["hidden_1"]["kernel"])
    np.testing.assert_array_equal(k[8:], k0[8:])
    np.testing.assert_array_equal(k[:, 8:], k0[:, 8:])
    assert not np.allclose(pb["out"]["kernel"][:, :8], p0["out"]["kernel"][:, :8])  # it trained


@pytest.mark.parametrize("num_layers", [1, 2])
def test_masked_units_with_nonzero_weights_train_like_the_dense_smaller_network(num_layers):
    """Masked weights filled with noise change nothing: the mask after the activation silences them."""
    hp = dict(num_layers=num_layers, learning_rate=1e-2, weight_decay=0.1, grad_clip=0.5)
    big = W.make_world_model(OBS, ACT, max_width=24, **hp)
    dense = W.make_world_model(OBS, ACT, max_width=8, **hp)
    sb, sd = big.init(jax.random.key(11), 8), dense.init(jax.random.key(11), 8)
    active = W.param_mask(sb.params, sb.mask)
    noise = jax.tree.map(lambda x, k: jax.random.normal(k, x.shape, x.dtype), sb.params,
                         jax.tree.unflatten(jax.tree.structure(sb.params),
                                            list(jax.random.split(jax.random.key(12), len(jax.tree.leaves(sb.params))))))
    params = jax.tree.map(lambda p, m, z: p * m + (1 - m) * z, sb.params, active, noise)
    masked = jax.tree.map(lambda m: np.asarray(m) == 0, active)
    assert all(np.all(np.asarray(p)[m] != 0) for p, m in zip(jax.tree.leaves(params), jax.tree.leaves(masked),
                                                             strict=True))  # fmt: skip
    obs, act, nxt = arm_dataset(20 * 32 + 64, seed=3)
    norm = W.compute_normalizer(obs, act, nxt)
    sb = sb.replace(params=params, normalizer=norm, opt_state=big.optimizer.init(params))
    sd = sd.replace(normalizer=norm)
    step_b, step_d = jax.jit(big.train_step), jax.jit(dense.train_step)
    for i in range(20):
        batch = _batch(obs[32 * i : 32 * (i + 1)], act[32 * i : 32 * (i + 1)], nxt[32 * i : 32 * (i + 1)])
        sb, mb = step_b(sb, batch)
        sd, md = step_d(sd, batch)
        np.testing.assert_allclose(mb["loss"], md["loss"], rtol=1e-5)
        np.testing.assert_allclose(mb["grad_norm"], md["grad_norm"], rtol=1e-5)
    held_out = slice(20 * 32, None)
    np.testing.assert_allclose(big.predict_delta(sb, obs[held_out], act[held_out]),
                               dense.predict_delta(sd, obs[held_out], act[held_out]), rtol=1e-4, atol=1e-6)
    for p, p0, m in zip(jax.tree.leaves(sb.params), jax.tree.leaves(params), jax.tree.leaves(masked), strict=True):
        np.testing.assert_array_equal(np.asarray(p)[m], np.asarray(p0)[m])  # masked weights never moved


@pytest.fixture(scope="module")
def model16():
    """A width-12 variant in a width-16 bucket with a data normalizer, shared by value tests."""
    wm = W.make_world_model(OBS, ACT, max_width=16, num_layers=2)
    obs, act, nxt = arm_dataset(40, seed=1)
    state = wm.init(jax.random.key(1), 12)
    return wm, state.replace(normalizer=W.compute_normalizer(obs, act, nxt))


def test_loss_and_prediction_match_numpy_float64(model16):
    wm, state = model16
    obs, act, nxt = arm_dataset(64, seed=2)
    want = np_predict_delta(state.params, state.normalizer, state.mask, obs, act)
    np.testing.assert_allclose(wm.predict_delta(state, obs, act), want, rtol=1e-4, atol=1e-5)
    one = wm.predict_next(state, obs[3], act[3])
    np.testing.assert_allclose(one, obs[3] + want[3], rtol=1e-4, atol=1e-5)
    n = jax.tree.map(lambda x: np.asarray(x, np.float64), state.normalizer)
    target = ((nxt - obs) - n.delta_mean) / n.delta_std
    want_loss = np.mean(((want - n.delta_mean) / n.delta_std - target) ** 2)
    got = jax.jit(wm.loss)(state.params, state.normalizer, state.mask, _batch(obs, act, nxt))
    np.testing.assert_allclose(got, want_loss, rtol=1e-4)


def test_normalizer_uses_only_the_live_part_of_the_buffer():
    obs, act, nxt = arm_dataset(9, seed=2)

    @jax.jit
    def build(batch):
        buf = rb.add(rb.init(_item(), 12, 5), batch)  # 9 items, capacity 5: 4 are evicted
        fresh = W.normalizer_from_buffer(buf, W.identity_normalizer(OBS, ACT))
        empty = W.normalizer_from_buffer(rb.init(_item(), 12, 5), fresh)
        return fresh, empty

    norm, empty = build(_batch(obs, act, nxt))
    live = np.array([5, 6, 7, 8, 4])  # slots 0..4 hold items 5, 6, 7, 8 and 4
    o, a, d = (x[live].astype(np.float64) for x in (obs, act, nxt - obs))
    np.testing.assert_allclose(norm.obs_mean, o.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(norm.obs_std, o.std(0), rtol=1e-4)
    np.testing.assert_allclose(norm.act_std, a.std(0), rtol=1e-4)
    np.testing.assert_allclose(norm.delta_mean, d.mean(0), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(norm.delta_std, d.std(0), rtol=1e-4)
    np.testing.assert_array_equal(empty.obs_mean, norm.obs_mean)  # empty buffer keeps the old one


@pytest.fixture(scope="module")
def small_epoch():
    """One model, buffer shape and jitted (chex-guarded) epoch shared by several tests."""
    wm = W.make_world_model(OBS, ACT, max_width=32, num_layers=2, batch_size=64)
    obs, act, nxt = arm_dataset(512, seed=4)
    buf = rb.add(rb.init(_item(), 512, 512), _batch(obs, act, nxt))
    return wm, W.jitted_train_epoch(wm, num_steps=10, vmap=False), buf, (obs, act, nxt)


def test_grow_keeps_predictions_then_new_units_learn(small_epoch):
    wm, epoch, buf, (obs, act, _) = small_epoch
    state = wm.init(jax.random.key(0), 8)
    for i in range(2):
        state, _ = epoch(state, buf, jax.random.key(1 + i))
    grown = wm.grow(state, 20)
    assert int(grown.hidden_dim) == 20 and float(jnp.sum(grown.mask)) == 20
    before = wm.predict_delta(state, obs, act)
    after = wm.predict_delta(grown, obs, act)
    np.testing.assert_array_equal(before, after)  # bit-identical at the moment of growth
    assert int(wm.grow(grown, 4).hidden_dim) == 20  # never shrinks
    trained, _ = epoch(grown, buf, jax.random.key(5))
    out = np.asarray(trained.params["params"]["out"]["kernel"])
    assert np.any(out[:, 8:20] != 0) and np.all(out[:, 20:] == 0)


def test_train_epoch_is_traced_once(small_epoch):
    wm, epoch, buf, (obs, act, nxt) = small_epoch
    state = wm.init(jax.random.key(0), 5)
    for i in range(3):  # new values, same shapes: no retrace
        state, _ = epoch(state, buf, jax.random.key(i))
    other = rb.add(rb.init(_item(), 32, 32), _batch(obs[:32], act[:32], nxt[:32]))
    with pytest.raises(AssertionError, match="traced > 1"):
        epoch(state, other, jax.random.key(9))


def test_empty_buffer_trains_nothing(small_epoch):
    wm, epoch, _, _ = small_epoch
    empty = rb.init(_item(), 512, 512)  # same shapes as the shared buffer: no retrace
    new, metrics = epoch(wm.init(jax.random.key(0), 8), empty, jax.random.key(1))
    assert int(new.step) == 0 and int(new.samples_seen) == 0 and int(new.nonfinite_updates) == 0
    assert np.isnan(metrics["train_loss"])


def test_capacity_matters_on_the_two_link_arm():
    """Width 256 gets below 1e-3 val MSE in 2 short epochs; width 8 stays >10x worse."""
    wm = W.make_world_model(
        OBS,
        ACT,
        max_width=256,
        num_layers=2,
        learning_rate=3e-3,
        weight_decay=1e-5,
        grad_clip=1.0,
        batch_size=128,
    )
    obs, act, nxt = arm_dataset(4000, seed=0)
    vobs, vact, vnxt = arm_dataset(1000, seed=1)
    states = jax.jit(jax.vmap(wm.init))(jax.random.split(jax.random.key(0), 2), jnp.array([8, 256]))
    # Fan-in scaling uses the effective width: the output kernel's std is 1/sqrt(hidden_dim).
    out = np.asarray(states.params["params"]["out"]["kernel"])
    assert abs(np.std(out[1]) * np.sqrt(256) - 1) < 0.05
    assert abs(np.std(out[0, :, :8]) * np.sqrt(8) - 1) < 0.3
    buf = rb.add(rb.init(_item(), 4000, 4000), _batch(obs, act, nxt))
    bufs = jax.tree.map(lambda x: jnp.stack([x, x]), buf)
    epoch = W.jitted_train_epoch(wm, num_steps=200)
    evaluate = jax.jit(
        jax.vmap(lambda s: E.one_step_errors(wm, s, vobs, vact, vnxt, np.zeros(1000, np.int32), 1))
    )
    key = jax.random.key(1)
    for _ in range(2):
        key, sub = jax.random.split(key)
        states, metrics = epoch(states, bufs, jax.random.split(sub, 2))
    val = np.asarray(evaluate(states)["val_mse"])
    zero_model = np.mean((vnxt - vobs) ** 2)
    assert val[1] < 1e-3 < zero_model
    assert val[0] > 10 * val[1]
    np.testing.assert_array_equal(metrics["samples_seen"], [2 * 200 * 128] * 2)
    np.testing.assert_array_equal(metrics["nonfinite_updates"], [0, 0])


def test_nan_variant_is_flagged_skipped_and_others_are_bit_identical():
    wm = W.make_world_model(OBS, ACT, max_width=16, num_layers=2, batch_size=32)
    obs, act, nxt = arm_dataset(100, seed=5)
    bad_obs = obs.copy()
    bad_obs[::7, 0] = np.nan
    caps = jnp.array([50, 80, 100])
    states = jax.jit(jax.vmap(wm.init))(
        jax.random.split(jax.random.key(0), 3), jnp.array([4, 8, 16])
    )
    epoch = W.jitted_train_epoch(wm, num_steps=10)

    @jax.jit
    def fill(data):
        bufs = jax.vmap(rb.init, in_axes=(None, None, 0))(_item(), 100, caps)
        return jax.vmap(rb.add)(bufs, data)

    def run(variant_1_obs):
        data = _batch(
            np.stack([obs, variant_1_obs, obs]),
            np.stack([act] * 3),
            np.stack([nxt] * 3),
            np.zeros((3, 100), np.int32),
        )
        bufs, s = fill(data), states
        for i in range(2):
            s, m = epoch(s, bufs, jax.random.split(jax.random.key(10 + i), 3))
        return s, m

    clean, clean_m = run(obs)
    dirty, dirty_m = run(bad_obs)
    np.testing.assert_array_equal(clean_m["nonfinite_updates"], [0, 0, 0])
    np.testing.assert_array_equal(dirty_m["nonfinite_updates"], [0, 20, 0])
    assert np.isnan(dirty_m["train_loss"][1]) and np.isfinite(dirty_m["train_loss"][0])
    for v in (0, 2):
        for a, b in zip(
            jax.tree.leaves(_pick(clean, v)), jax.tree.leaves(_pick(dirty, v)), strict=True
        ):
            np.testing.assert_array_equal(a, b)
    # Every update of the NaN variant was skipped: its params and adam state are the initial ones.
    bad, start = _pick(dirty, 1), _pick(states, 1)
    assert int(bad.step) == 0
    for a, b in zip(
        jax.tree.leaves((bad.params, bad.opt_state)),
        jax.tree.leaves((start.params, start.opt_state)),
        strict=True,
    ):
        np.testing.assert_array_equal(a, b)


# ----------------------------------------------------------------------------- evaluation


def test_one_step_errors_match_numpy(model16):
    wm, state = model16
    obs, act, nxt = arm_dataset(30, seed=7)
    goals = np.array([0, 2] * 15, np.int32)  # goal 1 has no sample
    got = E.one_step_errors(wm, state, obs, act, nxt, goals, 3)
    pred = obs + np_predict_delta(state.params, state.normalizer, state.mask, obs, act)
    sq = (pred - nxt) ** 2
    np.testing.assert_allclose(got["val_mse"], sq.mean(), rtol=1e-4)
    np.testing.assert_allclose(got["per_dim_mse"], sq.mean(0), rtol=1e-4)
    per_goal = np.asarray(got["per_goal_mse"])
    want = [sq[goals == 0].mean(), sq[goals == 2].mean()]
    np.testing.assert_allclose(per_goal[[0, 2]], want, rtol=1e-4)
    assert np.isnan(per_goal[1])


def test_k_step_errors_match_a_numpy_rollout(model16):
    wm, state = model16
    rng = np.random.default_rng(8)
    n, horizon = 5, 6
    q, dq = rng.uniform(-np.pi, np.pi, (n, 2)), rng.uniform(-1, 1, (n, 2))
    actions = rng.uniform(-1, 1, (n, horizon, 2)).astype(np.float32)
    seq = [arm_obs(q, dq)]
    for t in range(horizon):
        q, dq = arm_step(q, dq, actions[:, t].astype(np.float64))
        seq.append(arm_obs(q, dq))
    obs_seq = np.stack(seq, axis=1)
    got = E.k_step_errors(wm, state, obs_seq, actions, (1, 3, 5))
    pred = obs_seq[:, 0].astype(np.float64)
    want = {}
    for t in range(5):
        pred = pred + np_predict_delta(
            state.params, state.normalizer, state.mask, pred, actions[:, t]
        )
        if t + 1 in (1, 3, 5):
            want[t + 1] = np.mean((pred - obs_seq[:, t + 1]) ** 2)
    assert set(got) == {1, 3, 5}
    for k, v in want.items():
        np.testing.assert_allclose(got[k], v, rtol=1e-4)
    with pytest.raises(ValueError, match="ks"):
        E.k_step_errors(wm, state, obs_seq, actions, (7,))


# ----------------------------------------------------------------------------- stats file


class FakeWriter:
    def __init__(self):
        self.calls = []

    def add_scalar(self, tag, value, step):
        self.calls.append((tag, value, step))


def _metrics(val):
    return {
        "train_loss": np.float32(0.5),
        "val_mse": val,
        "per_dim_mse": np.array([0.1, np.nan]),
        "per_goal_mse": jnp.array([0.2, np.inf, 0.4]),
        "k_step_mse": {5: 0.3, 1: 0.1},
        "samples_seen": jnp.int32(7680),
        "nonfinite_updates": np.int32(2),
    }


def test_stats_record_write_and_resume(tmp_path):
    stats = WorldModelStats(epsilon=1e-3)
    meta = {"hidden_dim": 64, "buffer_size": 10000, "seed": 0, "num_params": 4934}
    stats.record("h64-b10000-s0", 0, _metrics(0.01), meta)
    entry = stats.record("h64-b10000-s0", 1, {**_metrics(5e-4), "diverged": np.bool_(False)}, meta)
    assert entry["passed"] is True and entry["diverged"] is False
    stats.record("h64-b10000-s0", 0, _metrics(np.nan), meta)  # replaces epoch 0
    path = tmp_path / "world_model_stats.json"
    before = datetime.now(UTC).replace(microsecond=0)
    stats.write(path)
    after = datetime.now(UTC)
    doc = json.loads(path.read_text())
    assert doc["schema"] == 1 and doc["epsilon"] == 1e-3
    # the package's one UTC timestamp, to the second: "2026-01-02T03:04:05Z"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", doc["generated_at"]), doc["generated_at"]
    assert before <= datetime.fromisoformat(doc["generated_at"]) <= after
    v = doc["variants"]["h64-b10000-s0"]
    assert [v[k] for k in ("hidden_dim", "buffer_size", "seed", "num_params")] == [
        64,
        10000,
        0,
        4934,
    ]
    e0, e1 = v["epochs"]
    assert (e0["epoch"], e0["val_mse"], e0["passed"]) == (0, None, False)
    assert e1["per_dim_mse"] == [pytest.approx(0.1), None]
    assert e1["per_goal_mse"] == {"0": pytest.approx(0.2), "1": None, "2": pytest.approx(0.4)}
    assert list(e1["k_step_mse"]) == ["1", "5"]
    assert (e1["samples_seen"], e1["nonfinite_updates"]) == (7680, 2)
    again = WorldModelStats.from_file(path)
    assert again.epsilon == 1e-3 and again.variants == doc["variants"]
    (tmp_path / "bad.json").write_text('{"schema": 1, "variants": []}')
    with pytest.raises(ValueError, match="bad.json"):
        WorldModelStats.from_file(tmp_path / "bad.json")


def test_stats_record_variants_slices_the_variant_axis():
    stats = WorldModelStats(epsilon=0.05)
    metrics = {
        "val_mse": np.array([0.1, 0.01]),
        "k_step_mse": {1: np.array([0.2, 0.02])},
        "per_dim_mse": np.array([[1.0, 2.0], [3.0, 4.0]]),
        "samples_seen": np.array([5, 6]),
    }
    entries = stats.record_variants(["a", "b"], 3, metrics, [{"hidden_dim": 8}, {"hidden_dim": 64}])
    assert [e["passed"] for e in entries] == [False, True]
    assert entries[1]["per_dim_mse"] == [3.0, 4.0] and entries[1]["k_step_mse"] == {"1": 0.02}
    assert stats.variants["b"]["hidden_dim"] == 64 and stats.latest("b")["samples_seen"] == 6


def test_stats_tensorboard_tags():
    stats = WorldModelStats(epsilon=1e-3)
    stats.record("v", 2, _metrics(0.01))
    writer = FakeWriter()
    n = stats.write_tb(writer, "v", 2)
    tags = {t: (v, s) for t, v, s in writer.calls}
    assert n == len(writer.calls) == 7  # dim_1 is null and skipped
    assert tags["world_model/val_mse"] == (pytest.approx(0.01), 2)
    assert tags["world_model/val_mse/dim_0"][0] == pytest.approx(0.1)
    assert "world_model/val_mse/dim_1" not in tags
    assert tags["world_model/k5_mse"][0] == pytest.approx(0.3)
    assert tags["health/nonfinite_updates"][0] == 2.0
    assert tags["health/samples_seen"][0] == 7680.0
    assert tags["world_model/train_loss"][0] == 0.5

    class BatchWriter:  # the project's RunWriter style: scalars(step, {tag: value})
        def __init__(self):
            self.seen = {}

        def scalars(self, step, values):
            self.seen[step] = dict(values)

    batch = BatchWriter()
    assert stats.write_tb(batch, "v", 3, _metrics(np.nan)) == 6  # NaN val_mse is skipped
    assert "world_model/val_mse" not in batch.seen[3]
    assert batch.seen[3]["world_model/k1_mse"] == pytest.approx(0.1)
