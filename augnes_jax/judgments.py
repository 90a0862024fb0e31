"""The judgment log, ``judgments.jsonl``: the public names of its schema, writer and reader.

One judgment per line: the outcome of one episode measured against its goal (DESIGN.md gives
the schema). The jobs live in their own modules; this one only gathers their public names:

- :mod:`augnes_jax.judgments_schema`: the fields, :func:`check_record`, :func:`canonical_record`
  and :class:`JudgmentError`;
- :mod:`augnes_jax.judgments_writer`: :class:`JudgmentWriter` (append-only, crash-safe) and
  :func:`make_judgments` (per-episode arrays to records);
- :mod:`augnes_jax.judgments_columns`: :class:`Judgments`, the log as columns;
- :mod:`augnes_jax.judgments_reader`: :func:`read_judgments`, :func:`iter_judgments` (batches,
  for files larger than memory) and :func:`parse_lines`;
- :mod:`augnes_jax.judgments_tail`: following the log while it grows.
"""

from __future__ import annotations

from augnes_jax.clock import utc_now
from augnes_jax.judgments_columns import Judgments
from augnes_jax.judgments_reader import (
    DEFAULT_BATCH_BYTES,
    iter_judgments,
    parse_lines,
    read_judgments,
)
from augnes_jax.judgments_schema import (
    FLOAT_FIELDS,
    INT_FIELDS,
    SCHEMA_VERSION,
    STR_FIELDS,
    JudgmentError,
    canonical_record,
    check_record,
    regret_tolerance,
)
from augnes_jax.judgments_writer import JudgmentWriter, make_judgments

__all__ = [
    "DEFAULT_BATCH_BYTES",
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
    "regret_tolerance",
    "utc_now",
]
