"""Reading a transitions file's arrays chunk by chunk from disk, in row order (``.npz`` or Parquet).

:func:`open_source` returns a source whose ``specs`` (each array's dtype and shape, from the
file's headers or schema, before any row is read) are checked with
:func:`augnes_jax.transitions.check_specs`, and whose ``chunks(rows)`` yields ``(start, arrays)``
for consecutive row ranges. Only one chunk of each array is in memory at a time.

- ``.npz`` (``numpy.savez`` or ``numpy.savez_compressed``): each member ``NAME.npy`` is read as a
  stream from the zip archive: its header (format 1.0, 2.0 or 3.0) gives dtype, shape and order,
  then rows are decoded chunk by chunk. A Fortran-ordered ``[N, k]`` array is read one column
  stream per column; in a compressed archive that decompresses the member once per column.
- ``.parquet``: one column per array. ``obs``, ``next_obs`` and ``[N, a]`` actions are
  fixed-size array columns of numbers (``polars.Array``; what ``polars.DataFrame`` makes of a 2-D
  NumPy array, stored as a Parquet fixed-size list); ``action`` ``[N]``, ``goal_id``, ``reward``,
  ``terminated`` and ``episode_id`` are plain number (or boolean) columns. A variable-length list
  column or a null value is a :class:`DataError`. Polars reads at least one row group at a time.
"""

from __future__ import annotations

import contextlib
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import numpy as np

from augnes_jax.transitions import OPTIONAL, REQUIRED, ArraySpec, DataError

__all__ = ["NpzSource", "ParquetSource", "open_source"]

NAMES = REQUIRED + OPTIONAL
NPY_MAGIC = b"\x93NUMPY"


def _unreadable(path: Path, kind: str, e: BaseException) -> DataError:
    first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
    return DataError(f"data error: {path}: cannot read as {kind} ({first})")


def open_source(path: str | Path) -> NpzSource | ParquetSource:
    """Returns the chunked reader of the file at `path` (``.parquet``: Parquet, else ``.npz``).

    Raises:
      DataError: no such file, a directory, or a file that is not a readable archive of the kind.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"data error: {path}: no such file")
    if path.is_dir():
        raise DataError(f"data error: {path}: is a directory")
    return ParquetSource(path) if path.suffix.lower() == ".parquet" else NpzSource(path)


class NpzSource:
    """The arrays of an ``.npz`` archive, read from the zip members' streams chunk by chunk."""

    def __init__(self, path: Path):
        self.path = path
        self._layout: dict[str, tuple[zipfile.ZipInfo, int, bool]] = {}  # name: member, data offset, fortran
        self.specs: dict[str, ArraySpec] = {}
        try:
            with open(path, "rb") as f:
                if f.read(len(NPY_MAGIC)) == NPY_MAGIC:
                    raise DataError(f"data error: {path}: not an .npz archive")
            with zipfile.ZipFile(path) as archive:
                for info in archive.infolist():
                    name = info.filename.removesuffix(".npy")
                    if name in NAMES and name not in self.specs:
                        with archive.open(info) as stream:
                            self.specs[name], fortran = self._header(name, stream)
                            self._layout[name] = (info, stream.tell(), fortran)
        except (zipfile.BadZipFile, EOFError, OSError, ValueError, NotImplementedError) as e:
            if isinstance(e, DataError):
                raise
            raise _unreadable(path, ".npz", e) from None

    def _header(self, name: str, stream: IO[bytes]) -> tuple[ArraySpec, bool]:
        fmt = np.lib.format
        try:
            version = fmt.read_magic(stream)
            read = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
            shape, fortran, dtype = read(stream)
        except ValueError as e:
            first = (str(e).strip().splitlines() or ["bad header"])[0][:200]
            raise DataError(f"data error: {self.path}: array {name!r}: cannot read its .npy header ({first})") from None
        return ArraySpec(np.dtype(dtype), tuple(int(s) for s in shape)), bool(fortran) and len(shape) > 1

    @property
    def num_rows(self) -> int:
        """Returns N (the rows of ``obs``)."""
        return self.specs["obs"].shape[0]

    def chunks(self, rows: int) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
        """Yields ``(start, arrays)`` for rows ``[start, start + rows)`` of every array, in order.

        The specs must have passed :func:`check_specs` (every array has ``num_rows`` rows).
        """
        try:
            with zipfile.ZipFile(self.path) as archive, contextlib.ExitStack() as streams:
                readers = {name: self._reader(archive, name, streams) for name in self.specs}
                for start in range(0, self.num_rows, rows):
                    count = min(rows, self.num_rows - start)
                    yield start, {name: read(start, count) for name, read in readers.items()}
        except (zipfile.BadZipFile, EOFError, OSError, ValueError, NotImplementedError) as e:
            if isinstance(e, DataError):
                raise
            raise _unreadable(self.path, ".npz", e) from None

    def _reader(self, archive: zipfile.ZipFile, name: str, opened: contextlib.ExitStack):
        info, offset, fortran = self._layout[name]
        spec = self.specs[name]
        n, width = spec.shape[0], int(np.prod(spec.shape[1:], dtype=np.int64))
        size = spec.dtype.itemsize
        columns = range(width) if fortran else [0]
        streams = []
        for j in columns:  # a Fortran-ordered [N, k] array stores column j at offset + j * N * size
            stream = opened.enter_context(archive.open(info))
            stream.seek(offset + j * n * size)
            streams.append(stream)

        def read(start: int, count: int) -> np.ndarray:
            per = size * (1 if fortran else width)
            parts = []
            for stream in streams:
                buf = stream.read(count * per)
                if len(buf) != count * per:
                    got = start + len(buf) // per
                    raise DataError(f"data error: {self.path}: array {name!r} ends at row {got} of {n}")
                parts.append(np.frombuffer(buf, spec.dtype))
            if fortran:
                return np.stack(parts, axis=1).reshape((count, *spec.shape[1:]))
            return parts[0].reshape((count, *spec.shape[1:]))

        return read


class ParquetSource:
    """The columns of a Parquet file, read with polars one row slice at a time."""

    def __init__(self, path: Path):
        import polars as pl

        self.path = path
        self._pl = pl
        try:
            self._frame = pl.scan_parquet(path)
            schema = self._frame.collect_schema()
            n = int(self._frame.select(pl.len()).collect().item())
            empty = self._frame.select([c for c in schema if c in NAMES]).slice(0, 0).collect()
        except (pl.exceptions.PolarsError, OSError, ValueError) as e:
            raise _unreadable(path, "Parquet", e) from None
        self.specs = {}
        for name in empty.columns:
            dtype = schema[name]
            if isinstance(dtype, pl.List):
                raise DataError(f"data error: {path}: array {name!r} is a variable-length list column; store it "
                                f"as a fixed-size array column (polars.Array, e.g. from a 2-D NumPy array)")
            if isinstance(dtype, pl.Array) and len(dtype.shape) != 1:
                raise DataError(f"data error: {path}: array {name!r} must be [N] or [N, k], "
                                f"got shape {[n, *dtype.shape]}")
            width = tuple(dtype.shape) if isinstance(dtype, pl.Array) else ()
            self.specs[name] = ArraySpec(empty[name].to_numpy().dtype, (n, *width))
        self._num_rows = n

    @property
    def num_rows(self) -> int:
        """Returns N (the file's rows)."""
        return self._num_rows

    def chunks(self, rows: int) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
        """Yields ``(start, arrays)`` for rows ``[start, start + rows)`` of every column, in order."""
        pl = self._pl
        names = list(self.specs)
        for start in range(0, self.num_rows, rows):
            try:
                frame = self._frame.select(names).slice(start, rows).collect()
            except (pl.exceptions.PolarsError, OSError) as e:
                raise _unreadable(self.path, "Parquet", e) from None
            arrays = {}
            for name in names:
                column = frame[name]
                if column.null_count():
                    row = start + int(column.is_null().arg_true()[0])
                    raise DataError(f"data error: {self.path}: array {name!r} row {row}: missing value (null)")
                arrays[name] = column.to_numpy()
                if arrays[name].dtype != self.specs[name].dtype:  # an array column with a null inside
                    row = start + int(np.flatnonzero(column.arr.contains(None).to_numpy())[0])
                    raise DataError(f"data error: {self.path}: array {name!r} row {row}: missing value (null)")
            yield start, arrays
