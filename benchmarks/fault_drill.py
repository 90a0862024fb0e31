"""Fault drill: SIGKILL a sweep at random moments, resume it, and count what survives.

1. An uninterrupted reference sweep (a small config, 3 epochs, regret-prioritised collection).
2. ``--trials`` runs of the same sweep, each SIGKILLed at a moment drawn uniformly over the
   warm reference's life after setup (from ``config.yaml`` to its end); every other trial also
   gets a torn last judgments line, and every third has its first resume killed too. Each is then resumed with ``--resume`` and compared with the
   reference: final parameters, optimizer state and buffers, ``strategy_stats.json``,
   ``world_model_stats.json`` and ``judgments.jsonl`` (timestamps aside) must be bit-identical,
   and no ``(variant, epoch, episode)`` may be missing or repeated.
3. Bad inputs through the three entry points (sweep config overrides, judgments lines, infer
   arguments), each of which must end with exit status 2 and one line on stderr.
4. Faults a user meets, each made for real and followed by ``--resume``, which must end in the
   reference's artifacts: a concurrent second writer (refused with exit 2 while the first holds
   the run directory), a damaged newest checkpoint for each item kind (bytes overwritten, same
   size), ENOSPC at each write site (judgments, JSON, TensorBoard, checkpoint; the checkpoint
   one on a real tmpfs when run as root), and SIGINT and SIGTERM mid-run.
5. Checkpoint overhead: the seconds spent starting each epoch's checkpoint save over the seconds
   of the epoch itself (compute and artifacts), from an uninterrupted run of ``--overhead-epochs``
   (of the drill's config, or with ``--overhead-config default`` of ``configs/default.yaml``).

Every sweep runs in a subprocess sharing one persistent XLA compilation cache, so only the first
compiles. Prints one JSON object.

    python benchmarks/fault_drill.py [--trials 10] [--seed 0] [--workdir DIR] [--keep]
                                     [--overhead-epochs 8] [--overhead-config drill|default]
"""

from __future__ import annotations

import argparse
import contextlib
import io
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

sys.path.insert(0, os.path.dirname(__file__))
from common import device_info, emit  # noqa: E402

CONFIG = [
    "epochs=3", "samples_per_epoch=300", "env.episode_length=15", "env.goals=[0,3]",
    "variants.hidden_dims=[4,16]", "variants.buffer_sizes=[400]", "variants.seeds=[0,1]",
    "world_model.train_steps_per_epoch=30", "world_model.batch_size=64", "world_model.val_size=150",
    "world_model.k_steps=[1,5]", "planner.horizon=4", "planner.num_samples=12", "planner.num_elites=3",
    "planner.iterations=1", "planner.episodes_per_goal=2", "meta.bootstrap_samples=200",
    "meta.consult_every_epoch=false", "checkpoint.keep_last=3", "regret.goal_sampling=regret",
]
VOLATILE = ("generated_at", "ts", "source", "run")


def _env(work: Path) -> dict[str, str]:
    return dict(os.environ, JAX_PLATFORMS=os.environ.get("JAX_PLATFORMS", "cpu"),
                JAX_COMPILATION_CACHE_DIR=str(work / "xla_cache"), JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
                JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")


def _cmd(run_dir: Path, *extra: str, cfg: list[str] = CONFIG) -> list[str]:
    return [sys.executable, "-m", "augnes_jax.sweep", "--no-progress", "--run-dir", str(run_dir), *extra, *cfg]


def _strip(obj):
    if isinstance(obj, dict):
        return {k: _strip(v) for k, v in obj.items() if k not in VOLATILE}
    if isinstance(obj, list):
        return [_strip(v) for v in obj]
    return obj


def _artifacts(run_dir: Path) -> dict:
    import jax

    from augnes_jax.checkpoint_read import restore_checkpoint

    step, arrays, _ = restore_checkpoint(run_dir / "checkpoints")
    lines = (run_dir / "judgments.jsonl").read_text().splitlines()
    return {"judgments": [_strip(json.loads(x)) for x in lines],
            "strategy_stats": _strip(json.loads((run_dir / "strategy_stats.json").read_text())),
            "world_model_stats": _strip(json.loads((run_dir / "world_model_stats.json").read_text())),
            "step": step, "leaves": jax.tree.leaves(arrays), "treedef": str(jax.tree.structure(arrays))}


def _same(a: dict, b: dict) -> bool:
    return (a["judgments"] == b["judgments"] and a["strategy_stats"] == b["strategy_stats"]
            and a["world_model_stats"] == b["world_model_stats"] and a["step"] == b["step"]
            and a["treedef"] == b["treedef"] and len(a["leaves"]) == len(b["leaves"])
            and all(np.array_equal(x, y) for x, y in zip(a["leaves"], b["leaves"], strict=True)))


def _keys(run_dir: Path) -> list[tuple]:
    path = run_dir / "judgments.jsonl"
    if not path.exists():
        return []
    recs = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    return [(r["variant"], r["epoch"], r["episode"]) for r in recs]


def _committed(run_dir: Path) -> list[int]:
    d = run_dir / "checkpoints"
    return sorted(int(p.name) for p in d.iterdir() if p.name.isdigit()) if d.is_dir() else []


def _run_killed(cmd, env, delay: float, after: Path | None = None) -> int:
    """Runs ``cmd`` and SIGKILLs it ``delay`` s after it starts (or after ``after`` exists); returns its status."""
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    while after is not None and proc.poll() is None and not after.exists():
        time.sleep(0.005)
    try:
        proc.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
    return proc.wait()


def _timed_uninterrupted(cmd, env, run_dir: Path) -> tuple[float, float]:
    """Returns (seconds until the run directory holds config.yaml, seconds until the run ends)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ready = None
    while proc.poll() is None:
        if ready is None and (run_dir / "config.yaml").exists():
            ready = time.perf_counter() - t0
        time.sleep(0.005)
    end = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"uninterrupted run failed: {proc.stderr.read().decode()[-2000:]}")
    return (end if ready is None else ready), end


# ----------------------------------------------------------------------------- child: one timed run


def _child(run_dir: str, out: str, overrides: list[str]) -> None:
    """Runs one uninterrupted sweep in this process and writes its summary (with timings) to ``out``."""
    from augnes_jax.config import load_config
    from augnes_jax.sweep import Sweep

    t0 = time.perf_counter()
    summary = Sweep(load_config(None, overrides), run_dir, progress=False).run()
    summary["process_wall_s"] = time.perf_counter() - t0
    Path(out).write_text(json.dumps(summary))


def _timed_run(work: Path, name: str, overrides: list[str]) -> dict:
    out = work / f"{name}.json"
    subprocess.run([sys.executable, __file__, "--child", str(work / name), str(out), *overrides], env=_env(work),
                   check=True, capture_output=True, timeout=1200)
    return json.loads(out.read_text())


# ----------------------------------------------------------------------------- bad inputs


def _clear(call) -> tuple[bool, str]:
    """Returns (exit status 2 with exactly one stderr line and no traceback, that line)."""
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            try:
                code = call()
            except SystemExit as e:
                code = e.code
    except Exception as e:  # noqa: BLE001 - an unhandled exception is exactly what is being counted
        return False, f"unhandled {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    lines = [x for x in err.getvalue().splitlines() if x.strip()]
    ok = code == 2 and len(lines) == 1 and "Traceback" not in err.getvalue()
    return ok, (lines[-1] if lines else f"exit {code}, nothing on stderr")


def _bad_inputs(work: Path, ref_dir: Path) -> dict:
    from augnes_jax import infer, stats, sweep

    results: dict[str, list] = {"config": [], "judgments": [], "infer": []}
    overrides = ["epochs=0", "epochs=abc", "nosuch=1", "env.name=nope", "env.goals=[99]", "variants.hidden_dims=[]",
                 "variants.hidden_dims=[0]", "variants.hidden_dims=[4,4]", "world_model.num_layers=3",
                 "planner.num_elites=999", "regret.ci_level=1.5", "alerts.webhook_url=ftp://x", "run_name=../escape",
                 "run_name=a/b", "devices=-1", "world_model.k_steps=[100]", "seed=-1", "noequals",
                 "variants.seeds=[a/b]", "planner=[1]", 'k="9]9,', "[=", "variants.hidden_dims={a: 1}",
                 "env.goals=[0,{a: 1}]"]
    for i, ov in enumerate(overrides):
        run_dir = work / "bad" / f"cfg{i}"
        ok, line = _clear(lambda ov=ov, run_dir=run_dir: sweep.main(["--no-progress", "--run-dir", str(run_dir), ov]))
        results["config"].append({"input": ov, "clear": ok and not run_dir.exists(), "stderr": line})
    changed = work / "bad" / "resume_changed"
    shutil.copytree(ref_dir, changed)
    for argv in (["--resume"], ["--resume", "--run-dir", str(changed), "planner.horizon=7"],
                 ["--resume", "--run-dir", str(work / "bad" / "missing")]):
        ok, line = _clear(lambda argv=argv: sweep.main(["--no-progress", *argv]))
        results["config"].append({"input": " ".join(argv[:1] + argv[3:]), "clear": ok, "stderr": line})

    good = '{"goal_id": 0, "reward": 1.0, "optimal_reward": 2.0}'
    lines = ['{"goal_id": -1, "reward": 1, "regret": 0}', '{"goal_id": 0}', '{"goal_id": 0, "reward": "x", "regret": 0}',
             '{"goal_id": 0, "reward": 1, "optimal_reward": 5, "regret": 1}', "[1, 2]", "not json",
             '{"goal_id": 0, "reward": NaN, "regret": 0}', '{"goal_id": 1.5, "reward": 1, "regret": 0}',
             '{"goal_id": 0, "reward": 1e999, "regret": 0}', '{"goal_id": 0, "reward": 1}',
             '{"goal_id": 0, "reward": 1, "regret": 0, "variant": 3}', '{"goal_id": true, "reward": 1, "regret": 0}',
             '{"goal_id": 0, "reward": 1, "regret": 0}} x', '{"goal_id": 99999999999999999999, "reward": 1, "regret": 0}',
             "\udcff"]
    for i, bad in enumerate(lines):
        path = work / "bad" / f"j{i}.jsonl"
        path.write_bytes(("\n".join([good] * 3 + [bad]) + "\n").encode("utf-8", "surrogateescape"))
        ok, line = _clear(lambda path=path: stats.main([str(path), "--out", str(path.with_suffix(".json"))]))
        results["judgments"].append({"input": bad, "clear": ok and f"{path}:4:" in line
                                     and not path.with_suffix(".json").exists(), "stderr": line})

    bad_dir = work / "bad"
    np.save(bad_dir / "pickled.npy", np.array([object()], dtype=object), allow_pickle=True)
    np.save(bad_dir / "act2.npy", np.zeros((2, 2), np.float32))
    np.save(bad_dir / "obs1.npy", np.zeros((1, 6), np.float32))
    (bad_dir / "empty.npy").write_bytes(b"")
    (bad_dir / "text.csv").write_text("a,b,c,d,e,f\n")
    (bad_dir / "obs.txt").write_text("0,0,0,0,0,0\n")
    (bad_dir / "no_checkpoints").mkdir(exist_ok=True)
    obs, act = ",".join(["0.1"] * 6), "0.5,-0.5"
    cases = [[str(ref_dir), "--obs", "1,2", "--action", act], [str(ref_dir), "--obs", "a,b,c,d,e,f", "--action", act],
             [str(ref_dir), "--obs", obs, "--action", "1,2,3"], [str(ref_dir), "--variant", "nope", "--obs", obs, "--action", act],
             [str(ref_dir), "--step", "99", "--obs", obs, "--action", act], [str(ref_dir), "--step", "x", "--obs", obs, "--action", act],
             [str(ref_dir), "--obs", "nan," + obs[4:], "--action", act], [str(ref_dir), "--obs", obs],
             [str(ref_dir), "--obs", obs, "--action", act, "--obs-file", "x.npy"], [str(ref_dir)],
             [str(ref_dir), "--obs-file", str(bad_dir / "nope.npy"), "--action-file", str(bad_dir / "act2.npy")],
             [str(ref_dir), "--obs-file", str(bad_dir / "obs.txt"), "--action-file", str(bad_dir / "act2.npy")],
             [str(ref_dir), "--obs-file", str(bad_dir / "pickled.npy"), "--action-file", str(bad_dir / "act2.npy")],
             [str(ref_dir), "--obs-file", str(bad_dir / "text.csv"), "--action-file", str(bad_dir / "act2.npy")],
             [str(ref_dir), "--obs-file", str(bad_dir / "obs1.npy"), "--action-file", str(bad_dir / "act2.npy")],
             [str(ref_dir), "--obs-file", str(bad_dir / "empty.npy"), "--action-file", str(bad_dir / "act2.npy")],
             [str(bad_dir / "nowhere"), "--obs", obs, "--action", act],
             [str(bad_dir / "no_checkpoints"), "--obs", obs, "--action", act]]
    for argv in cases:
        ok, line = _clear(lambda argv=argv: infer.main(argv))
        results["infer"].append({"input": " ".join(a.replace(str(work), "W") for a in argv[1:]) or "(none)",
                                 "clear": ok, "stderr": line})
    return results


# ----------------------------------------------------------------------------- faults

ENOSPC_SITES = ("judgments", "json", "tensorboard", "checkpoint")


def _enospc_child(site: str, run_dir: str, overrides: list[str]) -> int:
    """Runs the sweep CLI with ENOSPC raised at one write site once epoch 1 writes."""
    import errno

    from augnes_jax import files, sweep
    from augnes_jax.judgments import JudgmentWriter
    from augnes_jax.tensorboard_io import RunWriter

    state = {"epoch": 0, "inside": 0}
    fsync = os.fsync

    def tracked(epoch):
        state["epoch"] = epoch

    def full(path=None):
        return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)

    def full_fsync(fd):
        if state["inside"] and state["epoch"] >= 1:
            raise full()
        return fsync(fd)

    def during(fn):  # fsync fails while ``fn`` runs, from epoch 1 on
        def wrapped(*a, **k):
            state["inside"] += 1
            try:
                return fn(*a, **k)
            finally:
                state["inside"] -= 1
        return wrapped

    os.fsync = full_fsync
    if site == "judgments":
        JudgmentWriter.append = during(JudgmentWriter.append)
    elif site == "json":
        files.write_json_atomic = during(files.write_json_atomic)
    elif site == "tensorboard":
        flush = RunWriter.flush

        def full_flush(self):
            if state["epoch"] >= 1:
                raise full(str(self.logdir))
            return flush(self)

        RunWriter.flush = full_flush
    return sweep.main(["--no-progress", "--run-dir", run_dir, *overrides], before_write=tracked)


def _outcome(res: subprocess.CompletedProcess) -> dict:
    errors = [x for x in res.stderr.strip().splitlines() if not x.startswith(("INFO ", "WARNING "))]
    return {"status": res.returncode, "error_lines": len(errors), "traceback": "Traceback" in res.stderr,
            "line": errors[-1] if errors else None, "line_chars": len(errors[-1]) if errors else 0}


def _resumed_exactly(run_dir: Path, env, ref: dict, expected: set) -> dict:
    res = subprocess.run(_cmd(run_dir, "--resume"), env=env, capture_output=True, text=True, timeout=1200)
    keys = _keys(run_dir)
    return {"resume_status": res.returncode, "records_lost": len(expected - set(keys)),
            "records_duplicated": len(keys) - len(set(keys)),
            "bit_exact": res.returncode == 0 and _same(ref, _artifacts(run_dir)),
            "resume_warnings": [x for x in res.stderr.splitlines() if x.startswith("WARNING augnes_jax.sweep")][:3]}


def _pause_after_first_checkpoint(cmd, env, run_dir: Path) -> subprocess.Popen:
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    while not (run_dir / "checkpoints" / "0").is_dir():
        if proc.poll() is not None:
            raise RuntimeError(f"sweep ended early: {proc.stderr.read()[-2000:]}")
        time.sleep(0.02)
    return proc


def _faults(work: Path, env, ref_dir: Path, ref: dict, expected: set) -> dict:
    from augnes_jax.checkpoint import CheckpointError, restore_checkpoint

    out: dict = {}
    # a concurrent second writer
    run_dir = work / "faults" / "second_writer"
    first = _pause_after_first_checkpoint(_cmd(run_dir), env, run_dir)
    first.send_signal(signal.SIGSTOP)
    second = subprocess.run(_cmd(run_dir, "--resume"), env=env, capture_output=True, text=True, timeout=600)
    first.send_signal(signal.SIGKILL)
    first.wait()
    out["second_writer"] = {**_outcome(second), "refused": second.returncode == 2 and "is in use by pid" in second.stderr,
                            **_resumed_exactly(run_dir, env, ref, expected)}
    # a damaged newest checkpoint, per item kind
    out["damaged_checkpoint"] = {}
    for item in ("resume", "params", "opt_state", "normalizer", "meta"):
        run_dir = work / "faults" / f"damaged_{item}"
        shutil.copytree(ref_dir, run_dir)
        step_dir = run_dir / "checkpoints" / str(ref["step"])
        if item == "meta":
            (step_dir / "meta" / "metadata").write_text('{"truncated": ')
        else:
            data = max((step_dir / item).glob("ocdbt.process_0/d/*"), key=lambda p: p.stat().st_size)
            raw = bytearray(data.read_bytes())
            for i in range(len(raw) // 3, len(raw), 101):  # bad sectors: bytes changed, size kept
                raw[i] ^= 0xFF
            data.write_bytes(bytes(raw))
        try:
            restore_checkpoint(run_dir / "checkpoints", ref["step"])
            detected = False
        except CheckpointError:
            detected = True
        out["damaged_checkpoint"][item] = {"detected_on_restore": detected, **_resumed_exactly(run_dir, env, ref, expected)}
    # ENOSPC at each write site
    out["enospc"] = {}
    for site in ENOSPC_SITES:
        run_dir = work / "faults" / f"enospc_{site}"
        mounted = False
        if site == "checkpoint":
            (run_dir / "checkpoints").mkdir(parents=True)
            mounted = os.geteuid() == 0 and subprocess.run(
                ["mount", "-t", "tmpfs", "-o", "size=400k", "tmpfs", str(run_dir / "checkpoints")],
                capture_output=True).returncode == 0
            if not mounted:
                out["enospc"][site] = {"skipped": "needs root to mount a small tmpfs"}
                continue
        try:
            res = subprocess.run([sys.executable, __file__, "--enospc-child", site, str(run_dir), *CONFIG],
                                 env=env, capture_output=True, text=True, timeout=1200)
            if mounted:
                subprocess.run(["mount", "-o", "remount,size=64m", str(run_dir / "checkpoints")], check=True)
            out["enospc"][site] = {**_outcome(res), **_resumed_exactly(run_dir, env, ref, expected)}
        finally:
            if mounted:
                subprocess.run(["umount", "-l", str(run_dir / "checkpoints")], capture_output=True)
    # SIGINT and SIGTERM mid-run
    out["signals"] = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        run_dir = work / "faults" / sig.name
        proc = _pause_after_first_checkpoint(_cmd(run_dir), env, run_dir)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=600)
        out["signals"][sig.name] = {"status": proc.returncode, "traceback": "Traceback" in err,
                                    **_resumed_exactly(run_dir, env, ref, expected)}
    return out


# ----------------------------------------------------------------------------- the drill


def drill(args) -> dict:
    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="fault_drill_"))
    work.mkdir(parents=True, exist_ok=True)
    env = _env(work)
    rng = random.Random(args.seed)

    t0 = time.perf_counter()
    ref_dir = work / "reference"
    subprocess.run(_cmd(ref_dir), env=env, check=True, capture_output=True, timeout=1200)
    cold_s = time.perf_counter() - t0
    ref = _artifacts(ref_dir)
    expected = set(_keys(ref_dir))

    ready_s, warm_s = _timed_uninterrupted(_cmd(work / "warm"), env, work / "warm")
    deterministic = _same(ref, _artifacts(work / "warm"))

    trials = []
    for t in range(args.trials):
        run_dir = work / f"trial{t:02d}"
        # uniform over the sweep's own life: from config.yaml (setup done) to the end of the run
        kill_at = rng.uniform(0.0, warm_s - ready_s)
        started = time.perf_counter()
        status = _run_killed(_cmd(run_dir), env, kill_at, after=run_dir / "config.yaml")
        trial = {"kill_after_config_s": round(kill_at, 3), "killed": status == -signal.SIGKILL,
                 "committed_at_kill": _committed(run_dir), "lines_at_kill": len(_keys(run_dir))}
        if t % 2 == 1 and (run_dir / "judgments.jsonl").exists():  # every other trial: a torn last line
            with open(run_dir / "judgments.jsonl", "ab") as f:
                f.write(b'{"goal_id": 0, "reward": -3.1')
            trial["torn_line"] = True
        if not (run_dir / "config.yaml").exists():
            # killed before the run directory held a run: there is nothing to resume, so start over
            trial["restarted"] = True
            resume = _cmd(run_dir)
        else:
            resume = _cmd(run_dir, "--resume")
            if t % 3 == 2:  # every third trial: the first resume is killed too
                trial["resume_killed_at_s"] = round(rng.uniform(0.0, warm_s), 3)
                _run_killed(resume, env, trial["resume_killed_at_s"])
        res = subprocess.run(resume, env=env, capture_output=True, text=True, timeout=1200)
        trial["wall_s"] = round(time.perf_counter() - started, 3)
        trial["resume_status"] = res.returncode
        if res.returncode != 0:
            trial["stderr"] = res.stderr.strip().splitlines()[-1:]
        keys = _keys(run_dir)
        trial["records_lost"] = len(expected - set(keys))
        trial["records_duplicated"] = len(keys) - len(set(keys))
        trial["records_unexpected"] = len(set(keys) - expected)
        trial["bit_exact"] = res.returncode == 0 and _same(ref, _artifacts(run_dir))
        trials.append(trial)
        if not args.keep:
            shutil.rmtree(run_dir, ignore_errors=True)

    bad = _bad_inputs(work, ref_dir)
    faults = _faults(work, env, ref_dir, ref, expected)
    base = [x for x in CONFIG if not x.startswith("epochs=")] if args.overhead_config == "drill" else []
    timing = _timed_run(work, "overhead", base + [f"epochs={args.overhead_epochs}"])
    ep, ck = np.asarray(timing["epoch_times"]), np.asarray(timing["checkpoint_times"])
    steady = slice(2, None)  # epochs 0 and 1 compile (random, then model-based collection)
    tried = {k: len(v) for k, v in bad.items()}
    clear = {k: sum(r["clear"] for r in v) for k, v in bad.items()}
    out = {
        "benchmark": "fault_drill",
        "device": device_info(),
        "sizes": {"variants": 4, "epochs": 3, "episodes_per_variant_epoch": 4, "records": len(expected),
                  "config": CONFIG},
        "kill_and_resume": {
            "trials": len(trials),
            "bit_exact": sum(t["bit_exact"] for t in trials),
            "bit_exact_share": sum(t["bit_exact"] for t in trials) / max(len(trials), 1),
            "killed_before_finishing": sum(t["killed"] for t in trials),
            "resumed_from_epoch": {str(e): sum(1 for t in trials if (t["committed_at_kill"][-1] + 1 if
                                                                      t["committed_at_kill"] else 0) == e)
                                   for e in range(4)},
            "resume_also_killed": sum("resume_killed_at_s" in t for t in trials),
            "torn_last_line": sum(bool(t.get("torn_line")) for t in trials),
            "records_lost": sum(t["records_lost"] for t in trials),
            "records_duplicated": sum(t["records_duplicated"] for t in trials),
            "baseline_uninterrupted_wall_s": {"cold_compile": round(cold_s, 2), "warm": round(warm_s, 2),
                                              "warm_until_config_yaml": round(ready_s, 2)},
            "killed_plus_resume_wall_over_uninterrupted": round(
                float(np.mean([t["wall_s"] for t in trials])) / warm_s, 3) if trials else None,
            "uninterrupted_rerun_bit_exact": deterministic,
            "per_trial": trials,
        },
        "bad_inputs": {"tried": sum(tried.values()), "clear_error": sum(clear.values()), "by_entry_point":
                       {k: {"tried": tried[k], "clear_error": clear[k]} for k in tried},
                       "not_clear": [dict(r, entry_point=k) for k, v in bad.items() for r in v if not r["clear"]]},
        "faults": faults,
        "faults_resumed_bit_exact": sum(f.get("bit_exact", False) for f in _fault_cases(faults)),
        "fault_cases": len(_fault_cases(faults)),
        "records_lost": sum(t["records_lost"] for t in trials) + sum(f.get("records_lost", 0) for f in _fault_cases(faults)),
        "checkpoint_overhead": {
            "config": args.overhead_config,
            "epochs": int(ep.shape[0]),
            "share_of_epoch_time_steady": float(ck[steady].sum() / ep[steady].sum()) if ep.shape[0] > 2 else None,
            "share_of_epoch_time_all": float(ck.sum() / ep.sum()),
            "checkpoint_s_mean_steady": float(ck[steady].mean()) if ep.shape[0] > 2 else None,
            "epoch_s_mean_steady": float(ep[steady].mean()) if ep.shape[0] > 2 else None,
            "note": "checkpoint_s is the synchronous part of an async orbax save; the commit overlaps the next epoch",
        },
        "workdir": str(work),
    }
    if not args.keep and not args.workdir:
        shutil.rmtree(work, ignore_errors=True)
    return out


def _fault_cases(faults: dict) -> list[dict]:
    return [faults["second_writer"], *faults["damaged_checkpoint"].values(),
            *(f for f in faults["enospc"].values() if "skipped" not in f), *faults["signals"].values()]


def main(argv: list[str] | None = None) -> int:
    """Runs the drill and prints its one JSON object; returns 0 when nothing was lost and all resumed bit-exact."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        _child(argv[1], argv[2], argv[3:])
        return 0
    if argv[:1] == ["--enospc-child"]:
        return _enospc_child(argv[1], argv[2], argv[3:])
    p = argparse.ArgumentParser(prog="python benchmarks/fault_drill.py", description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=10, help="kill-and-resume trials (default 10)")
    p.add_argument("--seed", type=int, default=0, help="seed of the kill moments")
    p.add_argument("--workdir", help="where the runs go (default: a temporary directory, removed)")
    p.add_argument("--keep", action="store_true", help="keep every trial's run directory")
    p.add_argument("--overhead-epochs", type=int, default=8, help="epochs of the checkpoint-overhead run")
    p.add_argument("--overhead-config", choices=("drill", "default"), default="drill",
                   help="the overhead run's config: the drill's small one, or configs/default.yaml")
    args = p.parse_args(argv)
    out = drill(args)
    emit(out)
    k = out["kill_and_resume"]
    exact = k["bit_exact"] == k["trials"] and out["faults_resumed_bit_exact"] == out["fault_cases"]
    return 0 if out["records_lost"] == 0 and exact else 1


if __name__ == "__main__":
    sys.exit(main())
