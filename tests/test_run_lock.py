"""The run-directory lock: a live holder refuses a second writer by name; a dead one is taken over."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from augnes_jax import run_lock

HOLD = """
import sys, time
from augnes_jax import run_lock
lock = run_lock.acquire(sys.argv[1], command="test-holder")
print("held", flush=True)
time.sleep(120)
"""


def _holder_process(run_dir):
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(run_dir)], stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    assert line.strip() == "held", "the holder process did not take the lock"
    return proc


def test_second_writer_is_refused_with_the_holders_pid_host_and_start(tmp_path):
    proc = _holder_process(tmp_path)
    try:
        with pytest.raises(run_lock.RunDirInUse) as e:
            run_lock.acquire(tmp_path, command="second")
        msg = str(e.value)
        assert f"pid {proc.pid} on {socket.gethostname()} since " in msg
        assert msg.startswith(f"{tmp_path} is in use by ")
        assert "(test-holder)" in msg and "\n" not in msg
        # the refused attempt left the holder's record as it was
        assert run_lock.holder(tmp_path)["pid"] == proc.pid
    finally:
        proc.kill()
        proc.wait()


def test_a_killed_holders_lock_is_taken_over_with_a_warning(tmp_path, caplog):
    proc = _holder_process(tmp_path)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert run_lock.holder(tmp_path)["pid"] == proc.pid  # the premise: a record of a dead holder
    with caplog.at_level(logging.WARNING, logger="augnes_jax.run_lock"):
        lock = run_lock.acquire(tmp_path, command="next")
    try:
        warned = [r.getMessage() for r in caplog.records]
        assert any(f"left by pid {proc.pid}" in m and "the process is gone" in m for m in warned), warned
        assert run_lock.holder(tmp_path) == {
            "pid": os.getpid(), "host": socket.gethostname(),
            "since": run_lock.holder(tmp_path)["since"], "command": "next"}
    finally:
        lock.release()


def test_release_empties_the_record_and_the_next_writer_takes_it_silently(tmp_path, caplog):
    with run_lock.acquire(tmp_path, command="first"):
        assert run_lock.holder(tmp_path)["command"] == "first"
        with pytest.raises(run_lock.RunDirInUse):  # a second open file in the same process
            run_lock.acquire(tmp_path, command="same-process")
    assert run_lock.holder(tmp_path) is None
    assert (tmp_path / run_lock.LOCK_NAME).read_text() == ""
    with caplog.at_level(logging.WARNING, logger="augnes_jax.run_lock"):
        with run_lock.acquire(tmp_path, command="second"):
            pass
    assert not caplog.records


def test_record_is_one_json_line(tmp_path):
    t0 = time.time()
    with run_lock.acquire(tmp_path / "new" / "run", command="c"):
        text = (tmp_path / "new" / "run" / run_lock.LOCK_NAME).read_text()
    assert text.endswith("\n") and text.count("\n") == 1
    info = json.loads(text)
    assert info["pid"] == os.getpid() and info["since"].endswith("Z")
    assert time.mktime(time.strptime(info["since"], "%Y-%m-%dT%H:%M:%SZ")) - time.timezone >= int(t0) - 1
