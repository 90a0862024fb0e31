"""Following ``judgments.jsonl`` while it grows: each poll parses only the lines appended since.

:class:`JudgmentTail` remembers the byte offset after the last complete line it has parsed. A
poll reads from there to the end of the file, parses the complete lines with the judgment log's
own reader (:func:`augnes_jax.judgments_reader.parse_lines`) and returns them as
:class:`NewJudgments` columns. A last line without its newline is left for a later poll unless
it already is a complete JSON object (a finished log whose writer left out the final newline).

A malformed line is logged once with its line number and skipped; the lines after it still
count. When the file is replaced (another inode, as a ``--resume`` writes it) or shrinks below
the offset, the tail starts over and says so with ``reset=True``, so the caller drops what it
had counted.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from augnes_jax.judgments_columns import Judgments
from augnes_jax.judgments_reader import parse_lines
from augnes_jax.judgments_schema import JudgmentError, check_record, is_json_object
from augnes_jax.strategy_stats import experiment_keys

__all__ = ["JudgmentTail", "NewJudgments"]

log = logging.getLogger(__name__)

_MAX_READ = 1 << 26  # bytes parsed per poll at most; the rest waits for the next poll


@dataclasses.dataclass
class NewJudgments:
    """Judgments appended since the previous poll, as columns of equal length ``[N]``.

    ``regret`` is the stated regret, else ``optimal_reward - reward``; ``advantage`` is NaN where
    a line gives neither it nor a baseline. Integer columns hold -1 where a line lacks the field,
    ``variant`` holds the line's ``variant``, else its ``strategy``, else ``"all"`` (the name its
    experiment has in ``strategy_stats.json``). ``reset`` is True when the file was replaced or
    truncated and these rows start it over.
    """

    goal_id: np.ndarray
    regret: np.ndarray
    advantage: np.ndarray
    epoch: np.ndarray
    hidden_dim: np.ndarray
    buffer_size: np.ndarray
    seed: np.ndarray
    variant: list
    reset: bool = False

    def __len__(self) -> int:
        """Returns the number of judgments."""
        return int(self.goal_id.shape[0])


def _empty(reset: bool) -> NewJudgments:
    ints = np.zeros(0, np.int64)
    floats = np.zeros(0, np.float64)
    return NewJudgments(ints, floats, floats, ints, ints, ints, ints, [], reset)


class JudgmentTail:
    """Parses the judgments appended to one file since the last :meth:`poll`.

    Args:
      path: the ``judgments.jsonl`` to follow; it may not exist yet.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.offset = 0  # bytes consumed: whole lines only
        self.lines = 0  # lines consumed (blank ones included), for line numbers in messages
        self.rows = 0  # judgments returned since the last reset
        self._ino: int | None = None
        self._owed_newline = False  # the last line was taken without its newline

    def poll(self) -> NewJudgments:
        """Returns the judgments appended since the previous poll (none if the file is missing).

        Raises:
          OSError: the file exists but cannot be read.
        """
        try:
            f = open(self.path, "rb")  # noqa: SIM115  (closed below)
        except FileNotFoundError:
            reset = self._ino is not None
            self._start_over(None)
            return _empty(reset)
        with f:
            st = os.fstat(f.fileno())
            reset = False
            if self._ino is not None and (st.st_ino != self._ino or st.st_size < self.offset):
                log.info("%s was replaced or truncated; counting its judgments again", self.path)
                reset = True
            if reset or self._ino is None:
                self._start_over(st.st_ino)
            if st.st_size <= self.offset:
                return _empty(reset)
            f.seek(self.offset)
            want = min(st.st_size - self.offset, _MAX_READ)
            buf = bytearray(want + 1)  # room for a newline the file still owes
            got = f.readinto(memoryview(buf)[:want])
        skip = 0
        if self._owed_newline and got:
            # The newline of the line taken last time has arrived: it ends that line, not a new one.
            skip = 1 if buf[0] == 10 else 0
            self._owed_newline = False
            if skip:
                del buf[0]
                buf.append(0)
                got -= 1
        hi, owed = self._complete_end(buf, got)
        self.offset += skip
        if hi == 0:
            return _empty(reset)
        out = self._parse(buf, hi)
        out.reset = reset
        self.offset += hi - owed
        self._owed_newline = bool(owed)
        self.rows += len(out)
        return out

    def _start_over(self, ino: int | None) -> None:
        self._ino = ino
        self.offset = self.lines = self.rows = 0
        self._owed_newline = False

    def _complete_end(self, buf: bytearray, got: int) -> tuple[int, int]:
        """Returns ``(end, owed)``: ``buf[:end]`` holds complete lines. A newline-less complete
        JSON object at the end of the file counts as one: its newline is written into ``buf``
        and ``owed`` is 1 (that byte is not in the file)."""
        end = buf.rfind(b"\n", 0, got) + 1
        if end == got:
            return end, 0
        tail = bytes(buf[end:got])
        if got < _MAX_READ and tail.strip():
            if is_json_object(tail):
                buf[got] = 10
                return got + 1, 1
        return end, 0

    def _parse(self, buf: bytearray, hi: int) -> NewJudgments:
        data = bytes(buf[:hi])
        first = self.lines
        self.lines += data.count(b"\n")
        try:
            return _columns(parse_lines(data, path=str(self.path), first_line=first))
        except JudgmentError:
            pass
        # A malformed line: keep the others, name it and skip it.
        return _columns(Judgments.from_checked(self._good_lines(data, first), str(self.path)))

    def _good_lines(self, data: bytes, first: int) -> Iterator[tuple[tuple, dict]]:
        """Yields :func:`check_record` of each good line; logs each bad one (``first`` lines
        precede ``data``) and skips it."""
        for i, line in enumerate(data.split(b"\n")[:-1]):
            if not line.strip():
                continue
            try:
                yield check_record(json.loads(line))
            except (ValueError, TypeError, RecursionError) as e:
                log.warning("%s:%d: %s; line skipped", self.path, first + i + 1, e)


def _columns(j: Judgments) -> NewJudgments:
    if not len(j):
        return _empty(False)
    return NewJudgments(
        goal_id=np.asarray(j.goal_id, np.int64),
        regret=np.asarray(j.regret, np.float64),
        advantage=np.asarray(j.advantage, np.float64),
        epoch=np.asarray(j.epoch, np.int64),
        hidden_dim=np.asarray(j.hidden_dim, np.int64),
        buffer_size=np.asarray(j.buffer_size, np.int64),
        seed=np.asarray(j.seed, np.int64),
        variant=experiment_keys(j),  # the name the variant's experiment has in strategy_stats.json
    )
