"""Planning with learned reward and termination heads: the reacher with its known reward hidden
from the planner (world_model.reward=learned) against the same sweep with it (auto)."""

import json

import numpy as np
import pytest

from augnes_jax.config import load_config
from augnes_jax.sweep import Sweep

CONFIG = [
    "epochs=3", "samples_per_epoch=600", "env.episode_length=15", "env.goals=[0,3]",
    "variants.hidden_dims=[2,32]", "variants.buffer_sizes=[1200]", "variants.seeds=[0,1]",
    "world_model.train_steps_per_epoch=150", "world_model.batch_size=64", "world_model.val_size=300",
    "world_model.k_steps=[1,5]", "planner.horizon=4", "planner.num_samples=16", "planner.num_elites=3",
    "planner.iterations=2", "planner.episodes_per_goal=4", "meta.bootstrap_samples=200",
    "checkpoint.enabled=false",
]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("learned_reward")
    out = {}
    for mode in ("auto", "learned"):
        Sweep(load_config(None, CONFIG + [f"world_model.reward={mode}"]), root / mode, progress=False).run()
        out[mode] = root / mode
    return out


def _regret_by_width(run, epochs=(1, 2)) -> dict[int, float]:
    rows = [json.loads(line) for line in (run / "judgments.jsonl").read_text().splitlines()]
    return {h: float(np.mean([r["regret"] for r in rows if r["hidden_dim"] == h and r["epoch"] in epochs]))
            for h in (2, 32)}


@pytest.mark.timeout(900)
def test_the_learned_reward_error_falls_with_width(runs):
    stats = json.loads((runs["learned"] / "world_model_stats.json").read_text())["variants"]
    last = {name: v["epochs"][-1] for name, v in stats.items()}
    small = [e["reward_mse"] for name, e in last.items() if name.startswith("h2-")]
    large = [e["reward_mse"] for name, e in last.items() if name.startswith("h32-")]
    assert len(small) == len(large) == 2 and max(large) < min(small), (small, large)
    assert all(0.0 <= e["termination_accuracy"] <= 1.0 and e["termination_bce"] >= 0.0 for e in last.values())
    # the reacher states its reward, so the auto run learns no heads
    known = json.loads((runs["auto"] / "world_model_stats.json").read_text())["variants"]
    assert not any("reward_mse" in e for v in known.values() for e in v["epochs"])


def test_regret_orders_the_widths_as_the_known_reward_run_does(runs):
    learned, known = _regret_by_width(runs["learned"]), _regret_by_width(runs["auto"])
    assert sorted(learned, key=learned.get) == sorted(known, key=known.get) == [32, 2], (learned, known)
    # the planner really scored with the learned heads: its returns are not the known-reward run's
    assert learned != known
