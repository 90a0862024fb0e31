"""A transitions file as the first contents of an environment sweep's replay buffers (``data.mode=seed``).

With ``data.path`` and ``data.mode=seed`` the env sweep starts with every variant's ring buffer
holding the file's rows, added in file order, so a variant keeps its ``buffer_size`` most recent
rows; collection then adds to the same buffers. :func:`seed_items` reads the file in chunks
(:mod:`augnes_jax.transitions_stream`: the host holds only the last ``max(variants.buffer_sizes)``
rows, whatever the file's size) and checks that it fits the environment (observation width,
action features, goal ids) before anything is written; the rows become buffer items with the
data-only sweep's rule (reward and terminated zero where the file has none). A resumed run
restores its buffers from its checkpoint instead.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from augnes_jax.config import Config, ConfigError
from augnes_jax.data_sweep import buffer_items
from augnes_jax.epoch import EpochSettings
from augnes_jax.transitions import DataError
from augnes_jax.transitions_source import open_source
from augnes_jax.transitions_stream import FileScan, SplitPlan, read_kept, scan_file

__all__ = ["Seed", "check_fits_env", "extra_action_columns", "seed_items"]


class Seed(NamedTuple):
    """What the buffers start with: the file's last rows, and how many rows came before them.

    A buffer's write position counts every row ever added, so it starts at ``before``; the kept
    ``items`` then land in the slots that adding every row of the file in order leaves them in.
    """

    before: jax.Array  # int32 scalar
    items: dict[str, jax.Array]  # leaves [N, ...]


def _first_at_least(scan: FileScan, chunk_rows: int, name: str, limit: int) -> tuple[int, int]:
    """Returns the file row and value of the first entry of integer array ``name`` that is ``>= limit``.

    An error path: the file is read again until that row.
    """
    for start, arrays in open_source(scan.path).chunks(chunk_rows):
        hits = np.flatnonzero(arrays[name] >= limit)
        if len(hits):
            return start + int(hits[0]), int(arrays[name][hits[0]])
    raise AssertionError(f"{scan.path}: no {name} at or above {limit}, although the scan found one")


def check_fits_env(scan: FileScan, env: Any, chunk_rows: int) -> None:
    """Checks that the file's observations and goal ids fit ``env``.

    Raises:
      DataError: ``obs`` (and so ``next_obs``) has another width than ``env.obs_dim``, or a goal id
        is not below ``env.num_goals``; one line naming the array (and the row).
    """
    if scan.obs_dim != env.obs_dim:
        raise DataError(f"data error: {scan.path}: array 'obs' has {scan.obs_dim} columns, "
                        f"the env observes {env.obs_dim}")
    if "goal_id" in scan.names and scan.num_goals > env.num_goals:
        row, goal = _first_at_least(scan, chunk_rows, "goal_id", env.num_goals)
        raise DataError(f"data error: {scan.path}: array 'goal_id' row {row}: goal {goal} "
                        f"is not below the env's {env.num_goals} goals")


def extra_action_columns(scan: FileScan, env: Any, chunk_rows: int) -> int:
    """Returns how many zero columns widen the file's action features to the env's.

    A discrete env's integer actions come from the file one-hot over the actions it holds
    (``max + 1``): widened with zero columns to the env's ``num_actions`` they equal what
    :meth:`Environment.action_features` gives for the same action indices.

    Raises:
      DataError: the width does not fit the env; the message names the array (and the row).
    """
    width, want = scan.action_dim, int(env.action_feature_dim)
    if width == want:
        return 0
    if getattr(env, "discrete", False) and scan.num_actions is not None:
        if width < want:
            return want - width
        row, action = _first_at_least(scan, chunk_rows, "action", want)
        raise DataError(f"data error: {scan.path}: array 'action' row {row}: action {action} "
                        f"is outside the env's {want} actions")
    raise DataError(f"data error: {scan.path}: array 'action' gives {width} action features per row, "
                    f"the env takes {want}")


def seed_items(cfg: Config, env: Any, settings: EpochSettings) -> Seed | None:
    """Returns what the sweep's buffers start with, None unless ``data.mode=seed``.

    Args:
      cfg: the sweep's config (``data.path``, ``data.mode``, ``data.drop_nonfinite``,
        ``data.chunk_rows``, ``variants.buffer_sizes``).
      env: the sweep's environment, behind the full interface.
      settings: the sweep's epoch settings; where the world models learn reward and termination
        heads (``learn_reward``), they train on the file's rewards.

    Raises:
      DataError: the file cannot be read or does not fit ``env``.
      ConfigError: the models learn rewards and the file has none.
    """
    d = cfg.data
    if d.path is None or d.mode != "seed":
        return None
    scan = scan_file(d.path, chunk_rows=d.chunk_rows, drop_nonfinite=d.drop_nonfinite)
    check_fits_env(scan, env, d.chunk_rows)
    widen = extra_action_columns(scan, env, d.chunk_rows)
    if settings.learn_reward and "reward" not in scan.names:
        raise ConfigError("world_model.reward", f"the models learn rewards from their buffers; {d.path} has no "
                                                "'reward' array")
    nothing_held = SplitPlan(held_ids=np.zeros(0, np.int64) if scan.episodes is not None else None,
                             held_rows_mask=None if scan.episodes is not None else np.zeros(scan.rows, bool),
                             train_rows=scan.rows, held_out_rows=0)
    kept = read_kept(scan, nothing_held, keep_train_rows=max(cfg.variants.buffer_sizes), max_eval_rows=0,
                     window_length=1, chunk_rows=d.chunk_rows, seed=cfg.seed).train
    if widen:
        kept = kept._replace(action=np.concatenate([kept.action, np.zeros((kept.num_rows, widen), np.float32)], 1))
    return Seed(before=jnp.asarray(scan.rows - kept.num_rows, jnp.int32), items=buffer_items(kept))
