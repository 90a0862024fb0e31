"""One writer per run directory: an advisory lock that names its holder (shell layer).

A sweep (new or resumed) and ``stats --out`` into a run directory hold ``RUN_DIR/.lock`` with
``fcntl.flock`` for as long as they write there. The file records who holds it (pid, host, start
time, command), so a second writer is refused with one line that says who::

    runs/x is in use by pid 4242 on host-a since 2026-12-02T21:55:24Z (augnes_jax.sweep)

The kernel drops a ``flock`` when its process dies, however it dies, so a lock left by a killed
process never blocks: the next writer takes it over and warns, naming the process that is gone.
On a clean exit the holder empties the file. Read-only commands (``meta``, ``dashboard``,
``infer``, ``serve``) take no lock and work while a sweep holds it.

In a multi-process run only process 0 takes the lock: the processes of one run share the
directory by design, and a lock per process would lock them out of each other.

``flock`` is advisory and local to one kernel on some network file systems; two hosts writing
one run directory over NFS should use a multi-process run, which coordinates them.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from augnes_jax.clock import utc_now
from augnes_jax.errors import UserError

__all__ = ["LOCK_NAME", "RunDirInUse", "RunLock", "acquire", "acquire_if_present", "holder"]

LOCK_NAME = ".lock"
log = logging.getLogger(__name__)


class RunDirInUse(UserError):
    """Another live process holds the run directory's lock."""


@dataclass
class RunLock:
    """A held run-directory lock; :meth:`release` (or leaving a ``with`` block) gives it back."""

    path: Path
    fd: int | None

    def release(self, *, remove_dir: bool = False) -> None:
        """Empties the lock file and releases the lock (idempotent).

        Args:
          remove_dir: also remove the run directory if the lock file is all it holds (a run
            directory created for a sweep that stopped before writing anything).
        """
        if self.fd is None:
            return
        try:
            os.ftruncate(self.fd, 0)
        except OSError:
            pass  # a full or read-only disk must not turn a finished run into a failure
        if remove_dir:
            with contextlib.suppress(OSError):
                if [p.name for p in self.path.parent.iterdir()] == [LOCK_NAME]:
                    self.path.unlink()
                    self.path.parent.rmdir()
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)
        self.fd = None

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def holder(run_dir: str | os.PathLike) -> dict | None:
    """Returns what the lock file of ``run_dir`` records (pid, host, since, command), or None."""
    try:
        text = (Path(run_dir) / LOCK_NAME).read_text(encoding="utf-8").strip()
    except OSError:
        return None
    if not text:
        return None
    try:
        info = json.loads(text)
    except json.JSONDecodeError:
        return None
    return info if isinstance(info, dict) else None


def _describe(run_dir: Path, info: dict | None) -> str:
    if not info:
        return f"{run_dir} is in use by another process"
    cmd = f" ({info['command']})" if info.get("command") else ""
    return (f"{run_dir} is in use by pid {info.get('pid', '?')} on {info.get('host', '?')} "
            f"since {info.get('since', '?')}{cmd}")


def _process_gone(info: dict) -> bool:
    """Returns True when ``info`` names a process on this host that no longer exists."""
    if info.get("host") != socket.gethostname() or not isinstance(info.get("pid"), int):
        return False
    try:
        os.kill(info["pid"], 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def acquire(run_dir: str | os.PathLike, *, command: str) -> RunLock:
    """Returns the held lock of ``run_dir`` (created if needed), recording this process as holder.

    Args:
      run_dir: the run directory; created if it does not exist.
      command: what holds it, shown to a refused writer, e.g. ``"augnes_jax.sweep"``.

    Raises:
      RunDirInUse: a live process holds the lock (the message names its pid, host and start).
      OSError: the directory or the lock file cannot be created.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        os.close(fd)
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise RunDirInUse(_describe(run_dir, holder(run_dir))) from None
        raise
    previous = holder(run_dir)
    if previous and previous.get("pid") != os.getpid():
        why = "the process is gone" if _process_gone(previous) else "it no longer holds the lock"
        log.warning("taking over the lock of %s left by pid %s on %s since %s (%s)", run_dir,
                    previous.get("pid", "?"), previous.get("host", "?"), previous.get("since", "?"), why)
    info = {"pid": os.getpid(), "host": socket.gethostname(), "since": utc_now("seconds"), "command": command}
    data = (json.dumps(info) + "\n").encode("utf-8")
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)
        os.fsync(fd)
    except OSError:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
        raise
    return RunLock(path=path, fd=fd)


def acquire_if_present(directory: str | os.PathLike, *, command: str) -> RunLock | None:
    """Returns the held lock of ``directory`` if it has a lock file (a sweep's run directory).

    A plain directory gets no lock file: ``stats --out`` next to a user's own log writes no
    ``.lock`` there.

    Raises:
      RunDirInUse: a live process (a sweep) holds the lock.
    """
    if not (Path(directory) / LOCK_NAME).is_file():
        return None
    return acquire(directory, command=command)
