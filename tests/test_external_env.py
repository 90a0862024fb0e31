"""An environment defined only in this file, outside the package, named by its import path
``test_external_env:Swirl``: sweep -> sweep --resume -> meta -> dashboard -> infer, each in a fresh
subprocess that has no registering code.

``Swirl`` keeps only the minimal contract (num_goals, obs_dim, action_dim with its own bounds,
default_params, reset, step): no reward_from_obs, so planning on a model uses learned reward and
termination heads, and no exact solver, so the oracle plans on ``step`` from the true state.
"""

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
GOALS = ((0.6, 0.6), (-0.6, 0.6), (-0.6, -0.6), (0.6, -0.6))


class SwirlState(NamedTuple):
    pos: jax.Array
    goal_id: jax.Array
    time: jax.Array


class Swirl:
    """A point pushed through a swirling current: the push turns by an angle that depends on where
    the point is, so a small model mispredicts where a push leads. Reward: minus the distance to
    the goal after the step; reaching within 0.15 ends the episode."""

    num_goals = len(GOALS)
    obs_dim = 2
    action_dim = 2
    action_low = -0.5  # the toolkit plans in [-1, 1] and maps to these bounds
    action_high = 0.5

    def __init__(self, twist: float = 4.0):
        self.twist = float(twist)

    def default_params(self, episode_length=None):
        return jnp.asarray(12 if episode_length is None else episode_length, jnp.int32)

    def reset(self, key, params, goal_id):
        state = SwirlState(jax.random.uniform(key, (2,), minval=-0.3, maxval=0.3),
                           jnp.asarray(goal_id, jnp.int32), jnp.zeros((), jnp.int32))
        return state.pos, state

    def step(self, key, state, action, params):
        del key
        angle = self.twist * (state.pos[0] * state.pos[1]) + 2.0 * state.pos[0]
        c, s = jnp.cos(angle), jnp.sin(angle)
        push = 0.4 * jnp.asarray([c * action[0] - s * action[1], s * action[0] + c * action[1]])
        pos = jnp.clip(state.pos + push, -1.0, 1.0)
        dist = jnp.linalg.norm(pos - jnp.asarray(GOALS)[state.goal_id])
        nxt = SwirlState(pos, state.goal_id, state.time + 1)
        terminated = dist < 0.15
        return pos, nxt, -dist, terminated, (nxt.time >= params) & ~terminated


CONFIG = [
    "env.name=test_external_env:Swirl",
    "env.kwargs.twist=4.0",
    "env.episode_length=12",
    "samples_per_epoch=600",
    "variants.hidden_dims=[2,32]",
    "variants.buffer_sizes=[1200]",
    "variants.seeds=[0,1]",
    "world_model.train_steps_per_epoch=150",
    "world_model.batch_size=64",
    "world_model.val_size=200",
    "world_model.k_steps=[1,3]",
    "planner.horizon=4",
    "planner.num_samples=32",
    "planner.num_elites=4",
    "planner.iterations=2",
    "planner.episodes_per_goal=4",
    "meta.bootstrap_samples=200",
    "checkpoint.keep_last=2",
]


def _run(*args, timeout=600):
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]))
    res = subprocess.run([sys.executable, "-m", *args], env=env, capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, f"{' '.join(args[:2])} exited {res.returncode}:\n{res.stderr[-3000:]}"
    return res


def test_swirl_keeps_the_contract():
    from augnes_jax.envs import check_env

    assert check_env(Swirl()) == []


@pytest.mark.timeout(900)
def test_an_env_named_by_import_path_goes_through_every_command(tmp_path):
    run = tmp_path / "run"
    _run("augnes_jax.sweep", "--no-progress", "--run-dir", str(run), "epochs=2", *CONFIG)
    _run("augnes_jax.sweep", "--no-progress", "--run-dir", str(run), "--resume", "--allow-change", "epochs", "epochs=3")
    meta = _run("augnes_jax.meta", str(run))
    _run("augnes_jax.dashboard", str(run))
    infer = _run("augnes_jax.infer", str(run), "--obs", "0.1,-0.2", "--action", "0.5,0.5", "--goal-id", "1")

    assert json.loads((run / "sweep_state.json").read_text())["epoch"] == 2  # three epochs, numbered from 0
    rows = [json.loads(line) for line in (run / "judgments.jsonl").read_text().splitlines()]
    assert {r["oracle"] for r in rows} == {"true_dynamics_planner"}
    last = [r for r in rows if r["epoch"] == 2]
    regret = {h: np.mean([r["regret"] for r in last if r["hidden_dim"] == h]) for h in (2, 32)}
    assert regret[32] < regret[2], regret
    stats = json.loads((run / "world_model_stats.json").read_text())
    assert "reward_mse" in json.dumps(stats)
    assert (run / "plots" / "transition_pattern.png").stat().st_size > 0
    assert "decision: " in meta.stdout and "per-goal diagnosis" in meta.stdout
    out = json.loads(infer.stdout)
    # the learned heads answer for goal 1: a next observation, a reward and a termination probability
    assert len(out["next_obs"]) == 2 and out["goal_id"] == 1 and 0.0 <= out["terminal_prob"] <= 1.0
    np.testing.assert_allclose(np.asarray(out["next_obs"]) - [0.1, -0.2], out["delta"], atol=1e-6)
