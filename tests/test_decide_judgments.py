"""The controller on anyone's judgments: decide() from the rows' capacity fields, whatever the
variants are called, and the same decision through ``stats --tb`` and ``python -m augnes_jax.meta``."""

import json
from pathlib import Path

import numpy as np
import pytest

from augnes_jax import judgment_decision, meta, stats
from augnes_jax.errors import UserError
from augnes_jax.judgment_decision import decide
from augnes_jax.judgment_evidence import CapacityFieldsError
from augnes_jax.judgments import JudgmentWriter, make_judgments, read_judgments

FIXTURE = Path(__file__).parent / "fixtures" / "judgments_small.jsonl"
GOALS, EPOCHS, EPISODES, SEEDS = 4, 4, 3, (0, 1, 2)
# names that follow no pattern; the last reads as a variant name its fields contradict
NAMES = {(16, 0): "alpha", (16, 1): "my agent (narrow)", (16, 2): "x/y",
         (64, 0): "wide", (64, 1): "Zeta-9", (64, 2): "h8-b10-s0"}  # fmt: skip


def synthetic(base: dict[int, float], *, noise: float = 0.3, seed: int = 0) -> list[dict]:
    """Returns judgment records: regret ~ base[width] + 0.5 * goal + N(0, noise), buffer 1000."""
    rng = np.random.default_rng(seed)
    records = []
    goal_id = np.repeat(np.arange(GOALS), EPISODES)
    for (h, s), name in NAMES.items():
        for epoch in range(EPOCHS):
            regret = base[h] + 0.5 * goal_id + rng.normal(0.0, noise, goal_id.shape[0])
            optimal = rng.uniform(5.0, 10.0, goal_id.shape[0])
            records += make_judgments(goal_id, optimal - regret, optimal, optimal - regret - 1.0,
                                      variant=name, hidden_dim=h, buffer_size=1000, seed=s, epoch=epoch)  # fmt: skip
    return records


def window_regret(records: list[dict], h: int, k_last: int = 2) -> float:
    """Returns the mean over seeds of the mean over the last k epochs of each epoch's mean regret (float64)."""
    per_seed = []
    for s in SEEDS:
        per_epoch = [np.mean([r["regret"] for r in records if (r["hidden_dim"], r["seed"], r["epoch"]) == (h, s, e)])
                     for e in range(EPOCHS - k_last, EPOCHS)]  # fmt: skip
        per_seed.append(np.mean(per_epoch))
    return float(np.mean(per_seed))


def test_a_gain_clearly_above_epsilon_expands():
    records = synthetic({16: 10.0, 64: 5.0})
    d = decide(records, epsilon=1.0, bootstrap_samples=500)
    assert d.decision == "expand"
    assert d.recommended == {"hidden_dim": 64, "buffer_size": 1000}
    assert d.suggested_next == {"hidden_dim": 128, "buffer_size": 1000}
    (g,) = d.gains
    assert (g.axis, g.from_, g.to, g.seeds, g.paired, g.significant) == ("hidden_dim", 16, 64, 3, True, True)
    want = window_regret(records, 16) - window_regret(records, 64)
    assert g.gain == pytest.approx(want, rel=1e-5) and g.gain == pytest.approx(5.0, abs=0.5)
    assert g.gain_ci95[0] > 1.0
    # the evidence names the variants by their fields; the rows' own names play no part
    assert d.evidence["runs"] == sorted(f"h{h}-b1000-s{s}" for h, s in NAMES)
    assert d.evidence["steps"] == [2, 3]


def test_a_gain_clearly_below_epsilon_keeps_the_smaller_width():
    records = synthetic({16: 10.0, 64: 9.9})
    d = decide(records, epsilon=1.0, bootstrap_samples=500)
    assert d.decision == "keep" and d.suggested_next is None
    assert d.recommended == {"hidden_dim": 16, "buffer_size": 1000}
    (g,) = d.gains
    want = window_regret(records, 16) - window_regret(records, 64)
    assert g.gain == pytest.approx(want, rel=1e-4, abs=1e-5) and abs(g.gain) < 0.5
    assert not g.significant and g.gain_ci95[0] < 1.0


def test_judgments_records_and_a_path_give_one_decision(tmp_path):
    records = synthetic({16: 10.0, 64: 8.0})
    path = tmp_path / "judgments.jsonl"
    with JudgmentWriter(path) as w:
        w.append(records)
    a = decide(path, epsilon=0.5, bootstrap_samples=300).to_json()
    b = decide(str(path), epsilon=0.5, bootstrap_samples=300).to_json()
    c = decide(read_judgments(path), epsilon=0.5, bootstrap_samples=300).to_json()
    d = decide(records, epsilon=0.5, bootstrap_samples=300).to_json()
    for doc in (a, b, c, d):
        doc.pop("generated_at")
    assert a == b == c == d
    assert sorted(p.name for p in tmp_path.iterdir()) == ["judgments.jsonl"]  # nothing written
    with pytest.raises(TypeError, match=r"^decide: expected a list of judgment records \(dicts\) or Judgments, got int$"):
        decide(3, epsilon=0.5)
    with pytest.raises(ValueError, match="epsilon must be a finite number >= 0"):
        decide(records, epsilon=-1.0)
    with pytest.raises(ValueError, match="goal_id 3 is not below num_goals 3"):
        decide(records, epsilon=0.5, num_goals=3)
    # more goals than the log names: the same cells, so the same decision
    e = decide(records, epsilon=0.5, bootstrap_samples=300, num_goals=9).to_json()
    e.pop("generated_at")
    assert e == a


def _decision_through_tensorboard(tmp_path, records, epsilon):
    """Returns decision.json of ``meta`` on the runs ``stats --tb`` writes for ``records``."""
    run = tmp_path / "run"
    log = tmp_path / "judgments.jsonl"
    with JudgmentWriter(log) as w:
        w.append(records)
    assert stats.main([str(log), "--out", str(run / "strategy_stats.json"), "--tb", str(run / "tb")]) == 0
    assert meta.main([str(run), "--epsilon", str(epsilon)]) == 0
    return log, json.loads((run / "decision.json").read_text())


def test_decide_equals_the_controller_on_the_runs_stats_writes(tmp_path, capsys):
    records = synthetic({16: 10.0, 64: 8.0}, noise=2.0)
    log, through_tb = _decision_through_tensorboard(tmp_path, records, 0.5)
    assert sorted(p.name for p in (tmp_path / "run" / "tb").iterdir()) == sorted(f"h{h}-b1000-s{s}" for h, s in NAMES)
    direct = json.loads(json.dumps(decide(log, epsilon=0.5).to_json()))
    for doc in (direct, through_tb):
        doc.pop("generated_at"), doc.pop("history")
    assert direct == through_tb
    assert direct["decision"] == "expand"


def test_a_diverged_variant_is_left_out_both_ways(tmp_path, capsys):
    records = synthetic({16: 10.0, 64: 5.0})
    records.append({"goal_id": 0, "reward": 0.0, "regret": 1.0, "variant": "Zeta-9", "hidden_dim": 64,
                    "buffer_size": 1000, "seed": 1, "epoch": 3, "diverged": True})  # fmt: skip
    log, through_tb = _decision_through_tensorboard(tmp_path, records, 1.0)
    direct = json.loads(json.dumps(decide(log, epsilon=1.0, bootstrap_samples=2000).to_json()))
    assert direct["evidence"]["excluded_diverged"] == ["h64-b1000-s1"]
    assert [c["seeds"] for c in direct["capacities"]] == [[0, 1, 2], [0, 2]]
    for doc in (direct, through_tb):
        doc.pop("generated_at"), doc.pop("history")
    assert direct == through_tb


def test_a_log_without_capacity_fields_has_nothing_to_compare(tmp_path, capsys):
    with pytest.raises(CapacityFieldsError, match=f"^{FIXTURE}: no hidden_dim field: nothing to compare$") as err:
        decide(FIXTURE, epsilon=0.5)
    assert isinstance(err.value, UserError)
    rows = [{"goal_id": 0, "reward": 1.0, "regret": 1.0, "hidden_dim": 8, "seed": 0}]
    with pytest.raises(CapacityFieldsError, match="^no buffer_size field: nothing to compare$"):
        decide(rows, epsilon=0.5)
    rows = [{"goal_id": 0, "reward": 1.0, "regret": 1.0, "hidden_dim": 8, "buffer_size": 10},
            {"goal_id": 0, "reward": 1.0, "regret": 1.0, "seed": 0}]  # fmt: skip
    with pytest.raises(CapacityFieldsError, match="^no judgment has all of hidden_dim, buffer_size and seed"):
        decide(rows, epsilon=0.5)
    # the command line: one line, exit status 2, nothing written
    out = tmp_path / "decision.json"
    assert judgment_decision.main([str(FIXTURE), "--epsilon", "0.5", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err == f"augnes_jax.judgment_decision: error: {FIXTURE}: no hidden_dim field: nothing to compare\n"
    assert not out.exists()


def test_two_experiments_with_one_capacity_cannot_be_told_apart():
    rows = [{"goal_id": 0, "reward": 1.0, "regret": 1.0, "hidden_dim": 8, "buffer_size": 10, "seed": 0,
             "strategy": name} for name in ("greedy", "cem")]  # fmt: skip
    with pytest.raises(CapacityFieldsError, match="^variants 'greedy' and 'cem' both have hidden_dim 8, "
                       "buffer_size 10, seed 0: the controller cannot tell them apart"):  # fmt: skip
        decide(rows, epsilon=0.5)


def test_the_command_line_writes_the_decision_it_explains(tmp_path, capsys):
    records = synthetic({16: 10.0, 64: 5.0})
    log = tmp_path / "judgments.jsonl"
    with JudgmentWriter(log) as w:
        w.append(records)
    out = tmp_path / "d" / "decision.json"
    assert judgment_decision.main([str(log), "--epsilon", "1", "--bootstrap-samples", "400", "--out", str(out)]) == 0
    assert "EXPAND" in capsys.readouterr().out
    got = json.loads(out.read_text())
    want = json.loads(json.dumps(decide(log, epsilon=1.0, bootstrap_samples=400).to_json()))
    got.pop("generated_at"), want.pop("generated_at")
    assert got == want


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_decide_on_a_sweeps_log_equals_the_sweeps_own_decision(tiny_sweep):
    from augnes_jax import envs
    from augnes_jax.world_model import num_params

    cfg, run_dir, _ = tiny_sweep  # the session's TINY sweep (tests/conftest.py)
    env = envs.make(cfg.env.name)
    widths = cfg.variants.hidden_dims
    params = {h: num_params(env.obs_dim, env.action_dim, h, cfg.world_model.num_layers) for h in widths}
    d = decide(run_dir / "judgments.jsonl", epsilon=cfg.meta.epsilon, relative=cfg.meta.relative,
               k_last=cfg.meta.last_k_epochs, bootstrap_samples=cfg.meta.bootstrap_samples, seed=cfg.seed,
               num_params=params)  # fmt: skip
    got = json.loads(json.dumps(d.to_json()))
    want = json.loads((run_dir / "decision.json").read_text())
    assert want.pop("growth") == []  # the sweep's own growth history (fixed widths: none)
    for doc in (got, want):
        doc.pop("generated_at"), doc.pop("history")
        for c in doc["capacities"]:
            c.pop("val_mse")  # the world model's error is in TensorBoard only
        for goal in doc["goals"].values():  # and per goal in world_model_stats.json, not in the log
            ev = goal["evidence"]
            ev.pop("model_error"), ev.pop("model_epsilon"), goal.pop("why")
    assert got == want


def test_the_command_line_runs_as_a_module(tmp_path):
    import subprocess
    import sys

    missing = tmp_path / "none.jsonl"
    proc = subprocess.run(
        [sys.executable, "-m", "augnes_jax.judgment_decision", str(missing), "--epsilon", "0.5"],
        capture_output=True, text=True, cwd=Path(__file__).parent.parent,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr == f"augnes_jax.judgment_decision: error: {missing}: no such file\n"
