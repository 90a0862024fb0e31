"""Crash-safe file primitives used by the host shell.

Every JSON artifact is written through :func:`write_json_atomic` (temp file in the same
directory, fsync, rename), so a reader never sees a half-written file and a failed write leaves
the previous version intact.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np


class ArtifactWriteError(OSError):
    """Raised when an artifact cannot be written; the message names the path."""


def to_jsonable(obj: Any) -> Any:
    """Returns `obj` with numpy/JAX scalars and arrays turned into plain JSON values.

    Non-finite floats become ``None`` so the output is strict JSON (never ``NaN``).
    """
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if hasattr(obj, "__array__") and not isinstance(obj, (str, bytes)):
        arr = np.asarray(obj)
        if arr.ndim == 0:
            return to_jsonable(arr.item())
        return [to_jsonable(v) for v in arr.tolist()]
    if isinstance(obj, float):  # numpy scalars arrive here as Python values, through .item()
        return obj if math.isfinite(obj) else None
    return obj


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Returns `path` after writing `text` to it atomically (temp file + fsync + rename)."""
    return write_bytes_atomic(path, text.encode("utf-8"))


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Returns `path` after writing `data` to it atomically (temp file + fsync + rename)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise ArtifactWriteError(e.errno, f"cannot write {path}: {e.strerror}") from e
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise ArtifactWriteError(e.errno, f"cannot write {path}: {e.strerror}") from e
    _fsync_dir(path.parent)
    return path


def write_json_atomic(path: str | os.PathLike, obj: Any, *, indent: int | None = 2) -> Path:
    """Returns `path` after writing `obj` as strict JSON atomically (NaN/Inf become null)."""
    text = json.dumps(to_jsonable(obj), indent=indent, allow_nan=False, sort_keys=False)
    return write_text_atomic(path, text + "\n")


def read_json(path: str | os.PathLike) -> Any:
    """Returns the parsed JSON content of `path`; errors name the file."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError as e:
        raise FileNotFoundError(f"{path}: no such file") from e
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: invalid JSON at line {e.lineno}: {e.msg}") from e


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
