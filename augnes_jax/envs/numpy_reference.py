"""Plain NumPy re-implementations of the built-in dynamics, batched over environments.

They exist to check the JAX environments against code written another way (tests) and to give
the roll-out benchmark its baseline. They are not used by the toolkit itself.
"""

from __future__ import annotations

import numpy as np

from augnes_jax.envs.gridworld import MOVES


def reacher_step(q: np.ndarray, dq: np.ndarray, action: np.ndarray, *, link_length=0.5, link_mass=1.0,
                 friction=0.1, max_torque=2.0, max_speed=8.0, dt=0.05, substeps=4):
    """Returns ``(q, dq)`` after one step of the two-link arm for batches ``q, dq, action: [N, 2]``."""
    length, m = link_length, link_mass
    lc = 0.5 * length
    inertia = m * length**2 / 12.0
    tau = max_torque * np.clip(action, -1.0, 1.0)
    h = dt / substeps
    q, dq = q.copy(), dq.copy()
    for _ in range(substeps):
        c2, s2 = np.cos(q[:, 1]), np.sin(q[:, 1])
        m11 = m * lc**2 + m * (length**2 + lc**2 + 2 * length * lc * c2) + 2 * inertia
        m12 = m * (lc**2 + length * lc * c2) + inertia
        m22 = m * lc**2 + inertia
        hh = m * length * lc * s2
        bias0 = -hh * dq[:, 1] * (2 * dq[:, 0] + dq[:, 1])
        bias1 = hh * dq[:, 0] ** 2
        r0 = tau[:, 0] - bias0 - friction * dq[:, 0]
        r1 = tau[:, 1] - bias1 - friction * dq[:, 1]
        det = m11 * m22 - m12 * m12
        acc = np.stack([(m22 * r0 - m12 * r1) / det, (-m12 * r0 + m11 * r1) / det], axis=1)
        dq = np.clip(dq + h * acc, -max_speed, max_speed)
        q = q + h * dq
    q = np.mod(q + np.pi, 2 * np.pi) - np.pi
    return q, dq


def reacher_obs(q: np.ndarray, dq: np.ndarray) -> np.ndarray:
    """Returns observations ``[N, 6]``."""
    return np.concatenate([np.cos(q[:, :1]), np.sin(q[:, :1]), np.cos(q[:, 1:]), np.sin(q[:, 1:]), dq], axis=1)


def reacher_reward(q: np.ndarray, goal_xy: np.ndarray, link_length=0.5) -> np.ndarray:
    """Returns minus the fingertip distance to ``goal_xy[N, 2]``."""
    x = link_length * (np.cos(q[:, 0]) + np.cos(q[:, 0] + q[:, 1]))
    y = link_length * (np.sin(q[:, 0]) + np.sin(q[:, 0] + q[:, 1]))
    return -np.hypot(x - goal_xy[:, 0], y - goal_xy[:, 1])


def grid_step(pos: np.ndarray, action: np.ndarray, walls: np.ndarray) -> np.ndarray:
    """Returns the next cells ``[N, 2]`` for cells ``pos[N, 2]`` and actions ``[N]``."""
    target = pos + MOVES[action]
    h, w = walls.shape
    inside = (target[:, 0] >= 0) & (target[:, 0] < h) & (target[:, 1] >= 0) & (target[:, 1] < w)
    clipped = np.clip(target, 0, [h - 1, w - 1])
    blocked = ~inside | walls[clipped[:, 0], clipped[:, 1]]
    return np.where(blocked[:, None], pos, clipped)
