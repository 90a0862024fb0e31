"""A judgments log as columns: :class:`Judgments`, one NumPy array or list per field (host shell).

The reader (:mod:`augnes_jax.judgments_reader`) returns it; :meth:`Judgments.from_records` and
:meth:`Judgments.from_columns` build it in memory from records or from columns, with the checks
a line of the log gets (:func:`augnes_jax.judgments_schema.check_record`);
:func:`as_judgments` is what functions that take "judgments" accept; and
:meth:`Judgments.to_polars` hands the columns to data tools (the columns the reader still
holds as polars columns, as they are).
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from augnes_jax.judgments_schema import (
    FLOAT_FIELDS,
    INT_FIELDS,
    NO_EXTRA,
    STR_FIELDS,
    JudgmentError,
    check_record,
    record_json,
    regret_tolerance,
)
from augnes_jax.regret import episode_advantage, episode_regret

__all__ = ["Judgments", "as_judgments", "column_values", "run_columns"]

_INT64_MAX = 2**63 - 1


class _Column:
    """A column field of :class:`Judgments`: a NumPy array or a list, which the reader may hand
    over as a polars column instead; that column is converted (:func:`column_values`) the first
    time the field is read, and the result kept.

    A caller that reads a few fields never pays for converting the others (for a string field,
    millions of Python strings), and :meth:`Judgments.to_polars` hands held columns on as they
    are.
    """

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            raise AttributeError(self.name)  # the field has no default
        value = obj.__dict__[self.name]
        if _is_polars(value):
            value = obj.__dict__[self.name] = column_values(self.name, value)
        return value

    def __set__(self, obj: Any, value: Any) -> None:
        obj.__dict__[self.name] = value


def _is_polars(value: Any) -> bool:
    pl = sys.modules.get("polars")
    return pl is not None and isinstance(value, pl.Series)


def column_values(name: str, s: Any) -> Any:
    """Returns the polars column ``s`` of field ``name`` as :class:`Judgments` holds it: int64
    with -1 for null, float64 with NaN for null, or a list of strings with None for null."""
    if name in INT_FIELDS:
        s = s.fill_null(-1) if s.null_count() else s
        return s.to_numpy(writable=True).astype(np.int64, copy=False)
    if name in FLOAT_FIELDS:
        return s.to_numpy(writable=True).astype(np.float64, copy=False)
    return _string_list(s)


def run_columns(df: Any) -> set[str]:
    """Returns the names of the polars DataFrame's columns whose rows mostly repeat the row before
    them (judged from 256 pairs of neighbours in 8 slices spread over the rows): a sweep's batch
    shares its run, variant, epoch and often its timestamp, so such a column is best handled
    once per run of equal values."""
    import polars as pl

    n = df.height
    if n < 64:
        return set()
    starts = np.linspace(0, n - 33, 8).astype(np.int64).tolist()
    sample = pl.concat([df.slice(start, 33) for start in starts], rechunk=False)
    pairs = pl.int_range(pl.len()) % 33 != 0  # the first row of a slice has no neighbour in it
    same = sample.select(pl.all().eq_missing(pl.all().shift(1)).filter(pairs).sum()).row(0, named=True)
    return {name for name, k in same.items() if k * 2 > 256}


def _string_list(s: Any) -> list:
    """Returns a polars String column as a list; a column of runs (:func:`run_columns`) is
    converted once per run, the run's rows sharing one string object."""
    if not run_columns(s.to_frame()):
        return s.to_list()
    runs = s.rle()
    out: list = []
    for v, k in zip(runs.struct.field("value").to_list(), runs.struct.field("len").to_list(), strict=True):
        out += [v] * k
    return out


@dataclasses.dataclass
class Judgments:
    """A judgments log as columns; every array and list has one entry per judgment (``[N]``).

    Numeric columns are float64 (NaN where absent); integer columns are int64 (-1 where absent).
    ``regret`` is always filled: the stated regret, else ``optimal_reward - reward``.
    ``advantage`` is the stated advantage, else ``reward - baseline_reward``, else NaN. String
    columns are lists (None where absent). ``extra`` holds each row's unknown fields.

    The reader may hold a field as the polars column it parsed; reading the field converts it
    (once) to the array or list above, so a caller pays only for the fields it reads.
    """

    goal_id: np.ndarray = _Column()
    reward: np.ndarray = _Column()
    optimal_reward: np.ndarray = _Column()
    regret: np.ndarray = _Column()
    baseline_reward: np.ndarray = _Column()
    advantage: np.ndarray = _Column()
    epoch: np.ndarray = _Column()
    episode: np.ndarray = _Column()
    hidden_dim: np.ndarray = _Column()
    buffer_size: np.ndarray = _Column()
    seed: np.ndarray = _Column()
    schema: np.ndarray = _Column()
    run: list = _Column()
    variant: list = _Column()
    strategy: list = _Column()
    oracle: list = _Column()
    ts: list = _Column()
    extra: list
    path: str = ""

    def __len__(self) -> int:
        """Returns the number of judgments."""
        return len(self.__dict__["goal_id"])  # as held: nothing converted

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

        def checked() -> Iterator[tuple[tuple, dict]]:
            for i, rec in enumerate(records):
                try:
                    yield check_record(dict(rec) if isinstance(rec, Mapping) else rec)
                except ValueError as e:
                    raise JudgmentError(f"record {i}: {e}") from None

        return cls.from_checked(checked(), path)

    @classmethod
    def from_columns(cls, *, path: str = "", **columns: Any) -> Judgments:
        """Returns judgments given as columns: keyword arguments named as the log's fields.

        Each column is a scalar (the value of every row) or one value per row (a list or a 1-D
        array); ``None`` leaves a field out, and so does a ``None`` entry of a list. ``goal_id``
        and ``reward`` are required, and ``optimal_reward`` or ``regret``; ``regret`` and
        ``advantage`` are filled in as :meth:`from_records` fills them. Every row gets the
        checks a line of the log gets (types, NaN and Inf refused, a regret that contradicts
        ``optimal_reward - reward``); numeric arrays are checked all at once, and a bad row
        raises :class:`JudgmentError` naming it, ``"row <i>: <problem>"``.

        Example: ``Judgments.from_columns(goal_id=goals, reward=returns,
        optimal_reward=optimal, variant="mine", hidden_dim=64, buffer_size=10_000, seed=0,
        epoch=3)``.
        """
        unknown = sorted(set(columns) - set(INT_FIELDS + FLOAT_FIELDS + STR_FIELDS))
        if unknown:
            raise TypeError(f"from_columns: unknown field {unknown[0]!r}")
        n, arrays = _column_arrays(columns)
        kw = _fast_columns(arrays, n)
        if kw is not None:
            return cls(**kw, extra=[NO_EXTRA] * n, path=path)

        def checked() -> Iterator[tuple[tuple, dict]]:
            names = [k for k, a in arrays.items() if a is not None]
            for i, values in enumerate(zip(*(arrays[k] for k in names), strict=True)):
                rec = {k: _plain(v) for k, v in zip(names, values, strict=True) if v is not None}
                try:
                    yield check_record(rec)
                except ValueError as e:
                    raise JudgmentError(f"row {i}: {e}") from None

        return cls.from_checked(checked(), path)

    @classmethod
    def from_checked(cls, checked: Iterable[tuple[tuple, dict]], path: str = "") -> Judgments:
        """Returns the columns of ``(row, extra)`` pairs, each as :func:`check_record` returns it.

        Rows without extra fields share one read-only empty mapping in ``extra``.
        """
        rows, extra = [], []
        for row, ext in checked:
            rows.append(row)
            extra.append(ext or NO_EXTRA)
        ni, nf = len(INT_FIELDS), len(FLOAT_FIELDS)
        cols = list(zip(*rows, strict=True)) if rows else [()] * (ni + nf + len(STR_FIELDS))
        kw: dict[str, Any] = {}
        for j, name in enumerate(INT_FIELDS):
            kw[name] = np.array(cols[j], np.int64)
        for j, name in enumerate(FLOAT_FIELDS):
            kw[name] = np.array(cols[ni + j], np.float64)
        for j, name in enumerate(STR_FIELDS):
            kw[name] = list(cols[ni + nf + j])
        return cls(**kw, extra=extra, path=path)

    def to_polars(self):
        """Returns the columns as a ``polars.DataFrame`` for data tools.

        Absent values are null (not -1 or NaN); ``extra`` holds each row's extra fields as one
        JSON object text, null for a row without any.
        """
        import polars as pl

        cols: dict[str, Any] = {}
        for name in INT_FIELDS + FLOAT_FIELDS + STR_FIELDS:
            held = self.__dict__[name]
            if _is_polars(held):  # as the reader gave it: nulls are nulls, nothing converted
                cols[name] = held.alias(name)
            elif name in INT_FIELDS:
                cols[name] = pl.Series(name, held, pl.Int64).set(pl.Series(held < 0), None)
            elif name in FLOAT_FIELDS:
                cols[name] = pl.Series(name, held, pl.Float64, nan_to_null=True)
            else:
                cols[name] = pl.Series(name, held, pl.String)
        cols["extra"] = pl.Series(
            "extra", [record_json(dict(e)) if e else None for e in self.extra], pl.String
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


def as_judgments(judgments: Any, *, caller: str) -> Judgments:
    """Returns ``judgments`` as :class:`Judgments`: itself, or a list of records' columns.

    A list, tuple or iterator of records (dicts) is checked by :meth:`Judgments.from_records`.
    Anything else raises ``TypeError`` naming what it got, prefixed with ``caller``.
    """
    if isinstance(judgments, Judgments):
        return judgments
    want = f"{caller}: expected a list of judgment records (dicts) or Judgments"
    if not isinstance(judgments, (list, tuple, Iterator)):
        hint = " (read a log with read_judgments)" if isinstance(judgments, (str, bytes, os.PathLike)) else ""
        raise TypeError(f"{want}, got {type(judgments).__name__}{hint}")
    records = list(judgments)
    for i, rec in enumerate(records):
        if not isinstance(rec, Mapping):
            raise TypeError(f"{want}, got a {type(judgments).__name__} holding {type(rec).__name__} at index {i}")
    return Judgments.from_records(records)


def _plain(v: Any) -> Any:
    """Returns a NumPy scalar as the Python value a JSON line would give."""
    return v.item() if isinstance(v, np.generic) else v


def _column_arrays(columns: Mapping[str, Any]) -> tuple[int, dict[str, Any]]:
    """Returns ``(rows, {field: column})``: scalars broadcast to ``rows``, absent fields None.

    Numeric columns become NumPy arrays (of dtype object where they hold None or non-numbers),
    string columns lists. The rows are the length of the first column that is not a scalar
    (one row when every column is a scalar); a column of another length, or of more than one
    dimension, raises :class:`JudgmentError` naming it.
    """
    for name in ("goal_id", "reward"):
        if columns.get(name) is None:
            raise JudgmentError(f"missing required field {name!r}")
    shaped: dict[str, Any] = {}
    n, first = None, None
    for name in (*INT_FIELDS, *FLOAT_FIELDS, *STR_FIELDS):
        value = columns.get(name)
        if value is None:
            continue
        arr = np.asarray(value, dtype=object if isinstance(value, (list, tuple)) else None)
        if arr.ndim > 1:
            raise JudgmentError(f"{name} must be a scalar or one value per row, got shape {arr.shape}")
        if arr.dtype == object and arr.ndim == 1 and name not in STR_FIELDS:
            arr = _tighten(arr, name in FLOAT_FIELDS)
        shaped[name] = arr
        if arr.ndim == 1 and n is None:
            n, first = arr.shape[0], name
        elif arr.ndim == 1 and arr.shape[0] != n:
            raise JudgmentError(f"{name} has {arr.shape[0]} rows, {first} has {n}")
    n = 1 if n is None else n
    out: dict[str, Any] = {}
    for name in (*INT_FIELDS, *FLOAT_FIELDS, *STR_FIELDS):
        arr = shaped.get(name)
        if arr is not None and arr.ndim == 0:
            arr = np.full(n, arr.item(), dtype=object if arr.dtype.kind in "OUS" else arr.dtype)
        if arr is not None and name in STR_FIELDS:
            arr = arr.tolist()
        out[name] = arr
    return n, out


def _tighten(arr: np.ndarray, floats: bool) -> np.ndarray:
    """Returns an object column as a numeric array: all ints in range, or (``floats``) all numbers.

    Anything else (None, bools, text, ints out of range) stays an object column, checked row by row.
    """
    values = [_plain(v) for v in arr.tolist()]
    kinds = {type(v) for v in values}
    if kinds and kinds <= {int} and all(0 <= v <= _INT64_MAX for v in values):
        return np.array(values, np.int64)
    if floats and kinds and kinds <= {int, float}:
        try:
            return np.array([float(v) for v in values], np.float64)
        except OverflowError:  # an int beyond the float range: the row check names it
            return arr
    return arr


def _fast_columns(arrays: Mapping[str, Any], n: int) -> dict[str, Any] | None:
    """Returns the checked columns of numeric arrays, or None to check row by row.

    None when a column is not a plain numeric array (or a string column holds a non-string) or
    a check fails: the row-by-row pass then names the first bad row.
    """
    kw: dict[str, Any] = {}
    for name in INT_FIELDS:
        a = arrays[name]
        if a is None:
            kw[name] = np.full(n, -1, np.int64)
            continue
        if a.dtype.kind not in "iu" or (n and (a.min() < 0 or a.max() > _INT64_MAX)):
            return None
        kw[name] = a.astype(np.int64)
    for name in FLOAT_FIELDS:
        a = arrays[name]
        if a is None:
            kw[name] = np.full(n, math.nan)
            continue
        if a.dtype.kind not in "iuf":
            return None
        kw[name] = a.astype(np.float64)
        if not np.isfinite(kw[name]).all():
            return None
    for name in STR_FIELDS:
        col = arrays[name]
        if col is not None and not all(v is None or isinstance(v, str) for v in col):
            return None
        kw[name] = [None] * n if col is None else col
    reward, opt, reg = kw["reward"], kw["optimal_reward"], kw["regret"]
    if arrays["optimal_reward"] is None and arrays["regret"] is None:
        return None
    implied = episode_regret(reward, opt)
    if (np.abs(reg - implied) > regret_tolerance(opt, reward)).any():
        return None
    kw["regret"] = np.where(np.isnan(reg), implied, reg)
    adv = kw["advantage"]
    kw["advantage"] = np.where(np.isnan(adv), episode_advantage(reward, kw["baseline_reward"]), adv)
    return kw
