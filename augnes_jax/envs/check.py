"""Contract checks of a goal-conditioned environment: :func:`check_env`.

An environment must provide only

* ``num_goals`` and ``obs_dim`` (positive integers);
* its action space: ``discrete = True`` with ``num_actions``, or a continuous ``action_dim``
  with optional bounds ``action_low`` / ``action_high`` (scalars or ``[action_dim]``; default
  ``[-1, 1]``);
* ``default_params(episode_length=None)``;
* ``reset(key, params, goal_id) -> (obs, state)``;
* ``step(key, state, action, params)`` returning ``StepOutput(obs, state, reward, terminated,
  truncated)`` or that 5-tuple, with no auto-reset: a state at or past the episode length stays
  done, and ``truncated`` is set at the step that reaches the episode length, never together
  with ``terminated``.

Optional methods are checked where present: ``sample_action``, ``goals``, ``obs_from_state``,
``state_from_obs``, ``reward_from_obs`` and ``terminal_from_obs`` (they must agree with
``step``) and ``exact_optimal_return``.

Each problem is one line that starts with the method it concerns. A check that cannot run
because an earlier one failed is skipped, so one defect gives one line.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from augnes_jax.envs.contract import EnvContractError, action_bounds, as_step_output

__all__ = ["Check", "action_bounds", "as_step_output", "check_env", "run_checks"]

PASSED, FAILED, SKIPPED, ABSENT = "passed", "failed", "skipped", "absent"
OPTIONAL = ("sample_action", "goals", "obs_from_state", "state_from_obs", "reward_from_obs",
            "terminal_from_obs", "exact_optimal_return")


@dataclass(frozen=True)
class Check:
    """One check: its name, ``passed`` / ``failed`` / ``skipped`` / ``absent``, and the problem."""

    name: str
    status: str
    problem: str = ""


class _Failed(Exception):
    """A check's problem, one line starting with the method it concerns."""


def _is_int(x: Any) -> bool:
    return isinstance(x, int | np.integer) and not isinstance(x, bool)


def _random_action(env: Any, key: jax.Array) -> jax.Array:
    if callable(getattr(env, "sample_action", None)):
        return env.sample_action(key)
    if getattr(env, "discrete", False):
        return jax.random.randint(key, (), 0, int(env.num_actions), dtype=jnp.int32)
    low, high = action_bounds(env)
    return jax.random.uniform(key, (int(env.action_dim),), minval=low, maxval=high)


def _same(a: Any, b: Any, *, exact: bool) -> bool:
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    if len(la) != len(lb) or jax.tree.structure(a) != jax.tree.structure(b):
        return False
    for x, y in zip(la, lb, strict=True):
        x, y = np.asarray(x), np.asarray(y)
        if x.shape != y.shape:
            return False
        if exact or not np.issubdtype(x.dtype, np.floating):
            if not np.array_equal(x, y, equal_nan=True):
                return False
        elif not np.allclose(x, y, rtol=1e-5, atol=1e-5, equal_nan=True):
            return False
    return True


class _Run:
    """What the checks share: the env, its parameters and what earlier checks produced."""

    def __init__(self, env: Any, episode_length: int):
        self.env = env
        self.length = episode_length
        self.params: Any = None
        self.reset_out: Any = None
        self.action: Any = None
        self.rollout: dict[str, np.ndarray] | None = None
        self.deterministic = {"reset": False, "step": False}
        self.auto_reset = False

    # ---------------------------------------------------------------- the required contract
    def attributes(self) -> None:
        env = self.env
        for name in ("num_goals", "obs_dim"):
            value = getattr(env, name, None)
            if not _is_int(value) or value < 1:
                raise _Failed(f"{name}: must be a positive integer, got {value!r}")
        if getattr(env, "discrete", False):
            n = getattr(env, "num_actions", None)
            if not _is_int(n) or n < 1:
                raise _Failed(f"num_actions: a discrete env needs a positive integer, got {n!r}")
            return
        dim = getattr(env, "action_dim", None)
        if not _is_int(dim) or dim < 1:
            raise _Failed(f"action_dim: a continuous env needs a positive integer, got {dim!r}")
        try:
            low, high = action_bounds(env)
        except ValueError as e:
            raise _Failed(f"action_low/action_high: must be scalars or [{dim}] arrays ({e})") from None
        if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high)) and np.all(low < high)):
            raise _Failed(f"action_low/action_high: need finite bounds with low < high, got {low} and {high}")

    def default_params(self) -> None:
        try:
            self.env.default_params()
            self.params = self.env.default_params(episode_length=self.length)
        except Exception as e:  # noqa: BLE001 - the env's own code failed
            raise _Failed(f"default_params: raised {type(e).__name__}: {e}") from None

    def _reset(self, key, goal):
        return self.env.reset(key, self.params, jnp.asarray(goal, jnp.int32))

    def reset(self) -> None:
        env = self.env
        for goal in sorted({0, env.num_goals - 1}):
            try:
                out = self._reset(jax.random.key(1), goal)
            except Exception as e:  # noqa: BLE001
                raise _Failed(f"reset: raised {type(e).__name__} for goal {goal}: {e}") from None
            if not (isinstance(out, tuple | list) and len(out) == 2):
                raise _Failed(f"reset: must return (obs, state), got {type(out).__name__}")
            obs = jnp.asarray(out[0])
            if obs.shape != (env.obs_dim,):
                raise _Failed(f"reset: obs has shape {obs.shape}, expected ({env.obs_dim},) from obs_dim")
            if not jnp.issubdtype(obs.dtype, jnp.floating):
                raise _Failed(f"reset: obs has dtype {obs.dtype}, expected a float dtype")
            if not bool(jnp.all(jnp.isfinite(obs))):
                raise _Failed("reset: obs has non-finite values")
        self.reset_out = self._reset(jax.random.key(1), 0)

    def reset_determinism(self) -> None:
        again = self._reset(jax.random.key(1), 0)
        if not _same(self.reset_out, again, exact=True):
            raise _Failed("reset: two calls with the same key give different (obs, state)")
        self.deterministic["reset"] = True

    def _step(self, key, state, action):
        return as_step_output(self.env.step(key, state, action, self.params))

    def step(self) -> None:
        env = self.env
        self.action = _random_action(env, jax.random.key(2))
        try:
            out = self._step(jax.random.key(3), self.reset_out[1], self.action)
        except _Failed:
            raise
        except Exception as e:  # noqa: BLE001
            raise _Failed(f"step: raised {type(e).__name__}: {e}") from None
        obs = jnp.asarray(out.obs)
        if obs.shape != (env.obs_dim,) or not jnp.issubdtype(obs.dtype, jnp.floating):
            raise _Failed(f"step: obs has shape {obs.shape} and dtype {obs.dtype}, expected ({env.obs_dim},) float")
        reward = jnp.asarray(out.reward)
        if reward.shape != () or not jnp.issubdtype(reward.dtype, jnp.floating):
            raise _Failed(f"step: reward has shape {reward.shape} and dtype {reward.dtype}, expected a float scalar")
        for flag in ("terminated", "truncated"):
            value = jnp.asarray(getattr(out, flag))
            if value.shape != () or value.dtype != jnp.bool_:
                raise _Failed(f"step: {flag} has shape {value.shape} and dtype {value.dtype}, expected a bool scalar")
        if jax.tree.structure(out.state) != jax.tree.structure(self.reset_out[1]):
            raise _Failed("step: the state's pytree structure differs from reset's")
        before = jax.tree_util.tree_flatten_with_path(self.reset_out[1])[0]
        for (path, old), new in zip(before, jax.tree.leaves(out.state), strict=True):
            old, new = jnp.asarray(old), jnp.asarray(new)
            if (old.shape, old.dtype) != (new.shape, new.dtype):
                raise _Failed(f"step: state{jax.tree_util.keystr(path)} is {new.dtype}{list(new.shape)} where reset "
                              f"gave {old.dtype}{list(old.shape)}; a roll-out carries the state, so they must match")

    def step_determinism(self) -> None:
        a = self._step(jax.random.key(3), self.reset_out[1], self.action)
        b = self._step(jax.random.key(3), self.reset_out[1], self.action)
        if not _same(a, b, exact=True):
            raise _Failed("step: two calls with the same key, state and action give different outputs")
        self.deterministic["step"] = True

    def jit(self) -> None:
        if self.deterministic["reset"]:
            jitted = jax.jit(self.env.reset)(jax.random.key(1), self.params, jnp.int32(0))
            if not _same(jitted, self.reset_out, exact=False):
                raise _Failed("reset: under jax.jit gives another (obs, state) than called directly")
        if self.deterministic["step"]:
            eager = self._step(jax.random.key(3), self.reset_out[1], self.action)
            jitted = as_step_output(jax.jit(self.env.step)(jax.random.key(3), self.reset_out[1], self.action,
                                                           self.params))
            if not _same(jitted, eager, exact=False):
                raise _Failed("step: under jax.jit gives another output than called directly")

    def vmap(self) -> None:
        n = 3

        def keys(salt):  # a fresh array each call: no key is used twice
            return jax.random.split(jax.random.key(salt), n)

        goals = jnp.arange(n, dtype=jnp.int32) % self.env.num_goals
        batch = jax.jit(jax.vmap(self.env.reset, in_axes=(0, None, 0)))(keys(4), self.params, goals)
        if self.deterministic["reset"]:
            for i in range(n):
                if not _same(jax.tree.map(lambda x, i=i: x[i], batch), self._reset(keys(4)[i], goals[i]), exact=False):
                    raise _Failed(f"reset: under jax.vmap gives another (obs, state) for episode {i}")
        actions = jax.jit(jax.vmap(lambda k: _random_action(self.env, k)))(keys(5))
        step = jax.jit(jax.vmap(self.env.step, in_axes=(0, 0, 0, None)))
        out = as_step_output(step(keys(6), batch[1], actions, self.params))
        if self.deterministic["step"]:
            for i in range(n):
                one = self._step(keys(6)[i], jax.tree.map(lambda x, i=i: x[i], batch[1]), actions[i])
                if not _same(jax.tree.map(lambda x, i=i: x[i], out), one, exact=False):
                    raise _Failed(f"step: under jax.vmap gives another output for episode {i}")

    # ---------------------------------------------------------------- episodes
    def episodes(self) -> None:
        self.rollout = _roll_out(self.env, self.params, self.length, n=16)
        r = self.rollout
        both = r["terminated"] & r["truncated"] & r["valid"]
        if both.any():
            raise _Failed("step: terminated and truncated are both set at one step; truncated means only the time limit")
        steps = np.arange(1, self.length + 1)[None]
        early = r["truncated"] & r["valid"] & (steps < self.length)
        if early.any():
            t = int(steps[0][np.argmax(early.any(0))])
            raise _Failed(f"step: truncated at step {t}, before the episode length {self.length}")
        ran_out = r["valid"][:, -1] & ~r["terminated"][:, -1]
        if np.any(ran_out & ~r["truncated"][:, -1]):
            raise _Failed(f"step: not truncated at the episode length {self.length}")

    def no_auto_reset(self) -> None:
        r = self.rollout
        truncated = r["valid"][:, -1] & r["truncated"][:, -1]
        if not truncated.any():
            raise _Skip("no episode reached the episode length without terminating")
        after = r["after_done"]
        if np.any(truncated & ~after):
            self.auto_reset = True
            raise _Failed("step: the state after the truncating step starts a new episode (auto-reset); "
                          "a finished episode must stay done")

    # ---------------------------------------------------------------- optional methods
    def sample_action(self) -> None:
        env = self.env
        actions = np.asarray(jax.jit(jax.vmap(env.sample_action))(jax.random.split(jax.random.key(5), 64)))
        if getattr(env, "discrete", False):
            if actions.shape != (64,) or not np.issubdtype(actions.dtype, np.integer):
                raise _Failed(f"sample_action: gives shape {actions.shape[1:]} {actions.dtype}, expected an int scalar")
            if actions.min() < 0 or actions.max() >= env.num_actions:
                raise _Failed(f"sample_action: gives indices outside [0, {env.num_actions})")
            return
        low, high = action_bounds(env)
        if actions.shape != (64, env.action_dim):
            raise _Failed(f"sample_action: gives shape {actions.shape[1:]}, expected ({env.action_dim},)")
        if np.any(actions < low) or np.any(actions > high):
            raise _Failed(f"sample_action: gives actions outside the bounds [{low}, {high}]")

    def goals(self) -> None:
        goals = jnp.asarray(self.env.goals(self.params))
        if goals.ndim < 1 or goals.shape[0] != self.env.num_goals:
            raise _Failed(f"goals: returns shape {goals.shape}, expected [num_goals={self.env.num_goals}, ...]")

    def obs_from_state(self) -> None:
        r = self.rollout
        obs = np.asarray(jax.jit(jax.vmap(self.env.obs_from_state))(r["first_state"]))
        if not np.allclose(obs, r["obs"][:, 0], rtol=1e-5, atol=1e-5):
            raise _Failed("obs_from_state: differs from the obs reset returns with the state")

    def state_from_obs(self) -> None:
        obs = jnp.asarray(self.rollout["next_obs"][:, 0])
        goals = jnp.asarray(self.rollout["goal"])
        states = jax.jit(jax.vmap(self.env.state_from_obs, in_axes=(0, 0, None)))(obs, goals, self.params)
        if callable(getattr(self.env, "obs_from_state", None)):
            back = np.asarray(jax.jit(jax.vmap(self.env.obs_from_state))(states))
            if not np.allclose(back, obs, rtol=1e-4, atol=1e-4):
                raise _Failed("state_from_obs: obs_from_state(state_from_obs(obs)) differs from obs")

    def _checked_steps(self) -> np.ndarray:
        r = self.rollout
        mask = r["valid"].copy()
        if self.auto_reset:
            mask &= ~(r["terminated"] | r["truncated"])
        return mask

    def reward_from_obs(self) -> None:
        r, mask = self.rollout, self._checked_steps()
        fn = jax.jit(jax.vmap(jax.vmap(self.env.reward_from_obs, in_axes=(0, 0, 0, None, None)), in_axes=(0, 0, 0, 0, None)))
        reward = np.asarray(fn(r["obs"], r["action"], r["next_obs"], jnp.asarray(r["goal"]), self.params))
        bad = mask & ~np.isclose(reward, r["reward"], rtol=1e-4, atol=1e-4)
        if bad.any():
            i, t = np.argwhere(bad)[0]
            raise _Failed(f"reward_from_obs: gives {reward[i, t]:.6g} where step gave {r['reward'][i, t]:.6g} "
                          f"(episode {i}, step {t + 1})")

    def terminal_from_obs(self) -> None:
        r, mask = self.rollout, self._checked_steps()
        fn = jax.jit(jax.vmap(jax.vmap(self.env.terminal_from_obs, in_axes=(0, None, None)), in_axes=(0, 0, None)))
        terminal = np.asarray(fn(r["next_obs"], jnp.asarray(r["goal"]), self.params)).astype(bool)
        bad = mask & (terminal != r["terminated"])
        if bad.any():
            i, t = np.argwhere(bad)[0]
            raise _Failed(f"terminal_from_obs: gives {bool(terminal[i, t])} where step gave terminated="
                          f"{bool(r['terminated'][i, t])} (episode {i}, step {t + 1})")

    def exact_optimal_return(self) -> None:
        first = jax.tree.map(lambda x: x[0], self.rollout["first_state"])
        value = jax.jit(self.env.exact_optimal_return)(first, self.params)
        if value is None:
            raise _Skip("the env has no exact solver")
        value = jnp.asarray(value)
        if value.shape != () or not bool(jnp.isfinite(value)):
            raise _Failed(f"exact_optimal_return: returns shape {value.shape}, expected a finite scalar")


class _Skip(Exception):
    """A check that does not apply to this env."""


def _roll_out(env: Any, params: Any, length: int, n: int) -> dict[str, Any]:
    """Returns ``n`` random episodes of ``length`` steps (jitted, vmapped) plus one step after each.

    ``valid[i, t]`` is whether episode ``i`` was still running at step ``t + 1``; ``after_done[i]``
    whether the step taken from the state the last step returned was again done.
    """
    goals = jnp.arange(n, dtype=jnp.int32) % env.num_goals

    @jax.jit
    def run(reset_keys, step_keys, extra_keys):
        obs0, state0 = jax.vmap(env.reset, in_axes=(0, None, 0))(reset_keys, params, goals)

        def body(carry, t):
            obs, state, done = carry
            k_act, k_env = jax.vmap(lambda kk: tuple(jax.random.split(jax.random.fold_in(kk, t))))(step_keys)
            action = jax.vmap(lambda kk: _random_action(env, kk))(k_act)
            out = as_step_output(jax.vmap(env.step, in_axes=(0, 0, 0, None))(k_env, state, action, params))
            row = dict(obs=obs, action=action, next_obs=out.obs, reward=out.reward,
                       terminated=out.terminated, truncated=out.truncated, valid=~done)
            return (out.obs, out.state, done | out.terminated | out.truncated), row

        (_, last, _), rows = jax.lax.scan(body, (obs0, state0, jnp.zeros(n, bool)), jnp.arange(length))
        k_act, k_env = jax.vmap(lambda kk: tuple(jax.random.split(kk)))(extra_keys)
        actions = jax.vmap(lambda kk: _random_action(env, kk))(k_act)
        extra = as_step_output(jax.vmap(env.step, in_axes=(0, 0, 0, None))(k_env, last, actions, params))
        rows = jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1), rows)
        return rows, extra.terminated | extra.truncated, state0

    rows, after_done, state0 = run(*(jax.random.split(jax.random.key(salt), n) for salt in (6, 7, 8)))
    out = {name: np.asarray(v) for name, v in rows.items()}
    out.update(after_done=np.asarray(after_done), first_state=state0, goal=np.asarray(goals))
    return out


# name, method of _Run, the checks it needs to have passed, the env method an exception names
_CHECKS: tuple[tuple[str, Callable[[_Run], None], tuple[str, ...], str], ...] = (
    ("attributes", _Run.attributes, (), "attributes"),
    ("default_params", _Run.default_params, ("attributes",), "default_params"),
    ("reset", _Run.reset, ("default_params",), "reset"),
    ("reset determinism", _Run.reset_determinism, ("reset",), "reset"),
    ("step", _Run.step, ("reset",), "step"),
    ("step determinism", _Run.step_determinism, ("step",), "step"),
    ("jit", _Run.jit, ("step",), "reset or step under jax.jit"),
    ("vmap", _Run.vmap, ("step",), "reset or step under jax.vmap"),
    ("termination and truncation", _Run.episodes, ("step",), "step"),
    ("no auto-reset", _Run.no_auto_reset, ("termination and truncation",), "step"),
    ("sample_action", _Run.sample_action, ("attributes",), "sample_action"),
    ("goals", _Run.goals, ("default_params",), "goals"),
    ("obs_from_state", _Run.obs_from_state, ("termination and truncation",), "obs_from_state"),
    ("state_from_obs", _Run.state_from_obs, ("termination and truncation",), "state_from_obs"),
    ("reward_from_obs", _Run.reward_from_obs, ("termination and truncation",), "reward_from_obs"),
    ("terminal_from_obs", _Run.terminal_from_obs, ("termination and truncation",), "terminal_from_obs"),
    ("exact_optimal_return", _Run.exact_optimal_return, ("termination and truncation",), "exact_optimal_return"),
)


def run_checks(env: Any, *, episode_length: int | None = None) -> list[Check]:
    """Returns every contract check of ``env`` with its outcome, in order.

    Args:
      env: the environment object.
      episode_length: the time limit to check truncation at (default 4: short enough that
        random episodes reach it).
    """
    run = _Run(env, int(episode_length) if episode_length is not None else 4)
    results: dict[str, Check] = {}
    for name, method, needs, method_name in _CHECKS:
        if name in OPTIONAL and not callable(getattr(env, name, None)):
            results[name] = Check(name, ABSENT)
        elif any(results[n].status != PASSED for n in needs):
            results[name] = Check(name, SKIPPED, "needs " + ", ".join(needs))
        else:
            results[name] = _outcome(name, method, method_name, run)
    return list(results.values())


def _outcome(name: str, method: Callable[[_Run], None], method_name: str, run: _Run) -> Check:
    try:
        method(run)
    except (_Failed, EnvContractError) as e:
        return Check(name, FAILED, str(e))
    except _Skip as e:
        return Check(name, SKIPPED, str(e))
    except NotImplementedError as e:
        return Check(name, ABSENT, str(e).splitlines()[0] if str(e) else "not implemented")
    except Exception as e:  # noqa: BLE001 - the env's own code failed
        first = str(e).splitlines()[0] if str(e) else ""
        return Check(name, FAILED, f"{method_name}: raised {type(e).__name__}: {first}")
    return Check(name, PASSED)


def check_env(env: Any, *, episode_length: int | None = None) -> list[str]:
    """Returns one line per contract problem of ``env``, each starting with the method; [] if none."""
    return [c.problem for c in run_checks(env, episode_length=episode_length) if c.status == FAILED]
