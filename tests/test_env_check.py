"""check_env and ``python -m augnes_jax.envs check``: the built-in envs and the point-mass example
pass; each planted defect (a wrong obs shape, a non-deterministic reset, an auto-resetting step,
a reward that disagrees with step) is caught with exactly one line naming the method."""

import importlib.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from augnes_jax.envs import check_env, make, run_checks

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("pointmass_example", REPO / "examples" / "pointmass.py")
pointmass = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(pointmass)
PointMass = pointmass.PointMass


class WrongObsShape(PointMass):
    """reset returns one observation entry too many."""

    def reset(self, key, params, goal_id):
        obs, state = super().reset(key, params, goal_id)
        return jnp.concatenate([obs, obs[:1]]), state


class NumpyReset(PointMass):
    """reset draws its start from NumPy's generator instead of the key."""

    def reset(self, key, params, goal_id):
        _, state = super().reset(key, params, goal_id)
        state = state._replace(pos=jnp.asarray(np.random.default_rng().uniform(-1, 1, 2), jnp.float32))
        return self._obs(state), state


class AutoReset(PointMass):
    """step starts a new episode once the old one is done, as gymnax's own step does."""

    def step(self, key, state, action, params):
        obs, nxt, reward, terminated, truncated = super().step(key, state, action, params)
        obs0, state0 = super().reset(key, params, state.goal_id)
        done = terminated | truncated
        pick = lambda fresh, cont: jnp.where(done, fresh, cont)  # noqa: E731
        return pick(obs0, obs), jax.tree.map(pick, state0, nxt), reward, terminated, truncated


class StateDtypeDrifts(PointMass):
    """step returns the time as a float where reset gave an int: a roll-out's scan cannot carry it."""

    def step(self, key, state, action, params):
        obs, nxt, reward, terminated, truncated = super().step(key, state, action, params)
        return obs, nxt._replace(time=nxt.time.astype(jnp.float32)), reward, terminated, truncated


class RewardFromNextObs(PointMass):
    """The point mass with its reward as a function of observations (what planning on a model needs)."""

    def reward_from_obs(self, obs, action, next_obs, goal_id, params):
        return -jnp.linalg.norm(next_obs[:2] - params.goals[goal_id])

    def terminal_from_obs(self, next_obs, goal_id, params):
        return jnp.linalg.norm(next_obs[:2] - params.goals[goal_id]) < self.goal_radius


class RewardFromObs(RewardFromNextObs):
    """Scores the position before the step: disagrees with step, which scores the one after."""

    def reward_from_obs(self, obs, action, next_obs, goal_id, params):
        return -jnp.linalg.norm(obs[:2] - params.goals[goal_id])


@pytest.mark.parametrize("name", ["gridworld", "reacher"])
def test_built_in_envs_pass_every_check(name):
    checks = {c.name: c.status for c in run_checks(make(name))}
    assert set(checks.values()) <= {"passed", "skipped"}
    assert checks["no auto-reset"] == checks["reward_from_obs"] == checks["terminal_from_obs"] == "passed"
    assert checks["exact_optimal_return"] == ("passed" if name == "gridworld" else "skipped")


def test_the_point_mass_passes_the_minimal_contract_and_its_reward_from_obs_agrees():
    checks = {c.name: c.status for c in run_checks(PointMass())}
    required = ["attributes", "default_params", "reset", "reset determinism", "step", "step determinism",
                "jit", "vmap", "termination and truncation", "no auto-reset"]
    assert all(checks[n] == "passed" for n in required), checks
    assert checks["reward_from_obs"] == checks["state_from_obs"] == "absent"
    checks = {c.name: c.status for c in run_checks(RewardFromNextObs())}
    assert checks["reward_from_obs"] == checks["terminal_from_obs"] == "passed"


@pytest.mark.parametrize(("env", "start", "needle"), [
    (WrongObsShape(), "reset:", "obs has shape (5,), expected (4,)"),
    (NumpyReset(), "reset:", "two calls with the same key give different"),
    (AutoReset(), "step:", "auto-reset"),
    (RewardFromObs(), "reward_from_obs:", "where step gave"),
    (StateDtypeDrifts(), "step:", "state.time is float32[] where reset gave int32[]"),
])
def test_each_defect_is_one_line_naming_the_method(env, start, needle):
    problems = check_env(env)
    assert len(problems) == 1, problems
    assert problems[0].startswith(start) and needle in problems[0] and "\n" not in problems[0]


def _cli(*args, pythonpath=()):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([*map(str, pythonpath), str(REPO)]))
    return subprocess.run([sys.executable, "-m", "augnes_jax.envs", *args], capture_output=True, text=True,
                          cwd=REPO, env=env, timeout=240)


@pytest.mark.timeout(300)
def test_cli_prints_the_table_and_exits_0():
    res = _cli("check", "examples.pointmass:PointMass", "--kwargs", '{"damping": 0.5}')
    assert res.returncode == 0, res.stderr
    lines = res.stdout.strip().splitlines()
    assert lines[0] == "examples.pointmass:PointMass: 4 goals, obs_dim 4, continuous action_dim 2"
    table = {line.rsplit(None, 1)[0].strip(): line.rsplit(None, 1)[1] for line in lines[1:]}
    assert table == {c.name: c.status for c in run_checks(PointMass(damping=0.5))}
    assert list(table.values()).count("passed") == 10 and list(table.values()).count("absent") == 7


@pytest.mark.timeout(300)
def test_cli_exits_2_with_one_line_per_failure(tmp_path):
    (tmp_path / "planted_envs.py").write_text(textwrap.dedent("""
        import jax.numpy as jnp
        from examples.pointmass import PointMass

        class RewardFromObs(PointMass):
            def reward_from_obs(self, obs, action, next_obs, goal_id, params):
                return -jnp.linalg.norm(obs[:2] - params.goals[goal_id])
    """))
    res = _cli("check", "planted_envs:RewardFromObs", pythonpath=[tmp_path])
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("python -m augnes_jax.envs check: reward_from_obs: gives "), lines
    assert res.stdout == ""


@pytest.mark.parametrize(("args", "line"), [
    (["check", "planted_nowhere:Env"], "python -m augnes_jax.envs: error: planted_nowhere:Env: cannot import planted_nowhere"),
    (["check", "examples.pointmass:PointMass", "--kwargs", "[1]"], "python -m augnes_jax.envs: error: --kwargs: expected a JSON object, got list"),
    (["check", "examples.pointmass:PointMass", "--kwargs", '{"mass": 2}'], "python -m augnes_jax.envs: error: examples.pointmass:PointMass: env.kwargs do not fit the factory"),
])
def test_cli_bad_input_is_one_line_exit_2(args, line):
    res = _cli(*args)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(line), lines
