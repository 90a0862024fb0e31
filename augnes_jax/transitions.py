"""Checking transitions, their held-out split and their contiguous sequences.

A transitions file holds one row per transition (see :mod:`augnes_jax.transitions_source` for
the ``.npz`` and Parquet layouts):

- ``obs`` ``[N, d]`` and ``next_obs`` ``[N, d]``: numbers.
- ``action`` ``[N, a]`` numbers, or ``[N]`` non-negative integers for a discrete action space:
  these are one-hot encoded over ``max(action) + 1`` actions (the same features
  :meth:`Environment.action_features` gives a discrete environment's world model).
- optional ``goal_id`` ``[N]`` non-negative integers, ``reward`` ``[N]``, ``terminated`` ``[N]``
  and ``episode_id`` ``[N]`` integers. Rows of one episode are in time order.

Anything else is a :class:`DataError` whose message is one line naming the file, the array and
the row. Rows holding NaN or Inf are refused with their count, or dropped on request. The checks
run on chunks of rows (:class:`RowChecks`), so a file need not fit in memory to be checked;
:func:`load_transitions` reads a whole ``.npz`` file with ``numpy.load`` for files that fit.
"""

from __future__ import annotations

import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from augnes_jax.errors import UserError

__all__ = ["ArraySpec", "DataError", "RowChecks", "Transitions", "check_specs", "contiguous_windows",
           "held_out_units", "load_transitions", "split_by_episode", "to_transitions", "window_layout",
           "window_starts", "windows_at"]

REQUIRED = ("obs", "action", "next_obs")
OPTIONAL = ("goal_id", "reward", "terminated", "episode_id")


class DataError(UserError, ValueError):
    """A transitions file the sweep cannot use; ``str(err)`` is one line naming array and row."""


class ArraySpec(NamedTuple):
    """An array's dtype and shape as a file header states them, before any row is read."""

    dtype: np.dtype
    shape: tuple[int, ...]

    @property
    def ndim(self) -> int:
        """Returns the number of dimensions."""
        return len(self.shape)


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


def check_specs(path: Path, arrays: Mapping[str, Any]) -> int:
    """Returns N after checking presence, dtype, rank and length of every array.

    `arrays` maps names to arrays or to :class:`ArraySpec` (anything with ``dtype``, ``shape``
    and ``ndim``): the checks read no rows.
    """
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
    for name in _integer_arrays(arrays):
        if not np.issubdtype(arrays[name].dtype, np.integer):
            raise DataError(f"data error: {path}: array {name!r} of shape [N] must hold integers, "
                            f"got dtype {arrays[name].dtype}")
    return n


def _integer_arrays(arrays: Mapping[str, Any]) -> list[str]:
    names = ["goal_id", "episode_id"] + (["action"] if arrays["action"].ndim == 1 else [])
    return [name for name in names if name in arrays]


class RowChecks:
    """The row-by-row checks of one file, fed chunk by chunk in file order.

    :meth:`add` returns each chunk's NaN/Inf rows; :meth:`finish` raises the first problem in
    the order :func:`load_transitions` always reported them (negative ids, then NaN/Inf rows).
    Over the rows that are kept (finite, or all of them) it counts the rows and finds the largest
    goal id and discrete action.
    """

    def __init__(self, path: Path, arrays: Mapping[str, Any]):
        self.path = path
        self.integer_names = _integer_arrays(arrays)
        self.negative: dict[str, tuple[int, int]] = {}  # first negative value per array: (row, value)
        self.bad_rows = 0
        self.first_bad: tuple[int, str] | None = None
        self.kept_rows = 0
        self.max_goal = -1
        self.max_action = -1

    def add(self, start: int, arrays: Mapping[str, np.ndarray]) -> np.ndarray:
        """Checks rows ``start ...`` (`arrays` holds the chunk); returns their NaN/Inf rows ``bool[n]``."""
        for name in self.integer_names:
            x = arrays[name]
            if name != "episode_id" and name not in self.negative and (x < 0).any():
                row = int(np.flatnonzero(x < 0)[0])
                self.negative[name] = (start + row, int(x[row]))
        bad = np.zeros(arrays["obs"].shape[0], bool)
        for name in REQUIRED + OPTIONAL:
            x = arrays.get(name)
            if x is None or not np.issubdtype(x.dtype, np.floating):
                continue
            rows = ~np.isfinite(x.reshape(x.shape[0], -1)).all(axis=1)
            if rows.any():
                row = start + int(np.flatnonzero(rows)[0])
                if self.first_bad is None or row < self.first_bad[0]:
                    self.first_bad = (row, name)
            bad |= rows
        self.bad_rows += int(bad.sum())
        good = ~bad
        self.kept_rows += int(good.sum())
        if good.any():
            if "goal_id" in arrays:
                self.max_goal = max(self.max_goal, int(arrays["goal_id"][good].max()))
            if arrays["action"].ndim == 1:
                self.max_action = max(self.max_action, int(arrays["action"][good].max()))
        return bad

    def finish(self, drop_nonfinite: bool) -> None:
        """Raises :class:`DataError` for the file's first problem, if any."""
        path = self.path
        for name in self.integer_names:
            if name in self.negative:
                row, value = self.negative[name]
                raise DataError(f"data error: {path}: array {name!r} row {row}: negative value {value}")
        if self.bad_rows:
            first = f"array {self.first_bad[1]!r} row {self.first_bad[0]}"
            if not drop_nonfinite:
                raise DataError(f"data error: {path}: {self.bad_rows} rows hold NaN or Inf (first: {first}); "
                                "set data.drop_nonfinite=true to drop them")
            if not self.kept_rows:
                raise DataError(f"data error: {path}: every row holds NaN or Inf (first: {first})")

    @property
    def num_actions(self) -> int | None:
        """Returns the one-hot width of discrete actions (None for ``[N, a]`` actions)."""
        return self.max_action + 1 if "action" in self.integer_names else None

    @property
    def num_goals(self) -> int:
        """Returns ``max(goal_id) + 1`` over the kept rows (1 without goal ids)."""
        return self.max_goal + 1 if self.max_goal >= 0 else 1


def to_transitions(arrays: Mapping[str, np.ndarray], num_actions: int | None) -> Transitions:
    """Returns checked rows as :class:`Transitions` (one-hot actions over `num_actions` when discrete)."""
    action = arrays["action"]
    if num_actions is not None:
        action = np.eye(num_actions, dtype=np.float32)[action]
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


def load_transitions(path: str | Path, *, drop_nonfinite: bool = False) -> Transitions:
    """Returns the checked transitions of the ``.npz`` file at `path`, read whole.

    Args:
      path: the file.
      drop_nonfinite: drop rows holding NaN or Inf instead of refusing the file.

    Raises:
      DataError: a missing array, mismatched lengths, wrong dimensions, a value of the wrong kind,
        or NaN/Inf rows (unless dropped); one line naming the array and the row.
    """
    path = Path(path)
    arrays = _open(path)
    check_specs(path, arrays)
    checks = RowChecks(path, arrays)
    bad = checks.add(0, arrays)
    checks.finish(drop_nonfinite)
    arrays = {name: x[~bad] if bad.any() else x for name, x in arrays.items() if name in REQUIRED + OPTIONAL}
    return to_transitions(arrays, checks.num_actions)


def held_out_units(num_units: int, holdout_fraction: float, seed: int, what: str) -> np.ndarray:
    """Returns the indices of the held-out units (episodes or rows) among `num_units`.

    ``round(holdout_fraction * num_units)``, at least one and at most all but one, drawn without
    replacement with ``numpy`` seeded by `seed`.

    Raises:
      DataError: fewer than two units to split.
    """
    if num_units < 2:
        raise DataError(f"data error: {num_units} {what} cannot be split into training and held-out parts")
    count = min(max(int(round(holdout_fraction * num_units)), 1), num_units - 1)
    return np.random.default_rng(seed).choice(num_units, size=count, replace=False)


def split_by_episode(t: Transitions, holdout_fraction: float, seed: int) -> tuple[Transitions, Transitions]:
    """Returns ``(train, held_out)``: whole episodes held out when ``episode_id`` is given.

    The held-out episodes (rows when there are no episode ids) are :func:`held_out_units` of the
    sorted distinct episode ids. Both parts keep the file's row order, so an episode's rows stay
    in time order.

    Raises:
      DataError: fewer than two episodes (or rows) to split.
    """
    if t.episode_id is not None:
        units, inverse = np.unique(t.episode_id, return_inverse=True)
        what = "episodes"
    else:
        units, inverse = np.arange(t.num_rows), np.arange(t.num_rows)
        what = "rows"
    held = np.isin(inverse, held_out_units(len(units), holdout_fraction, seed, what))
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
    return windows_at(t, window_starts(t, length), length)


def windows_at(t: Transitions, starts: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray]:
    """Returns the sequences ``obs_seq [M, length + 1, d]``, ``action_seq [M, length, a]`` starting at `starts`."""
    d, a = t.obs.shape[1], t.action.shape[1]
    if not len(starts):
        return np.zeros((0, length + 1, d), np.float32), np.zeros((0, length, a), np.float32)
    idx = starts[:, None] + np.arange(length)[None]
    obs_seq = np.concatenate([t.obs[idx], t.next_obs[idx[:, -1]][:, None]], axis=1)
    return obs_seq, t.action[idx]


def window_starts(t: Transitions, length: int) -> np.ndarray:
    """Returns the first rows ``int[M]`` of :func:`contiguous_windows`' sequences."""
    return window_layout(t, length)[0]


def window_layout(t: Transitions, length: int) -> tuple[np.ndarray, int]:
    """Returns :func:`window_starts` and the first row of the last run's unfinished remainder.

    Rows from that one on (fewer than `length`) would start the next window if more linked rows
    followed them: a reader of rows in chunks carries them over to the next chunk.
    """
    n = t.num_rows
    if t.episode_id is None or length < 1 or n == 0:
        return np.zeros(0, np.int64), n
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
    starts = np.flatnonzero((pos % length == 0) & (pos + length <= run_len[run_id]))
    rest = int(first_row[-1] + run_len[-1] // length * length)
    return starts, rest
