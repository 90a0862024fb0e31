"""The ``auto`` capacity mode grows widths live, logging the growth, without changing the function."""

import json

from augnes_jax.config import load_config
from augnes_jax.judgments import read_judgments
from augnes_jax.tensorboard_io import TensorBoardReader
from tests.sweep_configs import AUTO


def test_auto_mode_grows_from_the_start_width_and_records_it(auto_sweep):
    assert "variants.seeds=[0,1]" in AUTO and load_config(None, AUTO).variants.capacity_mode == "auto"
    run = auto_sweep  # the session's AUTO sweep (tests/conftest.py)
    decision = json.loads((run / "decision.json").read_text())
    growth = decision["growth"]
    # one explore step after the first epoch: every seed's h4 became h8, and training continued
    assert {(g["from"], g["to"]) for g in growth if g["epoch"] == 0} == {("h4-b400-s0", "h8-b400-s0"),
                                                                        ("h4-b400-s1", "h8-b400-s1")}
    j = read_judgments(run / "judgments.jsonl")
    assert set(j.hidden_dim[j.epoch == 0].tolist()) == {4}
    assert set(j.hidden_dim[j.epoch == 1].tolist()) == {8}
    wm = json.loads((run / "world_model_stats.json").read_text())["variants"]
    assert [e["epoch"] for e in wm["h8-b400-s0"]["epochs"]][:1] == [1]
    reader = TensorBoardReader(run / "tb").reload()
    assert {"h4-b400-s0", "h8-b400-s0"} <= set(reader.runs())
    # the dashboard draws the grown models (the start width's names are gone from the checkpoint)
    assert (run / "plots" / "transition_pattern.png").stat().st_size > 0
