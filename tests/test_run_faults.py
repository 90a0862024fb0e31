"""Faults a user meets on a run directory: a second writer, a damaged checkpoint, a full disk.

Each fault is made for real (a second process, bytes overwritten on disk, a small tmpfs) and the
outcome is compared with the uninterrupted reference run of ``tests/test_resume.py`` (same config,
same compilation cache).
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from augnes_jax import run_lock
from augnes_jax.checkpoint_meta import CheckpointError
from augnes_jax.checkpoint_read import restore_checkpoint
from augnes_jax.inference import load_world_model
from tests.test_resume import artifacts, assert_same, reference_run, sweep_cmd, sweep_env


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    run_dir = reference_run(tmp_path_factory)
    return run_dir, artifacts(run_dir)


@pytest.fixture
def finished_copy(tmp_path_factory, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(reference_run(tmp_path_factory), run_dir)
    return run_dir


def _flip_a_byte(run_dir: Path, step: int, item: str) -> None:
    """Damages ``item`` of checkpoint ``step`` the way a bad disk does: same size, other bytes."""
    step_dir = run_dir / "checkpoints" / str(step)
    if item == "meta":
        (step_dir / "meta" / "metadata").write_text('{"truncated": ')
        return
    data = max((step_dir / item).glob("ocdbt.process_0/d/*"), key=lambda p: p.stat().st_size)
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    data.write_bytes(bytes(raw))


def _run(cmd, env, timeout=600) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)


def _errors(stderr: str) -> list[str]:
    """Returns the stderr lines that are not log lines of the sweep (INFO/WARNING)."""
    return [x for x in stderr.strip().splitlines() if not x.startswith(("INFO ", "WARNING "))]


# ----------------------------------------------------------------------------- damaged checkpoint

@pytest.mark.parametrize("item", ["resume", "params", "meta"])  # every kind: benchmarks/fault_drill.py
def test_a_damaged_newest_checkpoint_costs_an_epoch_not_the_run(reference, tmp_path_factory, finished_copy, item):
    _, ref = reference
    _flip_a_byte(finished_copy, 2, item)
    with pytest.raises(CheckpointError, match="damaged|unreadable"):  # the fault landed
        restore_checkpoint(finished_copy / "checkpoints", 2)
    res = _run(sweep_cmd(finished_copy, "--resume"), sweep_env(tmp_path_factory))
    assert res.returncode == 0, res.stderr[-2000:]
    warnings = [x for x in res.stderr.splitlines() if "is damaged" in x]
    assert len(warnings) == 1 and "resuming from checkpoint 1: checkpoint 2 is damaged" in warnings[0], res.stderr
    assert "resuming" in res.stderr and "at epoch 2 of 3" in res.stderr
    assert (finished_copy / "checkpoints_damaged" / "2").is_dir()
    # epoch 2 was run again from checkpoint 1: everything equals the uninterrupted run
    assert_same(ref, artifacts(finished_copy))


def test_no_intact_checkpoint_is_one_line_and_changes_nothing(tmp_path_factory, finished_copy):
    for step in (0, 1, 2):
        _flip_a_byte(finished_copy, step, "resume")
    before = (finished_copy / "judgments.jsonl").read_bytes()
    res = _run(sweep_cmd(finished_copy, "--resume"), sweep_env(tmp_path_factory))
    errors = _errors(res.stderr)
    assert res.returncode == 2 and len(errors) == 1, res.stderr[-2000:]
    assert errors[0].startswith("augnes_jax.sweep: error: cannot resume: no intact checkpoint in ")
    assert "damaged" in errors[0] and "Traceback" not in res.stderr
    assert (finished_copy / "judgments.jsonl").read_bytes() == before
    assert not (finished_copy / "checkpoints_damaged").exists()


def test_inference_falls_back_to_the_newest_intact_model(finished_copy, caplog):
    obs = np.linspace(-1.0, 1.0, 6 * 3, dtype=np.float32).reshape(3, 6)
    action = np.linspace(-0.5, 0.5, 2 * 3, dtype=np.float32).reshape(3, 2)
    expected = np.asarray(load_world_model(finished_copy, "h16-b400-s0", step=1).predict_delta(obs, action))
    _flip_a_byte(finished_copy, 2, "params")
    with pytest.raises(CheckpointError, match="damaged"):
        load_world_model(finished_copy, "h16-b400-s0", step=2)
    model = load_world_model(finished_copy, "h16-b400-s0")
    assert model.step == 1
    np.testing.assert_array_equal(np.asarray(model.predict_delta(obs, action)), expected)
    assert any("checkpoint 2 skipped, using checkpoint 1" in r.getMessage() for r in caplog.records)


# ----------------------------------------------------------------------------- one writer

def _wait_for(predicate, proc: subprocess.Popen, timeout: float = 300) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        assert proc.poll() is None, "the sweep ended before the test could use it"
        assert time.monotonic() < end, "timed out"
        time.sleep(0.05)


def test_a_second_writer_is_refused_while_readers_work_and_a_dead_holder_is_taken_over(
        reference, tmp_path_factory, tmp_path):
    env = sweep_env(tmp_path_factory)
    run_dir = tmp_path / "run"
    first = subprocess.Popen(sweep_cmd(run_dir), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             text=True)
    try:
        _wait_for(lambda: (run_lock.holder(run_dir) or {}).get("pid") == first.pid, first)
        _wait_for(lambda: (run_dir / "checkpoints" / "0").is_dir(), first)  # committed (renamed into place)
        first.send_signal(signal.SIGSTOP)  # a live holder, paused while the others try
        held = run_lock.holder(run_dir)
        assert held["host"] == socket.gethostname() and held["command"] == "augnes_jax.sweep"
        second = _run(sweep_cmd(run_dir, "--resume"), env)
        stats = _run([sys.executable, "-m", "augnes_jax.stats", str(run_dir / "judgments.jsonl"),
                      "--out", str(run_dir / "strategy_stats.json")], env)
        reader = _run([sys.executable, "-m", "augnes_jax.infer", str(run_dir), "--variant", "h4-b400-s0",
                          "--obs", "0,0,0,0,0,0", "--action", "0,0"], env)
        assert first.poll() is None and (run_lock.holder(run_dir) or {}).get("pid") == first.pid
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    message = f"{run_dir} is in use by pid {first.pid} on {held['host']} since {held['since']}"
    for refused, prog in ((second, "augnes_jax.sweep"), (stats, "augnes_jax.stats")):
        errors = _errors(refused.stderr)
        assert refused.returncode == 2 and len(errors) == 1, refused.stderr[-2000:]
        assert errors[0].startswith(f"{prog}: error: {message}")
    assert reader.returncode == 0, reader.stderr[-2000:]  # a reader works meanwhile
    # the killed holder's lock is taken over with a warning, and the run finishes exactly
    again = _run(sweep_cmd(run_dir, "--resume"), env)
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"taking over the lock of {run_dir} left by pid {first.pid}" in again.stderr
    assert_same(reference[1], artifacts(run_dir))
    assert (run_dir / ".lock").read_text() == ""  # released on exit


def test_stats_writes_no_lock_file_beside_a_users_own_log(tmp_path):
    log = tmp_path / "j.jsonl"
    log.write_text(json.dumps({"goal_id": 0, "reward": 1.0, "optimal_reward": 2.0}) + "\n")
    proc = _run([sys.executable, "-m", "augnes_jax.stats", str(log)], dict(os.environ))
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["j.jsonl", "strategy_stats.json"]


def test_a_new_run_refused_before_it_writes_leaves_no_directory(tmp_path_factory, tmp_path):
    run_dir = tmp_path / "new"
    res = _run(sweep_cmd(run_dir, cfg=["variants.hidden_dims=[4,16]", "variants.buffer_sizes=[10000000000]"]),
               sweep_env(tmp_path_factory))
    assert res.returncode == 2, res.stderr[-2000:]
    assert not run_dir.exists()


# ----------------------------------------------------------------------------- full disk

def _mount_tmpfs(where: Path, size: str) -> bool:
    where.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                          capture_output=True).returncode == 0


def test_a_full_disk_is_one_short_line_and_resume_after_freeing_space_is_exact(
        reference, tmp_path_factory, tmp_path):
    disk = tmp_path / "disk"
    if not _mount_tmpfs(disk, "700k"):
        pytest.skip("needs root and tmpfs to fill a real disk; test_reliability.py injects ENOSPC instead")
    try:
        run_dir = disk / "run"
        res = _run(sweep_cmd(run_dir), sweep_env(tmp_path_factory))
        errors = _errors(res.stderr)
        assert res.returncode == 2, res.stderr[-3000:]
        assert "Traceback" not in res.stderr and "RESOURCE_EXHAUSTED" not in res.stderr, res.stderr[-3000:]
        # short but for the paths it names
        assert len(errors) == 1 and len(errors[0].replace(str(run_dir), "RUN")) <= 200, res.stderr[-3000:]
        assert os.strerror(28) in errors[0] and f"--resume --run-dir {run_dir}" in errors[0]
        subprocess.run(["mount", "-o", "remount,size=50m", str(disk)], check=True)
        again = _run(sweep_cmd(run_dir, "--resume"), sweep_env(tmp_path_factory))
        assert again.returncode == 0, again.stderr[-2000:]
        assert_same(reference[1], artifacts(run_dir))
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)
