"""A transitions file in two passes over its chunks: check and split, then keep what a data run uses.

The host never holds the whole file. :func:`scan_file` reads it chunk by chunk once and runs every
check of :func:`augnes_jax.transitions.load_transitions` (same messages, same first row), counts
the rows and finds the distinct episode ids with their row counts. :func:`plan_split` then draws
the held-out part exactly as :func:`augnes_jax.transitions.split_by_episode` does on the whole
file: whole episodes (sorted distinct ids, seeded) when ids are given, else rows. :func:`read_kept`
reads the file a second time and keeps only:

- the last ``keep_train_rows`` training rows, in file order (a ring buffer of that size or less
  filled with every training row in order holds exactly these);
- the held-out rows used for evaluation: all of them, or a seeded uniform sample of
  ``max_eval_rows`` of them in file order when there are more;
- the held-out k-step sequences: all of them, or a seeded uniform sample (reservoir sampling) of
  ``max_eval_rows // length`` of them in file order when there are more.

Beyond those and one chunk the host holds the distinct episode ids with their counts (16 bytes
per episode), or without episode ids one byte per row marking the held-out rows (and, while they
are drawn, NumPy's permutation of the row numbers).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import NamedTuple

import numpy as np

from augnes_jax.transitions import (
    DataError,
    RowChecks,
    Transitions,
    check_specs,
    held_out_units,
    to_transitions,
    window_layout,
    windows_at,
)
from augnes_jax.transitions_source import open_source

__all__ = ["FileScan", "KeptData", "SplitPlan", "plan_split", "read_kept", "scan_file"]

EVAL_SAMPLE, WINDOW_SAMPLE = 1, 2  # seed streams of the evaluation samples


@dataclasses.dataclass(frozen=True)
class FileScan:
    """What the first pass learned about a checked file."""

    path: Path
    names: tuple[str, ...]  # the arrays the file has
    file_rows: int
    rows: int  # rows kept (all, or the finite ones with drop_nonfinite)
    obs_dim: int
    action_dim: int  # action features: the one-hot width for discrete actions
    num_actions: int | None  # discrete actions' one-hot width, None for [N, a] actions
    num_goals: int
    episodes: tuple[np.ndarray, np.ndarray] | None  # sorted distinct episode ids and their kept rows
    file_row_bytes: int  # bytes of one row of the file's arrays as stored
    drop_nonfinite: bool


class _EpisodeCounts:
    """Distinct ids and their counts, merged from chunks as they come (amortised linear)."""

    def __init__(self):
        self.ids, self.counts = np.zeros(0, np.int64), np.zeros(0, np.int64)
        self.pending: list[tuple[np.ndarray, np.ndarray]] = []
        self.pending_size = 0

    def add(self, ids: np.ndarray) -> None:
        self.pending.append(np.unique(ids.astype(np.int64), return_counts=True))
        self.pending_size += len(self.pending[-1][0])
        if self.pending_size > max(len(self.ids), 1 << 16):
            self._merge()

    def _merge(self) -> None:
        ids = np.concatenate([self.ids] + [p[0] for p in self.pending])
        counts = np.concatenate([self.counts] + [p[1] for p in self.pending])
        self.ids, inverse = np.unique(ids, return_inverse=True)
        self.counts = np.bincount(inverse, weights=counts, minlength=len(self.ids)).astype(np.int64)
        self.pending, self.pending_size = [], 0

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        self._merge()
        return self.ids, self.counts


def scan_file(path: str | Path, *, chunk_rows: int, drop_nonfinite: bool) -> FileScan:
    """Reads the file once, `chunk_rows` rows at a time, and checks it.

    Raises:
      DataError: as :func:`augnes_jax.transitions.load_transitions` would for the same file.
    """
    path = Path(path)
    source = open_source(path)
    check_specs(path, source.specs)
    checks = RowChecks(path, source.specs)
    episodes = _EpisodeCounts() if "episode_id" in source.specs else None
    for start, arrays in source.chunks(chunk_rows):
        bad = checks.add(start, arrays)
        if episodes is not None:
            episodes.add(arrays["episode_id"][~bad])
    checks.finish(drop_nonfinite)
    specs = source.specs
    action_dim = checks.num_actions if checks.num_actions is not None else specs["action"].shape[1]
    row_bytes = sum(s.dtype.itemsize * int(np.prod(s.shape[1:], dtype=np.int64)) for s in specs.values())
    return FileScan(path=path, names=tuple(specs), file_rows=source.num_rows, rows=checks.kept_rows,
                    obs_dim=specs["obs"].shape[1], action_dim=int(action_dim), num_actions=checks.num_actions,
                    num_goals=checks.num_goals, episodes=None if episodes is None else episodes.result(),
                    file_row_bytes=int(row_bytes), drop_nonfinite=drop_nonfinite)


@dataclasses.dataclass(frozen=True)
class SplitPlan:
    """The held-out part of a scanned file: episode ids, or a mask over the kept rows."""

    held_ids: np.ndarray | None  # held-out episode ids (sorted), with episode ids
    held_rows_mask: np.ndarray | None  # bool [rows], without episode ids
    train_rows: int
    held_out_rows: int

    @property
    def split(self) -> str:
        """Returns ``"episode"`` or ``"row"``."""
        return "episode" if self.held_ids is not None else "row"

    def held(self, t: Transitions, offset: int) -> np.ndarray:
        """Returns which rows of `t` (kept rows ``offset ...``) are held out, ``bool[n]``."""
        if self.held_ids is not None:
            return np.isin(t.episode_id, self.held_ids)
        return self.held_rows_mask[offset:offset + t.num_rows]


def plan_split(scan: FileScan, holdout_fraction: float, seed: int) -> SplitPlan:
    """Returns the held-out part :func:`~augnes_jax.transitions.split_by_episode` would choose.

    Raises:
      DataError: fewer than two episodes (or rows) to split.
    """
    if scan.episodes is not None:
        ids, counts = scan.episodes
        units = np.sort(held_out_units(len(ids), holdout_fraction, seed, "episodes"))
        held = int(counts[units].sum())
        return SplitPlan(held_ids=ids[units], held_rows_mask=None, train_rows=scan.rows - held, held_out_rows=held)
    mask = np.zeros(scan.rows, bool)
    mask[held_out_units(scan.rows, holdout_fraction, seed, "rows")] = True
    held = int(mask.sum())
    return SplitPlan(held_ids=None, held_rows_mask=mask, train_rows=scan.rows - held, held_out_rows=held)


class KeptData(NamedTuple):
    """What a data run keeps of a file after :func:`read_kept`."""

    train: Transitions  # the last training rows, in file order
    held_out: Transitions  # the held-out rows used for evaluation, in file order
    obs_seq: np.ndarray  # [M, length + 1, d] held-out sequences used
    action_seq: np.ndarray  # [M, length, a]
    goal_seq: np.ndarray  # [M] each sequence's goal (its first row's)
    windows: int  # held-out sequences in all


def _empty(scan: FileScan, n: int) -> Transitions:
    def opt(name, dtype):
        return np.empty(n, dtype) if name in scan.names else None

    d, a = scan.obs_dim, scan.action_dim
    return Transitions(obs=np.empty((n, d), np.float32), action=np.empty((n, a), np.float32),
                       next_obs=np.empty((n, d), np.float32), goal_id=np.empty(n, np.int32),
                       reward=opt("reward", np.float32), terminated=opt("terminated", bool),
                       episode_id=opt("episode_id", np.int64))


def _put(dst: Transitions, at: np.ndarray, src: Transitions) -> None:
    for x, y in zip(dst, src, strict=True):
        if x is not None:
            x[at] = y


def _concat(a: Transitions, b: Transitions) -> Transitions:
    return Transitions(*(None if x is None else np.concatenate([x, y]) for x, y in zip(a, b, strict=True)))


class _Windows:
    """The held-out k-step sequences of rows fed in order; a uniform sample of `cap` when more."""

    def __init__(self, length: int, cap: int, seed: int):
        self.length, self.cap = length, cap
        self.rng = np.random.default_rng([seed, WINDOW_SAMPLE])
        self.carry: Transitions | None = None  # the last run's rows not yet in a window
        self.seen = 0
        self.parts: list[tuple[np.ndarray, ...]] = []  # (order, obs_seq, action_seq, goal) while filling
        self.store: list[np.ndarray] | None = None  # the same four arrays once `cap` are held

    def add(self, t: Transitions) -> None:
        if self.carry is not None:
            t = _concat(self.carry, t)
        starts, rest = window_layout(t, self.length)
        self.carry = t.take(np.arange(rest, t.num_rows))
        if len(starts):
            obs_seq, action_seq = windows_at(t, starts, self.length)
            order = self.seen + np.arange(len(starts))
            self.seen += len(starts)
            self._offer(order, obs_seq, action_seq, t.goal_id[starts])

    def _offer(self, order, *items) -> None:
        if self.store is None:
            fill = max(0, min(len(order), self.cap - sum(len(p[0]) for p in self.parts)))
            self.parts.append((order[:fill], *(x[:fill] for x in items)))
            order, items = order[fill:], tuple(x[fill:] for x in items)
            if not len(order):
                return
            self.store = [np.concatenate(xs) for xs in zip(*self.parts, strict=True)]
            self.parts = []
        # reservoir sampling: the i-th sequence replaces a random held one with probability cap / (i + 1)
        slot = self.rng.integers(0, order + 1)
        hit = np.flatnonzero(slot < self.cap)
        if len(hit):
            last = len(hit) - 1 - np.unique(slot[hit][::-1], return_index=True)[1]  # a later one wins a slot
            for held, new in zip(self.store, (order, *items), strict=True):
                held[slot[hit[last]]] = new[hit[last]]

    def result(self, d: int, a: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        parts = self.store
        if parts is None and self.parts:
            parts = [np.concatenate(xs) for xs in zip(*self.parts, strict=True)]
        if parts is None:
            return (np.zeros((0, self.length + 1, d), np.float32), np.zeros((0, self.length, a), np.float32),
                    np.zeros(0, np.int32))
        rank = np.argsort(parts[0], kind="stable")
        return parts[1][rank], parts[2][rank], parts[3][rank]


def read_kept(scan: FileScan, plan: SplitPlan, *, keep_train_rows: int, max_eval_rows: int, window_length: int,
              chunk_rows: int, seed: int) -> KeptData:
    """Reads the file a second time and returns what a data run keeps of it (see the module doc)."""
    source = open_source(scan.path)
    check_specs(scan.path, source.specs)
    if source.num_rows != scan.file_rows or tuple(source.specs) != scan.names:
        raise DataError(f"data error: {scan.path}: the file changed while it was being read")
    keep = min(keep_train_rows, plan.train_rows)
    first_kept = plan.train_rows - keep
    train, evals = _empty(scan, keep), _empty(scan, min(max_eval_rows, plan.held_out_rows))
    pick = None
    if plan.held_out_rows > max_eval_rows:
        rng = np.random.default_rng([seed, EVAL_SAMPLE])
        pick = np.sort(rng.choice(plan.held_out_rows, size=max_eval_rows, replace=False))
    windows = _Windows(window_length, max(1, max_eval_rows // window_length), seed)
    checks = RowChecks(scan.path, source.specs)
    offset = seen_train = seen_held = 0
    for start, arrays in source.chunks(chunk_rows):
        if scan.drop_nonfinite:
            good = ~checks.add(start, arrays)
            arrays = {name: x[good] for name, x in arrays.items()}
        t = to_transitions(arrays, scan.num_actions)
        held = plan.held(t, offset)
        offset += t.num_rows
        part = t.take(~held)
        index = seen_train + np.arange(part.num_rows)
        seen_train += part.num_rows
        wanted = index >= first_kept
        _put(train, index[wanted] - first_kept, part.take(wanted))
        part = t.take(held)
        index = seen_held + np.arange(part.num_rows)
        seen_held += part.num_rows
        if pick is None:
            _put(evals, index, part)
        else:
            at = np.minimum(np.searchsorted(pick, index), len(pick) - 1)
            wanted = pick[at] == index
            _put(evals, at[wanted], part.take(wanted))
        windows.add(part)
    obs_seq, action_seq, goal_seq = windows.result(scan.obs_dim, scan.action_dim)
    return KeptData(train=train, held_out=evals, obs_seq=obs_seq, action_seq=action_seq, goal_seq=goal_seq,
                    windows=windows.seen)

