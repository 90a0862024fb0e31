"""Reading and checking a transitions file, and splitting it into training and held-out rows.

A transitions file is a NumPy ``.npz`` archive with one row per transition:

- ``obs`` ``[N, d]`` and ``next_obs`` ``[N, d]``: numbers.
- ``action`` ``[N, a]`` numbers, or ``[N]`` non-negative integers for a discrete action space:
  these are one-hot encoded over ``max(action) + 1`` actions (the same features
  :meth:`Environment.action_features` gives a discrete environment's world model).
- optional ``goal_id`` ``[N]`` non-negative integers, ``reward`` ``[N]``, ``terminated`` ``[N]``
  and ``episode_id`` ``[N]`` integers. Rows of one episode are in time order.

Anything else is a :class:`DataError` whose message is one line naming the file, the array and
the row. Rows holding NaN or Inf are refused with their count, or dropped on request.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import NamedTuple

import numpy as np

from augnes_jax.errors import UserError

__all__ = ["DataError", "Transitions", "contiguous_windows", "load_transitions", "split_by_episode", "window_starts"]

REQUIRED = ("obs", "action", "next_obs")
OPTIONAL = ("goal_id", "reward", "terminated", "episode_id")


class DataError(UserError, ValueError):
    """A transitions file the sweep cannot use; ``str(err)`` is one line naming array and row."""


class Transitions(NamedTuple):
    """Checked transitions; every array has the same number of rows ``N``.

    ``action`` holds the world model's action features (float32; one-hot for discrete actions).
    ``goal_id`` is all zeros when the file has none. ``reward``, ``terminated`` and
    ``episode_id`` are None when the file has none.
    """

    obs: np.ndarray  # float32 [N, d]
    action: np.ndarray  # float32 [N, a]
    next_obs: np.ndarray  # float32 [N, d]
    goal_id: np.ndarray  # int32 [N]
    reward: np.ndarray | None  # float32 [N]
    terminated: np.ndarray | None  # bool [N]
    episode_id: np.ndarray | None  # int64 [N]

    @property
    def num_rows(self) -> int:
        """Returns N."""
        return int(self.obs.shape[0])

    @property
    def num_goals(self) -> int:
        """Returns ``max(goal_id) + 1`` (1 without goal ids)."""
        return int(self.goal_id.max()) + 1 if self.num_rows else 1

    def take(self, rows: np.ndarray) -> Transitions:
        """Returns the transitions at `rows` (indices or a boolean mask), in that order."""
        return Transitions(*(None if x is None else x[rows] for x in self))


def _open(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            if not isinstance(archive, np.lib.npyio.NpzFile):
                raise DataError(f"data error: {path}: not an .npz archive")
            return {name: archive[name] for name in archive.files}
    except FileNotFoundError:
        raise DataError(f"data error: {path}: no such file") from None
    except IsADirectoryError:
        raise DataError(f"data error: {path}: is a directory") from None
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as e:
        if isinstance(e, DataError):
            raise
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise DataError(f"data error: {path}: cannot read as .npz ({first})") from None


def _check_shapes(path: Path, arrays: dict[str, np.ndarray]) -> int:
    """Returns N after checking presence, dtype, rank and length of every array."""
    missing = [name for name in REQUIRED if name not in arrays]
    if missing:
        raise DataError(f"data error: {path}: missing array {missing[0]!r} (needs {', '.join(REQUIRED)})")
    for name in REQUIRED + OPTIONAL:
        if name in arrays and not (np.issubdtype(arrays[name].dtype, np.number) or arrays[name].dtype == bool):
            raise DataError(f"data error: {path}: array {name!r} must hold numbers, got dtype {arrays[name].dtype}")
    obs = arrays["obs"]
    if obs.ndim != 2 or obs.shape[1] == 0:
        raise DataError(f"data error: {path}: array 'obs' must be [N, d], got shape {list(obs.shape)}")
    n = obs.shape[0]
    if n == 0:
        raise DataError(f"data error: {path}: array 'obs' has no rows")
    if arrays["next_obs"].ndim != 2 or arrays["next_obs"].shape[1] != obs.shape[1]:
        raise DataError(f"data error: {path}: array 'next_obs' must be [N, {obs.shape[1]}] like obs, "
                        f"got shape {list(arrays['next_obs'].shape)}")
    action = arrays["action"]
    if action.ndim not in (1, 2) or (action.ndim == 2 and action.shape[1] == 0):
        raise DataError(f"data error: {path}: array 'action' must be [N, a] or [N] integers, got shape {list(action.shape)}")
    for name in ("next_obs", "action") + OPTIONAL:
        if name not in arrays:
            continue
        x = arrays[name]
        if name in OPTIONAL and x.ndim != 1:
            raise DataError(f"data error: {path}: array {name!r} must be [N], got shape {list(x.shape)}")
        if x.shape[0] != n:
            row = min(x.shape[0], n)
            raise DataError(f"data error: {path}: array {name!r} has {x.shape[0]} rows, obs has {n} "
                            f"(row {row} is in one and not the other)")
    return n


def _check_integers(path: Path, arrays: dict[str, np.ndarray]) -> None:
    names = ["goal_id", "episode_id"] + (["action"] if arrays["action"].ndim == 1 else [])
    for name in names:
        if name not in arrays:
            continue
        x = arrays[name]
        if not np.issubdtype(x.dtype, np.integer):
            raise DataError(f"data error: {path}: array {name!r} of shape [N] must hold integers, got dtype {x.dtype}")
        if name != "episode_id" and (x < 0).any():
            row = int(np.flatnonzero(x < 0)[0])
            raise DataError(f"data error: {path}: array {name!r} row {row}: negative value {int(x[row])}")


def _nonfinite_rows(arrays: dict[str, np.ndarray]) -> tuple[np.ndarray, str | None]:
    """Returns the rows holding NaN/Inf in any float array, and where the first one is."""
    bad = np.zeros(arrays["obs"].shape[0], bool)
    first: tuple[int, str] | None = None
    for name in REQUIRED + OPTIONAL:
        x = arrays.get(name)
        if x is None or not np.issubdtype(x.dtype, np.floating):
            continue
        rows = ~np.isfinite(x.reshape(x.shape[0], -1)).all(axis=1)
        if rows.any():
            row = int(np.flatnonzero(rows)[0])
            if first is None or row < first[0]:
                first = (row, name)
        bad |= rows
    return bad, (None if first is None else f"array {first[1]!r} row {first[0]}")


def load_transitions(path: str | Path, *, drop_nonfinite: bool = False) -> Transitions:
    """Returns the checked transitions of the ``.npz`` file at `path`.

    Args:
      path: the file.
      drop_nonfinite: drop rows holding NaN or Inf instead of refusing the file.

    Raises:
      DataError: a missing array, mismatched lengths, wrong dimensions, a value of the wrong kind,
        or NaN/Inf rows (unless dropped); one line naming the array and the row.
    """
    path = Path(path)
    arrays = _open(path)
    _check_shapes(path, arrays)
    _check_integers(path, arrays)
    bad, first = _nonfinite_rows(arrays)
    if bad.any():
        if not drop_nonfinite:
            raise DataError(f"data error: {path}: {int(bad.sum())} rows hold NaN or Inf (first: {first}); "
                            "set data.drop_nonfinite=true to drop them")
        if bad.all():
            raise DataError(f"data error: {path}: every row holds NaN or Inf (first: {first})")
        arrays = {name: x[~bad] for name, x in arrays.items() if name in REQUIRED + OPTIONAL}
    action = arrays["action"]
    if action.ndim == 1:
        action = np.eye(int(action.max()) + 1, dtype=np.float32)[action]
    n = arrays["obs"].shape[0]
    return Transitions(
        obs=arrays["obs"].astype(np.float32),
        action=action.astype(np.float32),
        next_obs=arrays["next_obs"].astype(np.float32),
        goal_id=arrays["goal_id"].astype(np.int32) if "goal_id" in arrays else np.zeros(n, np.int32),
        reward=arrays["reward"].astype(np.float32) if "reward" in arrays else None,
        terminated=arrays["terminated"].astype(bool) if "terminated" in arrays else None,
        episode_id=arrays["episode_id"].astype(np.int64) if "episode_id" in arrays else None,
    )


def split_by_episode(t: Transitions, holdout_fraction: float, seed: int) -> tuple[Transitions, Transitions]:
    """Returns ``(train, held_out)``: whole episodes held out when ``episode_id`` is given.

    ``round(holdout_fraction * units)`` episodes (rows when there are no episode ids), at least
    one and at most all but one, are drawn without replacement with ``numpy`` seeded by `seed`.
    Both parts keep the file's row order, so an episode's rows stay in time order.

    Raises:
      DataError: fewer than two episodes (or rows) to split.
    """
    if t.episode_id is not None:
        units, inverse = np.unique(t.episode_id, return_inverse=True)
        what = "episodes"
    else:
        units, inverse = np.arange(t.num_rows), np.arange(t.num_rows)
        what = "rows"
    if len(units) < 2:
        raise DataError(f"data error: {len(units)} {what} cannot be split into training and held-out parts")
    count = min(max(int(round(holdout_fraction * len(units))), 1), len(units) - 1)
    held_units = np.random.default_rng(seed).choice(len(units), size=count, replace=False)
    held = np.isin(inverse, held_units)
    return t.take(~held), t.take(held)


def contiguous_windows(t: Transitions, length: int) -> tuple[np.ndarray, np.ndarray]:
    """Returns non-overlapping sequences of `length` consecutive steps of one episode.

    Consecutive rows are linked when they belong to the same episode, the first does not
    terminate, and its ``next_obs`` is the second's ``obs``. Windows tile each run of linked rows
    from its first row (a shorter remainder is left out). Without episode ids there are none.

    Returns:
      ``obs_seq [M, length + 1, d]`` and ``action_seq [M, length, a]``; the windows' first rows
      are :func:`window_starts`.
    """
    d, a = t.obs.shape[1], t.action.shape[1]
    starts = window_starts(t, length)
    if not len(starts):
        return np.zeros((0, length + 1, d), np.float32), np.zeros((0, length, a), np.float32)
    idx = starts[:, None] + np.arange(length)[None]
    obs_seq = np.concatenate([t.obs[idx], t.next_obs[idx[:, -1]][:, None]], axis=1)
    return obs_seq, t.action[idx]


def window_starts(t: Transitions, length: int) -> np.ndarray:
    """Returns the first rows ``int[M]`` of :func:`contiguous_windows`' sequences."""
    if t.episode_id is None or t.num_rows < length or length < 1:
        return np.zeros(0, np.int64)
    n = t.num_rows
    link = np.zeros(n, bool)  # row i continues into row i + 1
    link[:-1] = (t.episode_id[1:] == t.episode_id[:-1]) & np.all(t.next_obs[:-1] == t.obs[1:], axis=1)
    if t.terminated is not None:
        link &= ~t.terminated
    # runs of linked rows; windows tile each run from its first row
    run_start = np.ones(n, bool)
    run_start[1:] = ~link[:-1]
    run_id = np.cumsum(run_start) - 1
    first_row = np.flatnonzero(run_start)
    run_len = np.diff(np.append(first_row, n))
    pos = np.arange(n) - first_row[run_id]
    return np.flatnonzero((pos % length == 0) & (pos + length <= run_len[run_id]))
