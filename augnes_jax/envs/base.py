"""The goal-conditioned environment contract (gymnax style).

An environment object holds no mutable state: its methods are pure functions of explicit
``EnvState`` and ``EnvParams`` pytrees, so they jit, vmap and scan. Compared with gymnax:

* ``reset`` takes the ``goal_id``: every episode is conditioned on one goal.
* ``step`` does **not** auto-reset. Roll-outs in :mod:`augnes_jax.rollout` run one episode per
  parallel environment and freeze it once it is done, so episode returns are exact.
* ``terminated`` (the task ended) and ``truncated`` (the time limit hit) are separate flags.
* The reward is a known function of observations (``reward_from_obs``), so a planner can score
  imagined transitions of a learned model with the true reward.
* Each environment says how its optimal return per goal is known (``oracle``): exactly by a
  solver (``exact_optimal_return``) or by an oracle planner on the true dynamics.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

Array = jax.Array
PRNGKey = jax.Array


@dataclass(frozen=True)
class Spec:
    """Shape, dtype and bounds of an observation or action (bounds are inclusive)."""

    shape: tuple[int, ...]
    dtype: Any
    low: float | None = None
    high: float | None = None
    num_values: int | None = None  # discrete spaces only


@struct.dataclass
class StepOutput:
    """What one environment step returns (a NamedTuple-like pytree)."""

    obs: Array
    state: Any
    reward: Array
    terminated: Array
    truncated: Array


# Methods of the base class that only raise or return None: a subclass must override them.
_PLACEHOLDERS = ("reward_from_obs", "state_from_obs", "goals", "obs_from_state", "sample_action",
                 "exact_optimal_return")


def provided(env: Any, name: str) -> Any:
    """Returns ``env``'s optional method ``name`` when it provides one, else None.

    A method counts as provided when the env defines it and does not set it to ``None``. On a
    subclass of :class:`Environment` the base class's placeholders (methods that only raise or
    return None) do not count, while its documented defaults do (never terminal, a zero
    planning heuristic).
    """
    fn = getattr(env, name, None)
    if not callable(fn):
        return None
    if isinstance(env, Environment) and name in _PLACEHOLDERS and name not in vars(env):
        if getattr(type(env), name, None) is getattr(Environment, name):
            return None
    return fn


class Environment:
    """Base class of a stateless goal-conditioned environment.

    Subclasses set the class attributes and implement the abstract methods. All methods are pure
    and operate on a single (unbatched) environment; callers ``vmap``.
    """

    name: str = "base"
    discrete: bool = False
    obs_dim: int = 0
    action_dim: int = 0  # length of a continuous action; 1 for a discrete action index
    num_actions: int | None = None  # discrete only
    num_goals: int = 0
    oracle: str = "true_dynamics_planner"

    # -------------------------------------------------------------- to implement
    def default_params(self, episode_length: int | None = None):
        """Returns the default ``EnvParams`` (optionally with another episode length)."""
        raise NotImplementedError

    def reset(self, key: PRNGKey, params, goal_id: Array) -> tuple[Array, Any]:
        """Returns ``(obs, state)`` of a new episode aimed at ``goal_id``."""
        raise NotImplementedError

    def step(self, key: PRNGKey, state, action: Array, params) -> StepOutput:
        """Returns the ``StepOutput`` of taking ``action`` in ``state`` (no auto-reset)."""
        raise NotImplementedError

    def goals(self, params) -> Array:
        """Returns the goal descriptions, ``[G, goal_dim]``."""
        raise NotImplementedError

    def obs_from_state(self, state) -> Array:
        """Returns the observation ``[obs_dim]`` of ``state``."""
        raise NotImplementedError

    def state_from_obs(self, obs: Array, goal_id: Array, params) -> Any:
        """Returns a state whose observation is ``obs`` (time 0): the true-dynamics planner's carry."""
        raise NotImplementedError

    def reward_from_obs(self, obs: Array, action: Array, next_obs: Array, goal_id: Array, params) -> Array:
        """Returns the reward of the transition ``obs -> next_obs`` for ``goal_id``."""
        raise NotImplementedError

    def terminal_from_obs(self, next_obs: Array, goal_id: Array, params) -> Array:
        """Returns whether ``next_obs`` ends the episode for ``goal_id``."""
        return jnp.zeros((), dtype=bool)

    def sample_action(self, key: PRNGKey) -> Array:
        """Returns a uniformly random action."""
        raise NotImplementedError

    # -------------------------------------------------------------- what the env states
    @property
    def known_reward(self) -> bool:
        """Whether the reward is a known function of observations (``reward_from_obs``)."""
        return provided(self, "reward_from_obs") is not None

    @property
    def known_termination(self) -> bool:
        """Whether termination is a known function of observations (the default: never)."""
        return provided(self, "terminal_from_obs") is not None

    @property
    def exact(self) -> bool:
        """Whether ``exact_optimal_return`` is an exact solver (else the oracle is a planner)."""
        return provided(self, "exact_optimal_return") is not None

    # -------------------------------------------------------------- shared helpers
    @property
    def action_feature_dim(self) -> int:
        """Returns the width of :meth:`action_features` (the world model's action input)."""
        return self.num_actions if self.discrete else self.action_dim

    def action_features(self, action: Array) -> Array:
        """Returns the float features of ``action``: a one-hot for discrete actions."""
        if self.discrete:
            return jax.nn.one_hot(action, self.num_actions, dtype=jnp.float32)
        return action.astype(jnp.float32)

    def planning_heuristic(self, obs: Array, goal_id: Array, params) -> Array:
        """Returns a terminal value estimate used only to guide short-horizon planners."""
        del obs, goal_id, params
        return jnp.zeros((), jnp.float32)

    def exact_optimal_return(self, state, params) -> Array | None:
        """Returns the exact optimal return from ``state`` when a solver exists, else ``None``."""
        del state, params
        return None

    def observation_spec(self, params=None) -> Spec:
        """Returns the observation spec."""
        del params
        return Spec((self.obs_dim,), jnp.float32)

    def action_spec(self, params=None) -> Spec:
        """Returns the action spec."""
        del params
        if self.discrete:
            return Spec((), jnp.int32, 0, self.num_actions - 1, self.num_actions)
        return Spec((self.action_dim,), jnp.float32, -1.0, 1.0)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, goals={self.num_goals})"
