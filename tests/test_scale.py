"""Scaling out: the variant axis sharded over 4 fake CPU devices, and a run over two processes.

Each multi-device sweep runs in its own subprocess (this file doubles as the worker script),
because ``--xla_force_host_platform_device_count`` is read when JAX starts. The single-device
sweep of the same config runs in this process while they run, and is the reference: the sharded
and the two-process runs must write the same artifacts. The config has 6 variants, so 4 devices
pad every variant axis to 8 and the padding must stay invisible.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from augnes_jax.checkpoint_read import restore_checkpoint
from augnes_jax.config import load_config
from augnes_jax.distribution import pad_rows
from augnes_jax.judgments import read_judgments
from augnes_jax.sweep import (
    Sweep,
    SweepError,
    init_distributed,
    main,
    make_mesh,
    padded_size,
)
from augnes_jax.tensorboard_io import TensorBoardReader
from augnes_jax.variants import parse_variant_name
from tests.sweep_configs import TINY

ROOT = Path(__file__).resolve().parents[1]
# 6 variants in one bucket; collection plans from epoch 0, so one compiled collect path
BASE = TINY + ["variants.seeds=[0,1,2]", "planner.random_collect_epochs=0"]
VARIANTS = [f"h{h}-b400-s{s}" for h in (4, 16) for s in (0, 1, 2)]
RESULT = "RESULT "  # prefix of the worker's one JSON line on stdout
RTOL, ATOL = 1e-4, 1e-6


# ----------------------------------------------------------------------------- the runs


def _worker_env(num_devices: int, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    flags = [f for f in env.get("XLA_FLAGS", "").split() if "xla_force_host_platform_device_count" not in f]
    env["XLA_FLAGS"] = " ".join(flags + [f"--xla_force_host_platform_device_count={num_devices}"])
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.update(extra)
    return env


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(tmp: Path, name: str, args: list[str], env: dict[str, str]):
    out, err = open(tmp / f"{name}.out", "w"), open(tmp / f"{name}.err", "w")  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, __file__, *args], cwd=ROOT, env=env, stdout=out, stderr=err)
    return name, proc, out, err


def _finish(tmp: Path, started, timeout: float) -> dict[str, dict]:
    results = {}
    try:
        for name, proc, out, err in started:
            proc.wait(timeout=timeout)
            out.close()
            err.close()
            lines = [x for x in (tmp / f"{name}.out").read_text().splitlines() if x.startswith(RESULT)]
            tail = (tmp / f"{name}.err").read_text()[-3000:]
            assert proc.returncode == 0 and lines, f"worker {name} failed (rc {proc.returncode}):\n{tail}"
            results[name] = json.loads(lines[-1][len(RESULT):])
    finally:
        for _, proc, _, _ in started:
            if proc.poll() is None:
                proc.kill()
    return results


# The module's shared fixture runs three sweeps at once (one here, a 4-device subprocess and two
# processes of 2 devices), about 2 minutes on 2 idle cores; its setup counts against the first
# test, so a loaded machine needs more than the suite's default 300 s.
pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same sweep on 1 device (here), 4 devices (subprocess) and 2 processes x 2 devices."""
    tmp = tmp_path_factory.mktemp("scale")
    dirs = {k: tmp / k / "tiny" for k in ("one", "four", "mp")}  # same leaf name: same "run" field
    port = str(_free_port())
    started = [_start(tmp, "four", ["sharded", str(dirs["four"]), *BASE, "devices=4"], _worker_env(4))]
    for pid in (0, 1):
        env = _worker_env(2, JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}", JAX_NUM_PROCESSES="2",
                          JAX_PROCESS_ID=str(pid))
        started.append(_start(tmp, f"mp{pid}", ["process", str(dirs["mp"]), *BASE, "epochs=1"], env))
    try:
        Sweep(load_config(None, BASE + ["devices=1"]), dirs["one"], progress=False).run()
    finally:
        results = _finish(tmp, started, timeout=480)
    return dirs, results


# ----------------------------------------------------------------------------- comparisons


def _judgments(run_dir: Path, epochs=None) -> dict[tuple, dict]:
    out = {}
    for line in (run_dir / "judgments.jsonl").read_text().splitlines():
        rec = json.loads(line)
        rec.pop("ts")
        if epochs is None or rec["epoch"] in epochs:
            out[(rec["variant"], rec["epoch"], rec["episode"])] = rec
    return out


def _json(path: Path, *drop: str) -> dict:
    doc = json.loads(path.read_text())
    for k in drop:
        doc.pop(k, None)
    return doc


def assert_same(a, b, where: str = "") -> None:
    """Asserts two JSON documents are equal: floats to RTOL/ATOL, everything else exactly."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and list(a) == list(b), f"{where}: keys {list(a)} != {list(b)}"
        for k in a:
            assert_same(a[k], b[k], f"{where}/{k}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), f"{where}: lengths differ"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, float) and not isinstance(b, bool):
        assert b == pytest.approx(a, rel=RTOL, abs=ATOL), f"{where}: {a} != {b}"
    else:
        assert type(a) is type(b) and a == b, f"{where}: {a!r} != {b!r}"


@pytest.mark.slow
def test_sharded_sweep_writes_the_single_device_artifacts(runs):
    dirs, _ = runs
    one, four = dirs["one"], dirs["four"]
    ja, jb = _judgments(one), _judgments(four)
    assert len(ja) == 6 * 2 * 2 * 2  # variants x goals x episodes per goal x epochs
    assert list(ja) == list(jb)
    assert_same(ja, jb, "judgments")
    drop = ("generated_at", "source", "run")
    assert_same(_json(one / "strategy_stats.json", *drop), _json(four / "strategy_stats.json", *drop), "strategy_stats")
    assert_same(_json(one / "world_model_stats.json", "generated_at"),
                _json(four / "world_model_stats.json", "generated_at"), "world_model_stats")
    # the checkpointed models agree too (rows past the 6 variants are padding: see below)
    _, a, meta_a = restore_checkpoint(one / "checkpoints", items=("params",))
    _, b, meta_b = restore_checkpoint(four / "checkpoints", items=("params",))
    assert meta_a["epoch"] == meta_b["epoch"] == 1
    for x, y in zip(_leaves(a["params"]), _leaves(b["params"]), strict=True):
        np.testing.assert_allclose(y[:6], x, rtol=RTOL, atol=ATOL)


def _leaves(tree) -> list[np.ndarray]:
    import jax

    return [np.asarray(x) for x in jax.tree.leaves(tree)]


@pytest.mark.slow
def test_arrays_are_split_over_the_variant_axis(runs):
    _, results = runs
    r = results["four"]
    assert r["device_count"] == 4 and r["process_count"] == 1
    (bucket,) = r["buckets"]
    assert (bucket["variants"], bucket["padded_size"]) == (6, 8)
    # every state and buffer leaf: NamedSharding over the 4-device mesh axis "variant", 2 rows each
    assert bucket["n_leaves"] > 20
    assert bucket["placements"] == [{"type": "NamedSharding", "mesh": {"variant": 4}, "spec": ["variant"],
                                     "devices": 4, "shard_rows": [2, 2, 2, 2]}]
    # each device runs its own slice: no compiled epoch function moves data between devices
    assert sorted(r["collectives"]) == ["collect", "control", "evaluate", "train"]
    assert all(c == [] for c in r["collectives"].values()), r["collectives"]


@pytest.mark.slow
def test_padding_never_reaches_an_output(runs):
    dirs, _ = runs
    one, four = dirs["one"], dirs["four"]
    stats = _json(four / "strategy_stats.json")
    assert [e["variant"] for e in stats["experiments"]] == [e["variant"] for e in _json(one / "strategy_stats.json")["experiments"]]
    assert sorted(e["variant"] for e in stats["experiments"]) == sorted(VARIANTS)
    tb = TensorBoardReader(four / "tb").reload().runs()
    assert tb == TensorBoardReader(one / "tb").reload().runs()
    assert sorted(x for x in tb if parse_variant_name(x)) == sorted(VARIANTS)
    j = read_judgments(four / "judgments.jsonl")
    assert sorted(set(j.variant)) == sorted(VARIANTS) and len(j.variant) == 48
    assert sorted(_json(four / "world_model_stats.json")["variants"]) == sorted(VARIANTS)
    _, arrays, meta = restore_checkpoint(four / "checkpoints", items=("params",))
    assert [(v["name"], v["index"]) for v in meta["variants"]] == [(n, i) for i, n in enumerate(sorted(
        VARIANTS, key=lambda n: parse_variant_name(n)))]
    # the checkpoint keeps the padded axis; the padding rows repeat the last variant exactly
    for leaf in _leaves(arrays["params"]):
        assert leaf.shape[0] == 8
        np.testing.assert_array_equal(leaf[6:], np.repeat(leaf[5:6], 2, axis=0))


@pytest.mark.slow
def test_checkpoint_restores_onto_another_device_count(runs):
    _, results = runs
    restore = results["four"]["restore"]
    # saved on 4 devices (8 padded rows), restored on 3 (6 rows, no padding), bit for bit
    assert restore["padded_size"] == 6 and restore["devices"] == 3
    assert restore["max_abs_diff"] == 0.0 and restore["n_leaves"] > 20


@pytest.mark.slow
def test_two_processes_write_once_and_agree_with_one_device(runs):
    dirs, results = runs
    p0, p1 = results["mp0"], results["mp1"]
    assert (p0["rc"], p1["rc"]) == (0, 0)
    assert (p0["process_index"], p1["process_index"]) == (0, 1)
    assert p0["process_count"] == p1["process_count"] == 2 and p0["device_count"] == 4
    # process 1 writes nothing but its checkpoint shards (and its own writability probe)
    assert p1["writes"] == [], p1["writes"]
    for name in ("config.yaml", "judgments.jsonl", "strategy_stats.json", "world_model_stats.json", "decision.json"):
        assert name in p0["writes"], name
    assert any(w.startswith("tb/h16-b400-s2/events.out.tfevents") for w in p0["writes"])
    assert (dirs["mp"] / "checkpoints" / "0" / "commit_success.txt").exists()
    # epoch 0 of the 2-process run is epoch 0 of the single-device run
    assert_same(_judgments(dirs["one"], epochs={0}), _judgments(dirs["mp"]), "judgments")
    a = _json(dirs["one"] / "world_model_stats.json")["variants"]
    b = _json(dirs["mp"] / "world_model_stats.json")["variants"]
    assert list(a) == list(b)
    for name in a:
        assert_same(a[name]["epochs"][0], b[name]["epochs"][0], name)


@pytest.mark.slow
def test_two_processes_resume_and_agree_with_one_device(runs, tmp_path):
    """The finished two-process run, extended by one epoch with ``--resume`` on two processes,
    holds the single-device run's two epochs; process 1 still writes nothing but checkpoints."""
    dirs, _ = runs
    port = str(_free_port())
    started = []
    for pid in (0, 1):
        env = _worker_env(2, JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}", JAX_NUM_PROCESSES="2",
                          JAX_PROCESS_ID=str(pid))
        args = ["process", str(dirs["mp"]), "--resume", "--allow-change", "epochs", *BASE, "epochs=2"]
        started.append(_start(tmp_path, f"resume{pid}", args, env))
    results = _finish(tmp_path, started, timeout=480)
    p0, p1 = results["resume0"], results["resume1"]
    assert (p0["rc"], p1["rc"]) == (0, 0)
    assert p1["writes"] == [], p1["writes"]
    assert "judgments.jsonl" in p0["writes"]
    assert (dirs["mp"] / "checkpoints" / "1" / "commit_success.txt").exists()
    assert_same(_judgments(dirs["one"]), _judgments(dirs["mp"]), "judgments")
    a = _json(dirs["one"] / "world_model_stats.json")["variants"]
    b = _json(dirs["mp"] / "world_model_stats.json")["variants"]
    for name in a:
        assert [e["epoch"] for e in b[name]["epochs"]] == [0, 1]
        for ea, eb in zip(a[name]["epochs"], b[name]["epochs"], strict=True):
            assert_same(ea, eb, name)


# ----------------------------------------------------------------------------- units


def test_padding_rounds_up_and_repeats_the_last_row():
    assert [padded_size(n, 4) for n in (1, 3, 4, 6, 8)] == [4, 4, 4, 8, 8]
    assert padded_size(5, 1) == 5
    np.testing.assert_array_equal(pad_rows(np.array([[1, 2], [3, 4], [5, 6]]), 5),
                                  [[1, 2], [3, 4], [5, 6], [5, 6], [5, 6]])
    x = np.arange(4)
    assert pad_rows(x, 4) is x


def test_mesh_needs_enough_devices():
    import jax

    n = len(jax.devices())
    assert make_mesh("1") is None
    assert (make_mesh("auto") is None) == (n == 1)
    with pytest.raises(SweepError, match=f"devices={n + 1} but only {n} cpu device"):
        make_mesh(str(n + 1))


def test_distributed_settings_from_the_environment(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("JAX_COORDINATOR_ADDRESS", raising=False)
    assert init_distributed(load_config(None, [])) is False
    monkeypatch.setenv("JAX_COORDINATOR_ADDRESS", "127.0.0.1:1")
    monkeypatch.setenv("JAX_NUM_PROCESSES", "2")
    monkeypatch.setenv("JAX_PROCESS_ID", "one")
    run_dir = tmp_path / "run"
    assert main(["--no-progress", "--run-dir", str(run_dir), "epochs=1"]) == 2
    lines = [x for x in capsys.readouterr().err.splitlines() if x.strip()]
    assert len(lines) == 1 and "JAX_PROCESS_ID" in lines[0] and "'one'" in lines[0]
    assert not run_dir.exists()


# ----------------------------------------------------------------------------- worker


def _placement(x) -> dict:
    s = x.sharding
    return {"type": type(s).__name__, "mesh": dict(s.mesh.shape), "spec": list(s.spec),
            "devices": len(s.device_set), "shard_rows": sorted(int(sh.data.shape[0]) for sh in x.addressable_shards)}


def _collectives(text: str) -> list[str]:
    ops = ("all-gather", "all-reduce", "all-to-all", "collective-permute", "reduce-scatter")
    return sorted({op for op in ops if f" {op}(" in text or f" {op}-start(" in text})


def _worker_sharded(run_dir: str, overrides: list[str]) -> dict:
    import jax
    import jax.numpy as jnp

    from augnes_jax.checkpoint import SweepCheckpointer
    from augnes_jax.distribution import host_copy
    from augnes_jax.sampling import COLLECT, eval_episodes, variant_keys
    from augnes_jax.sweep_checkpoints import restore_device_state

    cfg = load_config(None, overrides)
    sweep = Sweep(cfg, run_dir, progress=False)
    sweep.run()
    out = {"device_count": jax.device_count(), "process_count": jax.process_count(), "buckets": []}
    for r in sweep.runs:
        leaves = jax.tree.leaves((r.states, r.buffers))
        placements = []
        for leaf in leaves:
            p = _placement(leaf)
            if p not in placements:
                placements.append(p)
        out["buckets"].append({"variants": len(r.bucket.variants), "padded_size": r.padded_size,
                               "n_leaves": len(leaves), "placements": placements})
    # the executables the run compiled (cache hits): look for cross-device collectives
    r = sweep.runs[0]
    keys = sweep.shard(variant_keys(cfg.seed, r.seeds, COLLECT, 0))
    probs = sweep.shard(jnp.full((r.padded_size, len(sweep.goal_ids)), 1.0 / len(sweep.goal_ids), jnp.float32))
    keys_eval, goals_eval = eval_episodes(cfg.seed, 0, sweep.goal_ids, cfg.planner.episodes_per_goal)
    calls = {"collect": (r.fns.collect, (r.states, r.buffers, keys, probs), {"use_random": False}),
             "train": (r.fns.train, (r.states, r.buffers, keys), {}),
             "evaluate": (r.fns.evaluate, (r.states, sweep.val), {}),
             "control": (r.fns.control, (r.states, keys_eval, goals_eval), {})}
    out["collectives"] = {k: _collectives(f.lower(*a, **kw).compile().as_text()) for k, (f, a, kw) in calls.items()}
    # restore the last checkpoint onto 3 devices: the padded rows are dropped, nothing else changes
    final = [np.asarray(x) for x in host_copy(jax.tree.leaves((r.states, r.buffers)))]
    other_cfg = load_config(None, [o for o in overrides if not o.startswith("devices=")] + ["devices=3"])
    other = Sweep(other_cfg, run_dir, progress=False)
    with SweepCheckpointer(Path(run_dir) / "checkpoints") as checkpointer:
        arrays, _ = checkpointer.restore(cfg.epochs - 1)
    states = restore_device_state(other.runs, arrays, cfg.epochs - 1, checkpointer.directory, other.shard)
    restored = jax.tree.leaves(states[0])
    n = len(r.bucket.variants)
    diff = max(float(np.max(np.abs(np.asarray(a, np.float64) - b[:n].astype(np.float64)), initial=0.0))
               for a, b in zip(host_copy(restored), final, strict=True))
    out["restore"] = {"padded_size": other.runs[0].padded_size, "devices": _placement(restored[0])["devices"],
                      "max_abs_diff": diff, "n_leaves": len(restored)}
    return out


def _worker_process(run_dir: str, overrides: list[str]) -> dict:
    """Runs the CLI as one process of a multi-process run, recording every file it writes."""
    import jax

    root = os.path.abspath(run_dir)
    writes: set[str] = set()
    write_flags = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT

    def audit(event: str, args) -> None:
        if event == "open":
            path, mode, flags = args
            if not ((isinstance(mode, str) and any(c in mode for c in "wax+")) or (flags or 0) & write_flags):
                return
        elif event in ("os.rename", "os.mkdir"):  # os.replace raises os.rename
            path = args[1] if event == "os.rename" else args[0]
        else:
            return
        if isinstance(path, int) or path is None:
            return
        p = os.path.abspath(os.fsdecode(os.fspath(path)))
        if p.startswith(root + os.sep):
            rel = os.path.relpath(p, root)
            # orbax writes every process's shards; each process probes that it can write
            if not (rel.startswith("checkpoints") or rel.startswith(".write_probe")):
                writes.add(rel)

    sys.addaudithook(audit)
    rc = main(["--no-progress", "--run-dir", run_dir, *overrides])
    return {"rc": rc, "process_index": jax.process_index(), "process_count": jax.process_count(),
            "device_count": jax.device_count(), "writes": sorted(writes)}


if __name__ == "__main__":
    import jax

    # the test suite's settings (tests/conftest.py), which a subprocess does not load
    jax.config.update("jax_numpy_rank_promotion", "raise")
    jax.config.update("jax_debug_key_reuse", True)
    mode, run_dir, *overrides = sys.argv[1:]
    worker = {"sharded": _worker_sharded, "process": _worker_process}[mode]
    print(RESULT + json.dumps(worker(run_dir, overrides)), flush=True)
