"""The judgment log: one JudgmentMemoryEntry per line of ``judgments.jsonl`` (host shell).

A judgment is the outcome of one episode measured against its goal: ``goal_id``, ``reward``,
the goal's ``optimal_reward`` (and where it came from, ``oracle``), ``regret = optimal_reward -
reward`` and ``advantage = reward - baseline_reward``, plus where it was made (``run``,
``variant``, capacity fields, ``epoch``, ``episode``). DESIGN.md gives the schema.

- :class:`JudgmentWriter` appends batches of judgments, flushing and fsyncing once per batch.
  On open it repairs a torn last line left by a crash, so a crash costs at most that line.
- :func:`make_judgments` turns per-episode arrays into judgment records.
- :func:`read_judgments` returns the log as :class:`Judgments`, columns of NumPy arrays. Extra
  fields of other systems' logs are kept per row. A malformed line raises
  :class:`JudgmentError` naming its line; a torn last line is skipped with a warning.

Reading is vectorised: the file is split into chunks of whole lines, parsed in parallel threads
by :mod:`augnes_jax.judgments_parse` (byte-exact NumPy checks and number parsing, with
:func:`json.loads` and :func:`check_record` for any line it cannot vouch for), and the chunks'
columns are joined here.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import os
import types
import warnings
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from augnes_jax.errors import UserError

if TYPE_CHECKING:
    from augnes_jax.judgments_parse import Part

__all__ = [
    "FLOAT_FIELDS",
    "INT_FIELDS",
    "SCHEMA_VERSION",
    "STR_FIELDS",
    "JudgmentError",
    "JudgmentWriter",
    "Judgments",
    "canonical_record",
    "check_record",
    "make_judgments",
    "read_judgments",
    "utc_now",
]

SCHEMA_VERSION = 1
# Numeric columns; missing values read as NaN.
FLOAT_FIELDS = ("reward", "optimal_reward", "regret", "baseline_reward", "advantage")
# Integer columns (non-negative); missing values read as -1.
INT_FIELDS = ("goal_id", "epoch", "episode", "hidden_dim", "buffer_size", "seed", "schema")
# String columns; missing values read as None.
STR_FIELDS = ("run", "variant", "strategy", "oracle", "ts")
_KNOWN = frozenset(FLOAT_FIELDS + INT_FIELDS + STR_FIELDS)
# The order a record's fields are written in.
_FIELD_ORDER = (
    "schema", "ts", "run", "variant", "hidden_dim", "buffer_size", "seed", "epoch", "episode",
    "strategy", "goal_id", "reward", "optimal_reward", "baseline_reward", "regret", "advantage",
    "oracle",
)  # fmt: skip
_INT64_MAX = 2**63 - 1
_NO_EXTRA: Mapping[str, Any] = types.MappingProxyType({})  # the extra fields of a row without any


class JudgmentError(UserError, ValueError):
    """A bad judgment or judgments file; the message is one line, ``"<path>:<line>: <problem>"``."""


def regret_tolerance(optimal: Any, reward: Any) -> Any:
    """Returns how far a stated regret may be from ``optimal - reward`` (scalar or array).

    ``1e-6 + 1e-6 * max(|optimal|, |reward|)``: loose enough for values written in float32,
    tight enough to catch a regret that contradicts its line.
    """
    return 1e-6 + 1e-6 * np.maximum(np.abs(optimal), np.abs(reward))


def utc_now() -> str:
    """Returns the current time as ISO-8601 UTC with milliseconds, e.g. ``2025-01-02T03:04:05.678Z``."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# --------------------------------------------------------------------------------------------
# The columnar result
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Judgments:
    """A judgments log as columns; every array and list has one entry per judgment (``[N]``).

    Numeric columns are float64 (NaN where absent); integer columns are int64 (-1 where absent).
    ``regret`` is always filled: the stated regret, else ``optimal_reward - reward``.
    ``advantage`` is the stated advantage, else ``reward - baseline_reward``, else NaN. String
    columns are lists (None where absent). ``extra`` holds each row's unknown fields.
    """

    goal_id: np.ndarray
    reward: np.ndarray
    optimal_reward: np.ndarray
    regret: np.ndarray
    baseline_reward: np.ndarray
    advantage: np.ndarray
    epoch: np.ndarray
    episode: np.ndarray
    hidden_dim: np.ndarray
    buffer_size: np.ndarray
    seed: np.ndarray
    schema: np.ndarray
    run: list
    variant: list
    strategy: list
    oracle: list
    ts: list
    extra: list
    path: str = ""

    def __len__(self) -> int:
        """Returns the number of judgments."""
        return int(self.goal_id.shape[0])

    def take(self, rows: np.ndarray | Sequence[int]) -> Judgments:
        """Returns the judgments at ``rows`` (indices or a boolean mask), in that order."""
        rows = np.asarray(rows)
        if rows.dtype == bool:
            rows = np.flatnonzero(rows)
        idx = rows.tolist()
        kw: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            val = getattr(self, f.name)
            if isinstance(val, np.ndarray):
                kw[f.name] = val[rows]
            elif isinstance(val, list):
                kw[f.name] = [val[i] for i in idx]
            else:
                kw[f.name] = val
        return Judgments(**kw)


# --------------------------------------------------------------------------------------------
# Checking one record (the careful path, and the writer)
# --------------------------------------------------------------------------------------------


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _fmt(v: Any) -> str:
    text = json.dumps(v) if isinstance(v, (str, int, float, type(None), bool)) else repr(v)
    return text if len(text) <= 40 else text[:37] + "..."


def check_record(rec: Any) -> tuple[tuple, dict]:
    """Returns ``(row, extra)`` for one judgment record, or raises ``ValueError(problem)``.

    ``row`` holds the values of INT_FIELDS, FLOAT_FIELDS (with regret and advantage filled in)
    and STR_FIELDS in that order; ``extra`` holds the unknown fields. The message of the error
    names the field; callers prefix the file and line.
    """
    if not isinstance(rec, dict):
        raise ValueError(f"expected a JSON object, got {type(rec).__name__}")
    if "goal_id" not in rec or rec["goal_id"] is None:
        raise ValueError("missing required field 'goal_id'")
    if "reward" not in rec or rec["reward"] is None:
        raise ValueError("missing required field 'reward'")
    ints = []
    for name in INT_FIELDS:
        v = rec.get(name)
        if v is None:
            ints.append(-1)
            continue
        if not isinstance(v, int) or isinstance(v, bool) or v < 0 or v > _INT64_MAX:
            raise ValueError(f"{name} must be a non-negative integer, got {_fmt(v)}")
        ints.append(v)
    floats = {}
    for name in FLOAT_FIELDS:
        v = rec.get(name)
        if v is None:
            floats[name] = math.nan
            continue
        if not _is_number(v):
            raise ValueError(f"{name} must be a number, got {_fmt(v)}")
        v = float(v)
        if not math.isfinite(v):
            raise ValueError(f"{name} must be finite, got {_fmt(v)}")
        floats[name] = v
    reward, opt, reg = floats["reward"], floats["optimal_reward"], floats["regret"]
    if math.isnan(opt) and math.isnan(reg):
        raise ValueError("needs 'optimal_reward' or 'regret'")
    if not math.isnan(opt):
        implied = opt - reward
        if math.isnan(reg):
            floats["regret"] = implied
        elif abs(reg - implied) > regret_tolerance(opt, reward):
            raise ValueError(f"regret {reg!r} contradicts optimal_reward - reward = {implied!r}")
    if math.isnan(floats["advantage"]) and not math.isnan(floats["baseline_reward"]):
        floats["advantage"] = reward - floats["baseline_reward"]
    strs = []
    for name in STR_FIELDS:
        v = rec.get(name)
        if v is not None and not isinstance(v, str):
            raise ValueError(f"{name} must be a string, got {_fmt(v)}")
        strs.append(v)
    extra = {k: v for k, v in rec.items() if k not in _KNOWN}
    return (*ints, *(floats[n] for n in FLOAT_FIELDS), *strs), extra


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


def canonical_record(rec: Mapping[str, Any]) -> dict:
    """Returns ``rec`` with its known fields in the order the writer uses, extra fields after.

    Records written in one order share one line layout, which the reader parses fastest.
    """
    out = {k: rec[k] for k in _FIELD_ORDER if k in rec}
    out.update((k, v) for k, v in rec.items() if k not in out)
    return out


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def _dumps(rec: dict) -> str:
    return json.dumps(
        rec, separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=_json_default
    )


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
        try:
            complete = isinstance(json.loads(tail), dict)
        except ValueError:
            complete = False
        if complete:
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
                lines.append(_dumps(rec))
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
        "regret": _json_floats(opt.astype(dtype) - rew.astype(dtype), n, "regret"),
        "baseline_reward": None,
        "advantage": None,
    }
    if baseline is not None:
        base = np.asarray(baseline)
        bdtype = np.result_type(rew.dtype, base.dtype, np.float32)
        cols["baseline_reward"] = _json_floats(base.astype(bdtype), n, "baseline")
        cols["advantage"] = _json_floats(rew.astype(bdtype) - base.astype(bdtype), n, "advantage")
    cols["episode"] = _column(episode, n, "episode", "int")
    for name, val in (("hidden_dim", hidden_dim), ("buffer_size", buffer_size), ("seed", seed),
                      ("epoch", epoch)):  # fmt: skip
        cols[name] = _column(val, n, name, "int")
    for name, val in (("run", run), ("variant", variant), ("strategy", strategy),
                      ("oracle", oracle)):  # fmt: skip
        cols[name] = _column(val, n, name, "str")
    cols["schema"] = [SCHEMA_VERSION] * n
    cols["ts"] = [ts if ts is not None else utc_now()] * n
    names = [k for k in _FIELD_ORDER if cols.get(k) is not None]
    rows = zip(*(cols[k] for k in names), strict=True)
    return [dict(zip(names, vals, strict=True)) for vals in rows]


# --------------------------------------------------------------------------------------------
# Reading: chunks in parallel, then one set of columns
# --------------------------------------------------------------------------------------------

_CHUNK_BYTES = 1 << 23  # lines are parsed in chunks of about 8 MiB


def _assemble(parts: list[Part], path: str) -> Judgments:
    """Returns the parts (line indices global, in chunk order) joined into Judgments."""
    lines = np.concatenate([p.lines for p in parts])
    order = None
    if lines.shape[0] > 1 and not (np.diff(lines) > 0).all():
        order = np.argsort(lines, kind="stable")

    def cat_array(name: str, fill: float, dtype) -> np.ndarray:
        pieces = []
        for p in parts:
            arr = (p.ints if name in INT_FIELDS else p.floats).get(name)
            m = p.lines.shape[0]
            pieces.append(np.full(m, fill, dtype) if arr is None else arr)
        out = np.concatenate(pieces).astype(dtype, copy=False)
        return out if order is None else out[order]

    def cat_list(getter) -> list:
        out: list = []
        for p in parts:
            out.extend(getter(p))
        return out if order is None else [out[i] for i in order.tolist()]

    cols: dict[str, Any] = {}
    for name in INT_FIELDS:
        cols[name] = cat_array(name, -1, np.int64)
    for name in FLOAT_FIELDS:
        cols[name] = cat_array(name, np.nan, np.float64)
    for name in STR_FIELDS:
        cols[name] = cat_list(lambda p, name=name: p.strs.get(name) or [None] * p.lines.shape[0])
    cols["extra"] = cat_list(lambda p: p.extra)
    return Judgments(**cols, path=path)


def _default_workers() -> int:
    try:
        return max(1, min(2, len(os.sched_getaffinity(0))))
    except AttributeError:
        return max(1, min(2, os.cpu_count() or 1))


def read_judgments(
    path: str | os.PathLike, *, fast: bool = True, workers: int | None = None
) -> Judgments:
    """Returns the judgments in a JSONL file as columns (see :class:`Judgments`).

    Args:
      path: the judgments file.
      fast: False parses every line with json.loads (the reference the fast path must equal).
      workers: threads parsing chunks in parallel (NumPy releases the GIL); default up to 2.

    Raises:
      JudgmentError: the file is missing or unreadable, holds no judgments, or has a malformed
        line; the message names the file and the line number.

    A last line without a newline that is not valid JSON (a torn write) is skipped with a
    warning. Blank lines are skipped. Rows without extra fields share one read-only empty
    mapping in ``extra``.
    """
    from augnes_jax import judgments_parse as parse  # imports this module's schema

    path_s = str(path)
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            buf = bytearray(size + parse.PAD)
            got = f.readinto(memoryview(buf)[:size])
            if got != size:
                raise OSError(0, "file changed while reading")
    except FileNotFoundError:
        raise JudgmentError(f"{path_s}: no such file") from None
    except IsADirectoryError:
        raise JudgmentError(f"{path_s}: is a directory") from None
    except OSError as e:
        raise JudgmentError(f"{path_s}: cannot read: {e.strerror}") from None
    lo = 3 if buf.startswith(b"\xef\xbb\xbf") else 0
    hi = size
    if hi > lo and buf[hi - 1] != 10:
        cut = buf.rfind(b"\n", lo, hi) + 1 or lo
        tail = bytes(buf[cut:hi])
        if tail.strip():
            try:
                json.loads(tail)
                buf[hi] = 10  # a complete last line that only lacks its newline
                hi += 1
            except ValueError:
                lineno = buf.count(b"\n", lo, cut) + 1
                warnings.warn(
                    f"{path_s}:{lineno}: torn last line (no newline, not valid JSON) skipped",
                    stacklevel=2,
                )
                hi = cut
        else:
            hi = cut
    data = np.frombuffer(buf, np.uint8)
    words = np.ndarray((len(buf) - 7,), "<u8", buffer=buf, strides=(1,))
    bounds = [lo]
    while bounds[-1] < hi:
        nxt = min(bounds[-1] + _CHUNK_BYTES, hi) - 1
        bounds.append(buf.find(b"\n", nxt, hi) + 1)
    spans = list(itertools.pairwise(bounds))
    workers = _default_workers() if workers is None else max(1, workers)
    parts: list[Part] = []
    line0 = 0

    def run(span):
        return parse.parse_chunk(buf, data, words, span[0], span[1], fast)

    pool = ThreadPoolExecutor(workers) if workers > 1 and len(spans) > 1 else None
    try:
        results = pool.map(run, spans) if pool else map(run, spans)
        for _ in spans:
            try:
                chunk_parts, nlines = next(results)
            except parse.LineError as e:
                raise JudgmentError(f"{path_s}:{line0 + e.line + 1}: {e.problem}") from None
            for p in chunk_parts:
                if p.lines.shape[0]:
                    p.lines = p.lines + line0
                    parts.append(p)
            line0 += nlines
    finally:
        if pool:
            pool.shutdown(wait=True, cancel_futures=True)
    if not parts:
        raise JudgmentError(f"{path_s}: no judgments")
    return _assemble(parts, path_s)
