"""The toolkit's full environment interface over any env that meets the minimal contract.

A user's environment must provide only ``num_goals``, ``obs_dim``, its action space
(``discrete = True`` with ``num_actions``, or ``action_dim`` with optional ``action_low`` /
``action_high``), ``default_params``, ``reset`` and ``step`` (see :mod:`augnes_jax.envs.check`).
:func:`adapt` wraps it in a :class:`ContractEnv` that supplies everything else:

* ``step`` returns a :class:`~augnes_jax.envs.base.StepOutput` whatever the env returns (a
  StepOutput-like object or a 5-tuple), with a float32 reward and boolean flags;
* actions are taken in ``[-1, 1]`` and mapped to the env's own bounds (the identity for the
  default bounds), so planners, buffers and world models all work in one action space;
* ``sample_action`` draws uniformly from that space;
* ``known_reward`` / ``known_termination`` say whether the env states its reward and
  termination as functions of observations (``reward_from_obs`` / ``terminal_from_obs``);
  where it does not, planning on a learned model uses learned reward and termination heads;
* ``exact`` says whether the env has an exact solver (``exact_optimal_return``); otherwise the
  oracle is the planner on the env's own ``step``, from a copy of the true state, so
  ``state_from_obs`` is never needed. ``oracle`` names what was used: the env's own label for
  its solver (``oracle``, e.g. ``"value_iteration"``), ``"exact_solver"`` without one, and
  ``"true_dynamics_planner"`` for the planner.

An optional method counts as provided when the env defines it and does not set it to ``None``;
on a subclass of :class:`~augnes_jax.envs.base.Environment` the base class's placeholders do not
count, while its documented defaults do (never terminal, a zero planning heuristic).
Everything the wrapper does is pure and jittable.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from augnes_jax.envs.base import Environment, StepOutput, provided

__all__ = ["ContractEnv", "EnvContractError", "action_bounds", "adapt", "as_step_output", "provided"]

PLANNER_ORACLE = "true_dynamics_planner"


class EnvContractError(ValueError):
    """An environment lacks part of the minimal contract; the message is one line."""


def _positive_int(env: Any, label: str, attr: str) -> int:
    value = getattr(env, attr, None)
    if not isinstance(value, int | np.integer) or isinstance(value, bool) or value < 1:
        raise EnvContractError(f"{label}: {attr} must be a positive integer, got {value!r}")
    return int(value)


def action_bounds(env: Any) -> tuple[np.ndarray, np.ndarray]:
    """Returns a continuous env's action bounds ``(low[action_dim], high[action_dim])``.

    They come from the optional attributes ``action_low`` and ``action_high``, else ``[-1, 1]``.
    """
    dim = int(env.action_dim)
    low = np.broadcast_to(np.asarray(getattr(env, "action_low", -1.0), np.float32), (dim,))
    high = np.broadcast_to(np.asarray(getattr(env, "action_high", 1.0), np.float32), (dim,))
    return low, high


def as_step_output(out: Any) -> StepOutput:
    """Returns ``out`` as a :class:`StepOutput`: a StepOutput-like object or a 5-tuple.

    Raises:
      EnvContractError: ``out`` is neither.
    """
    if isinstance(out, StepOutput):
        return out
    names = ("obs", "state", "reward", "terminated", "truncated")
    if all(hasattr(out, n) for n in names):
        return StepOutput(*(getattr(out, n) for n in names))
    if isinstance(out, tuple | list) and len(out) == 5:
        return StepOutput(*out)
    raise EnvContractError(f"step: returns {type(out).__name__}, not a StepOutput or a 5-tuple "
                           f"(obs, state, reward, terminated, truncated)")


def _bounds(env: Any, label: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        low, high = action_bounds(env)
    except ValueError:
        raise EnvContractError(f"{label}: action_low and action_high must be scalars or have length "
                               f"action_dim={env.action_dim}") from None
    if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high)) and np.all(low < high)):
        raise EnvContractError(f"{label}: action bounds must be finite with action_low < action_high, "
                               f"got {low.tolist()} and {high.tolist()}")
    return low.copy(), high.copy()


class ContractEnv(Environment):
    """An environment with the full interface the toolkit uses, over one with the minimal contract.

    Attribute lookups the wrapper does not answer go to the wrapped env (``inner``), so its own
    methods and fields (``goals``, ``transition_slice``, ...) stay reachable.
    """

    def __init__(self, inner: Any, label: str | None = None):
        self.inner = inner
        label = label or getattr(inner, "name", None) or type(inner).__name__
        self.name = str(getattr(inner, "name", None) or label)
        for method in ("default_params", "reset", "step"):
            if not callable(getattr(inner, method, None)):
                raise EnvContractError(f"{label}: {method} is missing; the minimal contract needs "
                                       f"num_goals, obs_dim, an action space, default_params, reset and step")
        self.num_goals = _positive_int(inner, label, "num_goals")
        self.obs_dim = _positive_int(inner, label, "obs_dim")
        self.discrete = bool(getattr(inner, "discrete", False))
        if self.discrete:
            self.num_actions = _positive_int(inner, label, "num_actions")
            self.action_dim = 1
            self._low = self._high = None
        else:
            self.num_actions = None
            self.action_dim = _positive_int(inner, label, "action_dim")
            low, high = _bounds(inner, label)
            unit = bool(np.all(low == -1.0) and np.all(high == 1.0))
            self._low, self._high = (None, None) if unit else (low, high)
        self._reward = provided(inner, "reward_from_obs")
        self._terminal = provided(inner, "terminal_from_obs")
        self._heuristic = provided(inner, "planning_heuristic")
        self._exact = provided(inner, "exact_optimal_return")
        self._sample = provided(inner, "sample_action") if self._low is None else None
        own = getattr(inner, "oracle", None)
        if self.exact:
            self.oracle = own if isinstance(own, str) and own != PLANNER_ORACLE else "exact_solver"
        else:
            self.oracle = PLANNER_ORACLE

    @property
    def known_reward(self) -> bool:
        return self._reward is not None

    @property
    def known_termination(self) -> bool:
        return self._terminal is not None

    @property
    def exact(self) -> bool:
        return self._exact is not None

    def __getattr__(self, name: str) -> Any:
        # Only called for names the wrapper lacks; "inner" itself must exist to forward.
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def __repr__(self) -> str:
        return f"ContractEnv({self.inner!r})"

    # ------------------------------------------------------------------ the minimal contract
    def env_action(self, action: jax.Array) -> jax.Array:
        """Returns the env's own action for a planned one: ``[-1, 1]`` mapped to its bounds."""
        if self._low is None:
            return action
        unit = jnp.clip(jnp.asarray(action, jnp.float32), -1.0, 1.0)
        return jnp.asarray(self._low) + 0.5 * (unit + 1.0) * jnp.asarray(self._high - self._low)

    def default_params(self, episode_length: int | None = None):
        return self.inner.default_params(episode_length)

    def reset(self, key, params, goal_id):
        obs, state = self.inner.reset(key, params, goal_id)
        return jnp.asarray(obs, jnp.float32), state

    def step(self, key, state, action, params) -> StepOutput:
        out = as_step_output(self.inner.step(key, state, self.env_action(action), params))
        return StepOutput(jnp.asarray(out.obs, jnp.float32), out.state,
                          jnp.asarray(out.reward, jnp.float32).reshape(()),
                          jnp.asarray(out.terminated, bool).reshape(()),
                          jnp.asarray(out.truncated, bool).reshape(()))

    # ------------------------------------------------------------------ what the toolkit supplies
    def sample_action(self, key):
        if self._sample is not None:
            return self._sample(key)
        if self.discrete:
            return jax.random.randint(key, (), 0, self.num_actions, dtype=jnp.int32)
        return jax.random.uniform(key, (self.action_dim,), minval=-1.0, maxval=1.0)

    def reward_from_obs(self, obs, action, next_obs, goal_id, params):
        if self._reward is None:
            raise NotImplementedError(f"{self.name} has no reward_from_obs; plan with learned reward heads")
        return self._reward(obs, self.env_action(action), next_obs, goal_id, params)

    def terminal_from_obs(self, next_obs, goal_id, params):
        if self._terminal is None:
            raise NotImplementedError(f"{self.name} has no terminal_from_obs; plan with a learned termination head")
        return self._terminal(next_obs, goal_id, params)

    def planning_heuristic(self, obs, goal_id, params):
        if self._heuristic is None:
            return jnp.zeros((), jnp.float32)
        return self._heuristic(obs, goal_id, params)

    def exact_optimal_return(self, state, params):
        if self._exact is None:
            return None
        return self._exact(state, params)

    # The base class defines these as placeholders, so they are forwarded by name.
    def goals(self, params):
        return self._forward("goals")(params)

    def obs_from_state(self, state):
        return self._forward("obs_from_state")(state)

    def state_from_obs(self, obs, goal_id, params):
        return self._forward("state_from_obs")(obs, goal_id, params)

    def _forward(self, name: str):
        fn = provided(self.inner, name)
        if fn is None:
            raise NotImplementedError(f"{self.name} has no {name}")
        return fn


def adapt(env: Any, label: str | None = None) -> ContractEnv:
    """Returns ``env`` behind the full interface (itself when it already is a :class:`ContractEnv`).

    Raises:
      EnvContractError: a required attribute or method is missing or invalid (one line, naming it).
    """
    if isinstance(env, ContractEnv):
        return env
    return ContractEnv(env, label)
