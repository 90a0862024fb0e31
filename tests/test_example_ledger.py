"""examples/ledger_from_your_loop.py runs, and its numbers are those of its own log."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from augnes_jax.judgments import read_judgments

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "ledger_from_your_loop.py"


@pytest.fixture(scope="module")
def example():
    spec = importlib.util.spec_from_file_location("ledger_from_your_loop", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_example_writes_aggregates_and_decides(example, tmp_path, capsys):
    summary = example.main(["--out", str(tmp_path)])
    assert json.loads(capsys.readouterr().out) == summary
    j = read_judgments(tmp_path / "judgments.jsonl")
    # 2 widths x 3 seeds x 3 epochs x 4 goals x 4 episodes
    assert len(j) == summary["episodes"] == 2 * 3 * 3 * 4 * 4
    np.testing.assert_allclose(j.regret, j.optimal_reward - j.reward, rtol=1e-6, atol=1e-6)
    names = np.array(j.variant)
    for name, avg in summary["avg_regret"].items():
        assert avg == pytest.approx(j.regret[names == name].mean(), rel=1e-5)
    stats = json.loads((tmp_path / "strategy_stats.json").read_text())
    assert [e["variant"] for e in stats["experiments"]] == list(summary["avg_regret"])
    # the narrow model plans far worse than the wide one: the controller asks for more width
    narrow = np.mean([v for k, v in summary["avg_regret"].items() if k.startswith("rff2/")])
    wide = np.mean([v for k, v in summary["avg_regret"].items() if k.startswith("rff64/")])
    assert narrow > 10 * wide
    assert summary["decision"] == "expand"
    assert summary["recommended"] == {"hidden_dim": 64, "buffer_size": 2000}
    assert summary["suggested_next"] == {"hidden_dim": 128, "buffer_size": 2000}


def test_the_wide_model_learns_the_dynamics_and_the_oracle_beats_the_baseline(example):
    rng = np.random.default_rng(0)
    s, a = rng.uniform(-1, 1, (4000, 2)), rng.uniform(-1, 1, (4000, 2))
    ts, ta = rng.uniform(-1, 1, (1000, 2)), rng.uniform(-1, 1, (1000, 2))
    err = {}
    for h in (2, 64):
        model = example.Model(h, np.random.default_rng(1))
        model.fit(s, a, example.step(s, a))
        err[h] = np.mean((model.predict(ts, ta) - example.step(ts, ta)) ** 2)
    still = np.mean((ts - example.step(ts, ta)) ** 2)  # predicting no motion at all
    assert err[64] < 0.1 * still and err[2] > 0.5 * still
    goals = example.GOALS[np.repeat(np.arange(4), 8)]
    _, optimal, baseline = example.run_episodes(example.step, goals, np.random.default_rng(3))
    assert (optimal > baseline).all()
