"""End-to-end sweep: artifacts, counts, stats consistency, vmapped == alone, the capacity effect."""

import json
import subprocess
import sys

import numpy as np
import pytest
import yaml

from augnes_jax.config import load_config
from augnes_jax.judgments import read_judgments
from augnes_jax.sweep import Sweep, goal_probabilities
from augnes_jax.tensorboard_io import TensorBoardReader
from tests.sweep_configs import TINY


@pytest.fixture(scope="module")
def tiny_run(tiny_sweep):
    """The session's TINY sweep (tests/conftest.py), read-only."""
    return tiny_sweep


def test_every_artifact_exists_and_parses(tiny_run):
    cfg, run_dir, _ = tiny_run
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["epochs"] == 2
    for name in ("strategy_stats.json", "world_model_stats.json", "decision.json"):
        json.loads((run_dir / name).read_text())
    variants = ["h4-b400-s0", "h4-b400-s1", "h16-b400-s0", "h16-b400-s1"]
    for v in variants + ["_controller", "_capacity/epoch_0000", "_capacity/epoch_0001"]:
        assert any((run_dir / "tb" / v).glob("events.out.tfevents.*")), v
    assert any((run_dir / "checkpoints").iterdir())
    pngs = sorted(p.name for p in (run_dir / "plots").glob("*.png"))
    assert "regret_vs_hidden_dim.png" in pngs and "transition_pattern.png" in pngs, pngs
    # variants x goals x episodes x epochs judgments, all well formed
    j = read_judgments(run_dir / "judgments.jsonl")
    assert len(j.goal_id) == 4 * 2 * 2 * 2
    keys = {(v, int(e), int(ep)) for v, e, ep in zip(j.variant, j.epoch, j.episode, strict=True)}
    assert len(keys) == len(j.goal_id)
    assert set(j.variant) == set(variants)
    assert set(np.unique(j.goal_id).tolist()) == {0, 3}
    np.testing.assert_allclose(j.regret, j.optimal_reward - j.reward, atol=1e-6)


def test_strategy_stats_equal_fresh_numpy_aggregation(tiny_run):
    _, run_dir, _ = tiny_run
    stats = json.loads((run_dir / "strategy_stats.json").read_text())
    j = read_judgments(run_dir / "judgments.jsonl")
    by_variant = {e["variant"]: e for e in stats["experiments"]}
    for name in set(j.variant):
        sel = np.asarray([v == name for v in j.variant])
        reg = j.regret[sel].astype(np.float64)
        adv = (j.reward[sel] - j.baseline_reward[sel]).astype(np.float64)
        exp = by_variant[name]
        assert exp["episodes"] == sel.sum()
        assert exp["sum_regret"] == pytest.approx(reg.sum(), rel=1e-5, abs=1e-4)
        assert exp["avg_regret"] == pytest.approx(reg.mean(), rel=1e-5, abs=1e-5)
        assert exp["avg_advantage"] == pytest.approx(adv.mean(), rel=1e-5, abs=1e-5)
        goals = j.goal_id[sel]
        for g in (0, 3):
            assert exp["goals"][str(g)]["sum_regret"] == pytest.approx(reg[goals == g].sum(), rel=1e-5, abs=1e-4)
        # goals that were not in the config have no episodes: null, never NaN
        assert exp["goals"]["1"]["avg_regret"] is None


def test_capacity_tags_read_back(tiny_run):
    _, run_dir, _ = tiny_run
    reader = TensorBoardReader(run_dir / "tb").reload()
    steps, values, _ = reader.scalars("_capacity/epoch_0001", "capacity/avg_regret_vs_hidden_dim/buffer_size_400")
    assert list(steps) == [4, 16]
    j = read_judgments(run_dir / "judgments.jsonl")
    # the controller's window is both epochs (k_last 2); every variant has as many episodes per
    # epoch, so the mean over seeds of the window means is the mean of all their episodes
    for h, value in zip(steps, values, strict=True):
        sel = j.hidden_dim == h
        assert value == pytest.approx(j.regret[sel].mean(), rel=1e-4, abs=1e-4)
    s, v, _ = reader.scalars("h16-b400-s0", "regret/avg")
    assert list(s) == [0, 1]
    sel = np.asarray([x == "h16-b400-s0" for x in j.variant]) & (j.epoch == 0)
    assert v[0] == pytest.approx(j.regret[sel].mean(), rel=1e-4, abs=1e-4)


def test_vmapped_variant_equals_the_same_variant_alone(tiny_run, tmp_path):
    """h4 trains masked inside the width-16 bucket in the sweep and dense at width 4 alone."""
    _, run_dir, _ = tiny_run
    alone_cfg = load_config(None, TINY + ["variants.hidden_dims=[4]", "variants.seeds=[1]"])
    Sweep(alone_cfg, tmp_path / "alone", progress=False).run()
    full = json.loads((run_dir / "world_model_stats.json").read_text())["variants"]["h4-b400-s1"]["epochs"]
    alone = json.loads((tmp_path / "alone" / "world_model_stats.json").read_text())["variants"]["h4-b400-s1"]["epochs"]
    for a, b in zip(full, alone, strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-3)
        assert a["val_mse"] == pytest.approx(b["val_mse"], rel=1e-3)
        assert a["samples_seen"] == b["samples_seen"]
    ja = read_judgments(run_dir / "judgments.jsonl")
    jb = read_judgments(tmp_path / "alone" / "judgments.jsonl")
    sel = np.asarray([v == "h4-b400-s1" for v in ja.variant])
    # epoch 0 collects with a random policy: the control episodes see identical models up to float noise
    e0a, e0b = sel & (ja.epoch == 0), jb.epoch == 0
    np.testing.assert_allclose(ja.optimal_reward[e0a], jb.optimal_reward[e0b], rtol=1e-5)
    np.testing.assert_allclose(ja.reward[e0a], jb.reward[e0b], rtol=0.05, atol=0.05)


def test_synchronous_writes_give_the_same_artifacts(tiny_run, tmp_path):
    """Writing each epoch before the next starts, instead of while it computes, changes no byte
    of the results (wall-clock fields aside)."""
    cfg, run_dir, _ = tiny_run
    sync_dir = tmp_path / "sync"
    Sweep(cfg, sync_dir, progress=False, synchronous_writes=True).run()
    volatile = {"generated_at", "ts", "source", "run"}

    def strip(obj):
        if isinstance(obj, dict):
            return {k: strip(v) for k, v in obj.items() if k not in volatile}
        return [strip(v) for v in obj] if isinstance(obj, list) else obj

    for name in ("strategy_stats.json", "world_model_stats.json", "decision.json", "sweep_state.json"):
        assert strip(json.loads((sync_dir / name).read_text())) == strip(json.loads((run_dir / name).read_text())), name
    lines = [strip(json.loads(x)) for x in (run_dir / "judgments.jsonl").read_text().splitlines()]
    assert [strip(json.loads(x)) for x in (sync_dir / "judgments.jsonl").read_text().splitlines()] == lines
    assert len(lines) == 4 * 2 * 2 * 2


def test_goal_probabilities_prioritise_regret():
    avg = np.array([1.0, 5.0, 3.0])
    counts = np.array([4, 4, 4])
    p = goal_probabilities(avg, counts, "regret", 1.0, 0.05)
    assert p.sum() == pytest.approx(1.0)
    assert p[1] > p[2] > p[0] >= 0.05
    np.testing.assert_allclose(goal_probabilities(avg, counts, "uniform", 1.0, 0.05), 1 / 3)
    # before any judgment every goal gets the same share
    np.testing.assert_allclose(goal_probabilities(avg, np.zeros(3), "regret", 1.0, 0.05), 1 / 3)


def test_capacity_effect_on_the_default_environment(tmp_path):
    """Wider models reach lower val MSE and lower mean regret over seeds (fixed seeds)."""
    cfg = load_config(None, [
        "epochs=2", "samples_per_epoch=2000", "env.goals=[0,1,2,3]",
        "variants.hidden_dims=[4,64]", "variants.buffer_sizes=[4000]", "variants.seeds=[0,1]",
        "world_model.train_steps_per_epoch=250", "world_model.val_size=500",
        "planner.horizon=6", "planner.num_samples=24", "planner.num_elites=4", "planner.iterations=2",
        "planner.episodes_per_goal=2", "meta.bootstrap_samples=200",
    ])
    Sweep(cfg, tmp_path / "cap", progress=False).run()
    wm = json.loads((tmp_path / "cap" / "world_model_stats.json").read_text())["variants"]
    j = read_judgments(tmp_path / "cap" / "judgments.jsonl")
    last = j.epoch == 1
    for s in (0, 1):
        assert wm[f"h64-b4000-s{s}"]["epochs"][-1]["val_mse"] < 0.5 * wm[f"h4-b4000-s{s}"]["epochs"][-1]["val_mse"]
    small = j.regret[last & (j.hidden_dim == 4)].mean()
    large = j.regret[last & (j.hidden_dim == 64)].mean()
    assert large < small - 1.0, (small, large)


def _cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "augnes_jax.sweep", "--no-progress", *args],
                          capture_output=True, text=True, cwd=cwd, timeout=120)


@pytest.mark.parametrize("bad", [["epochs=0"], ["variants.seeds=[1,1]"], ["nope=3"], ["epochs=x"],
                                 ["env.goals=[]"], ["--config", "/nonexistent.yaml"]])
def test_cli_bad_config_exits_2_and_writes_nothing(tmp_path, bad):
    run_dir = tmp_path / "run"
    res = _cli("--run-dir", str(run_dir), *bad)
    assert res.returncode == 2
    lines = [x for x in res.stderr.strip().splitlines() if x]
    assert len(lines) == 1 and "error" in lines[0]
    assert not run_dir.exists()


def test_cli_refuses_to_overwrite_and_resume_needs_a_run(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text("epochs: 1\n")
    res = _cli("--run-dir", str(run_dir), "epochs=1")
    assert res.returncode == 2 and "already holds a run" in res.stderr
    res = _cli("--resume", "--run-dir", str(tmp_path / "missing"))
    assert res.returncode == 2 and "does not exist" in res.stderr
