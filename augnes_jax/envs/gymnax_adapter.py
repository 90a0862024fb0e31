"""gymnax environments as goal-conditioned environments: ``env.name=gymnax:<id>``.

:class:`GymnaxEnv` wraps any environment that ``gymnax.make`` knows and keeps this package's
contract (:mod:`augnes_jax.envs.base`):

* **No auto-reset.** ``step`` calls the env's own ``step_env`` and never ``gymnax``'s
  auto-resetting ``step``; ``truncated`` is set when the state's ``time`` reaches the episode
  length, and only where the step did not terminate.
* **Goals.** ``goals=[[...], ...]`` are written into the state field ``goal_field`` (default
  ``goal``) at reset, and the observation is recomputed with the env's own ``get_obs``. An env
  given no goals has one goal: whatever its own reset draws.
* **Parameters.** ``params={field: value}`` overrides fields of the env's ``EnvParams``.
* **Actions.** Continuous actions arrive in ``[-1, 1]`` and are mapped linearly to the env's
  action bounds; discrete actions are indices.
* **Observations** are flattened to ``[obs_dim]`` float32.

Where an env's observation determines its state (FourRooms-misc, Pendulum-v1), the adapter also
has ``state_from_obs``, ``reward_from_obs`` and ``terminal_from_obs``, so planning on a model
scores imagined steps with the true reward. Every other env has them set to ``None`` (absent):
its oracle plans on the env's own ``step`` and planning on a model uses learned reward and
termination heads (:mod:`augnes_jax.envs.contract`). FourRooms-misc has an exact optimum (:func:`maze_values`): finite-horizon dynamic
programming over the map, a breadth-first shortest-path search when moves never slip.

gymnax is imported only when an adapter is built, so importing :mod:`augnes_jax.envs` never
loads it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from augnes_jax.envs.base import Environment, StepOutput

__all__ = ["PREFIX", "GymnaxEnv", "GymnaxOptionError", "GymnaxParams", "maze_values"]

PREFIX = "gymnax:"


class GymnaxOptionError(ValueError):
    """A gymnax id or an adapter option that cannot be used; the message is one line naming it."""


@struct.dataclass
class GymnaxParams:
    """The wrapped env's ``EnvParams``, the goals ``[G, goal_dim]`` and the episode length."""

    env: Any
    goals: jax.Array
    max_steps: int = struct.field(pytree_node=False, default=1)


def _load_gymnax(env_id: str, make_kwargs: dict[str, Any]):
    try:
        import gymnax  # noqa: PLC0415 - optional dependency, imported only when an adapter is built
    except ImportError as e:
        raise GymnaxOptionError(f"gymnax is not installed ({e}); install the extra augnes_jax[gymnax]") from None
    if env_id not in gymnax.registered_envs:
        raise GymnaxOptionError(f"unknown gymnax id {env_id!r}; gymnax has {', '.join(gymnax.registered_envs)}")
    try:
        env, params = gymnax.make(env_id, **make_kwargs)
    except TypeError as e:
        raise GymnaxOptionError(f"env.kwargs.make_kwargs do not fit {env_id} ({e})") from None
    return env, params


def _override(env_id: str, params: Any, overrides: dict[str, Any]) -> Any:
    fields = {f.name: getattr(params, f.name) for f in dataclasses.fields(params)}
    changes = {}
    for name, value in overrides.items():
        if name not in fields:
            raise GymnaxOptionError(f"env.kwargs.params.{name}: {env_id} EnvParams has no field {name!r}; "
                                    f"fields: {', '.join(fields)}")
        default = fields[name]
        if isinstance(default, bool) or not isinstance(default, int | float):
            changes[name] = value
            continue
        try:
            changes[name] = type(default)(value)
        except (TypeError, ValueError):
            raise GymnaxOptionError(f"env.kwargs.params.{name}: expected a number, got {value!r}") from None
    return params.replace(**changes)


def _strong(tree: Any, like: Any = None) -> Any:
    """Returns ``tree`` with every leaf an array of a fixed dtype (``like``'s where given)."""
    if like is None:
        return jax.tree.map(lambda x: jnp.asarray(x, jnp.asarray(x).dtype), tree)
    return jax.tree.map(lambda x, y: jnp.asarray(x, y.dtype).reshape(y.shape), tree, like)


# --------------------------------------------------------------------- envs the obs determines
def _fourrooms_state(adapter: GymnaxEnv, obs, params):
    cells = jnp.round(obs).astype(jnp.int32)
    return adapter.state_type(pos=cells[:2], goal=cells[2:4], time=jnp.zeros((), jnp.int32))


def _fourrooms_terminal(adapter: GymnaxEnv, next_obs, params):
    del adapter, params
    return jnp.all(jnp.abs(next_obs[:2] - next_obs[2:4]) < 0.5)


def _fourrooms_reward(adapter: GymnaxEnv, obs, action, next_obs, params):
    del obs, action
    return _fourrooms_terminal(adapter, next_obs, params).astype(jnp.float32)


def _pendulum_state(adapter: GymnaxEnv, obs, params):
    del params
    return adapter.state_type(theta=jnp.arctan2(obs[1], obs[0]), theta_dot=obs[2],
                              last_u=jnp.zeros((), jnp.float32), time=jnp.zeros((), jnp.int32))


def _pendulum_reward(adapter: GymnaxEnv, obs, action, next_obs, params):
    """The reward of Pendulum depends on the state the step starts from and the torque only."""
    del next_obs
    state = _pendulum_state(adapter, obs, params)
    return adapter.step(jax.random.key(0), state, action, params).reward


def _never(adapter: GymnaxEnv, next_obs, params):
    del adapter, next_obs, params
    return jnp.zeros((), bool)


# id -> (obs_dim, state_from_obs, reward_from_obs, terminal_from_obs), for the env's vector observation
OBS_MODELS: dict[str, tuple[int, Callable, Callable, Callable]] = {
    "FourRooms-misc": (4, _fourrooms_state, _fourrooms_reward, _fourrooms_terminal),
    "Pendulum-v1": (3, _pendulum_state, _pendulum_reward, _never),
}
GRID_MAZES = ("FourRooms-misc",)


def maze_values(free: jax.Array, goal: jax.Array, horizon: int, slip: jax.Array,
                directions: jax.Array) -> jax.Array:
    """Returns ``V[horizon + 1, H, W]``, the optimal expected return with ``t`` steps left.

    The dynamics are FourRooms': a move into a wall stays put; with probability ``slip`` the
    action is replaced by a uniformly random one; entering ``goal`` pays 1 and ends the episode.
    With ``slip = 0`` the value is 1 exactly where the shortest path (breadth-first search on
    the map) is at most ``t`` moves long.
    """
    h, w = free.shape
    rr, cc = jnp.meshgrid(jnp.arange(h), jnp.arange(w), indexing="ij")
    cells = jnp.stack([rr.ravel(), cc.ravel()], axis=1)
    target = jnp.clip(cells[None] + directions[:, None], 0, jnp.asarray([[[h - 1, w - 1]]]))  # [A, HW, 2]
    moved = jnp.where(free[target[..., 0], target[..., 1]][..., None], target, cells[None])
    reached = jnp.all(moved == goal[None, None], axis=-1)  # [A, HW]
    slip = jnp.clip(slip, 0.0, 1.0)

    def backup(v, _):
        outcome = jnp.where(reached, 1.0, v[moved[..., 0], moved[..., 1]])  # [A, HW]
        q = (1.0 - slip) * outcome + slip * jnp.mean(outcome, axis=0, keepdims=True)
        v_new = jnp.max(q, axis=0).reshape(h, w)
        return v_new, v_new

    v0 = jnp.zeros((h, w), jnp.float32)
    _, vs = jax.lax.scan(backup, v0, None, length=horizon)
    return jnp.concatenate([v0[None], vs], axis=0)


class GymnaxEnv(Environment):
    """A gymnax environment behind this package's goal-conditioned contract.

    Args:
      env_id: a gymnax id, e.g. ``FourRooms-misc``.
      goals: goal vectors written into the state field ``goal_field`` at reset; None: one goal.
      goal_field: the state field that holds the goal.
      params: ``EnvParams`` fields to override.
      make_kwargs: keyword arguments of the gymnax env's constructor.

    Raises:
      GymnaxOptionError: an unknown id, a field ``EnvParams`` lacks, or goals that do not fit.
    """

    def __init__(self, env_id: str, *, goals: list | None = None, goal_field: str = "goal",
                 params: dict[str, Any] | None = None, make_kwargs: dict[str, Any] | None = None):
        self.env_id = env_id
        self.name = PREFIX + env_id
        self.gymnax_env, base_params = _load_gymnax(env_id, dict(make_kwargs or {}))
        if not isinstance(params or {}, dict):
            raise GymnaxOptionError(f"env.kwargs.params: expected a mapping of EnvParams fields, got {params!r}")
        self.env_params = _override(env_id, base_params, dict(params or {}))
        obs0, state0 = self.gymnax_env.reset_env(jax.random.key(0), self.env_params)
        self.state_type = type(state0)
        self.state_template = _strong(state0)
        self.obs_dim = int(np.prod(np.shape(obs0)))
        self.goal_field = goal_field
        self.goal_array = self._goal_array(goals, state0)
        self.num_goals = int(self.goal_array.shape[0])
        self._action_setup()
        model = OBS_MODELS.get(env_id)
        self._obs_model = model[1:] if model is not None and model[0] == self.obs_dim else None
        maze = env_id in GRID_MAZES and goal_field == "goal" and self._obs_model is not None
        self.oracle = "value_iteration" if maze else "true_dynamics_planner"
        if self._obs_model is None:  # absent, not placeholders: see augnes_jax.envs.contract
            self.state_from_obs = self.reward_from_obs = self.terminal_from_obs = None
        if not maze:
            self.exact_optimal_return = None
        if maze and self.goal_array.shape[1] == 2:
            self._check_goal_cells()

    def _check_goal_cells(self) -> None:
        free = np.asarray(self.gymnax_env.env_map, bool)
        for i, (r, c) in enumerate(self.goal_array.astype(int)):
            if not (0 <= r < free.shape[0] and 0 <= c < free.shape[1]) or not free[r, c]:
                raise GymnaxOptionError(f"env.kwargs.goals[{i}]: cell [{r}, {c}] is not a free cell of the "
                                        f"{free.shape[0]}x{free.shape[1]} map")

    def _goal_array(self, goals, state0) -> np.ndarray:
        if goals is None:
            return np.zeros((1, 0), np.float32)
        names = [f.name for f in dataclasses.fields(state0)]
        if self.goal_field not in names:
            raise GymnaxOptionError(f"env.kwargs.goal_field: {self.env_id} state has no field {self.goal_field!r}; "
                                    f"fields: {', '.join(names)}")
        size = int(np.size(getattr(state0, self.goal_field)))
        if not isinstance(goals, list | tuple) or not goals:
            raise GymnaxOptionError(f"env.kwargs.goals: expected a non-empty list of goals, got {goals!r}")
        for i, g in enumerate(goals):
            flat = np.ravel(np.asarray(g, dtype=object))
            if flat.size != size:
                raise GymnaxOptionError(f"env.kwargs.goals[{i}]: has length {flat.size}, "
                                        f"the state field {self.goal_field!r} has {size}")
            if not all(isinstance(v, int | float | np.number) and not isinstance(v, bool) for v in flat):
                raise GymnaxOptionError(f"env.kwargs.goals[{i}]: expected numbers, got {g!r}")
        return np.asarray(goals, np.float32).reshape(len(goals), size)

    def _action_setup(self) -> None:
        space = self.gymnax_env.action_space(self.env_params)
        self.discrete = hasattr(space, "n")
        if self.discrete:
            self.num_actions = int(space.n)
            self.action_dim = 1
            self._action_dtype = space.dtype
            return
        self.num_actions = None
        self._action_shape = tuple(space.shape)
        self.action_dim = int(math.prod(self._action_shape))
        low, high = np.asarray(space.low, np.float64), np.asarray(space.high, np.float64)
        if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high))):
            raise GymnaxOptionError(f"{self.env_id}: the action bounds are not finite, so [-1, 1] cannot be mapped to them")

    # ------------------------------------------------------------------ the contract
    def default_params(self, episode_length: int | None = None) -> GymnaxParams:
        """Returns the env's parameters with ``max_steps_in_episode = episode_length`` if given."""
        env_params = self.env_params
        steps = int(episode_length if episode_length is not None else env_params.max_steps_in_episode)
        env_params = env_params.replace(max_steps_in_episode=steps)
        return GymnaxParams(env=env_params, goals=jnp.asarray(self.goal_array), max_steps=steps)

    def goals(self, params: GymnaxParams) -> jax.Array:
        """Returns the goal vectors ``[G, goal_dim]`` (``[1, 0]`` for an env given no goals)."""
        return params.goals

    def obs_from_state(self, state) -> jax.Array:
        """Returns the env's own observation of ``state``, flattened to float32."""
        return self._obs(state, self.env_params, None)

    def _obs(self, state, env_params, key) -> jax.Array:
        return jnp.ravel(self.gymnax_env.get_obs(state, params=env_params, key=key)).astype(jnp.float32)

    def reset(self, key, params: GymnaxParams, goal_id):
        """Returns ``(obs, state)``: the env's reset with the goal ``goal_id`` written into the state."""
        obs, state = self.gymnax_env.reset_env(key, params.env)
        state = _strong(state, self.state_template)
        if self.goal_array.shape[1]:
            current = getattr(state, self.goal_field)
            goal = params.goals[goal_id].astype(current.dtype).reshape(current.shape)
            state = state.replace(**{self.goal_field: goal})
            return self._obs(state, params.env, key), state
        return jnp.ravel(obs).astype(jnp.float32), state

    def env_action(self, action, env_params):
        """Returns the action the gymnax env takes: an index, or ``[-1, 1]`` mapped to its bounds."""
        if self.discrete:
            return jnp.asarray(action).astype(self._action_dtype).reshape(())
        space = self.gymnax_env.action_space(env_params)
        unit = jnp.clip(jnp.asarray(action, jnp.float32), -1.0, 1.0).reshape(self._action_shape)
        low, high = jnp.asarray(space.low, jnp.float32), jnp.asarray(space.high, jnp.float32)
        return low + 0.5 * (unit + 1.0) * (high - low)

    def step(self, key, state, action, params: GymnaxParams) -> StepOutput:
        """Returns the env's ``step_env`` outcome, truncated at the episode length, never reset."""
        obs, next_state, reward, done, _ = self.gymnax_env.step_env(
            key, state, self.env_action(action, params.env), params.env)
        next_state = _strong(next_state, self.state_template)
        terminated = jnp.asarray(done, bool).reshape(())
        truncated = (next_state.time >= params.max_steps) & ~terminated
        return StepOutput(jnp.ravel(obs).astype(jnp.float32), next_state,
                          jnp.asarray(reward, jnp.float32).reshape(()), terminated, truncated)

    def sample_action(self, key):
        """Returns a uniform action: an index, or a point of ``[-1, 1]^action_dim``."""
        if self.discrete:
            return jax.random.randint(key, (), 0, self.num_actions, dtype=jnp.int32)
        return jax.random.uniform(key, (self.action_dim,), minval=-1.0, maxval=1.0)

    # ------------------------------------------------------------------ where the obs determines the state
    def _model(self, method: str) -> tuple[Callable, Callable, Callable]:
        if self._obs_model is None:
            raise NotImplementedError(f"{self.name}: {method} needs the state from an observation, "
                                      f"known only for the vector observations of {', '.join(OBS_MODELS)}")
        return self._obs_model

    def state_from_obs(self, obs, goal_id, params: GymnaxParams):
        """Returns the state (time 0) whose observation is ``obs``; the goal comes from ``obs``."""
        del goal_id
        return _strong(self._model("state_from_obs")[0](self, obs, params), self.state_template)

    def reward_from_obs(self, obs, action, next_obs, goal_id, params: GymnaxParams):
        """Returns the reward of ``obs -> next_obs`` under ``action``."""
        del goal_id
        return jnp.asarray(self._model("reward_from_obs")[1](self, obs, action, next_obs, params), jnp.float32)

    def terminal_from_obs(self, next_obs, goal_id, params: GymnaxParams):
        """Returns whether ``next_obs`` ends the episode."""
        del goal_id
        return self._model("terminal_from_obs")[2](self, next_obs, params)

    def exact_optimal_return(self, state, params: GymnaxParams):
        """Returns the exact optimal expected return from ``state`` on a grid maze, else None."""
        if self.oracle != "value_iteration":
            return None
        env = self.gymnax_env
        slip = params.env.fail_prob * 4.0 / 3.0
        values = maze_values(jnp.asarray(env.env_map, bool), state.goal, params.max_steps, slip,
                             jnp.asarray(env.directions))
        return values[params.max_steps - state.time, state.pos[0], state.pos[1]]
