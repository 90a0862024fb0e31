"""Atomic writes: a failed write names the path, leaves the previous version and no temp file."""

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from augnes_jax import files

REPO = Path(__file__).resolve().parent.parent


def _temp_files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


def test_written_json_is_strict_and_round_trips(tmp_path):
    path = tmp_path / "sub" / "a.json"  # the parent is created
    obj = {"x": np.float32(0.5), "n": np.int64(3), "ok": np.bool_(True), "bad": [np.nan, np.inf, 1.0],
           "arr": np.arange(3), 4: "key"}  # fmt: skip
    assert files.write_json_atomic(path, obj) == path
    assert json.loads(path.read_text()) == {"x": 0.5, "n": 3, "ok": True, "bad": [None, None, 1.0],
                                            "arr": [0, 1, 2], "4": "key"}  # fmt: skip
    assert "NaN" not in path.read_text() and _temp_files(path.parent) == []


def test_a_failed_rename_removes_the_temp_file_and_names_the_path(tmp_path):
    target = tmp_path / "stats.json"
    target.mkdir()  # a directory where the file should go: the final rename fails
    (target / "inside").write_text("kept")
    with pytest.raises(files.ArtifactWriteError) as info:
        files.write_json_atomic(target, {"a": 1})
    assert info.value.errno in (errno.EISDIR, errno.ENOTEMPTY, errno.EEXIST)
    assert f"cannot write {target}: {os.strerror(info.value.errno)}" in str(info.value)
    assert _temp_files(tmp_path) == []
    assert (target / "inside").read_text() == "kept"


def test_a_parent_that_is_a_file_is_an_artifact_error(tmp_path):
    (tmp_path / "plainfile").write_text("x")
    path = tmp_path / "plainfile" / "a.json"
    with pytest.raises(files.ArtifactWriteError, match=f"cannot write {path}"):
        files.write_text_atomic(path, "{}")
    assert (tmp_path / "plainfile").read_text() == "x"


# A write that fails half-way: the file-size limit stops the temp file's write with EFBIG
# (SIGXFSZ ignored, so the write returns the error instead of killing the process).
_HALF_WAY = r"""
import json, resource, signal, sys
from augnes_jax import files
path, limit = sys.argv[1], int(sys.argv[2])
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
try:
    files.write_json_atomic(path, {"values": list(range(10000))})
except files.ArtifactWriteError as e:
    print(json.dumps({"errno": e.errno, "message": str(e)}))
finally:
    resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))  # files written at exit (coverage data)
"""


def test_a_write_that_fails_half_way_keeps_the_previous_version(tmp_path):
    path = tmp_path / "decision.json"
    files.write_json_atomic(path, {"version": 1})
    before = path.read_bytes()
    limit = 4096
    assert len(json.dumps({"values": list(range(10000))}, indent=2)) > limit  # the fault must happen
    res = subprocess.run([sys.executable, "-c", _HALF_WAY, str(path), str(limit)], cwd=REPO,
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    out = json.loads(res.stdout)
    assert out["errno"] == errno.EFBIG
    assert f"cannot write {path}: {os.strerror(errno.EFBIG)}" in out["message"]
    assert path.read_bytes() == before
    assert _temp_files(tmp_path) == []


def test_read_json_errors_name_the_file_and_line(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"{tmp_path / 'missing.json'}: no such file"):
        files.read_json(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{\n  "a": 1,\n  oops\n}\n')
    with pytest.raises(ValueError, match=f"{bad}: invalid JSON at line 3"):
        files.read_json(bad)


def test_to_jsonable_gives_plain_strict_json_values():
    import math

    import numpy as np

    from augnes_jax.files import to_jsonable

    value = {1: np.int64(7), "b": np.bool_(True), "f": np.float32(0.5), "nan": float("nan"),
             "arr": np.array([[1, 2]], np.int32), "scalar": np.array(2.5), "t": (np.float64(math.inf),)}
    assert to_jsonable(value) == {"1": 7, "b": True, "f": 0.5, "nan": None, "arr": [[1, 2]], "scalar": 2.5,
                                  "t": [None]}
    assert [type(x) for x in to_jsonable([np.int64(1), np.bool_(False)])] == [int, bool]
