"""A 2-D point mass pushed toward one of four goals, written against the minimal contract only.

It does not subclass ``augnes_jax.envs.Environment``: it has the six things the toolkit needs
(``num_goals``, ``obs_dim``, ``action_dim``, ``default_params``, ``reset``, ``step``) and
nothing else. Observation ``[x, y, vx, vy]``; action: a force in ``[-1, 1]^2``; reward: minus
the distance to the goal (dense); reaching within ``goal_radius`` terminates the episode.

    python -m augnes_jax.envs check examples.pointmass:PointMass
    python -m augnes_jax.sweep env.name=examples.pointmass:PointMass env.kwargs.damping=0.5
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

GOALS = ((0.7, 0.7), (-0.7, 0.7), (-0.7, -0.7), (0.7, -0.7))


class State(NamedTuple):
    pos: jax.Array  # [2]
    vel: jax.Array  # [2]
    goal_id: jax.Array
    time: jax.Array


class Params(NamedTuple):
    goals: jax.Array  # [4, 2]
    max_steps: jax.Array


class PointMass:
    """A damped point mass in the square [-1, 1]^2 with a goal point in each quadrant."""

    num_goals = len(GOALS)
    obs_dim = 4
    action_dim = 2

    def __init__(self, dt: float = 0.1, damping: float = 0.2, goal_radius: float = 0.1):
        self.dt, self.damping, self.goal_radius = float(dt), float(damping), float(goal_radius)

    def default_params(self, episode_length: int | None = None) -> Params:
        steps = 50 if episode_length is None else int(episode_length)
        return Params(goals=jnp.asarray(GOALS, jnp.float32), max_steps=jnp.asarray(steps, jnp.int32))

    def reset(self, key, params: Params, goal_id):
        pos = jax.random.uniform(key, (2,), minval=-1.0, maxval=1.0)
        state = State(pos, jnp.zeros(2), jnp.asarray(goal_id, jnp.int32), jnp.zeros((), jnp.int32))
        return self._obs(state), state

    def step(self, key, state: State, action, params: Params):
        del key  # deterministic
        force = jnp.clip(action, -1.0, 1.0)
        vel = (1.0 - self.damping * self.dt) * state.vel + self.dt * force
        pos = jnp.clip(state.pos + self.dt * vel, -1.0, 1.0)
        nxt = State(pos, vel, state.goal_id, state.time + 1)
        dist = jnp.linalg.norm(pos - params.goals[state.goal_id])
        terminated = dist < self.goal_radius
        truncated = (nxt.time >= params.max_steps) & ~terminated
        return self._obs(nxt), nxt, -dist, terminated, truncated

    @staticmethod
    def _obs(state: State):
        return jnp.concatenate([state.pos, state.vel]).astype(jnp.float32)
