"""The judgment record: its fields, their checks and their JSON form (host shell).

A judgment is the outcome of one episode measured against its goal: ``goal_id``, ``reward``,
the goal's ``optimal_reward`` (and where it came from, ``oracle``), ``regret = optimal_reward -
reward`` and ``advantage = reward - baseline_reward`` (both by :mod:`augnes_jax.regret`), plus
where it was made (``run``, ``variant``, capacity fields, ``epoch``, ``episode``). DESIGN.md
gives the schema.

:func:`check_record` is the one check of a record: the writer runs it before writing, and the
reader's careful pass runs it on every line it names.
"""

from __future__ import annotations

import json
import math
import types
from collections.abc import Mapping
from typing import Any

import numpy as np

from augnes_jax.errors import UserError
from augnes_jax.regret import episode_advantage, episode_regret

__all__ = [
    "FIELD_ORDER",
    "FLOAT_FIELDS",
    "INT_FIELDS",
    "KNOWN_FIELDS",
    "NO_EXTRA",
    "SCHEMA_VERSION",
    "STR_FIELDS",
    "JudgmentError",
    "canonical_record",
    "check_record",
    "is_json_object",
    "record_json",
    "regret_tolerance",
]

SCHEMA_VERSION = 1
# Numeric columns; missing values read as NaN.
FLOAT_FIELDS = ("reward", "optimal_reward", "regret", "baseline_reward", "advantage")
# Integer columns (non-negative); missing values read as -1.
INT_FIELDS = ("goal_id", "epoch", "episode", "hidden_dim", "buffer_size", "seed", "schema")
# String columns; missing values read as None.
STR_FIELDS = ("run", "variant", "strategy", "oracle", "ts")
KNOWN_FIELDS = frozenset(FLOAT_FIELDS + INT_FIELDS + STR_FIELDS)
# The order a record's fields are written in.
FIELD_ORDER = (
    "schema", "ts", "run", "variant", "hidden_dim", "buffer_size", "seed", "epoch", "episode",
    "strategy", "goal_id", "reward", "optimal_reward", "baseline_reward", "regret", "advantage",
    "oracle",
)  # fmt: skip
_INT64_MAX = 2**63 - 1
# The extra fields of a row without any (one shared read-only mapping).
NO_EXTRA: Mapping[str, Any] = types.MappingProxyType({})


class JudgmentError(UserError, ValueError):
    """A bad judgment or judgments file; the message is one line, ``"<path>:<line>: <problem>"``."""


def regret_tolerance(optimal: Any, reward: Any) -> Any:
    """Returns how far a stated regret may be from ``optimal - reward`` (scalar or array).

    ``1e-6 + 1e-6 * max(|optimal|, |reward|)``: loose enough for values written in float32,
    tight enough to catch a regret that contradicts its line.
    """
    return 1e-6 + 1e-6 * np.maximum(np.abs(optimal), np.abs(reward))


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
        implied = episode_regret(reward, opt)
        if math.isnan(reg):
            floats["regret"] = implied
        elif abs(reg - implied) > regret_tolerance(opt, reward):
            raise ValueError(f"regret {reg!r} contradicts optimal_reward - reward = {implied!r}")
    if math.isnan(floats["advantage"]) and not math.isnan(floats["baseline_reward"]):
        floats["advantage"] = episode_advantage(reward, floats["baseline_reward"])
    strs = []
    for name in STR_FIELDS:
        v = rec.get(name)
        if v is not None and not isinstance(v, str):
            raise ValueError(f"{name} must be a string, got {_fmt(v)}")
        strs.append(v)
    extra = {k: v for k, v in rec.items() if k not in KNOWN_FIELDS}
    return (*ints, *(floats[n] for n in FLOAT_FIELDS), *strs), extra


def canonical_record(rec: Mapping[str, Any]) -> dict:
    """Returns ``rec`` with its known fields in the order the writer uses, extra fields after.

    Lines written in one order read alike: a log's lines list their fields the same way.
    """
    out = {k: rec[k] for k in FIELD_ORDER if k in rec}
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


def record_json(rec: dict) -> str:
    """Returns ``rec`` as one compact JSON line (NumPy scalars and arrays as JSON values)."""
    return json.dumps(
        rec, separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=_json_default
    )


def is_json_object(data: bytes) -> bool:
    """Returns whether ``data`` holds one complete JSON object: how a last line without its
    newline is told from a torn write."""
    try:
        return isinstance(json.loads(data), dict)
    except ValueError:
        return False
