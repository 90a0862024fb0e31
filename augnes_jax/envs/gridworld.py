"""A discrete gridworld with walls and several goal cells; exact optimal returns by value iteration.

Observation ``[row, col]`` as floats; four actions (up, down, left, right); moving into a wall or
off the grid leaves the agent in place. Every step costs ``-1``; reaching the goal cell
terminates the episode. The time limit truncates it, so the optimal return from a start cell is
``-min(shortest path length, max_steps)``. :func:`value_iteration` computes it exactly by
finite-horizon dynamic programming in JAX (``oracle = "value_iteration"``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from augnes_jax.envs.base import Environment, StepOutput

DEFAULT_LAYOUT = (
    "#########",
    "#G..#..G#",
    "#...#...#",
    "#.......#",
    "###.#.###",
    "#.......#",
    "#...#...#",
    "#G..#..G#",
    "#########",
)
# up, down, left, right as (drow, dcol)
MOVES = np.array([[-1, 0], [1, 0], [0, -1], [0, 1]], dtype=np.int32)


def parse_layout(layout: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Returns ``(walls[H, W] bool, goals[G, 2] int)`` from a text layout ('#' wall, 'G' goal)."""
    rows = [list(r) for r in layout]
    width = len(rows[0])
    if any(len(r) != width for r in rows):
        raise ValueError("gridworld layout rows must have equal length")
    walls = np.array([[c == "#" for c in r] for r in rows], dtype=bool)
    goals = np.array([(i, j) for i, r in enumerate(rows) for j, c in enumerate(r) if c == "G"], dtype=np.int32)
    return walls, goals


_WALLS, _GOALS = parse_layout(DEFAULT_LAYOUT)


@struct.dataclass
class GridState:
    """Agent cell ``pos[2]`` (row, col), goal id and time step."""

    pos: jax.Array
    goal_id: jax.Array
    time: jax.Array


@struct.dataclass
class GridParams:
    """Walls, goal cells and the time limit."""

    walls: jax.Array = struct.field(default_factory=lambda: jnp.asarray(_WALLS))
    goal_cells: jax.Array = struct.field(default_factory=lambda: jnp.asarray(_GOALS))
    max_steps: int = struct.field(pytree_node=False, default=30)


def _move(pos, action, walls):
    target = pos + jnp.asarray(MOVES)[action]
    h, w = walls.shape
    inside = (target[0] >= 0) & (target[0] < h) & (target[1] >= 0) & (target[1] < w)
    clipped = jnp.clip(target, 0, jnp.asarray([h - 1, w - 1]))
    blocked = ~inside | walls[clipped[0], clipped[1]]
    return jnp.where(blocked, pos, clipped)


def value_iteration(walls: jax.Array, goal_cell: jax.Array, horizon: int) -> jax.Array:
    """Returns ``V[horizon + 1, H, W]``: ``V[t]`` is the optimal return with ``t`` steps left.

    Finite-horizon dynamic programming with reward -1 per step, termination on entering
    ``goal_cell`` and truncation after ``horizon`` steps; exact (integers in float32).
    """
    h, w = walls.shape
    rr, cc = jnp.meshgrid(jnp.arange(h), jnp.arange(w), indexing="ij")
    cells = jnp.stack([rr.ravel(), cc.ravel()], axis=1)
    next_cells = jax.vmap(lambda a: jax.vmap(lambda p: _move(p, a, walls))(cells))(jnp.arange(4))  # [4, HW, 2]
    at_goal = jnp.all(next_cells == goal_cell[None, None], axis=-1)  # [4, HW]

    def backup(v, _):
        v_next = v[next_cells[..., 0], next_cells[..., 1]]  # [4, HW]
        q = -1.0 + jnp.where(at_goal, 0.0, v_next)
        v_new = jnp.max(q, axis=0).reshape(h, w)
        return v_new, v_new

    v0 = jnp.zeros((h, w), jnp.float32)
    _, vs = jax.lax.scan(backup, v0, None, length=horizon)
    return jnp.concatenate([v0[None], vs], axis=0)


class GridWorld(Environment):
    """9x9 four-room gridworld with a goal cell in each room."""

    name = "gridworld"
    discrete = True
    obs_dim = 2
    action_dim = 1
    num_actions = 4
    num_goals = int(_GOALS.shape[0])
    oracle = "value_iteration"

    def default_params(self, episode_length: int | None = None) -> GridParams:
        """Returns the default parameters, with ``max_steps = episode_length`` if given."""
        params = GridParams()
        if episode_length is not None:
            params = params.replace(max_steps=int(episode_length))
        return params

    def goals(self, params: GridParams) -> jax.Array:
        """Returns the goal cells ``[G, 2]``."""
        return params.goal_cells

    def obs_from_state(self, state: GridState) -> jax.Array:
        """Returns ``[row, col]`` as float32."""
        return state.pos.astype(jnp.float32)

    def reset(self, key, params: GridParams, goal_id):
        """Returns ``(obs, state)`` at a uniform free cell that is not the episode's goal."""
        h, w = params.walls.shape
        goal = params.goal_cells[goal_id]
        rr, cc = jnp.meshgrid(jnp.arange(h), jnp.arange(w), indexing="ij")
        free = ~params.walls & ~((rr == goal[0]) & (cc == goal[1]))
        logits = jnp.where(free.ravel(), 0.0, -jnp.inf)
        idx = jax.random.categorical(key, logits)
        pos = jnp.stack([idx // w, idx % w]).astype(jnp.int32)
        state = GridState(pos=pos, goal_id=jnp.asarray(goal_id, jnp.int32), time=jnp.zeros((), jnp.int32))
        return self.obs_from_state(state), state

    def step(self, key, state: GridState, action, params: GridParams) -> StepOutput:
        """Returns the next ``StepOutput``; deterministic moves (``key`` is unused)."""
        del key
        pos = _move(state.pos, jnp.asarray(action, jnp.int32), params.walls)
        next_state = state.replace(pos=pos, time=state.time + 1)
        terminated = jnp.all(pos == params.goal_cells[state.goal_id])
        truncated = (next_state.time >= params.max_steps) & ~terminated
        return StepOutput(self.obs_from_state(next_state), next_state, jnp.float32(-1.0), terminated, truncated)

    def state_from_obs(self, obs, goal_id, params: GridParams) -> GridState:
        """Returns the state at the cell nearest to ``obs``."""
        h, w = params.walls.shape
        pos = jnp.clip(jnp.round(obs).astype(jnp.int32), 0, jnp.asarray([h - 1, w - 1]))
        return GridState(pos=pos, goal_id=jnp.asarray(goal_id, jnp.int32), time=jnp.zeros((), jnp.int32))

    def reward_from_obs(self, obs, action, next_obs, goal_id, params: GridParams):
        """Returns -1: every step costs the same until the goal terminates the episode."""
        del obs, action, next_obs, goal_id, params
        return jnp.float32(-1.0)

    def terminal_from_obs(self, next_obs, goal_id, params: GridParams):
        """Returns whether ``next_obs`` rounds to the goal cell."""
        return jnp.all(jnp.abs(next_obs - params.goal_cells[goal_id].astype(jnp.float32)) < 0.5)

    def planning_heuristic(self, obs, goal_id, params: GridParams):
        """Returns minus the Manhattan distance to the goal (guides short planning horizons)."""
        return -jnp.sum(jnp.abs(obs - params.goal_cells[goal_id].astype(jnp.float32)))

    def sample_action(self, key):
        """Returns a uniform action index."""
        return jax.random.randint(key, (), 0, self.num_actions)

    def exact_optimal_return(self, state: GridState, params: GridParams):
        """Returns the optimal return from ``state`` by value iteration over the remaining steps."""
        goal = params.goal_cells[state.goal_id]
        values = value_iteration(params.walls, goal, params.max_steps)
        return values[params.max_steps - state.time, state.pos[0], state.pos[1]]

    def transition_slice(self, params: GridParams, n: int | None = None):
        """Returns ``(obs, action, true_delta, info)`` for action "right" at every cell of the grid."""
        del n
        h, w = params.walls.shape
        rr, cc = jnp.meshgrid(jnp.arange(h), jnp.arange(w), indexing="ij")
        pos = jnp.stack([rr.ravel(), cc.ravel()], axis=1).astype(jnp.int32)
        action = jnp.full((pos.shape[0],), 3, jnp.int32)
        nxt = jax.vmap(lambda p, a: _move(p, a, params.walls))(pos, action)
        obs = pos.astype(jnp.float32)
        info = {"x": "col", "y": "row", "grid_shape": (h, w), "dims": [0, 1], "dim_names": ["row", "col"]}
        return obs, jax.vmap(self.action_features)(action), (nxt - pos).astype(jnp.float32), info
