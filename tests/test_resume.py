"""Kill a sweep at random moments, resume it, and get exactly what an uninterrupted run gives.

Every sweep that is killed or resumed here runs in a subprocess (SIGKILL must hit a real process);
the auto-mode reference is the session's in-process AUTO sweep. The subprocesses share a
persistent XLA compilation cache under the session's temporary directory, so only the first one
compiles; a cached executable is the same program, which the comparisons below also check
(the reference run compiles, the resumed runs load from the cache).
"""

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from augnes_jax.checkpoint_read import restore_checkpoint
from tests.sweep_configs import AUTO, TINY

# regret-prioritised collection: the resumed run's goal probabilities come from the rebuilt
# ledger, so any difference in its float sums would change the collected data
RESUME_CFG = [x for x in TINY if not x.startswith("epochs=")] + [
    "epochs=3", "meta.consult_every_epoch=false", "regret.goal_sampling=regret"]
EPOCHS, VARIANTS = 3, ("h4-b400-s0", "h4-b400-s1", "h16-b400-s0", "h16-b400-s1")
EPISODES = 2 * 2  # goals x episodes_per_goal
VOLATILE = ("generated_at", "ts", "source", "run")  # wall-clock and path fields


def sweep_env(factory) -> dict[str, str]:
    """Returns the environment of a sweep subprocess: CPU, strict JAX checks, a shared XLA cache."""
    cache = factory.getbasetemp() / "xla_cache"
    return dict(os.environ, JAX_PLATFORMS="cpu", JAX_COMPILATION_CACHE_DIR=str(cache),
                JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0", JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0",
                JAX_NUMPY_RANK_PROMOTION="raise", JAX_DEBUG_KEY_REUSE="true")


def sweep_cmd(run_dir, *extra, cfg=RESUME_CFG) -> list[str]:
    """Returns the command line of a sweep over ``run_dir``."""
    return [sys.executable, "-m", "augnes_jax.sweep", "--no-progress", "--run-dir", str(run_dir), *extra, *cfg]


def reference_run(factory) -> Path:
    """Returns the run directory of one uninterrupted sweep, run once per test session."""
    root = factory.getbasetemp() / "resume_reference"
    run_dir = root / "run"
    if not (root / "done").exists():
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir()
        subprocess.run(sweep_cmd(run_dir), env=sweep_env(factory), check=True, capture_output=True, timeout=600)
        (root / "done").touch()
    return run_dir


def strip(obj):
    """Returns ``obj`` without wall-clock and path fields, so two runs can be compared."""
    if isinstance(obj, dict):
        return {k: strip(v) for k, v in obj.items() if k not in VOLATILE}
    if isinstance(obj, list):
        return [strip(v) for v in obj]
    return obj


def artifacts(run_dir: Path) -> dict:
    """Returns a run's judgments (file order), JSON statistics and latest checkpoint's arrays."""
    lines = (run_dir / "judgments.jsonl").read_text().splitlines()
    step, arrays, _ = restore_checkpoint(run_dir / "checkpoints")
    return {
        "judgments": [strip(json.loads(x)) for x in lines],
        "strategy_stats": strip(json.loads((run_dir / "strategy_stats.json").read_text())),
        "world_model_stats": strip(json.loads((run_dir / "world_model_stats.json").read_text())),
        "step": step,
        "arrays": arrays,  # params, opt_state, normalizer and the buffers ("resume")
    }


def assert_same(a: dict, b: dict) -> None:
    """Asserts two runs' artifacts are identical, bit for bit (wall-clock fields aside)."""
    import jax

    assert a["judgments"] == b["judgments"]
    assert a["strategy_stats"] == b["strategy_stats"]
    assert a["world_model_stats"] == b["world_model_stats"]
    assert a["step"] == b["step"]
    la, ta = jax.tree.flatten(a["arrays"])
    lb, tb = jax.tree.flatten(b["arrays"])
    assert ta == tb
    for x, y in zip(la, lb, strict=True):
        np.testing.assert_array_equal(x, y)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return artifacts(reference_run(tmp_path_factory))


def _judgment_keys(run_dir: Path) -> list[tuple]:
    recs = [json.loads(x) for x in (run_dir / "judgments.jsonl").read_text().splitlines()]
    return [(r["variant"], r["epoch"], r["episode"]) for r in recs]


def test_reference_run_holds_every_record_once(tmp_path_factory):
    keys = _judgment_keys(reference_run(tmp_path_factory))
    expected = {(v, e, k) for v in VARIANTS for e in range(EPOCHS) for k in range(EPISODES)}
    assert len(keys) == len(set(keys)) == len(expected) and set(keys) == expected


def _ckpt_tmp(d: Path) -> bool:
    return any(p.name.endswith("orbax-checkpoint-tmp") or ".orbax-checkpoint-tmp-" in p.name
               for p in (d / "checkpoints").glob("*"))


def _judgment_lines(d: Path) -> int:
    try:
        return (d / "judgments.jsonl").read_bytes().count(b"\n")
    except OSError:
        return 0


_rng = random.Random(7)
# when SIGKILL lands: while the first checkpoint is being written (nothing committed: start over),
# right after epoch 1's judgments are appended (before its checkpoint commits: they must go), and
# at a random moment of the last epoch's I/O (statistics, controller, checkpoint)
KILL_POINTS = {
    "during_first_checkpoint": (_ckpt_tmp, 0.0),
    "after_epoch1_judgments": (lambda d: _judgment_lines(d) >= 2 * len(VARIANTS) * EPISODES, 0.0),
    "random_in_last_epoch_io": (lambda d: _judgment_lines(d) >= EPOCHS * len(VARIANTS) * EPISODES,
                                _rng.uniform(0.0, 0.3)),
}


def kill_when(cmd, env, run_dir: Path, ready, delay: float, timeout: float = 300) -> None:
    """Starts ``cmd`` and SIGKILLs it ``delay`` seconds after ``ready(run_dir)``.

    Fails unless the moment came and the kill ended the run: a sweep that finished first, or
    crashed, or never reached the moment, would make the resume test pass without its premise.
    """
    log = tempfile.TemporaryFile()  # not a pipe: a full pipe would stall the run
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=log, start_new_session=True)
    deadline = time.monotonic() + timeout
    reached = False
    while proc.poll() is None and time.monotonic() < deadline and not (reached := ready(run_dir)):
        time.sleep(0.005)
    time.sleep(delay)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    status = proc.wait()
    log.seek(0)
    err = log.read().decode(errors="replace")[-2000:]
    log.close()
    assert reached, f"the kill moment never came (status {status}): {err}"
    assert status == -signal.SIGKILL, f"the run ended with status {status} before the kill: {err}"


@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_sigkill_then_resume_equals_uninterrupted(reference, tmp_path_factory, tmp_path, point):
    run_dir = tmp_path / "run"
    env = sweep_env(tmp_path_factory)
    ready, delay = KILL_POINTS[point]
    kill_when(sweep_cmd(run_dir), env, run_dir, ready, delay)
    j = run_dir / "judgments.jsonl"
    if j.exists() and j.stat().st_size > 10:
        # what a crash (or a second writer) can leave: a repeated line and a torn last line
        first = j.read_bytes().split(b"\n", 1)[0]
        with open(j, "ab") as f:
            f.write(first + b'\n{"goal_id": 0, "rew')
    res = subprocess.run(sweep_cmd(run_dir, "--resume"), env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    assert_same(reference, artifacts(run_dir))
    keys = _judgment_keys(run_dir)
    assert len(keys) == len(set(keys)) == EPOCHS * len(VARIANTS) * EPISODES


@pytest.fixture
def finished_copy(tmp_path_factory, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(reference_run(tmp_path_factory), run_dir)
    return run_dir


def _snapshot(run_dir: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run_dir)): p.read_bytes() for p in sorted(run_dir.rglob("*")) if p.is_file()}


def _snapshot_outside_tb(run_dir: Path) -> dict[str, bytes]:
    return {k: v for k, v in _snapshot(run_dir).items() if not k.startswith("tb/")}


# ``augnes-sweep``, the installed command: its main() is augnes_jax.sweep.main
ENTRY = ["-c", "import sys; from augnes_jax.sweep import main; sys.exit(main(sys.argv[1:]))"]


@pytest.mark.parametrize("key, value, detail", [
    ("variants.buffer_sizes", "[800]", "(bucket w16: shape (4, 400, 2) != (4, 800, 2))"),
    ("world_model.num_layers", "1", "holds 38 arrays for bucket w16, this config needs 32"),
])  # fmt: skip
def test_resume_whose_arrays_do_not_fit_the_checkpoint_is_one_clear_error(tmp_path_factory, finished_copy, key,
                                                                          value, detail):
    """An allowed change that changes an array's shape, or the number of arrays, cannot resume."""
    before = _snapshot_outside_tb(finished_copy)
    cmd = [sys.executable, *ENTRY, *sweep_cmd(finished_copy, "--resume", "--allow-change", key)[3:], f"{key}={value}"]
    res = subprocess.run(cmd, env=sweep_env(tmp_path_factory), capture_output=True, text=True, timeout=300)
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr[-2000:]
    last = res.stderr.strip().splitlines()[-1]  # after the INFO line that announces the resume
    assert last.startswith(f"augnes_jax.sweep: error: cannot resume: checkpoint {EPOCHS - 1}") and detail in last, last
    assert _snapshot_outside_tb(finished_copy) == before  # judgments, statistics, config, checkpoints


def test_resume_mismatch_under_python_dash_m_is_one_clear_error(tmp_path_factory, finished_copy):
    # python -m runs the sweep module as __main__: its errors must still be caught by their base class
    before = _snapshot(finished_copy)
    cmd = sweep_cmd(finished_copy, "--resume", "--allow-change", "variants.buffer_sizes") + ["variants.buffer_sizes=[800]"]
    res = subprocess.run(cmd, env=sweep_env(tmp_path_factory), capture_output=True, text=True, timeout=300)
    assert "cannot resume" in res.stderr
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr[-2000:]
    assert _snapshot(finished_copy) == before  # no TensorBoard run opened for the refused variants


@pytest.mark.parametrize("override, key", [("world_model.learning_rate=0.1", "world_model.learning_rate"),
                                           ("variants.hidden_dims=[4,32]", "variants.hidden_dims")])
def test_resume_with_a_different_config_is_refused(tmp_path_factory, finished_copy, override, key):
    before = _snapshot(finished_copy)
    res = subprocess.run(sweep_cmd(finished_copy, "--resume") + [override], env=sweep_env(tmp_path_factory),
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2
    err = res.stderr.strip().splitlines()
    assert len(err) == 1 and key in err[0] and "--allow-change" in err[0], res.stderr
    assert _snapshot(finished_copy) == before  # nothing written


def test_allowed_change_extends_the_run_and_keeps_its_past(reference, tmp_path_factory, finished_copy):
    """``--allow-change epochs epochs=4`` continues a finished run by one epoch, from its own config."""
    cmd = [sys.executable, "-m", "augnes_jax.sweep", "--no-progress", "--run-dir", str(finished_copy),
           "--resume", "--allow-change", "epochs", "epochs=4"]  # the rest comes from the run's config.yaml
    res = subprocess.run(cmd, env=sweep_env(tmp_path_factory), capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    assert f"INFO augnes_jax.sweep: resuming {finished_copy} at epoch 3 of 4" in res.stderr  # the log reaches the user
    got = [strip(json.loads(x)) for x in (finished_copy / "judgments.jsonl").read_text().splitlines()]
    assert got[: len(reference["judgments"])] == reference["judgments"]
    assert {(r["variant"], r["episode"]) for r in got if r["epoch"] == 3} == {
        (v, k) for v in VARIANTS for k in range(EPISODES)}
    assert len(got) == 4 * len(VARIANTS) * EPISODES
    wm = json.loads((finished_copy / "world_model_stats.json").read_text())
    assert all([e["epoch"] for e in v["epochs"]] == [0, 1, 2, 3] for v in wm["variants"].values())
    assert restore_checkpoint(finished_copy / "checkpoints")[0] == 3


def test_world_model_stats_truncate_drops_later_epochs_and_emptied_variants():
    from augnes_jax.world_model_stats import WorldModelStats

    stats = WorldModelStats(epsilon=1e-3)
    for e in range(3):
        stats.record("h4-b8-s0", e, {"val_mse": 0.1 * (e + 1)})
    stats.record("h8-b8-s0", 2, {"val_mse": 0.5})  # first recorded at epoch 2, e.g. a grown variant
    assert stats.truncate(2) == ["h8-b8-s0"]
    assert [x["epoch"] for x in stats.variants["h4-b8-s0"]["epochs"]] == [0, 1]
    assert stats.latest("h4-b8-s0")["val_mse"] == pytest.approx(0.2)
    assert stats.truncate(5) == [] and len(stats.variants["h4-b8-s0"]["epochs"]) == 2
    assert stats.truncate(0) == ["h4-b8-s0"] and stats.variants == {}


def test_rebuilt_ledger_adds_epoch_by_epoch_in_episode_order():
    """Near 1e16 a float addition rounds, so only the live run's order gives the live run's bits."""
    from augnes_jax.host_state import rebuild_ledger

    growth = [{"epoch": 1, "from": "h4-b8-s0", "to": "h8-b8-s0"}]
    rows = [  # (variant, epoch, episode, goal_id, regret) in file order
        ("h4-b8-s0", 0, 0, 0, 1e16), ("h4-b8-s0", 0, 1, 1, 2.5),
        ("h4-b8-s0", 1, 2, 0, -1e16), ("h4-b8-s0", 1, 0, 0, 1.0), ("h4-b8-s0", 1, 1, 0, 1.0),  # file order
        ("h8-b8-s0", 2, 0, 1, 0.5),
    ]
    ledger, _ = rebuild_ledger(*zip(*rows, strict=True), growth, num_goals=2)
    # what judging an epoch adds: one bincount per epoch over episodes 0, 1, 2, added to the ledger
    goal0 = (0.0 + 1e16) + (((0.0 + 1.0) + 1.0) + -1e16)
    assert goal0 == 2.0 and ((1e16 + 1.0) + 1.0) + -1e16 == 0.0  # all epochs at once would give 0.0
    counts, sums = ledger["h4-b8-s0"]
    assert counts.tolist() == [4.0, 1.0] and sums.tolist() == [goal0, 2.5]
    counts, sums = ledger["h8-b8-s0"]  # handed on when it grew at epoch 1, then epoch 2 added
    assert counts.tolist() == [4.0, 2.0] and sums.tolist() == [goal0, 3.0]


def test_auto_mode_killed_after_growth_resumes_to_the_same_run(auto_sweep, tmp_path_factory, tmp_path):
    """A run that grew its widths, killed after the next epoch's judgments, resumes with the grown
    variants and ends where an uninterrupted run ends (the session's in-process AUTO sweep)."""
    env = sweep_env(tmp_path_factory)
    ref_dir = auto_sweep
    growth = json.loads((ref_dir / "decision.json").read_text())["growth"]
    assert growth and min(g["epoch"] for g in growth) == 0  # grown after the first epoch

    run_dir = tmp_path / "run"
    per_epoch = 2 * EPISODES  # two seeds
    kill_when(sweep_cmd(run_dir, cfg=AUTO), env, run_dir, lambda d: _judgment_lines(d) >= 2 * per_epoch, 0.0)
    assert _judgment_lines(run_dir) < 3 * per_epoch  # stopped before the end
    res = subprocess.run(sweep_cmd(run_dir, "--resume", cfg=AUTO), env=env, capture_output=True, text=True,
                         timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    assert_same(artifacts(ref_dir), artifacts(run_dir))
    assert json.loads((run_dir / "decision.json").read_text())["growth"] == growth


def test_kept_judgments_are_the_lines_before_the_start_once_each(tmp_path, caplog):
    """What a resume keeps of judgments.jsonl: the earlier epochs' own lines, byte for byte, without
    duplicates, later epochs or a torn last line; the ledger is rebuilt from exactly those."""
    from augnes_jax.judgments import JudgmentWriter, make_judgments
    from augnes_jax.resume import kept_judgments

    path = tmp_path / "judgments.jsonl"
    with JudgmentWriter(path) as w:
        for epoch in range(3):
            w.append(make_judgments(np.array([0, 1]), np.array([0.5, 0.25]), np.array([1.0, 1.0]), None,
                                    np.array([0, 1]), variant="h4-b8-s0", epoch=epoch))
    lines = path.read_text().splitlines()
    with open(path, "ab") as f:  # a repeated line, then a line torn by a crash
        f.write(lines[1].encode() + b'\n{"goal_id": 0, "rew')
    kept, j = kept_judgments(path, 2)
    assert kept == lines[:4]
    assert j.epoch.tolist() == [0, 0, 1, 1] and j.regret.tolist() == [0.5, 0.75, 0.5, 0.75]
    assert "1 duplicate judgments dropped" in caplog.text and f"{path}:8: unreadable line dropped" in caplog.text
    assert kept_judgments(path, 0)[0] == [] and kept_judgments(tmp_path / "none.jsonl", 1) == ([], None)
