"""Reward and termination heads of the world model, checked against references.

The heads are the ones an environment without ``reward_from_obs`` / ``terminal_from_obs`` is
planned with: a masked model with heads must equal a dense one, its loss must equal a NumPy
reimplementation, it must learn a goal-conditioned reward, its errors must reach the stats file
and TensorBoard, and a checkpoint must give back the same reward. A model without heads must be
exactly what it was.
"""

import json
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from augnes_jax import buffer as rb
from augnes_jax import checkpoint as ckpt
from augnes_jax import checkpoint_meta, envs, infer
from augnes_jax import world_model as W
from augnes_jax import world_model_eval as E
from augnes_jax.epoch import (
    EpochSettings,
    buffer_item,
    init_bucket_buffers,
    init_bucket_states,
    make_bucket_fns,
    make_validation_set,
)
from augnes_jax.planner import PlannerSettings
from augnes_jax.sweep_checkpoints import restore_device_state
from augnes_jax.sweep_errors import SweepError
from augnes_jax.sweep_io import CONTROLLER_RUN, SweepWriter
from augnes_jax.world_model_stats import WorldModelStats, head_metrics

OBS, ACT, GOALS = 2, 2, 4
GOAL_VEC = np.array([[0.5, 0.5], [-0.5, 0.5], [-0.5, -0.5], [0.5, -0.5]], np.float32)


# ----------------------------------------------------------------------------- references


def goal_task(n, seed):
    """Returns a batch of the synthetic goal task: reward = -||next_obs - goal||, terminal = reward > -0.1.

    Every observation lies near one of the four goal points; half the time that point is the
    goal, so the goal id decides both the reward's level and whether the step can terminate.
    """
    rng = np.random.default_rng(seed)
    goal = rng.integers(0, GOALS, n)
    near = np.where(rng.random(n) < 0.5, goal, rng.integers(0, GOALS, n))
    obs = (GOAL_VEC[near] + rng.uniform(-0.2, 0.2, (n, OBS))).astype(np.float32)
    act = rng.uniform(-1, 1, (n, ACT)).astype(np.float32)
    nxt = (obs + 0.1 * act).astype(np.float32)
    reward = -np.linalg.norm(nxt.astype(np.float64) - GOAL_VEC[goal], axis=1)
    return {"obs": obs, "action": act, "next_obs": nxt, "goal_id": goal.astype(np.int32),
            "reward": reward.astype(np.float32), "terminated": reward > -0.1}


def np_swish(x):
    return x / (1.0 + np.exp(-x))


def np_forward(params, normalizer, mask, obs, action, goal_id, num_goals):
    """Float64 NumPy forward pass of the masked MLP with heads: the raw output ``[N, d + 2]``."""
    p = jax.tree.map(lambda x: np.asarray(x, np.float64), params["params"])
    n = jax.tree.map(lambda x: np.asarray(x, np.float64), normalizer)
    m = np.asarray(mask, np.float64)
    one_hot = np.eye(num_goals)[goal_id]
    x = np.concatenate([(obs - n.obs_mean) / n.obs_std, (action - n.act_mean) / n.act_std, one_hot], -1)
    h = np_swish(x @ p["hidden_0"]["kernel"] + p["hidden_0"]["bias"]) * m
    if "hidden_1" in p:
        h = np_swish(h @ p["hidden_1"]["kernel"] + p["hidden_1"]["bias"]) * m
    return h @ p["out"]["kernel"].T + p["out"]["bias"]


def np_bce(logit, label):
    """Binary cross-entropy of a sigmoid, written the stable way with log1p."""
    return np.maximum(logit, 0) - logit * label + np.log1p(np.exp(-np.abs(logit)))


def heads_model(max_width=16, num_layers=2, **hp):
    return W.make_world_model(OBS, ACT, max_width=max_width, num_layers=num_layers, num_goals=GOALS,
                              learn_reward=True, **hp)


def with_data_normalizer(state, batch):
    norm = W.compute_normalizer(batch["obs"], batch["action"], batch["next_obs"], reward=batch["reward"])
    return state.replace(normalizer=norm)


def _item():
    return {"obs": jnp.zeros((OBS,)), "action": jnp.zeros((ACT,)), "next_obs": jnp.zeros((OBS,)),
            "goal_id": jnp.int32(0), "reward": jnp.float32(0), "terminated": jnp.bool_(False)}


def _rows(batch, sl):
    return {k: v[sl] for k, v in batch.items()}


# ----------------------------------------------------------------------------- sizes and layout


def test_heads_widen_input_and_output_and_counts_follow():
    wm = heads_model(max_width=16)
    state = wm.init(jax.random.key(0), 8)
    p = state.params["params"]
    assert p["hidden_0"]["kernel"].shape == (OBS + ACT + GOALS, 16)
    assert p["out"]["kernel"].shape == (OBS + 2, 16) and p["out"]["bias"].shape == (OBS + 2,)
    assert isinstance(state.normalizer, W.HeadNormalizer)
    assert float(state.normalizer.reward_mean) == 0.0 and float(state.normalizer.reward_std) == 1.0
    assert W.head_sizes(GOALS, True) == (GOALS, 2) and W.head_sizes(GOALS, False) == (0, 0)
    # in=8, h=8, out=4: 8*8+8 + 8*8+8 + 8*4+4 = 180 parameters.
    assert W.num_params(OBS, ACT, 8, 2, *W.head_sizes(GOALS, True)) == 180
    dense = W.dense_params(jax.tree.map(np.asarray, state.params), 8)
    assert sum(np.size(x) for x in jax.tree.leaves(dense)) == 180
    active = sum(int(np.sum(m)) for m in jax.tree.leaves(W.param_mask(state.params, state.mask)))
    assert active == 180
    # forward 2*(64+64+32) + weight grads 2*(64+64+32) + input grads 2*(64+32) = 832.
    assert W.flops_per_sample(OBS, ACT, 8, 2, GOALS, 2) == 832
    assert W.num_params(OBS, ACT, 8, 2) == W.num_params(OBS, ACT, 8, 2, 0, 0)  # defaults keep old counts


def test_heads_need_goals_and_models_without_heads_refuse_head_predictions():
    with pytest.raises(ValueError, match="learn_reward needs num_goals >= 1, got 0"):
        W.make_world_model(OBS, ACT, max_width=8, learn_reward=True)
    with pytest.raises(ValueError, match="num_goals must be >= 0"):
        W.make_world_model(OBS, ACT, max_width=8, num_goals=-1)
    with pytest.raises(ValueError, match=r"obs_dim \+ act_dim \+ num_goals must be in \[1, 16384\)"):
        W.make_world_model(OBS, ACT, max_width=8, num_goals=16380, learn_reward=True)
    plain = W.make_world_model(OBS, ACT, max_width=8, num_goals=GOALS)
    state = plain.init(jax.random.key(0), 4)
    obs, act = np.zeros((3, OBS), np.float32), np.zeros((3, ACT), np.float32)
    for fn in (plain.predict_step, plain.predict_heads):
        with pytest.raises(ValueError, match="need a model built with learn_reward=True"):
            fn(state, obs, act, np.zeros(3, np.int32))
    wm = heads_model(max_width=8)
    with pytest.raises(ValueError, match="needs goal_id"):
        wm.predict_next(wm.init(jax.random.key(0), 4), obs, act)


def test_without_heads_the_state_and_every_result_are_unchanged():
    """A model without heads (num_goals given or not) has the old state layout and bit-identical results."""
    hp = dict(max_width=16, num_layers=2, learning_rate=1e-2)
    old = W.make_world_model(OBS, ACT, **hp)
    plain = W.make_world_model(OBS, ACT, num_goals=GOALS, **hp)
    assert not plain.learn_reward and plain.num_goals == GOALS
    so, sp = old.init(jax.random.key(3), 8), plain.init(jax.random.key(3), 8)
    # The layout written by hand: the weights of an [obs+act] -> [obs] network and six normalizer fields.
    params = {"params": {
        "hidden_0": {"kernel": np.zeros((OBS + ACT, 16)), "bias": np.zeros(16)},
        "hidden_1": {"kernel": np.zeros((16, 16)), "bias": np.zeros(16)},
        "out": {"kernel": np.zeros((OBS, 16)), "bias": np.zeros(OBS)},
    }}
    want = W.WorldModelState(
        params=params, opt_state=optax.adamw(1e-2, weight_decay=1e-5).init(params),
        normalizer=W.Normalizer(*(np.zeros(n) for n in (OBS, OBS, ACT, ACT, OBS, OBS))),
        mask=np.zeros(16), hidden_dim=0, step=0, nonfinite_updates=0, samples_seen=0)
    assert type(sp.normalizer) is W.Normalizer
    assert jax.tree.structure(sp) == jax.tree.structure(want) == jax.tree.structure(so)
    assert jax.tree.map(np.shape, sp) == jax.tree.map(np.shape, want)
    for a, b in zip(jax.tree.leaves(so), jax.tree.leaves(sp), strict=True):
        np.testing.assert_array_equal(a, b)
    batch = goal_task(64, seed=0)
    norm = W.compute_normalizer(batch["obs"], batch["action"], batch["next_obs"])
    so, sp = so.replace(normalizer=norm), sp.replace(normalizer=norm)
    so, mo = jax.jit(old.train_step)(so, batch)
    sp, mp = jax.jit(plain.train_step)(sp, batch)
    assert float(mo["loss"]) == float(mp["loss"])
    for a, b in zip(jax.tree.leaves(so), jax.tree.leaves(sp), strict=True):
        np.testing.assert_array_equal(a, b)
    # the goal id is ignored by a model without heads
    np.testing.assert_array_equal(plain.predict_next(sp, batch["obs"], batch["action"], batch["goal_id"]),
                                  old.predict_next(so, batch["obs"], batch["action"]))


# ----------------------------------------------------------------------------- masked equals dense


@pytest.mark.parametrize("num_layers", [1, 2])
def test_masked_model_with_heads_inits_predicts_and_trains_like_dense(num_layers):
    hp = dict(num_layers=num_layers, learning_rate=1e-2, weight_decay=0.1, grad_clip=0.5)
    big, dense = heads_model(max_width=32, **hp), heads_model(max_width=8, **hp)
    # The same seed on purpose: a fresh key object each time keeps the reuse checker quiet.
    sb, sd = big.init(jax.random.key(7), 8), dense.init(jax.random.key(7), 8)
    pb, pd = sb.params["params"], sd.params["params"]
    np.testing.assert_array_equal(pb["hidden_0"]["kernel"][:, :8], pd["hidden_0"]["kernel"])
    np.testing.assert_array_equal(pb["out"]["kernel"][:, :8], pd["out"]["kernel"])
    assert np.all(np.asarray(pb["out"]["kernel"][:, 8:]) == 0)
    data = goal_task(20 * 32 + 64, seed=1)
    sb, sd = with_data_normalizer(sb, data), with_data_normalizer(sd, data)
    held = _rows(data, slice(20 * 32, None))
    out_b = big.predict_step(sb, held["obs"], held["action"], held["goal_id"])
    out_d = dense.predict_step(sd, held["obs"], held["action"], held["goal_id"])
    for a, b in zip(out_b, out_d, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    p0 = sb.params
    step_b, step_d = jax.jit(big.train_step), jax.jit(dense.train_step)
    for i in range(20):
        batch = _rows(data, slice(32 * i, 32 * (i + 1)))
        sb, mb = step_b(sb, batch)
        sd, md = step_d(sd, batch)
        np.testing.assert_allclose(mb["loss"], md["loss"], rtol=1e-5)
        np.testing.assert_allclose(mb["grad_norm"], md["grad_norm"], rtol=1e-5)
    for a, b in zip(W.dense_params(jax.tree.map(np.asarray, sb.params), 8)["params"].values(),
                    sd.params["params"].values(), strict=True):
        np.testing.assert_allclose(a["kernel"], b["kernel"], rtol=2e-5, atol=2e-6)
        np.testing.assert_allclose(a["bias"], b["bias"], rtol=2e-5, atol=2e-6)
    masked = jax.tree.map(lambda m: np.asarray(m) == 0, W.param_mask(sb.params, sb.mask))
    for p, q, m in zip(jax.tree.leaves(sb.params), jax.tree.leaves(p0), jax.tree.leaves(masked), strict=True):
        np.testing.assert_array_equal(np.asarray(p)[m], np.asarray(q)[m])  # masked weights never moved
    out_b = big.predict_step(sb, held["obs"], held["action"], held["goal_id"])
    out_d = dense.predict_step(sd, held["obs"], held["action"], held["goal_id"])
    for a, b in zip(out_b, out_d, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


# ----------------------------------------------------------------------------- loss and predictions


@pytest.fixture(scope="module")
def model12():
    """A width-12 variant with heads in a width-16 bucket, with a data normalizer."""
    wm = heads_model(max_width=16)
    state = with_data_normalizer(wm.init(jax.random.key(1), 12), goal_task(200, seed=2))
    return wm, state


def test_loss_with_heads_equals_numpy_mse_mse_bce(model12):
    wm, state = model12
    batch = goal_task(48, seed=3)
    n = jax.tree.map(lambda x: np.asarray(x, np.float64), state.normalizer)
    out = np_forward(state.params, state.normalizer, state.mask, batch["obs"], batch["action"],
                     batch["goal_id"], GOALS)
    delta_t = (batch["next_obs"] - batch["obs"] - n.delta_mean) / n.delta_std
    reward_t = (batch["reward"] - n.reward_mean) / n.reward_std
    label = batch["terminated"].astype(np.float64)
    assert 0 < label.mean() < 1  # both classes present, so the cross-entropy term is exercised
    want = (np.mean((out[:, :OBS] - delta_t) ** 2) + np.mean((out[:, OBS] - reward_t) ** 2)
            + np.mean(np_bce(out[:, OBS + 1], label)))
    got = jax.jit(wm.loss)(state.params, state.normalizer, state.mask, batch)
    np.testing.assert_allclose(got, want, rtol=1e-4)
    nxt, reward, prob = wm.predict_step(state, batch["obs"], batch["action"], batch["goal_id"])
    np.testing.assert_allclose(nxt, batch["obs"] + out[:, :OBS] * n.delta_std + n.delta_mean, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(reward, out[:, OBS] * n.reward_std + n.reward_mean, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(prob, 1 / (1 + np.exp(-out[:, OBS + 1])), rtol=1e-4, atol=1e-6)
    # one goal for a whole batch broadcasts; a single sample works too
    one = wm.predict_step(state, batch["obs"], batch["action"], 2)
    np.testing.assert_allclose(one[1], wm.predict_step(state, batch["obs"], batch["action"],
                                                       np.full(48, 2, np.int32))[1])
    single = wm.predict_step(state, batch["obs"][5], batch["action"][5], batch["goal_id"][5])
    assert single[0].shape == (OBS,) and single[1].shape == ()
    np.testing.assert_allclose(single[1], reward[5], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(wm.predict_next(state, batch["obs"], batch["action"], goal_id=batch["goal_id"]), nxt)


def test_head_normalizer_uses_only_the_live_part_of_the_buffer():
    data = goal_task(9, seed=2)

    @jax.jit
    def build(batch):
        buf = rb.add(rb.init(_item(), 12, 5), batch)  # 9 items, capacity 5: 4 are evicted
        return W.normalizer_from_buffer(buf, W.identity_normalizer(OBS, ACT, reward=True))

    norm = build(data)
    assert isinstance(norm, W.HeadNormalizer)
    live = np.array([5, 6, 7, 8, 4])
    r = data["reward"][live].astype(np.float64)
    np.testing.assert_allclose(norm.reward_mean, r.mean(), rtol=1e-5)
    np.testing.assert_allclose(norm.reward_std, r.std(), rtol=1e-4)
    np.testing.assert_allclose(norm.obs_mean, data["obs"][live].mean(0), rtol=1e-5, atol=1e-6)


def test_one_step_and_k_step_head_errors_match_numpy(model12):
    wm, state = model12
    data = goal_task(60, seed=4)
    args = (data["obs"], data["action"], data["next_obs"], data["goal_id"])
    errs = E.one_step_errors(wm, state, *args, num_goals=GOALS, reward=data["reward"],
                             terminated=data["terminated"])
    nxt, reward, prob = (np.asarray(x, np.float64) for x in
                         wm.predict_step(state, data["obs"], data["action"], data["goal_id"]))
    _, _, logit = wm.predict_heads(state, data["obs"], data["action"], data["goal_id"])
    sq = (reward - data["reward"]) ** 2
    label = data["terminated"].astype(np.float64)
    np.testing.assert_allclose(errs["val_mse"], np.mean((nxt - data["next_obs"]) ** 2), rtol=1e-4)
    np.testing.assert_allclose(errs["reward_mse"], sq.mean(), rtol=1e-4)
    np.testing.assert_allclose(errs["per_goal_reward_mse"],
                               [sq[data["goal_id"] == g].mean() for g in range(GOALS)], rtol=1e-4)
    np.testing.assert_allclose(errs["termination_bce"], np_bce(np.asarray(logit, np.float64), label).mean(),
                               rtol=1e-4)
    np.testing.assert_allclose(errs["termination_accuracy"], np.mean((prob > 0.5) == data["terminated"]),
                               rtol=1e-6)
    without = E.one_step_errors(wm, state, *args, num_goals=GOALS)
    assert set(without) == {"val_mse", "per_dim_mse", "per_goal_mse"}
    # k steps: roll out on the model's own predictions with each sequence's goal
    rng = np.random.default_rng(5)
    obs_seq = rng.uniform(-1, 1, (7, 4, OBS)).astype(np.float32)
    act_seq = rng.uniform(-1, 1, (7, 3, ACT)).astype(np.float32)
    goals = rng.integers(0, GOALS, 7).astype(np.int32)
    ks = E.k_step_errors(wm, state, obs_seq, act_seq, (1, 3), goals)
    x = obs_seq[:, 0]
    for k in range(3):
        x = np.asarray(wm.predict_step(state, x, act_seq[:, k], goals)[0])
        if k + 1 in (1, 3):
            np.testing.assert_allclose(ks[k + 1], np.mean((x - obs_seq[:, k + 1]) ** 2), rtol=1e-4)


def test_a_trained_model_learns_the_goal_conditioned_reward_and_termination():
    wm = heads_model(max_width=64, learning_rate=3e-3, batch_size=128)
    train = goal_task(4000, seed=10)
    buf = rb.add(rb.init(_item(), 4000, 4000), train)
    epoch = W.jitted_train_epoch(wm, num_steps=1500, vmap=False)
    state, metrics = epoch(wm.init(jax.random.key(2), 64), buf, jax.random.key(3))
    assert int(metrics["nonfinite_updates"]) == 0
    held = goal_task(2000, seed=11)
    errs = E.one_step_errors(wm, state, held["obs"], held["action"], held["next_obs"], held["goal_id"],
                             num_goals=GOALS, reward=held["reward"], terminated=held["terminated"])
    variance = float(np.var(held["reward"]))
    majority = max(held["terminated"].mean(), 1 - held["terminated"].mean())
    assert float(errs["reward_mse"]) < 0.05 * variance
    assert float(errs["termination_accuracy"]) > majority + 0.5 * (1 - majority)
    # the goal matters: the same transitions scored under another goal get other rewards
    other = (held["goal_id"] + 2) % GOALS
    _, r_other, _ = wm.predict_step(state, held["obs"], held["action"], other)
    assert float(np.mean((np.asarray(r_other) - held["reward"]) ** 2)) > 10 * float(errs["reward_mse"])


# ----------------------------------------------------------------------------- the sweep's data


def _env_reward_and_termination(env, params, obs, action, next_obs, goal_id):
    """Returns the environment's own reward and termination of stored transitions (NumPy)."""
    reward = jax.vmap(lambda o, a, n, g: env.reward_from_obs(o, a, n, g, params))(obs, action, next_obs, goal_id)
    terminal = jax.vmap(lambda n, g: env.terminal_from_obs(n, g, params))(next_obs, goal_id)
    return np.asarray(reward), np.asarray(terminal)


@pytest.fixture(scope="module", params=["gridworld", "reacher"])
def collected(request):
    """One epoch's random collection into a bucket of one model with heads, and a validation set."""
    env = envs.make(request.param)
    params = env.default_params(episode_length=40)
    planner = PlannerSettings(horizon=2, num_samples=4, num_elites=2, iterations=1)
    settings = EpochSettings(episode_length=40, samples_per_epoch=400, train_steps=1, planner=planner,
                             collect_planner=planner, exploration_noise=0.1, k_steps=(1, 3))
    goal_ids = np.arange(env.num_goals)
    wm = W.make_world_model(env.obs_dim, env.action_feature_dim, max_width=8, num_goals=env.num_goals,
                            learn_reward=True)
    fns = make_bucket_fns(env, params, wm, goal_ids, env.num_goals, settings)
    states = init_bucket_states(wm, jax.random.split(jax.random.key(0), 1), jnp.array([8]))
    buffers = init_bucket_buffers(buffer_item(env, env.obs_dim), 800, jnp.array([800]))
    probs = jnp.full((1, env.num_goals), 1.0 / env.num_goals)
    buffers, _ = fns.collect(states, buffers, jax.random.split(jax.random.key(1), 1), probs, use_random=True)
    val = make_validation_set(env, params, jax.random.key(2), goal_ids, 300, 40, 3)
    return env, params, wm, fns, states, buffers, val


def test_collected_buffers_and_validation_sets_hold_the_envs_reward_and_termination(collected):
    env, params, _, _, _, buffers, val = collected
    item = buffer_item(env, env.obs_dim)
    assert item["reward"].dtype == jnp.float32 and item["terminated"].dtype == jnp.bool_
    size = int(rb.size(jax.tree.map(lambda x: x[0], buffers)))
    data = jax.tree.map(lambda x: np.asarray(x[0])[:size], buffers.data)
    reward, terminal = _env_reward_and_termination(env, params, data["obs"], data["action"], data["next_obs"],
                                                   data["goal_id"])
    np.testing.assert_allclose(data["reward"], reward, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(data["terminated"], terminal)
    # not a constant the check could pass by: the grid's episodes reach goals, the reacher's reward varies
    assert data["terminated"].any() if env.discrete else np.std(data["reward"]) > 0.01
    reward, terminal = _env_reward_and_termination(env, params, val.obs, val.action, val.next_obs, val.goal_id)
    np.testing.assert_allclose(val.reward, reward, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(val.terminated, terminal)
    assert val.seq_goal_id.shape == (val.obs_seq.shape[0],)
    assert set(np.unique(val.seq_goal_id)) <= set(np.unique(val.goal_id))


@pytest.mark.parametrize("collected", ["gridworld"], indirect=True)  # one environment is enough for the wiring
def test_the_bucket_trains_the_heads_and_reports_their_errors(collected):
    env, _, wm, fns, states, buffers, val = collected
    states, metrics = fns.train(states, buffers, jax.random.split(jax.random.key(3), 1))
    assert np.isfinite(np.asarray(metrics["train_loss"])).all()
    one, ks = fns.evaluate(states, val)
    state = jax.tree.map(lambda x: x[0], states)
    direct = E.one_step_errors(wm, state, val.obs, val.action, val.next_obs, val.goal_id, num_goals=env.num_goals,
                               reward=val.reward, terminated=val.terminated)
    for key in ("val_mse", "reward_mse", "termination_bce", "termination_accuracy"):
        np.testing.assert_allclose(one[key][0], direct[key], rtol=1e-5)
    direct_k = E.k_step_errors(wm, state, val.obs_seq, val.action_seq, (1, 3), val.seq_goal_id)
    for k in (1, 3):
        np.testing.assert_allclose(ks[k][0], direct_k[k], rtol=1e-5)


def test_resuming_from_a_checkpoint_whose_buffers_lack_reward_is_one_clear_error():
    """A run checkpointed before buffers stored reward and terminated cannot resume; it says so in one line."""
    env = envs.make("gridworld")
    wm = W.make_world_model(env.obs_dim, env.action_feature_dim, max_width=8)
    states = init_bucket_states(wm, jax.random.split(jax.random.key(0), 1), jnp.array([8]))
    item = buffer_item(env, env.obs_dim)
    old_item = {k: v for k, v in item.items() if k not in ("reward", "terminated")}
    old = jax.tree.leaves((states, init_bucket_buffers(old_item, 16, jnp.array([16]))))
    new_buffers = init_bucket_buffers(item, 16, jnp.array([16]))
    run = SimpleNamespace(bucket=SimpleNamespace(name="w8", variants=["h8-b16-s0"]), states=states,
                          buffers=new_buffers, pad=lambda x: x)
    saved = {"resume": {"w8": {f"leaf_{i:04d}": np.asarray(x) for i, x in enumerate(old)}}}
    need = len(jax.tree.leaves((states, new_buffers)))
    assert need == len(old) + 2
    with pytest.raises(SweepError, match=f"^cannot resume: checkpoint 3 holds {len(old)} arrays for bucket w8, "
                                         f"this config needs {need}$"):
        restore_device_state([run], saved, 3, "runs/x/checkpoints", shard=lambda x: x)


# ----------------------------------------------------------------------------- stats file and TensorBoard


class _Writer:
    def __init__(self):
        self.points = {}

    def add_scalar(self, tag, value, step):
        self.points[tag] = (value, step)


def test_head_errors_go_to_the_stats_file_and_tensorboard_and_only_with_heads(tmp_path):
    one = {"val_mse": np.float32(0.01), "per_dim_mse": np.zeros(OBS), "per_goal_mse": np.zeros(GOALS),
           "reward_mse": np.float32(0.25), "per_goal_reward_mse": np.array([0.5, np.nan, 0.125, 0.0]),
           "termination_bce": np.float32(0.5), "termination_accuracy": np.float32(0.75)}
    extra = head_metrics(one, [0, 1, 2])
    assert extra == {"reward_mse": 0.25, "termination_bce": 0.5, "termination_accuracy": 0.75,
                     "per_goal_reward_mse": {"0": 0.5, "1": pytest.approx(np.nan, nan_ok=True), "2": 0.125}}
    assert head_metrics({"val_mse": 0.1, "per_goal_mse": np.zeros(2)}, [0, 1]) == {}
    stats = WorldModelStats(epsilon=1e-3)
    base = {"train_loss": 0.1, "val_mse": 0.01, "per_dim_mse": [0.01, 0.01], "per_goal_mse": [0.01],
            "k_step_mse": {1: 0.01}, "samples_seen": 64, "nonfinite_updates": 0}
    with_heads = stats.record("h8-b100-s0", 0, {**base, **extra})
    plain = stats.record("h4-b100-s0", 0, base)
    assert with_heads["reward_mse"] == 0.25 and with_heads["termination_accuracy"] == 0.75
    assert with_heads["per_goal_reward_mse"] == {"0": 0.5, "1": None, "2": 0.125}
    assert not {"reward_mse", "per_goal_reward_mse", "termination_bce", "termination_accuracy"} & set(plain)
    path = tmp_path / "world_model_stats.json"
    stats.write(path)
    doc = json.loads(path.read_text())
    assert doc["variants"]["h8-b100-s0"]["epochs"][0]["per_goal_reward_mse"]["1"] is None
    assert WorldModelStats.from_file(path).latest("h8-b100-s0")["termination_bce"] == 0.5
    w = _Writer()
    stats.write_tb(w, "h8-b100-s0", 0)
    assert w.points["world_model/reward_mse"] == (0.25, 0)
    assert w.points["world_model/termination_bce"] == (0.5, 0)
    assert w.points["world_model/termination_accuracy"] == (0.75, 0)
    w = _Writer()
    stats.write_tb(w, "h4-b100-s0", 0)
    assert not any(t.startswith(("world_model/reward", "world_model/termination")) for t in w.points)


class _ScalarsWriter:
    def __init__(self):
        self.points = {}

    def scalars(self, step, values):
        self.points.update({tag: (value, step) for tag, value in values.items()})


def _result(h, seed, regret, metrics):
    return SimpleNamespace(variant=SimpleNamespace(hidden_dim=h, buffer_size=100, seed=seed, named_depth=None), diverged=False,
                           avg_regret=regret, metrics=metrics)


def test_the_controller_run_gets_the_mean_reward_error_per_capacity_only_with_heads():
    ctl = _ScalarsWriter()
    judged = SimpleNamespace(epoch=3, variants={
        "a": _result(8, 0, 1.0, {"val_mse": 0.5, "reward_mse": 0.25}),
        "b": _result(8, 1, 3.0, {"val_mse": 1.5, "reward_mse": 0.75}),
        "c": _result(4, 0, 2.0, {"val_mse": 2.0}),
    })
    SweepWriter._write_controller_tb(SimpleNamespace(writers={CONTROLLER_RUN: ctl}), judged)
    assert ctl.points["by_capacity/reward_mse/h8-b100"] == (0.5, 3)
    assert ctl.points["by_capacity/val_mse/h8-b100"] == (1.0, 3)
    assert ctl.points["by_capacity/avg_regret/h4-b100"] == (2.0, 3)
    assert "by_capacity/reward_mse/h4-b100" not in ctl.points


# ----------------------------------------------------------------------------- checkpoints and inference


@pytest.fixture(scope="module")
def heads_run(tmp_path_factory):
    """A checkpoint of one bucket w16 holding h6 and h16 models with heads, trained a little."""
    run_dir = tmp_path_factory.mktemp("heads_run")
    wm = heads_model(max_width=16, batch_size=64)
    train = goal_task(512, seed=20)
    buf = rb.add(rb.init(_item(), 512, 512), train)
    states = jax.jit(jax.vmap(wm.init))(jax.random.split(jax.random.key(0), 2), jnp.array([6, 16]))
    epoch = W.jitted_train_epoch(wm, num_steps=40)
    bufs = jax.tree.map(lambda x: jnp.stack([x, x]), buf)
    states, _ = epoch(states, bufs, jax.random.split(jax.random.key(1), 2))
    variants = [checkpoint_meta.variant_entry(
        name=f"h{h}-b512-s0", hidden_dim=h, buffer_size=512, seed=0, bucket="w16", index=i, max_width=16,
        mask=[1] * h + [0] * (16 - h), val_mse=v, diverged=False) for i, (h, v) in enumerate([(6, 0.2), (16, 0.1)])]
    meta = checkpoint_meta.build_meta(config={}, env="goal_task", obs_dim=OBS, act_dim=ACT, num_layers=2, epoch=0,
                                      variants=variants, learn_reward=True, num_goals=GOALS)
    with ckpt.SweepCheckpointer(run_dir / "checkpoints") as saver:
        saver.save(0, arrays=ckpt.world_model_arrays({"w16": states}), meta=meta)
        del meta["learn_reward"], meta["num_goals"]  # a checkpoint that does not record its heads
        saver.save(1, arrays=ckpt.world_model_arrays({"w16": states}), meta=meta)
    return run_dir, wm, states


@pytest.mark.parametrize("step", [0, 1])
def test_checkpoint_round_trip_gives_back_the_heads(heads_run, step):
    run_dir, wm, states = heads_run
    held = goal_task(32, seed=21)
    for index, name in enumerate(["h6-b512-s0", "h16-b512-s0"]):
        pred = ckpt.load_world_model(run_dir, variant=name, step=step)
        assert pred.learn_reward and pred.num_goals == GOALS
        assert isinstance(pred.normalizer, W.HeadNormalizer)
        state = jax.tree.map(lambda x, i=index: x[i], states)
        nxt, reward, prob = wm.predict_step(state, held["obs"], held["action"], held["goal_id"])
        np.testing.assert_allclose(pred.predict_reward(held["obs"], held["action"], held["goal_id"]), reward,
                                   rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(pred.predict_terminal(held["obs"], held["action"], held["goal_id"]), prob,
                                   rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(pred.predict_next(held["obs"], held["action"], held["goal_id"]), nxt,
                                   rtol=1e-5, atol=1e-6)
        with pytest.raises(ValueError, match="need a goal_id"):
            pred.predict_delta(held["obs"], held["action"])


def test_checkpoint_meta_and_arrays_must_agree_on_heads(heads_run, tmp_path):
    run_dir, _, states = heads_run
    _, arrays, meta = ckpt.restore_checkpoint(run_dir / "checkpoints", 0)
    assert checkpoint_meta.model_heads(meta, "m") == (True, GOALS)
    assert checkpoint_meta.model_heads({"obs_dim": 1}, "m") is None
    with pytest.raises(ckpt.CheckpointError, match="'num_goals' must be a positive integer"):
        checkpoint_meta.model_heads({"learn_reward": True}, "m")
    with pytest.raises(ckpt.CheckpointError, match="'learn_reward' must be true or false"):
        checkpoint_meta.model_heads({"learn_reward": "yes"}, "m")
    meta = {**meta, "learn_reward": False}
    with ckpt.SweepCheckpointer(tmp_path / "checkpoints") as saver:
        saver.save(0, arrays=ckpt.world_model_arrays({"w16": states}), meta=meta)
    with pytest.raises(ckpt.CheckpointError, match="'learn_reward' is false but the saved normalizer has reward"):
        ckpt.load_world_model(tmp_path, variant="h6-b512-s0")


def test_models_without_heads_refuse_reward_predictions(tmp_path):
    wm = W.make_world_model(OBS, ACT, max_width=8)
    states = jax.vmap(wm.init)(jax.random.split(jax.random.key(0), 1), jnp.array([8]))
    variants = [checkpoint_meta.variant_entry(name="h8-b1-s0", hidden_dim=8, buffer_size=1, seed=0, bucket="w8",
                                              index=0, max_width=8, mask=[1] * 8, val_mse=0.1, diverged=False)]
    meta = checkpoint_meta.build_meta(config={}, env="toy", obs_dim=OBS, act_dim=ACT, num_layers=2, epoch=0,
                                      variants=variants)
    assert "learn_reward" not in meta and "num_goals" not in meta
    with ckpt.SweepCheckpointer(tmp_path / "checkpoints") as saver:
        saver.save(0, arrays=ckpt.world_model_arrays({"w8": states}), meta=meta)
    pred = ckpt.load_world_model(tmp_path)
    assert not pred.learn_reward and pred.num_goals == 0
    obs, act = np.ones((2, OBS), np.float32), np.ones((2, ACT), np.float32)
    with pytest.raises(ValueError, match="has no reward or termination head"):
        pred.predict_reward(obs, act, 0)
    np.testing.assert_array_equal(pred.predict_delta(obs, act, 3), pred.predict_delta(obs, act))


def test_infer_prints_reward_and_terminal_probability(heads_run, tmp_path, capsys):
    run_dir, wm, states = heads_run
    held = goal_task(5, seed=22)
    obs, act = held["obs"], held["action"]
    assert infer.main([str(run_dir), "--variant", "h16-b512-s0", "--step", "0",
                       "--obs=" + ",".join(map(str, obs[0])), "--action=" + ",".join(map(str, act[0])),
                       "--goal-id", "2"]) == 0
    doc = json.loads(capsys.readouterr().out)
    state = jax.tree.map(lambda x: x[1], states)
    nxt, reward, prob = wm.predict_step(state, obs[0], act[0], 2)
    assert doc["goal_id"] == 2
    np.testing.assert_allclose(doc["reward"], reward, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(doc["terminal_prob"], prob, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(doc["next_obs"], nxt, rtol=1e-5, atol=1e-6)
    np.save(tmp_path / "o.npy", obs)
    np.save(tmp_path / "a.npy", act)
    np.savetxt(tmp_path / "g.csv", held["goal_id"][:, None], delimiter=",")
    assert infer.main([str(run_dir), "--variant", "h16-b512-s0", "--step", "0", "--obs-file", str(tmp_path / "o.npy"),
                       "--action-file", str(tmp_path / "a.npy"), "--goal-file", str(tmp_path / "g.csv")]) == 0
    doc = json.loads(capsys.readouterr().out)
    _, reward, prob = wm.predict_step(state, obs, act, held["goal_id"])
    assert doc["goal_id"] == held["goal_id"].tolist()
    np.testing.assert_allclose(doc["reward"], reward, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(doc["terminal_prob"], prob, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("extra", "needle"), [
    ([], "--goal-id: required: the model has reward heads"),
    (["--goal-id", "4"], "--goal-id: goal id 4 is outside [0, 4)"),
    (["--goal-id", "1", "--goal-file", "g.csv"], "--goal-id and --goal-file cannot be mixed"),
    (["--goal-file", "g.csv"], "--goal-file: goes with --obs-file/--action-file"),
])
def test_infer_goal_errors_are_one_line_with_status_2(heads_run, capsys, extra, needle):
    run_dir, _, _ = heads_run
    code = infer.main([str(run_dir), "--step", "0", "--obs", "0.1,0.2", "--action", "0.5,0.5", *extra])
    err = capsys.readouterr().err
    assert code == 2 and needle in err and len(err.strip().splitlines()) == 1
