"""The planner's own gap measured in the sweep, the planner's latency as a cost, diagnosis-driven collection.

The end-to-end run is a gridworld of two walled-off halves: goal 0 lies in an open room, where
the planner's Manhattan heuristic leads straight to it; goal 1 lies below a wall that the
shortest path has to go around, a detour longer than the planner's horizon of 2, so the planner
on the true dynamics stalls against the wall. Value iteration proves that the goal was reachable.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sweep_configs import TINY

from augnes_jax.config import ConfigError, load_config
from augnes_jax.envs import adapt, value_iteration
from augnes_jax.envs.gridworld import GridParams, GridWorld, parse_layout
from augnes_jax.epoch import Reference, make_reference_fn
from augnes_jax.evidence import LATENCY_TAG, REFERENCE_RUN, planner_gap_tag
from augnes_jax.planner import make_mpc_policy, simulator_model
from augnes_jax.rollout import random_policy, rollout
from augnes_jax.sampling import (
    collection_goal_probabilities,
    diagnosis_goal_probabilities,
    eval_episodes,
    goal_verdicts,
)
from augnes_jax.sweep import Sweep
from augnes_jax.sweep_setup import epoch_settings
from augnes_jax.tensorboard_io import TensorBoardReader

LAYOUT = (
    "#########",
    "#...#...#",
    "#.G.#...#",
    "#...#...#",
    "#...###.#",
    "#...#...#",
    "#...#G..#",
    "#...#...#",
    "#########",
)
EPISODE_LENGTH = 12
HORIZON = 2
PER_GOAL = 6
EPOCHS = 2


class TrapGrid(GridWorld):
    """The default gridworld's rules on :data:`LAYOUT`: goal 0 in the open room, goal 1 behind a wall."""

    num_goals = 2

    def default_params(self, episode_length: int | None = None) -> GridParams:
        walls, goals = parse_layout(LAYOUT)
        params = GridParams(walls=jnp.asarray(walls), goal_cells=jnp.asarray(goals))
        return params if episode_length is None else params.replace(max_steps=int(episode_length))


OVERRIDES = TINY + [
    f"epochs={EPOCHS}", "env.name=gridworld", "env.goals=[0,1]", f"env.episode_length={EPISODE_LENGTH}",
    f"planner.horizon={HORIZON}", "planner.num_samples=32", "planner.num_elites=4", "planner.iterations=2",
    f"planner.episodes_per_goal={PER_GOAL}", "meta.cost=latency_ms", "checkpoint.enabled=false",
    "regret.goal_sampling=diagnosis",
]


def _settings():
    cfg = load_config(None, OVERRIDES)
    return cfg, epoch_settings(cfg, adapt(TrapGrid()))


def _planner_on_truth(env, params, s, keys, goals) -> np.ndarray:
    """The evaluation planner on the true dynamics, rolled out here on its own (not through the reference)."""
    policy = make_mpc_policy(env, simulator_model(env), s.planner)
    return np.asarray(rollout(env, params, policy, params, jax.random.clone(keys), goals, s.episode_length,
                              policy_sees_state=True).returns)


def _value_iteration_optimum(env, params, keys, goals) -> tuple[np.ndarray, np.ndarray]:
    """Returns ``(optimal return, shortest path length or None as inf)`` per episode, by value iteration."""
    starts = rollout(env, params, random_policy(env), None, jax.random.clone(keys), goals, EPISODE_LENGTH).initial_state
    pos, gid = np.asarray(starts.pos), np.asarray(goals)
    opt, dist = [], []
    for (r, c), g in zip(pos, gid, strict=True):
        v = np.asarray(value_iteration(params.walls, params.goal_cells[g], EPISODE_LENGTH))[EPISODE_LENGTH, r, c]
        opt.append(float(v))
        dist.append(-float(v) if v > -EPISODE_LENGTH else np.inf)  # reached within the episode: -return steps
    return np.asarray(opt), np.asarray(dist)


def test_reference_gap_is_exact_optimum_minus_a_separate_planner_rollout():
    env = adapt(TrapGrid())
    _, s = _settings()
    params = env.default_params(EPISODE_LENGTH)
    keys, goals = eval_episodes(0, 1, np.arange(2), PER_GOAL)
    ref = make_reference_fn(env, params, s, with_planner=True)(jax.random.clone(keys), goals)
    assert isinstance(ref, Reference)
    optimal, _ = _value_iteration_optimum(env, params, keys, goals)
    planner = _planner_on_truth(env, params, s, keys, goals)
    np.testing.assert_array_equal(np.asarray(ref.optimal), optimal)
    np.testing.assert_array_equal(np.asarray(ref.planner), planner)
    gap = np.asarray(ref.optimal) - np.asarray(ref.planner)
    assert np.all(gap >= 0) and gap.max() > 0
    # without the flag the reference is the (optimal, baseline) pair it always was
    pair = make_reference_fn(env, params, s)(jax.random.clone(keys), goals)
    assert len(pair) == 2 and np.array_equal(np.asarray(pair[0]), np.asarray(ref.optimal))


def test_no_planner_reference_where_the_optimum_is_the_planner():
    from augnes_jax.envs import make

    env = make("reacher")
    cfg = load_config(None, TINY)
    ref = make_reference_fn(env, env.default_params(cfg.env.episode_length), epoch_settings(cfg, env), with_planner=True)
    keys, goals = eval_episodes(0, 0, np.asarray([0, 3]), 1)
    assert ref(keys, goals).planner is None


@pytest.fixture(scope="module")
def trap_run(tmp_path_factory):
    cfg, s = _settings()
    run = tmp_path_factory.mktemp("trap") / "run"
    sweep = Sweep(cfg, run, env=TrapGrid(), progress=False)
    sweep.run()
    return run, cfg, s, sweep


def test_planner_limited_goal_end_to_end_with_value_iteration_proof(trap_run):
    run, cfg, s, _ = trap_run
    env = adapt(TrapGrid())
    params = env.default_params(EPISODE_LENGTH)
    reader = TensorBoardReader(str(run / "tb")).reload()
    gaps = {0: [], 1: []}
    proof = {0: [], 1: []}
    for epoch in range(EPOCHS):
        keys, goals = eval_episodes(cfg.seed, epoch, np.arange(2), PER_GOAL)
        optimal, dist = _value_iteration_optimum(env, params, keys, goals)
        planner = _planner_on_truth(env, params, s, keys, goals)
        for g in (0, 1):
            m = np.asarray(goals) == g
            steps, values, _ = reader.scalars(REFERENCE_RUN, planner_gap_tag(g))
            assert list(steps) == list(range(EPOCHS))
            # the scalar is the mean over the epoch's episodes of value iteration minus the planner
            assert values[epoch] == pytest.approx(float(np.mean(optimal[m] - planner[m])), abs=1e-6)
            gaps[g].append(float(np.mean(optimal[m] - planner[m])))
            proof[g] += [(d, o, p) for d, o, p in zip(dist[m], optimal[m], planner[m], strict=True)]
    # goal 1: some start from which value iteration reaches the goal in more steps than the
    # horizon, and the planner on the true dynamics never does (its return is the time limit)
    stalled = [(d, o, p) for d, o, p in proof[1] if np.isfinite(d) and p < o]
    assert stalled and all(d > HORIZON for d, _, _ in stalled)
    assert any(p == -EPISODE_LENGTH and o > -EPISODE_LENGTH for _, o, p in stalled)
    # goal 0: the planner reaches the optimum from every start
    assert all(p == o for _, o, p in proof[0])
    doc = json.loads((run / "decision.json").read_text())
    eps = cfg.meta.epsilon
    g1, g0 = doc["goals"]["1"], doc["goals"]["0"]
    assert g1["evidence"]["planner_gap"] == pytest.approx(np.mean(gaps[1]), rel=1e-6) and np.mean(gaps[1]) > eps
    assert g1["verdict"] == "planner_limited" and "true dynamics" in g1["why"]
    assert g0["evidence"]["planner_gap"] == 0.0 and "true dynamics" not in g0["why"]
    # judgments are unchanged: regret stays optimal - agent, the exact optimum
    rows = [json.loads(line) for line in (run / "judgments.jsonl").read_text().splitlines()]
    keys, goals = eval_episodes(cfg.seed, 0, np.arange(2), PER_GOAL)
    optimal0, _ = _value_iteration_optimum(env, params, keys, goals)
    first = [r for r in rows if r["epoch"] == 0 and r["variant"] == rows[0]["variant"]]
    assert [r["optimal_reward"] for r in sorted(first, key=lambda r: r["episode"])] == list(optimal0)


def test_latency_is_logged_per_variant_and_priced_in_the_decision(trap_run):
    run, cfg, _, _ = trap_run
    reader = TensorBoardReader(str(run / "tb")).reload()
    variants = [r for r in reader.runs() if r.startswith("h")]
    assert variants
    latency = {}
    for name in variants:
        steps, values, _ = reader.scalars(name, LATENCY_TAG)
        # the first epoch's control call compiles: it is not timed
        assert list(steps) == list(range(1, EPOCHS)) and np.all(values > 0)
        latency[name] = float(values.mean())
    doc = json.loads((run / "decision.json").read_text())
    cost = doc["cost"]
    assert cost["measure"] == "latency_ms"
    b = cost_buffer = doc["scaling"]["buffer_size"]
    want = np.mean([v for n, v in latency.items() if n.startswith(f"h{cost['from_width']}-b{b}-")])
    assert cost["recommended"] == pytest.approx(want, rel=1e-6)
    nxt = [v for n, v in latency.items() if n.startswith(f"h{cost['next_width']}-b{cost_buffer}-")]
    if nxt:
        assert cost["next"] == pytest.approx(np.mean(nxt), rel=1e-6)
    else:
        assert cost["next"] is None and "not measured" in cost["why"]


# ------------------------------------------------------------------ regret.goal_sampling=diagnosis


def test_diagnosis_sampling_probabilities_equal_the_hand_computation():
    verdicts = {0: "data_limited", 1: "capacity_limited", 2: "solved", 3: "planner_limited", 5: "data_limited"}
    p = diagnosis_goal_probabilities(verdicts, np.asarray([0, 1, 2, 3, 4, 5]))
    # weights 2, 1, 1, 1, 1 (no verdict yet), 2 over their sum 8
    np.testing.assert_allclose(p, [2 / 8, 1 / 8, 1 / 8, 1 / 8, 1 / 8, 2 / 8], rtol=0, atol=1e-15)
    np.testing.assert_allclose(diagnosis_goal_probabilities({}, np.asarray([3, 7])), [0.5, 0.5])
    cfg = load_config(None, TINY + ["regret.goal_sampling=diagnosis"])
    entry = (np.asarray([4.0, 0, 0, 4.0]), np.asarray([8.0, 0, 0, 0.0]))
    np.testing.assert_allclose(collection_goal_probabilities(cfg.regret, entry, {3: "data_limited"}, np.asarray([0, 3])),
                               [1 / 3, 2 / 3])


def test_the_sweep_collects_by_its_latest_decisions_verdicts(trap_run):
    run, _, _, sweep = trap_run
    goals = json.loads((run / "decision.json").read_text())["goals"]
    verdicts = {int(g): d["verdict"] for g, d in goals.items()}
    assert sweep.host.verdicts == verdicts
    weight = [2.0 if verdicts.get(g) == "data_limited" else 1.0 for g in (0, 1)]
    for v in sweep.variants:
        np.testing.assert_allclose(sweep._goal_probs(v), np.asarray(weight) / sum(weight), rtol=0, atol=1e-15)


def _judgment_rows(run) -> list[dict]:
    volatile = ("generated_at", "ts", "source", "run")
    rows = [json.loads(x) for x in (run / "judgments.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in volatile} for r in rows]


def test_a_resumed_diagnosis_run_collects_by_the_verdicts_of_the_epoch_before_its_start(trap_run, tmp_path):
    run, cfg, _, _ = trap_run
    short = load_config(None, OVERRIDES + ["epochs=1", "checkpoint.enabled=true"])
    part = tmp_path / "part"
    Sweep(short, part, env=TrapGrid(), progress=False).run()
    first = {int(g): d["verdict"] for g, d in json.loads((part / "decision.json").read_text())["goals"].items()}
    assert first and json.loads((part / "sweep_state.json").read_text())["verdicts"] == {
        "0": {str(g): v for g, v in sorted(first.items())}}
    longer = load_config(None, OVERRIDES + ["checkpoint.enabled=true"])
    resumed = Sweep(longer, part, env=TrapGrid(), resume=True, allow_changed=("epochs",), progress=False)
    # restored before epoch 1 collects: the verdicts of the decision at epoch 0, not uniform
    assert resumed.start_epoch == 1 and resumed.host.verdicts == first
    resumed.run()
    # and the run goes on as the uninterrupted one did
    assert _judgment_rows(part) == _judgment_rows(run)
    state = json.loads((part / "sweep_state.json").read_text())
    assert state["collection"] == json.loads((run / "sweep_state.json").read_text())["collection"]
    assert set(state["verdicts"]) == {"0", "1"}


def test_verdicts_come_from_the_decisions_goals():
    decision = SimpleNamespace(analysis={"goals": {"0": {"verdict": "data_limited"}, "2": {"verdict": "solved"}}})
    assert goal_verdicts(decision) == {0: "data_limited", 2: "solved"}
    assert goal_verdicts(SimpleNamespace(analysis={})) == {}


def test_diagnosis_sampling_needs_a_decision_every_epoch():
    with pytest.raises(ConfigError, match="regret.goal_sampling"):
        load_config(None, TINY + ["regret.goal_sampling=diagnosis", "meta.consult_every_epoch=false"])


def test_a_compiling_control_call_is_not_timed_and_a_compiled_one_is():
    from augnes_jax.control_timing import timed_control

    control = jax.jit(lambda x: jnp.cumsum(x) * 2.0)
    x = jnp.arange(6.0)
    first, ms_first = timed_control(control, (x,), episode_length=3, rows=2)
    again, ms = timed_control(control, (x,), episode_length=3, rows=2)
    np.testing.assert_array_equal(np.asarray(first), np.cumsum(np.arange(6.0)) * 2.0)
    np.testing.assert_array_equal(np.asarray(again), np.asarray(first))
    assert ms_first is None and ms is not None and ms > 0
    # a new shape compiles again: not timed
    assert timed_control(control, (jnp.arange(4.0),), episode_length=3, rows=2)[1] is None
