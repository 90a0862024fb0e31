"""Reading the judgment log into columns: :func:`read_judgments`, :func:`iter_judgments` and
:func:`parse_lines` (host shell).

- :func:`read_judgments` returns the log as :class:`~augnes_jax.judgments_columns.Judgments`,
  columns of NumPy arrays; :func:`iter_judgments` yields it in batches of whole lines, for files
  larger than memory; :func:`parse_lines` reads lines already in memory (a log followed while
  it grows). Extra fields of other systems' logs are kept per row. A malformed line raises
  :class:`JudgmentError` naming its line; a torn last line is skipped with a warning.

polars parses the lines into columns and checks them in one parallel pass (nulls, signs,
finiteness, strings that stood for other values), while a thread counts the file's quotes to
prove it holds no field outside the schema; NumPy checks the regret/optimal agreement. The
columns no check reads stay polars columns until a caller reads them. If polars refuses the
lines or a check fails, they are read again one by one with :func:`json.loads` and
:func:`check_record`, which name the first bad line; that careful pass is also the reference the
fast one is tested against.
"""

from __future__ import annotations

import json
import math
import mmap
import os
import warnings
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

from augnes_jax.judgments_columns import Judgments, column_values, run_columns
from augnes_jax.judgments_schema import (
    FLOAT_FIELDS,
    INT_FIELDS,
    KNOWN_FIELDS,
    NO_EXTRA,
    STR_FIELDS,
    JudgmentError,
    check_record,
    regret_tolerance,
)
from augnes_jax.regret import episode_advantage, episode_regret

__all__ = ["DEFAULT_BATCH_BYTES", "iter_judgments", "parse_lines", "read_judgments"]

DEFAULT_BATCH_BYTES = 64 << 20  # iter_judgments reads about this many bytes of lines at a time
_BOM = b"\xef\xbb\xbf"
# A JSON number, true, false, an object or an array: the text polars gives a string column for
# a value that was not a string (it reads {"variant": 3} as the string "3").
_NOT_A_STRING = (
    r"^(?:-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?|true|false|\{.*\}|\[.*\])$"
)


def _careful(lines: list[bytes], path: str, line0: int, raw_last: bool) -> Judgments:
    """Returns the lines read one by one with json.loads and checked by :func:`check_record`.

    The reference reading, and the fallback that names the first bad line (``line0`` lines
    precede ``lines`` in the file). ``raw_last``: the last line lacks its newline and was found
    to be JSON by json.loads on its bytes, which is how it is read again here.
    """
    return Judgments.from_checked(_checked_lines(lines, path, line0, raw_last), path)


def _checked_lines(
    lines: list[bytes], path: str, line0: int, raw_last: bool
) -> Iterator[tuple[tuple, dict]]:
    """Yields :func:`check_record` of each non-blank line, or raises JudgmentError naming it."""
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
            yield check_record(rec)
        except ValueError as e:
            raise JudgmentError(f"{where}: {e}") from None


def _polars_schema() -> dict:
    import polars as pl

    return {
        **{name: pl.Int64 for name in INT_FIELDS},
        **{name: pl.Float64 for name in FLOAT_FIELDS},
        **{name: pl.String for name in STR_FIELDS},
    }


def _facts(df) -> dict:
    """Returns what the checks need to know of the parsed columns, computed by polars in one
    parallel pass: each field's null count, the integer minima, whether each float column is
    finite (its sum is: a NaN or an Inf anywhere makes it NaN or Inf, and a sum that overflows
    only sends the lines to the careful pass), and whether a string field holds a value that
    stood for a non-string (its runs' heads checked when the column is made of runs)."""
    import polars as pl

    runs = run_columns(df[list(STR_FIELDS)])  # getitem: an eager select of bare columns copies them
    exprs = []
    for name in INT_FIELDS:
        exprs += [pl.col(name).null_count().alias(f"{name}:n"), pl.col(name).min().alias(f"{name}:min")]
    for name in FLOAT_FIELDS:
        col = pl.col(name)
        exprs += [col.null_count().alias(f"{name}:n"), col.sum().alias(f"{name}:sum")]
    for name in STR_FIELDS:
        col = pl.col(name)
        heads = col.rle().struct.field("value") if name in runs else col
        if name == "ts":  # the UTC form ends in "Z", which no number, literal or container does
            heads = heads.filter(heads.str.ends_with("Z").not_())
        exprs += [col.null_count().alias(f"{name}:n"),
                  heads.str.contains(_NOT_A_STRING).any().alias(f"{name}:bad")]  # fmt: skip
    return df.select(exprs).row(0, named=True)


_SLICE_BYTES = 1 << 22  # byte scans go slice by slice: each slice stays in cache


def _count_byte(buf, byte: int) -> int:
    """Returns how often ``byte`` occurs in ``buf`` (counted in slices that stay in cache)."""
    a = np.frombuffer(buf, np.uint8)
    step = _SLICE_BYTES
    return sum(int(np.count_nonzero(a[i : i + step] == byte)) for i in range(0, a.shape[0], step))


def _unescaped_quotes(data) -> int | None:
    """Returns how many quotes ``data`` holds, or None if it holds a backslash (an escape).

    Slice by slice, so that the GIL the search holds is held briefly: NumPy counts without it.
    """
    a = np.frombuffer(data, np.uint8)
    step = _SLICE_BYTES
    quotes = 0
    for i in range(0, a.shape[0], step):
        if data.find(b"\\", i, i + step) >= 0:
            return None
        quotes += int(np.count_nonzero(a[i : i + step] == ord('"')))
    return quotes


_scanner: ThreadPoolExecutor | None = None


def _scan(data) -> Future:
    """Starts :func:`_unescaped_quotes` on a thread of its own: NumPy counts while polars
    checks the columns."""
    global _scanner
    if _scanner is None:
        _scanner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="judgments-scan")
    return _scanner.submit(_unescaped_quotes, data)


def _fast(source, data, path: str) -> Judgments | None:
    """Returns the lines read by polars and checked in polars and NumPy, or None to read them
    carefully.

    ``source`` is what polars reads (the file's path, or ``data`` itself); ``data`` holds the
    same bytes (a ``bytes`` or an ``mmap``). None means polars refused the lines, a check
    failed, or the lines may hold something the columns cannot show exactly.
    """
    import polars as pl

    try:
        df = pl.read_ndjson(source, schema=_polars_schema())
    except Exception:  # any refusal by the library: the careful pass names the line
        return None
    scan = _scan(data)
    try:
        kw, present = _checked_columns(df)
    finally:
        quotes = scan.result()  # the scan reads ``data``: it ends before the caller unmaps it
    if kw is None:
        return None
    n = df.height
    # Without backslash escapes every quote opens or closes a key or a string value, so a quote
    # count equal to the known fields' proves the lines hold no other key (and no null field).
    if quotes == present:
        extra = [NO_EXTRA] * n
    else:
        extra = _extras(source, data, df, n)
        if extra is None:
            return None
    return Judgments(**kw, extra=extra, path=path)


def _checked_columns(df) -> tuple[dict | None, int]:
    """Returns ``(Judgments' columns, quotes the known fields hold)``, or ``(None, 0)`` where a
    check fails. Columns the checks do not read stay polars columns (Judgments converts each
    when it is first read)."""
    n = df.height
    facts = _facts(df)
    if facts["goal_id:n"] or facts["reward:n"]:
        return None, 0
    if any((facts[f"{name}:min"] or 0) < 0 for name in INT_FIELDS):
        return None, 0
    if not all(math.isfinite(facts[f"{name}:sum"]) for name in FLOAT_FIELDS):
        return None, 0
    if any(facts[f"{name}:bad"] for name in STR_FIELDS):
        return None, 0
    present = sum(2 * (n - facts[f"{name}:n"]) for name in INT_FIELDS + FLOAT_FIELDS)
    present += sum(4 * (n - facts[f"{name}:n"]) for name in STR_FIELDS)  # key and value quotes
    kw: dict[str, Any] = {name: df[name] for name in INT_FIELDS + FLOAT_FIELDS + STR_FIELDS}
    for name in ("reward", "optimal_reward", "regret"):  # what the regret checks read
        kw[name] = column_values(name, df[name])
    reward, opt, reg = kw["reward"], kw["optimal_reward"], kw["regret"]
    implied = episode_regret(reward, opt)
    if facts["optimal_reward:n"] and facts["regret:n"] and (np.isnan(opt) & np.isnan(reg)).any():
        return None, 0
    if (np.abs(reg - implied) > regret_tolerance(opt, reward)).any():
        return None, 0
    if facts["regret:n"]:
        kw["regret"] = np.where(np.isnan(reg), implied, reg)
    if facts["advantage:n"]:
        adv, base = (column_values(name, df[name]) for name in ("advantage", "baseline_reward"))
        kw["advantage"] = np.where(np.isnan(adv), episode_advantage(reward, base), adv)
    return kw, present


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
    if all(name in KNOWN_FIELDS for name in schema):
        return [NO_EXTRA] * n
    lines = [line for line in data[:].split(b"\n") if line.strip()]
    if len(lines) != n:
        return None
    extra = []
    for line in lines:
        try:
            rec = json.loads(line)
        except (ValueError, RecursionError):
            return None
        ext = (
            {k: v for k, v in rec.items() if k not in KNOWN_FIELDS}
            if isinstance(rec, dict)
            else None
        )
        extra.append(ext or NO_EXTRA)
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

    The file is parsed by polars and its columns are checked at once; if polars refuses the
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
