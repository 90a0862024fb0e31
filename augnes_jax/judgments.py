"""The judgment log: one JudgmentMemoryEntry per line of ``judgments.jsonl`` (host shell).

A judgment is the outcome of one episode measured against its goal: ``goal_id``, ``reward``,
the goal's ``optimal_reward`` (and where it came from, ``oracle``), ``regret = optimal_reward -
reward`` and ``advantage = reward - baseline_reward``, plus where it was made (``run``,
``variant``, capacity fields, ``epoch``, ``episode``). DESIGN.md gives the schema.

- :class:`JudgmentWriter` appends batches of judgments, flushing and fsyncing once per batch.
  On open it repairs a torn last line left by a crash, so a crash costs at most that line.
- :func:`make_judgments` turns per-episode arrays into judgment records.
- :func:`read_judgments` returns the log as :class:`Judgments`, columns of NumPy arrays;
  :func:`iter_judgments` yields it in batches of whole lines, for files larger than memory;
  :meth:`Judgments.from_records` builds the columns from records in memory. Extra fields of
  other systems' logs are kept per row. A malformed line raises :class:`JudgmentError` naming
  its line; a torn last line is skipped with a warning.

Reading: polars parses the lines into columns and NumPy checks them (types, finiteness, the
regret/optimal agreement) all at once. If polars refuses the lines or a check fails, they are
read again one by one with :func:`json.loads` and :func:`check_record`, which name the first
bad line; that careful pass is also the reference the fast one is tested against.
"""

from __future__ import annotations

import dataclasses
import json
import math
import mmap
import os
import types
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from augnes_jax.errors import UserError

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
    "iter_judgments",
    "make_judgments",
    "parse_lines",
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

    @classmethod
    def from_records(cls, records: Iterable[Mapping[str, Any]], *, path: str = "") -> Judgments:
        """Returns judgment records (dicts, DESIGN.md field names) as columns.

        Each record is checked as a line of the log is (:func:`check_record`); a bad one raises
        :class:`JudgmentError` naming its index, ``"record <i>: <problem>"``.
        """
        if isinstance(records, (str, bytes, Mapping)) or not isinstance(records, Iterable):
            raise TypeError(
                f"expected a list of judgment records (dicts), got {type(records).__name__}"
            )
        rows, extra = [], []
        for i, rec in enumerate(records):
            try:
                row, ext = check_record(dict(rec) if isinstance(rec, Mapping) else rec)
            except ValueError as e:
                raise JudgmentError(f"record {i}: {e}") from None
            rows.append(row)
            extra.append(ext or _NO_EXTRA)
        return _columns(rows, extra, path)

    def to_polars(self):
        """Returns the columns as a ``polars.DataFrame`` for data tools.

        Absent values are null (not -1 or NaN); ``extra`` holds each row's extra fields as one
        JSON object text, null for a row without any.
        """
        import polars as pl

        cols: dict[str, Any] = {}
        for name in INT_FIELDS:
            arr = getattr(self, name)
            cols[name] = pl.Series(name, arr, pl.Int64).set(pl.Series(arr < 0), None)
        for name in FLOAT_FIELDS:
            cols[name] = pl.Series(name, getattr(self, name), pl.Float64, nan_to_null=True)
        for name in STR_FIELDS:
            cols[name] = pl.Series(name, getattr(self, name), pl.String)
        cols["extra"] = pl.Series(
            "extra", [_dumps(dict(e)) if e else None for e in self.extra], pl.String
        )
        return pl.DataFrame(cols)

    @classmethod
    def concat(cls, parts: Sequence[Judgments]) -> Judgments:
        """Returns the rows of ``parts`` one after the other (the path is the first part's)."""
        kw: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if f.name == "path":
                kw["path"] = parts[0].path if parts else ""
            elif f.name in INT_FIELDS or f.name in FLOAT_FIELDS:
                dtype = np.int64 if f.name in INT_FIELDS else np.float64
                kw[f.name] = np.concatenate(
                    [getattr(p, f.name) for p in parts] or [np.empty(0, dtype)]
                )
            else:
                kw[f.name] = [v for p in parts for v in getattr(p, f.name)]
        return cls(**kw)


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
        try:
            v = float(v)
        except OverflowError:  # an integer beyond the float range
            v = math.inf if v > 0 else -math.inf
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

    Lines written in one order read alike: a log's lines list their fields the same way.
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
# Reading: polars parses a block of whole lines, NumPy checks its columns, and json.loads is the
# reference that names a bad line
# --------------------------------------------------------------------------------------------

DEFAULT_BATCH_BYTES = 64 << 20  # iter_judgments reads about this many bytes of lines at a time
_BOM = b"\xef\xbb\xbf"
# A JSON number, true, false, an object or an array: the text polars gives a string column for
# a value that was not a string (it reads {"variant": 3} as the string "3").
_NOT_A_STRING = (
    r"^(?:-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?|true|false|\{.*\}|\[.*\])$"
)


def _columns(rows: list[tuple], extra: list, path: str) -> Judgments:
    """Returns Judgments from rows of :func:`check_record` and their extra fields."""
    ni, nf = len(INT_FIELDS), len(FLOAT_FIELDS)
    cols = list(zip(*rows, strict=True)) if rows else [()] * (ni + nf + len(STR_FIELDS))
    kw: dict[str, Any] = {}
    for j, name in enumerate(INT_FIELDS):
        kw[name] = np.array(cols[j], np.int64)
    for j, name in enumerate(FLOAT_FIELDS):
        kw[name] = np.array(cols[ni + j], np.float64)
    for j, name in enumerate(STR_FIELDS):
        kw[name] = list(cols[ni + nf + j])
    return Judgments(**kw, extra=extra, path=path)


def _careful(lines: list[bytes], path: str, line0: int, raw_last: bool) -> Judgments:
    """Returns the lines read one by one with json.loads and checked by :func:`check_record`.

    The reference reading, and the fallback that names the first bad line (``line0`` lines
    precede ``lines`` in the file). ``raw_last``: the last line lacks its newline and was found
    to be JSON by json.loads on its bytes, which is how it is read again here.
    """
    rows, extra = [], []
    last = len(lines) - 1
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        where = f"{path}:{line0 + i + 1}"
        try:
            rec = json.loads(line if raw_last and i == last else line.decode("utf-8"))
        except UnicodeDecodeError:
            raise JudgmentError(f"{where}: not valid UTF-8") from None
        except json.JSONDecodeError as e:
            raise JudgmentError(f"{where}: invalid JSON: {e.msg} (column {e.colno})") from None
        except RecursionError:
            raise JudgmentError(f"{where}: invalid JSON: nested too deeply") from None
        try:
            row, ext = check_record(rec)
        except ValueError as e:
            raise JudgmentError(f"{where}: {e}") from None
        rows.append(row)
        extra.append(ext or _NO_EXTRA)
    return _columns(rows, extra, path)


def _polars_schema() -> dict:
    import polars as pl

    return {
        **{name: pl.Int64 for name in INT_FIELDS},
        **{name: pl.Float64 for name in FLOAT_FIELDS},
        **{name: pl.String for name in STR_FIELDS},
    }


def _mostly_runs(s) -> bool:
    """Returns whether most rows of ``s`` repeat the row before them (from 256 sampled pairs)."""
    n = len(s)
    if n < 64:
        return False
    idx = np.linspace(1, n - 1, 256).astype(np.int64)
    same = s.gather(idx).eq_missing(s.gather(idx - 1))
    return int(same.sum()) * 2 > len(idx)


def _strings(s) -> tuple[list, bool]:
    """Returns ``(values as a list, whether a value stood for a non-string)``.

    A column made of runs of equal neighbours (a batch shares its run, variant, epoch and often
    its timestamp) is checked and converted once per run.
    """
    lens = None
    heads = s
    if _mostly_runs(s):
        runs = s.rle()
        heads, lens = runs.struct.field("value"), runs.struct.field("len")
    suspect = bool(heads.str.contains(_NOT_A_STRING).any())
    values = heads.to_list()
    if lens is not None:
        out: list = []
        for v, k in zip(values, lens.to_list(), strict=True):
            out += [v] * k
        values = out
    return values, suspect


def _count_byte(buf, byte: int) -> int:
    """Returns how often ``byte`` occurs in ``buf`` (counted in slices that stay in cache)."""
    a = np.frombuffer(buf, np.uint8)
    step = 1 << 22
    return sum(int(np.count_nonzero(a[i : i + step] == byte)) for i in range(0, a.shape[0], step))


def _fast(source, data, path: str) -> Judgments | None:
    """Returns the lines read by polars and checked in NumPy, or None to read them carefully.

    ``source`` is what polars reads (the file's path, or ``data`` itself); ``data`` holds the
    same bytes (a ``bytes`` or an ``mmap``). None means polars refused the lines, a check
    failed, or the lines may hold something the columns cannot show exactly.
    """
    import polars as pl

    try:
        df = pl.read_ndjson(source, schema=_polars_schema())
    except Exception:  # any refusal by the library: the careful pass names the line
        return None
    n = df.height
    if df["goal_id"].null_count() or df["reward"].null_count():
        return None
    kw: dict[str, Any] = {}
    present = 0  # quotes the known fields' keys and string values hold
    for name in INT_FIELDS:
        s = df[name]
        present += 2 * (n - s.null_count())
        low = s.min()
        if low is not None and low < 0:
            return None
        kw[name] = s.fill_null(-1).to_numpy(writable=True).astype(np.int64, copy=False)
    for name in FLOAT_FIELDS:
        s = df[name]
        nulls = s.null_count()
        present += 2 * (n - nulls)
        arr = s.to_numpy(writable=True).astype(np.float64, copy=False)
        if np.count_nonzero(np.isnan(arr)) != nulls or np.isinf(arr).any():
            return None
        kw[name] = arr
    for name in STR_FIELDS:
        s = df[name]
        present += 4 * (n - s.null_count())  # the key's two quotes and the value's two
        kw[name], suspect = _strings(s)
        if suspect:
            return None
    reward, opt, reg = kw["reward"], kw["optimal_reward"], kw["regret"]
    implied = opt - reward
    if (np.isnan(opt) & np.isnan(reg)).any():
        return None
    if (np.abs(reg - implied) > regret_tolerance(opt, reward)).any():
        return None
    kw["regret"] = np.where(np.isnan(reg), implied, reg)
    adv = kw["advantage"]
    kw["advantage"] = np.where(np.isnan(adv), reward - kw["baseline_reward"], adv)
    # Without backslash escapes every quote opens or closes a key or a string value, so a quote
    # count equal to the known fields' proves the lines hold no other key (and no null field).
    if data.find(b"\\") < 0 and _count_byte(data, ord('"')) == present:
        extra = [_NO_EXTRA] * n
    else:
        extra = _extras(source, data, df, n)
        if extra is None:
            return None
    return Judgments(**kw, extra=extra, path=path)


def _extras(source, data, df, n: int) -> list | None:
    """Returns each row's fields outside the schema (json.loads' values), or None to read the
    lines carefully."""
    import polars as pl

    if any(df[name].str.contains("\x00", literal=True).any() for name in STR_FIELDS):
        return None  # polars reads an unpaired surrogate escape as NUL: json.loads decides
    try:
        schema = pl.scan_ndjson(source, infer_schema_length=None).collect_schema()
    except Exception:  # the careful pass decides
        return None
    if all(name in _KNOWN for name in schema):
        return [_NO_EXTRA] * n
    lines = [line for line in data[:].split(b"\n") if line.strip()]
    if len(lines) != n:
        return None
    extra = []
    for line in lines:
        try:
            rec = json.loads(line)
        except (ValueError, RecursionError):
            return None
        ext = {k: v for k, v in rec.items() if k not in _KNOWN} if isinstance(rec, dict) else None
        extra.append(ext or _NO_EXTRA)
    return extra


def _block(data: bytes, path: str, line0: int, at_eof: bool, fast: bool) -> Judgments:
    """Returns the judgments of ``data``, whole lines that follow ``line0`` lines of the file.

    At the end of the file, a last line without its newline that is not JSON is a torn write:
    skipped with a warning.
    """
    raw_last = False
    if at_eof and data and not data.endswith(b"\n"):
        cut = data.rfind(b"\n") + 1
        tail = data[cut:]
        if tail.strip():
            try:
                json.loads(tail)
                raw_last = True
            except (ValueError, RecursionError):
                lineno = line0 + data.count(b"\n", 0, cut) + 1
                warnings.warn(
                    f"{path}:{lineno}: torn last line (no newline, not valid JSON) skipped",
                    stacklevel=4,
                )
                data = data[:cut]
    if fast:
        got = _fast(data, data, path)
        if got is not None:
            return got
    return _careful(data.split(b"\n"), path, line0, raw_last)


def parse_lines(data: bytes, *, path: str = "", first_line: int = 0) -> Judgments:
    """Returns the judgments of ``data``, whole lines (each ending in a newline) of a log.

    For readers that follow a growing log (:mod:`augnes_jax.judgments_tail`): the same checks
    and columns as :func:`read_judgments`.

    Args:
      data: complete lines.
      path: the log's name, for messages.
      first_line: how many lines of the log precede ``data``, for line numbers in messages.

    Raises:
      JudgmentError: a malformed line, named by its line number in the log.
    """
    return _block(data, path, first_line, False, True)


def _open(path: str | os.PathLike):
    path_s = str(path)
    try:
        return open(path, "rb")  # noqa: SIM115  (closed by the caller)
    except FileNotFoundError:
        raise JudgmentError(f"{path_s}: no such file") from None
    except IsADirectoryError:
        raise JudgmentError(f"{path_s}: is a directory") from None
    except OSError as e:
        raise JudgmentError(f"{path_s}: cannot read: {e.strerror}") from None


def iter_judgments(
    path: str | os.PathLike, *, batch_bytes: int = DEFAULT_BATCH_BYTES, fast: bool = True
) -> Iterator[Judgments]:
    """Yields the judgments of a JSONL file in batches of whole lines, in file order.

    Each batch holds the lines of about ``batch_bytes`` bytes of the file (a longer line makes
    its batch longer), so a file larger than memory is read in bounded memory: the batch's
    bytes, polars' parse of them and the batch's :class:`Judgments` take about ten times
    ``batch_bytes`` at most (measured: 31 MB more resident memory for 4 MiB batches, 16 MB for
    1 MiB), whatever the size of the file. Aggregates of batches combine exactly with
    :func:`augnes_jax.regret.merge`. Checks, warnings and errors are those of
    :func:`read_judgments`; an error names the line by its number in the whole file.
    """
    if batch_bytes < 1:
        raise ValueError(f"batch_bytes must be positive, got {batch_bytes}")
    path_s = str(path)
    total = 0
    line0 = 0
    with _open(path) as f:
        try:
            if f.read(len(_BOM)) != _BOM:
                f.seek(0)
        except OSError as e:
            raise JudgmentError(f"{path_s}: cannot read: {e.strerror}") from None
        while True:
            try:
                data = f.read(batch_bytes)
                cut = data.rfind(b"\n") + 1
                while cut == 0 and data:  # a line longer than the batch: read on to its end
                    more = f.read(batch_bytes)
                    if not more:
                        break
                    data += more
                    cut = data.rfind(b"\n") + 1
                if 0 < cut < len(data):  # the partial last line is read again with the next batch
                    f.seek(cut - len(data), os.SEEK_CUR)
                    data = data[:cut]
            except OSError as e:
                raise JudgmentError(f"{path_s}: cannot read: {e.strerror}") from None
            if not data:
                break
            part = _block(data, path_s, line0, not data.endswith(b"\n"), fast)
            line0 += _count_byte(data, ord("\n"))
            if len(part):
                total += len(part)
                yield part
    if total == 0:
        raise JudgmentError(f"{path_s}: no judgments")


def read_judgments(path: str | os.PathLike, *, fast: bool = True) -> Judgments:
    """Returns the judgments in a JSONL file as columns (see :class:`Judgments`).

    Args:
      path: the judgments file.
      fast: False reads every line with json.loads (the reference the fast path equals).

    Raises:
      JudgmentError: the file is missing or unreadable, holds no judgments, or has a malformed
        line; the message names the file and the line number.

    The file is parsed by polars and its columns are checked in NumPy; if polars refuses the
    file or a check fails, the lines are read again one by one with json.loads, which names the
    first bad line. A last line without a newline that is not valid JSON (a torn write) is
    skipped with a warning. Blank lines are skipped. Rows without extra fields share one
    read-only empty mapping in ``extra``. A known field given twice on one line reads as its
    first value (json.loads, and ``fast=False``, keep the last). For a file larger than memory
    use :func:`iter_judgments`.
    """
    path_s = str(path)
    with _open(path) as f:
        try:
            size = os.fstat(f.fileno()).st_size
            if size == 0:
                raise JudgmentError(f"{path_s}: no judgments")
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
                j = _whole(mm, path_s, fast)
        except OSError as e:
            raise JudgmentError(f"{path_s}: cannot read: {e.strerror}") from None
    if not len(j):
        raise JudgmentError(f"{path_s}: no judgments")
    return j


def _whole(mm: mmap.mmap, path: str, fast: bool) -> Judgments:
    """Returns the judgments of a whole file mapped in ``mm``.

    polars reads the file itself when its bytes need no trimming (no BOM, no torn last line):
    the checks run on the mapping. If the file grew meanwhile (a writer appending), the
    mapping's lines are read instead, so the result is one snapshot.
    """
    size = len(mm)
    if fast and not mm[:3] == _BOM:
        tail_ok = mm[size - 1 : size] == b"\n"
        if not tail_ok:
            try:
                json.loads(mm[mm.rfind(b"\n") + 1 :])
                tail_ok = True
            except (ValueError, RecursionError):
                pass
        if tail_ok:
            got = _fast(path, mm, path)
            if got is not None and os.stat(path).st_size == size:
                return got
    data = mm[:]
    return _block(data[3:] if data.startswith(_BOM) else data, path, 0, True, fast)
