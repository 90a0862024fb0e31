"""A judgments log as columns: :class:`Judgments`, one NumPy array or list per field (host shell).

The reader (:mod:`augnes_jax.judgments_reader`) returns it, :meth:`Judgments.from_records` builds
it from records in memory, and :meth:`Judgments.to_polars` hands it to data tools.
"""

from __future__ import annotations

import dataclasses
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
)

__all__ = ["Judgments"]


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

        def checked() -> Iterator[tuple[tuple, dict]]:
            for i, rec in enumerate(records):
                try:
                    yield check_record(dict(rec) if isinstance(rec, Mapping) else rec)
                except ValueError as e:
                    raise JudgmentError(f"record {i}: {e}") from None

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
        for name in INT_FIELDS:
            arr = getattr(self, name)
            cols[name] = pl.Series(name, arr, pl.Int64).set(pl.Series(arr < 0), None)
        for name in FLOAT_FIELDS:
            cols[name] = pl.Series(name, getattr(self, name), pl.Float64, nan_to_null=True)
        for name in STR_FIELDS:
            cols[name] = pl.Series(name, getattr(self, name), pl.String)
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
