"""A transitions file as the first contents of an environment sweep's replay buffers (``data.mode=seed``).

With ``data.path`` and ``data.mode=seed`` the env sweep starts with every variant's ring buffer
holding the file's rows, added in file order, so a variant keeps its ``buffer_size`` most recent
rows; collection then adds to the same buffers. :func:`seed_items` reads the file and checks that
it fits the environment (observation width, action features, goal ids) before anything is
written; the rows become buffer items with the data-only sweep's rule (reward and terminated zero
where the file has none). A resumed run restores its buffers from its checkpoint instead.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from augnes_jax.config import Config, ConfigError
from augnes_jax.data_sweep import _train_items as buffer_items
from augnes_jax.epoch import EpochSettings
from augnes_jax.transitions import DataError, Transitions, load_transitions

__all__ = ["check_fits_env", "env_action_features", "seed_items"]


def env_action_features(t: Transitions, env: Any, path: str) -> np.ndarray:
    """Returns the file's action features at the env's width ``[N, env.action_feature_dim]``.

    A discrete env's actions come from the file one-hot over the actions it holds (``max + 1``):
    rows that are exactly one-hot are widened with zero columns to the env's ``num_actions``,
    which is what :meth:`Environment.action_features` gives for the same action indices.

    Raises:
      DataError: the width does not fit the env; the message names the array and the env.
    """
    action, want = t.action, int(env.action_feature_dim)
    width = action.shape[1]
    if width == want:
        return action
    one_hot = bool(np.all((action == 0) | (action == 1)) and np.all(action.sum(axis=1) == 1))
    if getattr(env, "discrete", False) and one_hot:
        if width < want:
            return np.concatenate([action, np.zeros((t.num_rows, want - width), action.dtype)], axis=1)
        row = int(np.flatnonzero(action.argmax(axis=1) >= want)[0])
        raise DataError(f"data error: {path}: array 'action' row {row}: action {int(action[row].argmax())} "
                        f"is outside the env's {want} actions")
    raise DataError(f"data error: {path}: array 'action' gives {width} action features per row, "
                    f"the env takes {want}")


def check_fits_env(t: Transitions, env: Any, path: str) -> None:
    """Checks that the file's observations and goal ids fit ``env``.

    Raises:
      DataError: ``obs`` (and so ``next_obs``) has another width than ``env.obs_dim``, or a goal id
        is not below ``env.num_goals``; one line naming the array (and the row).
    """
    if t.obs.shape[1] != env.obs_dim:
        raise DataError(f"data error: {path}: array 'obs' has {t.obs.shape[1]} columns, "
                        f"the env observes {env.obs_dim}")
    outside = np.flatnonzero(t.goal_id >= env.num_goals)
    if len(outside):
        row = int(outside[0])
        raise DataError(f"data error: {path}: array 'goal_id' row {row}: goal {int(t.goal_id[row])} "
                        f"is not below the env's {env.num_goals} goals")


def seed_items(cfg: Config, env: Any, settings: EpochSettings) -> dict[str, jax.Array] | None:
    """Returns the buffer items ``[N, ...]`` the sweep's buffers start with, None unless ``data.mode=seed``.

    Args:
      cfg: the sweep's config (``data.path``, ``data.mode``, ``data.drop_nonfinite``).
      env: the sweep's environment, behind the full interface.
      settings: the sweep's epoch settings; where the world models learn reward and termination
        heads (``learn_reward``), they train on the file's rewards.

    Raises:
      DataError: the file cannot be read or does not fit ``env``.
      ConfigError: the models learn rewards and the file has none.
    """
    if cfg.data.path is None or cfg.data.mode != "seed":
        return None
    path = cfg.data.path
    t = load_transitions(path, drop_nonfinite=cfg.data.drop_nonfinite)
    check_fits_env(t, env, path)
    if settings.learn_reward and t.reward is None:
        raise ConfigError("world_model.reward", f"the models learn rewards from their buffers; {path} has no "
                                                "'reward' array")
    return buffer_items(t._replace(action=env_action_features(t, env, path)))
