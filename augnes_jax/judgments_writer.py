"""Writing the judgment log: :class:`JudgmentWriter` appends records, :func:`make_judgments`
turns per-episode arrays into them (host shell).

- :class:`JudgmentWriter` appends batches of judgments, flushing and fsyncing once per batch.
  On open it repairs a torn last line left by a crash, so a crash costs at most that line.
- :func:`make_judgments` turns per-episode arrays into judgment records, with regret and
  advantage from :mod:`augnes_jax.regret`.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from augnes_jax.clock import utc_now
from augnes_jax.judgments_schema import (
    FIELD_ORDER,
    SCHEMA_VERSION,
    JudgmentError,
    check_record,
    is_json_object,
    record_json,
)
from augnes_jax.regret import episode_advantage, episode_regret

__all__ = ["JudgmentWriter", "make_judgments"]


class JudgmentWriter:
    """Appends judgments to a JSONL file; use as a context manager.

    On open, a last line without its newline (a crash mid-write) is repaired: if it is a
    complete JSON object it gets its newline, otherwise it is truncated away with a warning
    naming the file and line. :meth:`append` checks every record first (nothing is written if
    one is bad), then writes the batch, flushes and fsyncs once.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._f = None
        self.records_written = 0

    def open(self) -> JudgmentWriter:
        """Returns self after opening the file for appending and repairing a torn last line."""
        if self._f is not None:
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        f = open(self.path, "a+b")  # noqa: SIM115  (closed in close())
        try:
            self._repair(f)
        except BaseException:
            f.close()
            raise
        self._f = f
        return self

    def _repair(self, f) -> None:
        size = f.seek(0, os.SEEK_END)
        if size == 0:
            return
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return
        # Walk back to the last newline in blocks, so a long file is not read whole.
        pos, block, tail = size, 1 << 16, b""
        last_nl = -1
        while pos > 0:
            start = max(0, pos - block)
            f.seek(start)
            data = f.read(pos - start)
            i = data.rfind(b"\n")
            if i >= 0:
                last_nl = start + i
                tail = data[i + 1 :] + tail
                break
            tail = data + tail
            pos = start
        if is_json_object(tail):
            f.write(b"\n")
        else:
            f.seek(0)
            lineno = 1
            while True:
                data = f.read(1 << 24)
                if not data:
                    break
                lineno += data.count(b"\n")
            f.truncate(last_nl + 1)
            warnings.warn(
                f"{self.path}:{lineno}: torn last line ({len(tail)} bytes) removed before appending",
                stacklevel=3,
            )
        f.flush()
        os.fsync(f.fileno())

    def append(self, records: Iterable[dict]) -> int:
        """Returns the number of records written after appending them and fsyncing once."""
        if self._f is None:
            self.open()
        records = list(records)
        lines = []
        for i, rec in enumerate(records):
            try:
                check_record(rec)
                lines.append(record_json(rec))
            except (ValueError, TypeError) as e:
                raise JudgmentError(f"{self.path}: record {i} of the batch: {e}") from None
        if not lines:
            return 0
        self._f.write(("\n".join(lines) + "\n").encode("utf-8"))
        self._f.flush()
        os.fsync(self._f.fileno())
        self.records_written += len(lines)
        return len(lines)

    def close(self) -> None:
        """Returns nothing; fsyncs and closes the file (idempotent)."""
        if self._f is not None:
            try:
                self._f.flush()
                os.fsync(self._f.fileno())
            finally:
                self._f.close()
                self._f = None

    def __enter__(self) -> JudgmentWriter:
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()


def _json_floats(x: Any, n: int, name: str) -> list[float]:
    """Returns ``x`` as ``n`` Python floats printed as short as their precision allows."""
    arr = np.asarray(x)
    if arr.ndim == 0:
        arr = np.broadcast_to(arr, (n,))
    if arr.shape != (n,):
        raise ValueError(f"make_judgments: {name} must have shape [{n}], got {arr.shape}")
    if arr.dtype.kind not in "fiu":
        raise ValueError(f"make_judgments: {name} must be numeric, got dtype {arr.dtype}")
    bad = ~np.isfinite(arr)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"make_judgments: {name}[{i}] is {arr[i]}, not a finite number")
    if arr.dtype.kind == "f" and arr.dtype.itemsize <= 4:
        # Shortest float32 decimal, so the log holds the digits the value has and no more.
        return arr.astype(np.float32).astype(str).astype(np.float64).tolist()
    return arr.astype(np.float64).tolist()


def _column(x: Any, n: int, name: str, kind: str) -> list | None:
    if x is None:
        return None
    arr = np.asarray(x)
    if arr.ndim == 0:
        val = arr.item()
        return [val] * n
    if arr.shape != (n,):
        raise ValueError(f"make_judgments: {name} must be a scalar or [{n}], got {arr.shape}")
    if kind == "int":
        return [int(v) for v in arr.tolist()]
    return [None if v is None else str(v) for v in arr.tolist()]


def make_judgments(
    goal_id: Any,
    reward: Any,
    optimal: Any,
    baseline: Any = None,
    episode: Any = None,
    *,
    run: str | None = None,
    variant: Any = None,
    hidden_dim: Any = None,
    buffer_size: Any = None,
    seed: Any = None,
    epoch: Any = None,
    strategy: Any = None,
    oracle: Any = None,
    ts: str | None = None,
    num_layers: Any = None,
) -> list[dict]:
    """Returns one judgment record (a dict, DESIGN.md field names) per episode.

    Args:
      goal_id: goal of each episode ``[N]`` (non-negative ints).
      reward: episode returns ``[N]``.
      optimal: the goal's optimal return for each episode ``[N]``.
      baseline: optional baseline return per episode ``[N]``; gives ``advantage``.
      episode: optional episode index ``[N]``.
      run, variant, hidden_dim, buffer_size, seed, epoch, strategy, oracle: scalars or ``[N]``
        arrays; None leaves the field out.
      ts: timestamp for the whole batch; defaults to now (UTC).
      num_layers: the world model's depth, scalar or ``[N]`` (a sweep over depths); written
        after the known fields, as an extra field, when given.

    ``regret = optimal - reward`` and ``advantage = reward - baseline`` are computed in the
    inputs' precision. float32 inputs are written with their shortest float32 decimals.
    """
    gid = np.asarray(goal_id)
    if gid.ndim != 1:
        raise ValueError(f"make_judgments: goal_id must be [N], got shape {gid.shape}")
    n = gid.shape[0]
    if n and (gid.dtype.kind not in "iu" or gid.min() < 0):
        raise ValueError("make_judgments: goal_id must hold non-negative integers")
    rew = np.asarray(reward)
    opt = np.asarray(optimal)
    dtype = np.result_type(rew.dtype, opt.dtype, np.float32)
    cols: dict[str, list | None] = {
        "goal_id": [int(v) for v in gid.tolist()],
        "reward": _json_floats(rew.astype(dtype), n, "reward"),
        "optimal_reward": _json_floats(opt.astype(dtype), n, "optimal"),
        "regret": _json_floats(episode_regret(rew.astype(dtype), opt.astype(dtype)), n, "regret"),
        "baseline_reward": None,
        "advantage": None,
    }
    if baseline is not None:
        base = np.asarray(baseline)
        bdtype = np.result_type(rew.dtype, base.dtype, np.float32)
        cols["baseline_reward"] = _json_floats(base.astype(bdtype), n, "baseline")
        adv = episode_advantage(rew.astype(bdtype), base.astype(bdtype))
        cols["advantage"] = _json_floats(adv, n, "advantage")
    cols["episode"] = _column(episode, n, "episode", "int")
    for name, val in (("hidden_dim", hidden_dim), ("buffer_size", buffer_size), ("seed", seed),
                      ("epoch", epoch)):  # fmt: skip
        cols[name] = _column(val, n, name, "int")
    for name, val in (("run", run), ("variant", variant), ("strategy", strategy),
                      ("oracle", oracle)):  # fmt: skip
        cols[name] = _column(val, n, name, "str")
    cols["schema"] = [SCHEMA_VERSION] * n
    cols["ts"] = [ts if ts is not None else utc_now()] * n
    cols["num_layers"] = _column(num_layers, n, "num_layers", "int")
    names = [k for k in (*FIELD_ORDER, "num_layers") if cols.get(k) is not None]
    rows = zip(*(cols[k] for k in names), strict=True)
    return [dict(zip(names, vals, strict=True)) for vals in rows]
