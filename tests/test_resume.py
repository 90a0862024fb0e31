"""Kill a sweep at random moments, resume it, and get exactly what an uninterrupted run gives."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from augnes_jax.checkpoint import SweepCheckpointer
from tests.sweep_configs import TINY

RESUME_CFG = [x for x in TINY if not x.startswith("epochs=")] + ["epochs=3", "meta.consult_every_epoch=false"]


def _sweep(run_dir, *extra):
    return [sys.executable, "-m", "augnes_jax.sweep", "--no-progress", "--run-dir", str(run_dir), *extra, *RESUME_CFG]


def _strip(obj):
    """Drops wall-clock fields so two runs can be compared."""
    if isinstance(obj, dict):
        return {k: _strip(v) for k, v in obj.items() if k not in ("generated_at", "ts", "source", "run")}
    if isinstance(obj, list):
        return [_strip(v) for v in obj]
    return obj


def _artifacts(run_dir):
    lines = (run_dir / "judgments.jsonl").read_text().splitlines()
    judgments = sorted((_strip(json.loads(x)) for x in lines), key=lambda r: (r["variant"], r["epoch"], r["episode"]))
    ck = SweepCheckpointer(run_dir / "checkpoints")
    arrays, _ = ck.restore(ck.latest_step())
    ck.close()
    return {
        "judgments": judgments,
        "strategy_stats": _strip(json.loads((run_dir / "strategy_stats.json").read_text())),
        "world_model_stats": _strip(json.loads((run_dir / "world_model_stats.json").read_text())),
        "params": arrays["params"],
    }


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("ref") / "run"
    subprocess.run(_sweep(run_dir), check=True, capture_output=True, timeout=600)
    return _artifacts(run_dir)


def _assert_same(a, b):
    assert a["judgments"] == b["judgments"]
    assert a["strategy_stats"] == b["strategy_stats"]
    assert a["world_model_stats"] == b["world_model_stats"]
    import jax

    for x, y in zip(jax.tree.leaves(a["params"]), jax.tree.leaves(b["params"]), strict=True):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("kill_after", [0.3, 0.55, 0.8])
def test_sigkill_then_resume_equals_uninterrupted(reference, tmp_path, kill_after):
    """``kill_after`` is the fraction of the uninterrupted wall time after which SIGKILL lands."""
    run_dir = tmp_path / "run"
    t0 = time.time()
    proc = subprocess.Popen(_sweep(run_dir), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    # wait until the first epoch has been checkpointed, then a bit more, then kill
    deadline = t0 + 300
    while time.time() < deadline and proc.poll() is None:
        if (run_dir / "sweep_state.json").exists():
            break
        time.sleep(0.05)
    time.sleep(kill_after * 4)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    # a crash may also tear the last judgments line: simulate that too
    j = run_dir / "judgments.jsonl"
    if j.exists() and j.stat().st_size > 10:
        with open(j, "ab") as f:
            f.write(b'{"goal_id": 0, "rew')
    res = subprocess.run(_sweep(run_dir, "--resume"), capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    _assert_same(reference, _artifacts(run_dir))


def test_resume_with_a_different_config_is_refused(tmp_path):
    run_dir = tmp_path / "run"
    (run_dir).mkdir()
    subprocess.run(_sweep(run_dir), check=True, capture_output=True, timeout=600)
    cmd = _sweep(run_dir, "--resume") + ["world_model.learning_rate=0.1"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert res.returncode == 2
    assert "world_model.learning_rate" in res.stderr and "--allow-change" in res.stderr
