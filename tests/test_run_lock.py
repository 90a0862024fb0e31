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


def test_a_holder_that_wrote_no_record_is_still_refused(tmp_path):
    import fcntl

    (tmp_path / run_lock.LOCK_NAME).write_text("")
    fd = os.open(tmp_path / run_lock.LOCK_NAME, os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)  # held, as by a writer between taking the lock and recording itself
    try:
        with pytest.raises(run_lock.RunDirInUse, match=f"^{tmp_path} is in use by another process$"):
            run_lock.acquire(tmp_path, command="second")
    finally:
        os.close(fd)


@pytest.mark.parametrize("record", ["not json", "[1, 2]", ""])
def test_an_unreadable_record_names_no_holder(tmp_path, record):
    (tmp_path / run_lock.LOCK_NAME).write_text(record)
    assert run_lock.holder(tmp_path) is None
    with run_lock.acquire(tmp_path, command="x"):
        assert run_lock.holder(tmp_path)["pid"] == os.getpid()


@pytest.mark.parametrize("host_is_here", [True, False])
def test_a_record_of_a_live_process_that_no_longer_holds_the_lock_is_taken_over(tmp_path, caplog, host_is_here):
    host = socket.gethostname() if host_is_here else "elsewhere"
    (tmp_path / run_lock.LOCK_NAME).write_text(json.dumps({"pid": os.getppid(), "host": host, "since": "T"}))
    with caplog.at_level(logging.WARNING, logger="augnes_jax.run_lock"), run_lock.acquire(tmp_path, command="x"):
        pass
    assert [r.getMessage() for r in caplog.records] == [
        f"taking over the lock of {tmp_path} left by pid {os.getppid()} on {host} since T "
        "(it no longer holds the lock)"]


def test_release_is_idempotent_and_removes_only_a_directory_it_alone_holds(tmp_path):
    lone, used = tmp_path / "lone", tmp_path / "used"
    lock = run_lock.acquire(lone, command="x")
    lock.release(remove_dir=True)
    lock.release(remove_dir=True)  # a second release does nothing
    assert not lone.exists()
    lock = run_lock.acquire(used, command="x")
    (used / "config.yaml").write_text("epochs: 1\n")
    lock.release(remove_dir=True)
    assert sorted(p.name for p in used.iterdir()) == [run_lock.LOCK_NAME, "config.yaml"]


def test_acquire_if_present_locks_only_a_directory_with_a_lock_file(tmp_path):
    assert run_lock.acquire_if_present(tmp_path, command="x") is None
    assert list(tmp_path.iterdir()) == []
    run_lock.acquire(tmp_path, command="sweep").release()
    lock = run_lock.acquire_if_present(tmp_path, command="stats")
    try:
        assert run_lock.holder(tmp_path)["command"] == "stats"
    finally:
        lock.release()
