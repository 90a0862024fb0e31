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

Reading is vectorised. Lines that share a layout (the same keys, in the same order, with the
same separators: every line one writer wrote) are checked byte for byte and their numbers are
parsed in NumPy, exactly (the decimal-to-binary conversion is correctly rounded, so values equal
those of :func:`json.loads`). Any line the fast path cannot vouch for goes through
:func:`json.loads` and a field-by-field check that names the line when it is wrong.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import os
import re
import threading
import types
import warnings
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

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


class JudgmentError(ValueError):
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
# Reading: the fast path
# --------------------------------------------------------------------------------------------

_CHUNK_BYTES = 1 << 23  # lines are parsed in chunks of about 8 MiB
_PAD = 64  # zero bytes after the data, so 8-byte reads near its end stay inside the buffer
_MAX_TEMPLATES = 4  # line layouts tried per chunk before the rest goes line by line
_MAX_NUM_LEN = 24
_MAX_STR_LEN = 256
_NO_EXTRA: Mapping[str, Any] = types.MappingProxyType({})

_START_RE = re.compile(rb" *\{ *")
_COLON_RE = re.compile(rb" *: *")
_SEP_RE = re.compile(rb" *, *")
_END_RE = re.compile(rb" *\} *$")
_SCALAR_RE = re.compile(rb"[^ ,}\]\[{\"]+")
_LITERALS = {b"true": True, b"false": False, b"null": None}

# A DFA over the bytes of a JSON number padded with zero bytes, as lookup tables indexed by
# ``state * 256 + byte``: the next state, and what the transition adds to the mantissa, the
# count of fraction digits, and the exponent.
_S_START, _S_MINUS, _S_ZERO, _S_INT, _S_FRAC, _S_DOT = 0, 1, 2, 3, 4, 5
_S_E, _S_EPLUS, _S_EMINUS, _S_EXP, _S_END, _S_ERR = 6, 7, 8, 9, 10, 11


def _number_tables() -> dict[str, np.ndarray]:
    nxt = np.full((12, 256), _S_ERR, np.int32)
    digits = np.arange(ord("0"), ord("9") + 1)
    e_chars = [ord("e"), ord("E")]
    nxt[_S_START, ord("-")] = _S_MINUS
    for s in (_S_START, _S_MINUS):
        nxt[s, ord("0")] = _S_ZERO
        nxt[s, digits[1:]] = _S_INT
    for s in (_S_ZERO, _S_INT):
        nxt[s, ord(".")] = _S_DOT
    nxt[_S_INT, digits] = _S_INT
    nxt[_S_DOT, digits] = _S_FRAC
    nxt[_S_FRAC, digits] = _S_FRAC
    for s in (_S_ZERO, _S_INT, _S_FRAC):
        nxt[s, e_chars] = _S_E
    nxt[_S_E, ord("+")] = _S_EPLUS
    nxt[_S_E, ord("-")] = _S_EMINUS
    for s in (_S_E, _S_EPLUS, _S_EMINUS, _S_EXP):
        nxt[s, digits] = _S_EXP
    for s in (_S_ZERO, _S_INT, _S_FRAC, _S_EXP, _S_END):
        nxt[s, 0] = _S_END
    byte = np.arange(256)[None, :]
    is_digit = (byte >= ord("0")) & (byte <= ord("9"))
    mant_digit = is_digit & np.isin(nxt, [_S_ZERO, _S_INT, _S_FRAC])
    exp_digit = is_digit & (nxt == _S_EXP)
    return {
        "next": (nxt * 256).reshape(-1),  # premultiplied, so the next index is state + byte
        "mul": np.where(mant_digit, 10, 1).astype(np.int64).reshape(-1),
        "add": np.where(mant_digit, byte - ord("0"), 0).astype(np.int64).reshape(-1),
        "frac": (mant_digit & (nxt == _S_FRAC)).astype(np.int32).reshape(-1),
        "emul": np.where(exp_digit, 10, 1).astype(np.int32).reshape(-1),
        "eadd": np.where(exp_digit, byte - ord("0"), 0).astype(np.int32).reshape(-1),
        "edig": exp_digit.astype(np.int32).reshape(-1),
        "eneg": (nxt == _S_EMINUS).reshape(-1),
        "flt": np.isin(nxt, [_S_DOT, _S_E]).reshape(-1),
    }


_NUM = _number_tables()
_ACCEPT = np.zeros(12, bool)
_ACCEPT[[_S_ZERO, _S_INT, _S_FRAC, _S_EXP, _S_END]] = True
_POW10 = 10.0 ** np.arange(23)  # every entry exact in float64
_BYTE_MASKS = np.array([(1 << (8 * k)) - 1 for k in range(8)] + [2**64 - 1], np.uint64)


@dataclasses.dataclass
class _Template:
    """The layout of one line: fixed byte segments around variable fields.

    A line is ``segments[0] field[0] segments[1] ... field[k-1] segments[k]``. A field is the
    text of a number or the inside of a string value. Each segment is located on a line by
    ``anchors``: the line start, a quote it contains (``(index of that quote in the line,
    offset in the segment)``), or the line end.
    """

    segments: list
    anchors: list
    fields: list  # per field: (key, "num" | "str")
    literals: dict  # key -> True / False / None, written inside a segment
    keys: list
    num_quotes: int


def _template(line: bytes) -> _Template | None:
    """Returns the layout of a flat JSON object line, or None if the fast path cannot use it."""
    try:
        obj = json.loads(line)
    except ValueError:
        return None
    if not isinstance(obj, dict) or not obj:
        return None
    m = _START_RE.match(line)
    if m is None:
        return None
    cur, pos = bytearray(m.group()), m.end()
    segments: list = []
    fields: list = []
    literals: dict = {}
    keys: list = []
    while True:
        if line[pos : pos + 1] != b'"':
            return None
        end = line.find(b'"', pos + 1)
        key = line[pos + 1 : end].decode("utf-8", errors="strict")
        keys.append(key)
        cur += line[pos : end + 1]
        m = _COLON_RE.match(line, end + 1)
        if m is None:
            return None
        cur += m.group()
        pos = m.end()
        first = line[pos : pos + 1]
        if first == b'"':
            end = line.find(b'"', pos + 1)
            segments.append(bytes(cur + b'"'))
            fields.append((key, "str"))
            cur = bytearray(b'"')
            pos = end + 1
        elif first in (b"[", b"{") or not first:
            return None
        else:
            m = _SCALAR_RE.match(line, pos)
            if m is None:
                return None
            tok, pos = m.group(), m.end()
            if tok in _LITERALS:
                literals[key] = _LITERALS[tok]
                cur += tok
            else:
                segments.append(bytes(cur))
                fields.append((key, "num"))
                cur = bytearray()
        m = _SEP_RE.match(line, pos)
        last = m is None
        if last:
            m = _END_RE.match(line, pos)
            if m is None:
                return None
        cur += m.group()
        pos = m.end()
        if last:
            break
    segments.append(bytes(cur))
    if len(keys) != len(obj) or pos != len(line):
        return None
    anchors: list = []
    quote = 0
    for i, seg in enumerate(segments):
        off = seg.find(b'"')
        if i == 0:
            anchors.append(("start", 0, 0))
        elif off >= 0:
            anchors.append(("quote", quote, off))
        elif i == len(segments) - 1:
            anchors.append(("end", 0, 0))
        else:
            return None
        quote += seg.count(b'"')
    return _Template(segments, anchors, fields, literals, keys, quote)


def _match(buf: memoryview, pos: np.ndarray, pattern: bytes) -> np.ndarray:
    """Returns, per position, whether the bytes at ``pos`` equal ``pattern``.

    ``pattern`` holds no zero byte and ``buf`` ends in zero padding, so a position clamped to
    (or, negative, wrapped around to) the buffer's end never matches.
    """
    width = len(pattern)
    view = np.ndarray((len(buf) - width + 1,), f"S{width}", buffer=buf, strides=(1,))
    return view[np.minimum(pos, view.shape[0] - 1)] == pattern


def _gather(words: np.ndarray, start: np.ndarray, length: np.ndarray, width: int) -> np.ndarray:
    """Returns the bytes ``[start, start + length)`` of each row, zero padded, as ``[n, 8k]``."""
    nw = -(-width // 8)
    out = np.empty((start.shape[0], nw), np.uint64)
    last = words.shape[0] - 1
    keep = np.empty(start.shape, np.intp)
    for j in range(nw):
        np.subtract(length, 8 * j, out=keep)
        np.maximum(keep, 0, out=keep)
        np.minimum(keep, 8, out=keep)
        out[:, j] = words[np.minimum(start + 8 * j, last)] & _BYTE_MASKS[keep]
    return out.view(np.uint8).reshape(start.shape[0], 8 * nw)


_pair_lock = threading.Lock()
_pair_tables: dict[str, np.ndarray] = {}


def _number_pair_tables() -> dict[str, np.ndarray]:
    """Returns the DFA tables composed over two bytes, indexed by ``state * 65536 + b0 + 256 * b1``.

    Stepping two bytes at a time halves the NumPy passes over a batch of numbers. Built on
    first use (about 20 MB).
    """
    with _pair_lock:
        if _pair_tables:
            return _pair_tables
        one = {k: v.reshape(12, 256) for k, v in _NUM.items()}
        nxt1 = one["next"] // 256  # [12, 256] plain state numbers
        s = np.arange(12)[:, None, None]
        b0 = np.arange(256)[None, None, :]  # low byte: the first character
        b1 = np.arange(256)[None, :, None]  # high byte: the second
        mid = nxt1[s, b0]
        t = {k: v for k, v in one.items()}
        pair = {
            "next": (t["next"][mid, b1] // 256 * 65536).astype(np.int32),
            "mul": t["mul"][s, b0] * t["mul"][mid, b1],
            "add": t["add"][s, b0] * t["mul"][mid, b1] + t["add"][mid, b1],
            "frac": (t["frac"][s, b0] + t["frac"][mid, b1]).astype(np.int32),
            "emul": (t["emul"][s, b0] * t["emul"][mid, b1]).astype(np.int32),
            "eadd": (t["eadd"][s, b0] * t["emul"][mid, b1] + t["eadd"][mid, b1]).astype(np.int32),
            "edig": (t["edig"][s, b0] + t["edig"][mid, b1]).astype(np.int32),
            "eneg": t["eneg"][s, b0] | t["eneg"][mid, b1],
            "flt": t["flt"][s, b0] | t["flt"][mid, b1],
        }
        _pair_tables.update({k: np.ascontiguousarray(v).reshape(-1) for k, v in pair.items()})
        return _pair_tables


def _run_dfa(pairs: np.ndarray, has_dot: bool, has_e: bool):
    """Returns the DFA's final carry over ``pairs [w/2, n]`` (two bytes per uint16)."""
    tab = _number_pair_tables()
    n = pairs.shape[1]
    state = np.zeros(n, np.int32)
    idx = np.empty(n, np.int32)
    mant = np.zeros(n, np.int64)
    tmp = np.empty(n, np.int64)
    frac = np.zeros(n, np.int32)
    expo = np.zeros(n, np.int32)
    edig = np.zeros(n, np.int32)
    itmp = np.empty(n, np.int32)
    eneg = np.zeros(n, bool)
    is_float = np.zeros(n, bool)
    for j in range(pairs.shape[0]):
        np.add(state, pairs[j], out=idx)
        np.take(tab["mul"], idx, out=tmp)
        mant *= tmp
        np.take(tab["add"], idx, out=tmp)
        mant += tmp
        if has_dot or has_e:
            is_float |= np.take(tab["flt"], idx)
        if has_dot:
            np.take(tab["frac"], idx, out=itmp)
            frac += itmp
        if has_e:
            small = edig < 6  # later exponent digits only matter for the slow path
            np.take(tab["emul"], idx, out=itmp)
            np.multiply(expo, itmp, out=expo, where=small)
            np.take(tab["eadd"], idx, out=itmp)
            np.add(expo, itmp, out=expo, where=small)
            np.take(tab["edig"], idx, out=itmp)
            edig += itmp
            eneg |= np.take(tab["eneg"], idx)
        np.take(tab["next"], idx, out=state)
    return state // 65536, mant, frac, expo, edig, eneg, is_float


def _parse_numbers(buf, words: np.ndarray, start: np.ndarray, length: np.ndarray):
    """Returns ``(values float64, ints int64, is_int bool, ok bool)`` for number tokens.

    ``ok`` is False where a token is not a JSON number. Values are correctly rounded, as
    float() would give: a token whose digits fit in 2**53 and whose decimal exponent is within
    22 converts exactly in one IEEE operation (Clinger's fast path); the rare others go
    through float().
    """
    n = start.shape[0]
    ok = (length >= 1) & (length <= _MAX_NUM_LEN)
    length = np.where(ok, length, 0)
    width = int(length.max()) if n else 0
    if width == 0:
        return np.zeros(n), np.zeros(n, np.int64), np.ones(n, bool), ok
    mat = _gather(words, start, length, width)  # [n, 8k] bytes, zero padded
    has_dot = bool((mat == ord(".")).any())
    has_e = bool(((mat == ord("e")) | (mat == ord("E"))).any())
    # One more zero byte than the longest token, so every token ends on a padding transition.
    half = (width + 2) // 2
    if 2 * half > mat.shape[1]:
        mat = np.concatenate([mat, np.zeros((n, 8), np.uint8)], axis=1)
    pairs = np.ascontiguousarray(mat.view(np.uint16)[:, :half].T)  # [w/2, n]
    state, mant, frac, expo, edig, eneg, is_float = _run_dfa(pairs, has_dot, has_e)
    ok &= _ACCEPT[state]
    neg = mat[:, 0] == ord("-")
    ints = np.where(neg, -mant, mant)
    exact = (length <= 18) & (mant <= 2**53)
    if has_dot or has_e:
        e10 = np.where(eneg, -expo, expo) - frac
        mag = np.abs(e10)
        exact &= (mag <= 22) & (edig <= 4)
        scale = _POW10[np.minimum(mag, 22)]
        m = mant.astype(np.float64)
        values = np.where(e10 >= 0, m * scale, m / scale)
        np.negative(values, out=values, where=neg)
    else:
        values = ints.astype(np.float64)
    for i in np.flatnonzero(ok & ~exact).tolist():
        tok = bytes(buf[start[i] : start[i] + length[i]])
        values[i] = float(tok)
        if not is_float[i]:
            big = int(tok)
            if abs(big) > _INT64_MAX:
                ok[i] = False
            else:
                ints[i] = big
    return values, ints, ~is_float, ok


def _decode_strings(words, start: np.ndarray, length: np.ndarray) -> list | None:
    """Returns the UTF-8 strings at ``[start, start + length)``, or None if one is not UTF-8."""
    n = start.shape[0]
    if n == 0:
        return []
    width = int(length.max())
    if width > _MAX_STR_LEN:
        return None
    if width == 0:
        return [""] * n
    mat = _gather(words, start, length, width)
    arr = mat.view(f"S{mat.shape[1]}").reshape(n)
    change = np.flatnonzero(arr[1:] != arr[:-1]) + 1
    try:
        if change.shape[0] < n // 4:
            # Runs of equal values (a variant, a strategy) are decoded once.
            bounds = [0, *change.tolist(), n]
            return list(
                itertools.chain.from_iterable(
                    itertools.repeat(arr[a].decode("utf-8"), b - a)
                    for a, b in itertools.pairwise(bounds)
                )
            )
        return [s.decode("utf-8") for s in arr.tolist()]
    except UnicodeDecodeError:
        return None


@dataclasses.dataclass
class _Part:
    """Parsed rows of one chunk: their line indices within the chunk, and their columns."""

    lines: np.ndarray
    ints: dict
    floats: dict
    strs: dict
    extra: list


def _shared_prefix(buf: memoryview, ls: np.ndarray, f_start: list) -> tuple[int, np.ndarray | None]:
    """Returns ``(k, same)``: lines whose first k fields repeat the line before them.

    Judgments are written in batches that share a run, a variant, an epoch and their
    hyperparameters, so a line often starts with the very bytes of the line before it up to
    some field. ``k`` (from two sampled pairs of neighbouring lines) is the number of leading
    fields in that shared prefix, and ``same[i]`` says whether line i's prefix equals line
    i-1's byte for byte: its fields, and the checks on them, are then line i-1's. ``(0, None)``
    where sharing is too rare to pay for the comparison.
    """
    n = ls.shape[0]
    if n < 8 or not f_start:
        return 0, None
    k = 0
    for i in (0, n // 2):
        a = bytes(buf[ls[i] : ls[i + 1]])
        b = bytes(buf[ls[i + 1] : ls[i + 1] + len(a)])
        common = next(
            (c for c, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b))
        )
        kk = 0
        while (
            kk < len(f_start)
            and f_start[kk][i] - ls[i] <= common
            and (f_start[kk][i] - ls[i] == f_start[kk][i + 1] - ls[i + 1])
        ):
            kk += 1
        k = max(k, kk - 1)  # field kk-1 starts inside the prefix but may end past it
    if k <= 0:
        return 0, None
    rel = f_start[k] - ls
    width = int(rel[0])
    if width <= 0:
        return 0, None
    view = np.ndarray((len(buf) - width + 1,), f"S{width}", buffer=buf, strides=(1,))
    pref = view[np.minimum(ls, view.shape[0] - 1)]
    same = np.zeros(n, bool)
    pref = pref.view(np.uint8).reshape(n, width)
    same[1:] = (rel[1:] == width) & (rel[:-1] == width) & ~(pref[1:] != pref[:-1]).any(axis=1)
    if n - np.count_nonzero(same) > n // 4:
        return 0, None
    return k, same


def _expand_list(values: list, counts: np.ndarray) -> list:
    """Returns ``values[i]`` repeated ``counts[i]`` times, in order."""
    return list(
        itertools.chain.from_iterable(
            itertools.repeat(v, c) for v, c in zip(values, counts.tolist(), strict=True)
        )
    )


def _fast_lines(ctx: _ChunkScan, rows: np.ndarray, tmpl: _Template) -> _Part | None:
    """Returns the rows among ``rows`` that have layout ``tmpl`` and pass every check."""
    words = ctx.words
    cand = rows[ctx.qcount[rows] == tmpl.num_quotes]
    n = cand.shape[0]
    if n == 0:
        return None
    nq = tmpl.num_quotes
    if n == ctx.starts.shape[0] and ctx.q.shape[0] == nq * n:
        qq = ctx.q.reshape(n, nq)  # every line of the chunk has this many quotes
    else:
        qq = ctx.q[ctx.qfirst[cand][:, None] + np.arange(nq)]
    ls, le = ctx.starts[cand], ctx.ends[cand]
    seg_start = []
    for kind, quote, off in tmpl.anchors:
        if kind == "start":
            seg_start.append(ls)
        elif kind == "quote":
            seg_start.append(qq[:, quote] - off)
        else:
            seg_start.append(le - len(tmpl.segments[-1]))
    f_starts = [seg_start[j] + len(tmpl.segments[j]) for j in range(len(tmpl.fields))]
    f_lens = [seg_start[j + 1] - f_starts[j] for j in range(len(tmpl.fields))]

    # Fields 0..k-1 (and the segments around them) are read on the lines that start a run of
    # equal prefixes only, then spread over the run.
    k, same = _shared_prefix(ctx.buf, ls, f_starts)
    if k:
        heads = np.flatnonzero(~same)
        run_of = np.cumsum(~same) - 1
        run_len = np.diff(np.append(heads, n))

    def on(j: int, arr: np.ndarray) -> np.ndarray:
        """Returns field/segment j's per-line array on the lines it is computed on."""
        return arr[heads] if j < k else arr

    ok = seg_start[-1] + len(tmpl.segments[-1]) == le
    ok_head = np.ones(heads.shape[0], bool) if k else None
    for j, (seg, pos) in enumerate(zip(tmpl.segments, seg_start, strict=True)):
        if j <= k and k:
            ok_head &= _match(ctx.buf, pos[heads], seg)
        else:
            ok &= _match(ctx.buf, pos, seg)

    def check(j: int, cond: np.ndarray) -> None:
        nonlocal ok
        if j < k:
            ok_head[...] &= cond
        else:
            ok &= cond

    def spread(j: int, arr):
        if j >= k:
            return arr
        return _expand_list(arr, run_len) if isinstance(arr, list) else arr[run_of]

    ints: dict = {}
    floats: dict = {}
    strs: dict = {}
    extra_cols: dict = {}
    num_fields = []
    for j, (key, kind) in enumerate(tmpl.fields):
        f_start, f_len = on(j, f_starts[j]), on(j, f_lens[j])
        if kind == "num":
            if key in STR_FIELDS:
                return None  # a number where a string belongs: the careful path names the line
            num_fields.append((j, key, f_start, f_len))
        else:
            if key in INT_FIELDS or key in FLOAT_FIELDS:
                return None
            check(j, f_len >= 0)
            vals = _decode_strings(words, f_start, np.maximum(f_len, 0))
            if vals is None:
                return None
            if key in STR_FIELDS:
                strs[key] = spread(j, vals)
            else:
                extra_cols[key] = spread(j, vals)
    for key, val in tmpl.literals.items():
        if key in _KNOWN and val is not None:
            return None
        if key not in _KNOWN:
            extra_cols[key] = val
    # Fields of similar width are parsed in one batch: long vectors, little padding.
    widths = [min(int(f_len.max()), _MAX_NUM_LEN + 1) // 2 for _, _, _, f_len in num_fields]
    for w in sorted(set(widths)):
        group = [num_fields[i] for i, wi in enumerate(widths) if wi == w]
        values, ivals, is_int, nok = _parse_numbers(
            ctx.buf,
            words,
            np.concatenate([f[2] for f in group]),
            np.concatenate([f[3] for f in group]),
        )
        lo = 0
        for j, key, f_start, _ in group:
            sl = slice(lo, lo + f_start.shape[0])
            lo = sl.stop
            check(j, nok[sl])
            if key in INT_FIELDS:
                check(j, is_int[sl] & (ivals[sl] >= 0))
                ints[key] = spread(j, ivals[sl])
            elif key in FLOAT_FIELDS:
                check(j, np.isfinite(values[sl]))
                floats[key] = spread(j, values[sl])
            else:
                extra_cols[key] = tuple(spread(j, x) for x in (values[sl], ivals[sl], is_int[sl]))
    if k:
        ok &= ok_head[run_of]

    if "goal_id" not in ints or "reward" not in floats:
        return None
    rew = floats["reward"]
    opt = floats.get("optimal_reward")
    reg = floats.get("regret")
    if opt is None and reg is None:
        return None
    if opt is not None:
        implied = opt - rew
        if reg is None:
            floats["regret"] = implied
        else:
            ok &= np.abs(reg - implied) <= regret_tolerance(opt, rew)
    if "advantage" not in floats and "baseline_reward" in floats:
        floats["advantage"] = rew - floats["baseline_reward"]

    if not ok.all():
        keep = np.flatnonzero(ok)
        if keep.shape[0] == 0:
            return None
        idx = keep.tolist()
        cand = cand[keep]
        ints = {k: v[keep] for k, v in ints.items()}
        floats = {k: v[keep] for k, v in floats.items()}
        strs = {k: [v[i] for i in idx] for k, v in strs.items()}
        for k, v in list(extra_cols.items()):
            if isinstance(v, tuple):
                extra_cols[k] = tuple(a[keep] for a in v)
            elif isinstance(v, list):
                extra_cols[k] = [v[i] for i in idx]
        n = cand.shape[0]
    extra = _extra_rows(extra_cols, tmpl.keys, n)
    return _Part(lines=cand, ints=ints, floats=floats, strs=strs, extra=extra)


def _extra_rows(extra_cols: dict, order: list, n: int) -> list:
    """Returns one mapping of extra fields per row, keys in line order."""
    if not extra_cols:
        return [_NO_EXTRA] * n
    names = [k for k in order if k in extra_cols]
    columns = []
    for k in names:
        v = extra_cols[k]
        if isinstance(v, tuple):
            values, ivals, is_int = v
            col = values.tolist()
            for i in np.flatnonzero(is_int).tolist():
                col[i] = int(ivals[i])
            columns.append(col)
        elif isinstance(v, list):
            columns.append(v)
        else:
            columns.append([v] * n)
    return [dict(zip(names, vals, strict=True)) for vals in zip(*columns, strict=True)]


# --------------------------------------------------------------------------------------------
# Reading: chunks, the careful path, assembly
# --------------------------------------------------------------------------------------------


class _LineError(Exception):
    """A bad line, numbered within its chunk; read_judgments turns it into JudgmentError."""

    def __init__(self, line: int, problem: str):
        super().__init__(problem)
        self.line = line
        self.problem = problem


@dataclasses.dataclass
class _ChunkScan:
    """Positions found in one chunk (offsets from the chunk's first byte)."""

    buf: memoryview  # the buffer from the chunk's first byte on
    words: np.ndarray  # 8-byte little-endian words starting at every byte of ``buf``
    starts: np.ndarray  # first byte of each line
    ends: np.ndarray  # its newline
    q: np.ndarray = None  # every quote
    qfirst: np.ndarray = None  # index in q of each line's first quote
    qcount: np.ndarray = None  # quotes per line


def _careful_lines(ctx: _ChunkScan, rows: np.ndarray) -> _Part:
    """Returns the rows parsed with json.loads; raises _LineError naming a bad line."""
    int_cols: list = [[] for _ in INT_FIELDS]
    float_cols: list = [[] for _ in FLOAT_FIELDS]
    str_cols: list = [[] for _ in STR_FIELDS]
    extra: list = []
    kept = []
    ni, nf = len(INT_FIELDS), len(FLOAT_FIELDS)
    buf = ctx.buf
    for r in rows.tolist():
        line = bytes(buf[ctx.starts[r] : ctx.ends[r]])
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except UnicodeDecodeError:
            raise _LineError(r, "not valid UTF-8") from None
        except json.JSONDecodeError as e:
            raise _LineError(r, f"invalid JSON: {e.msg} (column {e.colno})") from None
        try:
            row, ext = check_record(rec)
        except ValueError as e:
            raise _LineError(r, str(e)) from None
        for j in range(ni):
            int_cols[j].append(row[j])
        for j in range(nf):
            float_cols[j].append(row[ni + j])
        for j in range(len(STR_FIELDS)):
            str_cols[j].append(row[ni + nf + j])
        extra.append(ext or _NO_EXTRA)
        kept.append(r)
    return _Part(
        lines=np.asarray(kept, np.int64),
        ints={k: np.asarray(c, np.int64) for k, c in zip(INT_FIELDS, int_cols, strict=True)},
        floats={
            k: np.asarray(c, np.float64) for k, c in zip(FLOAT_FIELDS, float_cols, strict=True)
        },
        strs=dict(zip(STR_FIELDS, str_cols, strict=True)),
        extra=extra,
    )


def _parse_chunk(
    buf: bytearray, data: np.ndarray, words: np.ndarray, lo: int, hi: int, fast: bool
) -> tuple[list[_Part], int]:
    """Returns the parsed parts of ``buf[lo:hi]`` (complete lines) and its number of lines."""
    b = data[lo:hi]
    # Positions are relative to the chunk: views of the buffer from ``lo`` on (no copies).
    cbuf = memoryview(buf)[lo:]
    cwords = words[lo:]
    ends = np.flatnonzero(b == 10)
    n_lines = ends.shape[0]
    starts = np.empty_like(ends)
    if n_lines:
        starts[0] = 0
        starts[1:] = ends[:-1] + 1
    ctx = _ChunkScan(cbuf, cwords, starts, ends)
    rows = np.arange(n_lines)
    parts: list[_Part] = []
    # Backslash escapes and control characters (tabs, CR, ...) are rare enough to leave to
    # json.loads; everything else the fast path checks byte for byte.
    if fast and buf.find(b"\\", lo, hi) < 0 and np.count_nonzero(b < 32) == n_lines:
        ctx.q = np.flatnonzero(b == 34)
        qcum = np.searchsorted(ctx.q, ends)  # quotes before each line's newline
        ctx.qfirst = np.empty_like(qcum)
        if n_lines:
            ctx.qfirst[0] = 0
            ctx.qfirst[1:] = qcum[:-1]
        ctx.qcount = qcum - ctx.qfirst
        for _ in range(_MAX_TEMPLATES):
            if rows.shape[0] == 0:
                break
            r0 = int(rows[0])
            tmpl = _template(bytes(cbuf[starts[r0] : ends[r0]]))
            part = None if tmpl is None else _fast_lines(ctx, rows, tmpl)
            if part is None:
                break
            parts.append(part)
            if part.lines.shape[0] == rows.shape[0]:
                rows = rows[:0]
            else:
                rows = np.setdiff1d(rows, part.lines, assume_unique=True)
            if part.lines[0] != r0:
                break  # the layout's own first line failed a check: json.loads will say why
    if rows.shape[0]:
        parts.append(_careful_lines(ctx, rows))
    return parts, int(n_lines)


def _assemble(parts: list[_Part], path: str) -> Judgments:
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
    path_s = str(path)
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            buf = bytearray(size + _PAD)
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
    parts: list[_Part] = []
    line0 = 0

    def run(span):
        return _parse_chunk(buf, data, words, span[0], span[1], fast)

    pool = ThreadPoolExecutor(workers) if workers > 1 and len(spans) > 1 else None
    try:
        results = pool.map(run, spans) if pool else map(run, spans)
        for _ in spans:
            try:
                chunk_parts, nlines = next(results)
            except _LineError as e:
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
