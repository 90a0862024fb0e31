"""A two-link planar arm driven to target points: continuous, nonlinear, capacity-hungry.

The arm has the full rigid-body dynamics of two coupled links (configuration-dependent inertia,
Coriolis and centrifugal terms, viscous friction), integrated with semi-implicit Euler substeps.
The state change Δs couples trigonometric functions of the joint angles with products of
velocities and torques, so a tiny MLP visibly underfits it while a wider one does not.

Observation ``[cos q1, sin q1, cos q2, sin q2, dq1, dq2]``; action: two torques in ``[-1, 1]``;
reward: minus the distance from the fingertip to the goal point; the episode never terminates
early and is truncated at ``max_steps``. The optimal return per goal comes from an oracle planner
on the true dynamics (``oracle = "true_dynamics_planner"``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from augnes_jax.envs.base import Environment, StepOutput

# Goal points: two rings inside the workspace (reach = l1 + l2 = 1.0).
_GOAL_ANGLES = np.linspace(0.0, 2.0 * np.pi, 8, endpoint=False)
_GOAL_RADII = np.array([0.45, 0.85] * 4)
GOALS = np.stack([_GOAL_RADII * np.cos(_GOAL_ANGLES), _GOAL_RADII * np.sin(_GOAL_ANGLES)], axis=1).astype(np.float32)


@struct.dataclass
class ReacherState:
    """Joint angles ``q[2]``, joint velocities ``dq[2]``, goal id and time step."""

    q: jax.Array
    dq: jax.Array
    goal_id: jax.Array
    time: jax.Array


@struct.dataclass
class ReacherParams:
    """Physical constants, goals and the time limit."""

    goals: jax.Array = struct.field(default_factory=lambda: jnp.asarray(GOALS))
    link_length: float = 0.5
    link_mass: float = 1.0
    friction: float = 0.1
    max_torque: float = 2.0
    max_speed: float = 8.0
    dt: float = 0.05
    substeps: int = struct.field(pytree_node=False, default=4)
    max_steps: int = struct.field(pytree_node=False, default=50)
    start_speed: float = 0.5


def _accel(q, dq, tau, p: ReacherParams):
    """Returns joint accelerations ``[2]`` from the manipulator equation M q̈ + C q̇ + b q̇ = τ."""
    length, m = p.link_length, p.link_mass
    lc = 0.5 * length
    inertia = m * length**2 / 12.0
    c2, s2 = jnp.cos(q[1]), jnp.sin(q[1])
    m11 = m * lc**2 + m * (length**2 + lc**2 + 2.0 * length * lc * c2) + 2.0 * inertia
    m12 = m * (lc**2 + length * lc * c2) + inertia
    m22 = m * lc**2 + inertia
    h = m * length * lc * s2
    bias = jnp.stack([-h * dq[1] * (2.0 * dq[0] + dq[1]), h * dq[0] ** 2])
    rhs = tau - bias - p.friction * dq
    det = m11 * m22 - m12 * m12
    ddq0 = (m22 * rhs[0] - m12 * rhs[1]) / det
    ddq1 = (-m12 * rhs[0] + m11 * rhs[1]) / det
    return jnp.stack([ddq0, ddq1])


def fingertip(q, length: float = 0.5):
    """Returns the fingertip position ``[2]`` for joint angles ``q[2]``."""
    x = length * jnp.cos(q[0]) + length * jnp.cos(q[0] + q[1])
    y = length * jnp.sin(q[0]) + length * jnp.sin(q[0] + q[1])
    return jnp.stack([x, y])


def _fingertip_from_obs(obs, length: float):
    c1, s1, c2, s2 = obs[0], obs[1], obs[2], obs[3]
    c12 = c1 * c2 - s1 * s2
    s12 = s1 * c2 + c1 * s2
    return jnp.stack([length * (c1 + c12), length * (s1 + s12)])


class Reacher(Environment):
    """Two-link planar reacher with 8 goal points."""

    name = "reacher"
    discrete = False
    obs_dim = 6
    action_dim = 2
    num_goals = int(GOALS.shape[0])
    oracle = "true_dynamics_planner"

    def default_params(self, episode_length: int | None = None) -> ReacherParams:
        """Returns the default parameters, with ``max_steps = episode_length`` if given."""
        params = ReacherParams()
        if episode_length is not None:
            params = params.replace(max_steps=int(episode_length))
        return params

    def goals(self, params: ReacherParams) -> jax.Array:
        """Returns the goal points ``[G, 2]``."""
        return params.goals

    def obs_from_state(self, state: ReacherState) -> jax.Array:
        """Returns ``[cos q1, sin q1, cos q2, sin q2, dq1, dq2]``."""
        q, dq = state.q, state.dq
        return jnp.stack([jnp.cos(q[0]), jnp.sin(q[0]), jnp.cos(q[1]), jnp.sin(q[1]), dq[0], dq[1]]).astype(jnp.float32)

    def reset(self, key, params: ReacherParams, goal_id):
        """Returns ``(obs, state)`` with uniform joint angles and small random speeds."""
        kq, kd = jax.random.split(key)
        q = jax.random.uniform(kq, (2,), minval=-jnp.pi, maxval=jnp.pi)
        dq = jax.random.uniform(kd, (2,), minval=-params.start_speed, maxval=params.start_speed)
        state = ReacherState(q=q, dq=dq, goal_id=jnp.asarray(goal_id, jnp.int32), time=jnp.zeros((), jnp.int32))
        return self.obs_from_state(state), state

    def step(self, key, state: ReacherState, action, params: ReacherParams) -> StepOutput:
        """Returns the next ``StepOutput``; deterministic dynamics (``key`` is unused)."""
        del key
        tau = params.max_torque * jnp.clip(action, -1.0, 1.0)
        h = params.dt / params.substeps

        def substep(carry, _):
            q, dq = carry
            dq = jnp.clip(dq + h * _accel(q, dq, tau, params), -params.max_speed, params.max_speed)
            q = q + h * dq
            return (q, dq), None

        (q, dq), _ = jax.lax.scan(substep, (state.q, state.dq), None, length=params.substeps)
        q = jnp.mod(q + jnp.pi, 2.0 * jnp.pi) - jnp.pi
        next_state = state.replace(q=q, dq=dq, time=state.time + 1)
        obs = self.obs_from_state(next_state)
        reward = -jnp.linalg.norm(fingertip(q, params.link_length) - params.goals[state.goal_id])
        truncated = next_state.time >= params.max_steps
        return StepOutput(obs, next_state, reward.astype(jnp.float32), jnp.zeros((), bool), truncated)

    def state_from_obs(self, obs, goal_id, params: ReacherParams) -> ReacherState:
        """Returns the state with ``q = atan2(sin, cos)`` and ``dq`` read from ``obs``."""
        del params
        q = jnp.stack([jnp.arctan2(obs[1], obs[0]), jnp.arctan2(obs[3], obs[2])])
        return ReacherState(q=q, dq=obs[4:6], goal_id=jnp.asarray(goal_id, jnp.int32), time=jnp.zeros((), jnp.int32))

    def reward_from_obs(self, obs, action, next_obs, goal_id, params: ReacherParams):
        """Returns minus the fingertip-to-goal distance at ``next_obs``."""
        del obs, action
        tip = _fingertip_from_obs(next_obs, params.link_length)
        return -jnp.linalg.norm(tip - params.goals[goal_id])

    def sample_action(self, key):
        """Returns uniform torques in ``[-1, 1]^2``."""
        return jax.random.uniform(key, (2,), minval=-1.0, maxval=1.0)

    def transition_slice(self, params: ReacherParams, n: int = 21):
        """Returns ``(obs[n*n,6], action[n*n,2], true_delta[n*n,6], info)`` over a (q1, q2) grid.

        Speeds are zero and the torque is a fixed push, so the slice shows how the true Δs (and
        a model's prediction of it) varies with the arm's configuration.
        """
        grid = jnp.linspace(-jnp.pi, jnp.pi, n)
        q1, q2 = jnp.meshgrid(grid, grid, indexing="xy")
        q = jnp.stack([q1.ravel(), q2.ravel()], axis=1)
        dq = jnp.tile(jnp.asarray([[1.0, -1.0]]), (n * n, 1))
        action = jnp.tile(jnp.asarray([[0.8, -0.8]], jnp.float32), (n * n, 1))
        states = ReacherState(q=q, dq=dq, goal_id=jnp.zeros((n * n,), jnp.int32), time=jnp.zeros((n * n,), jnp.int32))
        obs = jax.vmap(self.obs_from_state)(states)
        keys = jax.random.split(jax.random.key(0), n * n)
        out = jax.vmap(self.step, in_axes=(0, 0, 0, None))(keys, states, action, params)
        info = {"x": "q1 (rad)", "y": "q2 (rad)", "grid": np.asarray(grid), "dims": [4, 5],
                "dim_names": ["cos q1", "sin q1", "cos q2", "sin q2", "dq1", "dq2"]}
        return obs, action, out.obs - obs, info
