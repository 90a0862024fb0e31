"""Reliability of the sweep: determinism, divergence isolation, file-system faults, security basics.

The sweeps run in subprocesses that share the session's XLA compilation cache with
``tests/test_resume.py`` and compare against its uninterrupted reference run (same config), so
each run here costs seconds. A fault or a diverging variant is injected by the small runner
below, which patches the sweep from outside: the package has no test hooks.
"""

import errno
import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from augnes_jax import checkpoint as ckpt
from augnes_jax import infer
from augnes_jax.config import ConfigError, load_config
from augnes_jax.evidence import DIVERGED_TAG, LATENCY_TAG
from augnes_jax.sweep import Sweep
from augnes_jax.tensorboard_io import TensorBoardReader
from augnes_jax.variants import VARIANT_RE, all_variants, build_buckets
from tests.test_resume import (
    EPISODES,
    RESUME_CFG,
    VARIANTS,
    artifacts,
    assert_same,
    reference_run,
    strip,
    sweep_cmd,
    sweep_env,
)
from tests.toy_checkpoint import write_toy_checkpoint

POISONED = "h16-b400-s1"

# Runs a sweep in a fresh process: ``python -c RUNNER MODE RUN_DIR OUT_JSON [key=value ...]``.
#   plain:   the sweep, then a resumed Sweep built on a copy of the finished run; writes the
#            summary and both regret ledgers (live and rebuilt, as float.hex) to OUT_JSON
#   diverge: the same with NaN observations written into one variant's buffer from epoch 1 on
#   enospc:  the CLI, with every fsync failing with ENOSPC once epoch 1 writes (a full disk)
RUNNER = r"""
import errno, json, os, shutil, sys
mode, run_dir, out, *overrides = sys.argv[1:]
from augnes_jax import sweep as S
from augnes_jax.config import load_config


def poison(sweep):
    import jax.numpy as jnp

    for r in sweep.runs:
        names = [v.name for v in r.bucket.variants]
        if POISONED in names:
            i, collect = names.index(POISONED), r.fns.collect

            def poisoned(states, buffers, keys, probs, use_random, collect=collect, i=i):
                buffers, counts = collect(states, buffers, keys, probs, use_random=use_random)
                if not use_random:
                    data = dict(buffers.data)
                    data["obs"] = data["obs"].at[i].set(jnp.nan)
                    buffers = buffers.replace(data=data)
                return buffers, counts

            r.fns = r.fns._replace(collect=poisoned)


if mode == "enospc":
    armed = [False]
    fsync = os.fsync

    def full_fsync(fd):
        if armed[0]:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return fsync(fd)

    os.fsync = full_fsync
    sys.exit(S.main(["--no-progress", "--run-dir", run_dir, *overrides],
                    before_write=lambda epoch: armed.__setitem__(0, epoch >= 1)))

cfg = load_config(None, overrides)
sweep = S.Sweep(cfg, run_dir, progress=False)
if mode == "diverge":
    poison(sweep)
summary = sweep.run()
hexed = lambda ledger: {k: [[float(x).hex() for x in a] for a in v] for k, v in sorted(ledger.items())}
copy = out + ".run"
shutil.copytree(run_dir, copy)
again = S.Sweep(cfg, copy, resume=True, progress=False)
with open(out, "w") as f:
    json.dump({"summary": summary, "live": hexed(sweep.ledger), "rebuilt": hexed(again.ledger),
               "start": again.start_epoch}, f)
""".replace("POISONED", repr(POISONED))


def run_runner(factory, mode: str, run_dir: Path, *extra: str) -> tuple[subprocess.CompletedProcess, dict | None]:
    """Returns the runner's process result and, for plain/diverge, what it wrote."""
    out = run_dir.parent / f"{mode}.json"
    res = subprocess.run([sys.executable, "-c", RUNNER, mode, str(run_dir), str(out), *RESUME_CFG, *extra],
                         env=sweep_env(factory), capture_output=True, text=True, timeout=600)
    return res, (json.loads(out.read_text()) if out.exists() else None)


def _tb_scalars(run_dir: Path) -> dict:
    """Every TensorBoard scalar but the measured control latency (a wall-clock time, like ``ts``)."""
    reader = TensorBoardReader(run_dir / "tb").reload()
    return {(run, tag): tuple(map(tuple, reader.scalars(run, tag)[:2])) for run in reader.runs()
            for tag in reader.tags(run) if tag != LATENCY_TAG}


def _json_artifacts(run_dir: Path) -> dict:
    out = {p.name: strip(json.loads(p.read_text())) for p in run_dir.glob("*.json")}
    for p in run_dir.glob("*.jsonl"):
        out[p.name] = [strip(json.loads(x)) for x in p.read_text().splitlines()]
    out["config.yaml"] = (run_dir / "config.yaml").read_text()
    return out


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    run_dir = reference_run(tmp_path_factory)
    return run_dir, artifacts(run_dir)


# ----------------------------------------------------------------------------- determinism


def test_same_config_and_seed_give_identical_artifacts(reference, tmp_path_factory, tmp_path):
    ref_dir, ref = reference
    run_dir = tmp_path / "run"
    res, out = run_runner(tmp_path_factory, "plain", run_dir)
    assert res.returncode == 0, res.stderr[-2000:]
    assert_same(ref, artifacts(run_dir))  # judgments, both statistics files, every checkpoint array
    # every other artifact too: sweep_state, decision, alerts, config, TensorBoard scalars
    assert _json_artifacts(run_dir) == _json_artifacts(ref_dir)
    assert _tb_scalars(run_dir) == _tb_scalars(ref_dir)
    assert not any(row["diverged"] for row in out["summary"]["rows"])
    # a resume rebuilds the regret ledger from judgments.jsonl bit for bit: it drives the
    # regret-prioritised goal sampling of every later epoch
    assert out["start"] == 3
    assert out["rebuilt"] == out["live"] and set(out["live"]) == set(VARIANTS)


# ----------------------------------------------------------------------------- divergence


def _rows(run_dir: Path) -> dict[str, int]:
    meta = ckpt.restore_checkpoint(run_dir / "checkpoints", items=())[2]
    return {v["name"]: v["index"] for v in meta["variants"]}


def test_a_diverging_variant_is_isolated(reference, tmp_path_factory, tmp_path):
    ref_dir, ref = reference
    run_dir = tmp_path / "run"
    res, out = run_runner(tmp_path_factory, "diverge", run_dir)
    assert res.returncode == 0, res.stderr[-2000:]
    assert f"variant {POISONED} diverged at epoch 1" in res.stderr
    got = artifacts(run_dir)

    # the other variants: bit-identical judgments, statistics and arrays
    others = [v for v in VARIANTS if v != POISONED]
    assert [r for r in got["judgments"] if r["variant"] != POISONED] == \
           [r for r in ref["judgments"] if r["variant"] != POISONED]
    exps = {e["variant"]: e for e in got["strategy_stats"]["experiments"]}
    ref_exps = {e["variant"]: e for e in ref["strategy_stats"]["experiments"]}
    for v in others:
        assert exps[v] == ref_exps[v] and not exps[v].get("diverged")
        assert got["world_model_stats"]["variants"][v] == ref["world_model_stats"]["variants"][v]
    rows = _rows(run_dir)
    assert rows == _rows(ref_dir)
    keep = np.asarray([i for v, i in rows.items() if v != POISONED])
    for a, b in zip(jax.tree.leaves(got["arrays"]), jax.tree.leaves(ref["arrays"]), strict=True):
        np.testing.assert_array_equal(a[keep], b[keep])

    # the diverged one: its epoch 0 stands, nothing after it is judged, and it is flagged everywhere
    mine = [r for r in got["judgments"] if r["variant"] == POISONED]
    assert mine == [r for r in ref["judgments"] if r["variant"] == POISONED and r["epoch"] == 0]
    assert len(mine) == EPISODES
    assert exps[POISONED]["diverged"] is True and exps[POISONED]["episodes"] == EPISODES
    epochs = got["world_model_stats"]["variants"][POISONED]["epochs"]
    assert [(e["epoch"], e["diverged"]) for e in epochs] == [(0, False), (1, True), (2, True)]
    assert epochs[1]["nonfinite_updates"] > 0
    reader = TensorBoardReader(run_dir / "tb").reload()
    for v in VARIANTS:
        steps, values, _ = reader.scalars(v, DIVERGED_TAG)  # a point where the flag changes
        assert list(steps) == ([0, 1] if v == POISONED else [0])
        assert list(values) == ([0.0, 1.0] if v == POISONED else [0.0])
    assert {r["variant"]: r["diverged"] for r in out["summary"]["rows"]} == {v: v == POISONED for v in VARIANTS}
    state = json.loads((run_dir / "sweep_state.json").read_text())
    assert state["diverged"] == {POISONED: 1}
    # the controller left it out of its evidence
    evidence = json.loads((run_dir / "decision.json").read_text())["evidence"]
    assert evidence["excluded_diverged"] == [POISONED] and POISONED not in evidence["runs"]


# ----------------------------------------------------------------------------- file-system faults


def _tmp_files(run_dir: Path) -> list[Path]:
    return [p for p in run_dir.rglob("*") if p.name.endswith(".tmp")]


def test_full_disk_mid_run_is_one_clear_error_and_the_run_resumes_exactly(reference, tmp_path_factory, tmp_path):
    _, ref = reference
    run_dir = tmp_path / "run"
    res, _ = run_runner(tmp_path_factory, "enospc", run_dir)
    assert res.returncode == 2, res.stderr[-2000:]
    assert "Traceback" not in res.stderr
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("augnes_jax.sweep: error:") and os.strerror(errno.ENOSPC) in last
    assert _tmp_files(run_dir) == []
    # what epoch 0 wrote is intact: parseable and complete
    stats = json.loads((run_dir / "strategy_stats.json").read_text())
    assert {e["variant"]: e["episodes"] for e in stats["experiments"]} == dict.fromkeys(VARIANTS, EPISODES)
    wm = json.loads((run_dir / "world_model_stats.json").read_text())
    assert all([e["epoch"] for e in v["epochs"]] == [0] for v in wm["variants"].values())
    assert ckpt.checkpoint_steps(run_dir / "checkpoints") == [0]
    # once there is space again, the run resumes to exactly the uninterrupted result
    again = subprocess.run(sweep_cmd(run_dir, "--resume"), env=sweep_env(tmp_path_factory),
                           capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    assert_same(ref, artifacts(run_dir))


def _one_error_line(res) -> str:
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2 and len(lines) == 1, res.stderr[-2000:]
    return lines[0]


def test_unwritable_run_directory_is_one_clear_error(tmp_path_factory, tmp_path):
    if os.geteuid() != 0:
        run_dir = tmp_path / "locked"
        run_dir.mkdir(mode=0o500)
        reason = os.strerror(errno.EACCES)
    else:  # root ignores permission bits: a parent that is a regular file stops anyone
        (tmp_path / "plainfile").write_text("x")
        run_dir = tmp_path / "plainfile" / "run"
        reason = os.strerror(errno.ENOTDIR)
    res = subprocess.run(sweep_cmd(run_dir), env=sweep_env(tmp_path_factory), capture_output=True, text=True,
                         timeout=300)
    line = _one_error_line(res)
    assert str(run_dir) in line and reason in line
    assert sorted(p.name for p in tmp_path.iterdir()) in (["locked"], ["plainfile"])
    if run_dir.is_dir():
        assert list(run_dir.iterdir()) == []


# ----------------------------------------------------------------------------- security basics


@pytest.mark.parametrize("name", ["..", "../escape", "a/b", "/abs", ".hidden", "a\\b", "x" * 129])
def test_run_names_cannot_leave_the_runs_directory(tmp_path, name):
    with pytest.raises(ConfigError, match="run_name"):
        load_config(None, [f"run_name={name}", f"runs_dir={tmp_path / 'runs'}"])


def test_a_symlinked_run_name_that_leads_outside_is_refused(tmp_path, tmp_path_factory):
    runs, outside = tmp_path / "runs", tmp_path / "outside"
    runs.mkdir()
    outside.mkdir()
    (runs / "evil").symlink_to(outside)
    res = subprocess.run([sys.executable, "-m", "augnes_jax.sweep", "--no-progress", f"runs_dir={runs}",
                          "run_name=evil", *RESUME_CFG], env=sweep_env(tmp_path_factory),
                         capture_output=True, text=True, timeout=300)
    assert "run_name" in _one_error_line(res) and "escapes" in res.stderr
    assert list(outside.iterdir()) == []


@pytest.mark.parametrize("override", ["variants.hidden_dims=[../x]", "variants.seeds=[a/b]",
                                      "variants.buffer_sizes=['..']", "variants.hidden_dims=[1.5]"])
def test_variant_names_come_only_from_integers(override):
    with pytest.raises(ConfigError) as err:
        load_config(None, [override])
    assert "\n" not in str(err.value) and "Integer" in str(err.value)


def test_a_bad_list_element_error_names_its_key():
    with pytest.raises(ConfigError, match="variants.hidden_dims"):
        load_config(None, ["variants.hidden_dims=[../x]"])


def test_every_variant_name_is_a_plain_name_inside_the_run(reference):
    ref_dir, _ = reference
    buckets = build_buckets((1, 7, 300), (5, 10**6), (0, 2**31 - 1), 4)
    assert all(VARIANT_RE.match(v.name) for v in all_variants(buckets))
    tb = ref_dir / "tb"
    runs = [p for p in tb.iterdir() if p.is_dir()]
    assert sorted(p.name for p in runs) == sorted([*VARIANTS, "_capacity", "_controller"])
    for p in runs:
        assert p.resolve().parent == tb.resolve()


def test_external_judgment_names_cannot_leave_the_tensorboard_directory(tmp_path):
    log = tmp_path / "j.jsonl"
    names = ["..", ".", "../../up", "/abs/path", "a/../../b"]
    log.write_text("".join(json.dumps({"goal_id": 0, "reward": 1.0, "regret": 0.5, "variant": n}) + "\n"
                           for n in names))
    out = tmp_path / "out"
    res = subprocess.run([sys.executable, "-m", "augnes_jax.stats", str(log), "--out", str(out / "s.json"),
                          "--tb", str(out / "tb")], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    event_dirs = {p.parent for p in tmp_path.rglob("events.out.tfevents.*")}
    assert len(event_dirs) == len(names)
    assert all(d.resolve().parent == (out / "tb").resolve() for d in event_dirs)


class _Payload:
    """Unpickling this creates ``path``: the proof that a file was unpickled."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, "w")


@pytest.fixture(scope="module")
def small_checkpoint(tmp_path_factory):
    """A run directory with one committed checkpoint of one bucket (w4: h2 and h4)."""
    return write_toy_checkpoint(tmp_path_factory.mktemp("pickle_run"), seed=0)


@pytest.mark.parametrize("target", ["params/_METADATA", "params/checkpoint", "params/evil.pkl",
                                    "meta/metadata", "normalizer/_sharding", "_CHECKPOINT_METADATA",
                                    "checkpoint.pkl"])
def test_loading_a_checkpoint_never_unpickles(small_checkpoint, tmp_path, capsys, target):
    live = tmp_path / "live_marker"
    pickle.loads(pickle.dumps(_Payload(live)))
    assert live.exists()  # the payload does run when unpickled
    run_dir = tmp_path / "run"
    shutil.copytree(small_checkpoint, run_dir)
    marker = tmp_path / "marker"
    (run_dir / "checkpoints" / "0" / target).write_bytes(pickle.dumps(_Payload(marker)))
    try:
        ckpt.load_world_model(run_dir, "best")
    except ckpt.CheckpointError as e:
        assert "\n" not in str(e)
    code = infer.main([str(run_dir), "--obs", "0,0,0", "--action", "0,0"])
    assert code in (0, 2)
    for fn in (lambda: ckpt.checkpoint_steps(run_dir / "checkpoints"),
               lambda: ckpt.restore_checkpoint(run_dir / "checkpoints"),
               lambda: ckpt.SweepCheckpointer(run_dir / "checkpoints").latest_step()):
        try:
            fn()
        except ckpt.CheckpointError:
            pass
    capsys.readouterr()
    assert not marker.exists()


def test_pickled_numpy_input_is_refused_not_loaded(small_checkpoint, tmp_path, capsys):
    marker = tmp_path / "marker"
    np.save(tmp_path / "obs.npy", np.array([_Payload(marker)], dtype=object), allow_pickle=True)
    np.save(tmp_path / "act.npy", np.zeros((1, 2), np.float32))
    code = infer.main([str(small_checkpoint), "--obs-file", str(tmp_path / "obs.npy"),
                       "--action-file", str(tmp_path / "act.npy")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--obs-file" in err[0]
    assert not marker.exists()


def test_sweep_api_refuses_a_changed_config_on_resume(reference, tmp_path):
    """The Python API enforces what the CLI enforces: nothing is written when it refuses."""
    ref_dir, _ = reference
    run_dir = tmp_path / "run"
    shutil.copytree(ref_dir, run_dir)
    before = (run_dir / "config.yaml").read_bytes()
    cfg = load_config(None, [*RESUME_CFG, "planner.horizon=5"])
    from augnes_jax.sweep import SweepError

    with pytest.raises(SweepError, match="planner.horizon"):
        Sweep(cfg, run_dir, resume=True, progress=False).run()
    assert (run_dir / "config.yaml").read_bytes() == before
