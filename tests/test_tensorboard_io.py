"""TensorBoard round trips: what RunWriter writes, TensorBoardReader reads back exactly."""

import os

import jax.numpy as jnp
import numpy as np
import pytest
from tensorboard.backend.event_processing import event_accumulator as ea
from tensorboard.plugins.custom_scalar import layout_pb2

from augnes_jax import regret
from augnes_jax.tensorboard_io import (
    RunWriter,
    TensorBoardReader,
    regret_layout,
    write_regret_summaries,
)


def f32(x):
    return float(np.float32(x))


def test_scalars_round_trip_exactly_while_the_writer_keeps_appending(tmp_path):
    run = tmp_path / "tb" / "h64-b10000-s0"
    rng = np.random.default_rng(0)
    values = rng.normal(size=30)
    reader = TensorBoardReader(tmp_path / "tb")
    with RunWriter(run) as w:
        for step in range(10):
            w.scalars(step, {"regret/avg": values[step], "regret/sum": values[step] * 10})
        w.flush()
        reader.reload()
        steps, got, _ = reader.scalars("h64-b10000-s0", "regret/avg")
        assert steps.tolist() == list(range(10))
        assert got.tolist() == [f32(v) for v in values[:10]]  # stored as float32, exactly
        for step in range(10, 30):
            w.scalars(step, {"regret/avg": values[step]})
        w.flush()
        reader.reload()  # incremental: the same accumulator picks up the new events
        steps, got, _ = reader.scalars("h64-b10000-s0", "regret/avg")
        assert steps.tolist() == list(range(30))
        assert got.tolist() == [f32(v) for v in values]
    assert reader.runs() == ["h64-b10000-s0"]
    assert reader.tags("h64-b10000-s0") == ["regret/avg", "regret/sum"]


def test_a_record_cut_short_is_read_once_it_is_complete(tmp_path):
    src = tmp_path / "src"
    with RunWriter(src) as w:
        for step in range(20):
            w.scalars(step, {"x": step * 0.5})
    (event_file,) = os.listdir(src)
    data = (src / event_file).read_bytes()
    dst = tmp_path / "tb" / "run"
    dst.mkdir(parents=True)
    # The copy ends 7 bytes into the last record, as a reader may see a file mid-write.
    (dst / event_file).write_bytes(data[:-7])
    reader = TensorBoardReader(tmp_path / "tb").reload()
    steps, got, _ = reader.scalars("run", "x")
    assert steps.tolist() == list(range(19)) and got.tolist() == [s * 0.5 for s in range(19)]
    with open(dst / event_file, "ab") as f:
        f.write(data[-7:])
    steps, got, _ = reader.reload().scalars("run", "x")
    assert steps.tolist() == list(range(20)) and got[-1] == 9.5


def test_a_step_written_twice_keeps_the_latest(tmp_path):
    with RunWriter(tmp_path / "r") as w:
        w.scalars(0, {"a": 1.0})
        w.scalars(1, {"a": 2.0})
        w.scalars(1, {"a": 3.0})  # a resumed run rewrites step 1
        w.scalars(2, {"a": 4.0})
    steps, values, walls = TensorBoardReader(tmp_path).reload().scalars("r", "a")
    assert steps.tolist() == [0, 1, 2] and values.tolist() == [1.0, 3.0, 4.0]
    assert np.all(np.diff(walls) >= 0)


def test_non_finite_scalars_are_not_written(tmp_path):
    with RunWriter(tmp_path / "r") as w:
        assert w.scalars(0, {"a": float("nan"), "b": float("inf"), "c": 1.0}) == 1
        assert not w.histogram("h", [np.nan], 0)
    assert TensorBoardReader(tmp_path).reload().tags("r") == ["c"]


def test_hparams_go_into_the_same_directory_and_read_back(tmp_path):
    run = tmp_path / "tb" / "h8-b100-s1"
    with RunWriter(run) as w:
        w.hparams({"hidden_dim": 8, "buffer_size": 100, "variant": "h8-b100-s1", "masked": True,
                   "widths": (8, 16)}, {"regret/avg": 0.25}, step=3)  # fmt: skip
        w.text("notes", "capacity 8", 0)
    assert sorted(p.name for p in (tmp_path / "tb").iterdir()) == ["h8-b100-s1"]
    assert all(p.is_file() for p in run.iterdir())  # no stray subdirectory
    reader = TensorBoardReader(tmp_path / "tb").reload()
    assert reader.hparams("h8-b100-s1") == {
        "hidden_dim": 8.0, "buffer_size": 100.0, "variant": "h8-b100-s1", "masked": True,
        "widths": "(8, 16)",
    }  # fmt: skip
    assert reader.scalars("h8-b100-s1", "regret/avg")[1].tolist() == [0.25]
    assert reader.texts("h8-b100-s1", "notes") == [(0, "capacity 8")]


def test_runs_are_discovered_on_reload(tmp_path):
    reader = TensorBoardReader(tmp_path)
    assert reader.reload().runs() == []
    with RunWriter(tmp_path / "capacity") as w:
        w.scalars(8, {"capacity/avg_regret": 1.0})
    with RunWriter(tmp_path / "variants" / "h8") as w:
        w.scalars(0, {"regret/avg": 2.0})
    assert reader.reload().runs() == ["capacity", "variants/h8"]
    assert reader.scalars("capacity", "capacity/avg_regret")[0].tolist() == [8]
    assert reader.scalars("capacity", "no/such/tag")[0].size == 0
    with pytest.raises(KeyError, match="no TensorBoard run"):
        reader.tags("nope")


def test_regret_summaries_tags_values_histograms_and_layout(tmp_path):
    G = 4
    reg = np.array([1.0, 2.0, 3.0, 5.0, 0.5], np.float32)
    adv = np.array([0.5, 1.5, -1.0, 2.0, 4.0], np.float32)
    goals = np.array([0, 0, 2, 2, 3])
    agg = regret.aggregate(jnp.asarray(reg), jnp.asarray(goals), G)
    adv_agg = regret.aggregate(jnp.asarray(adv), jnp.asarray(goals), G)
    with RunWriter(tmp_path / "v") as w:
        w.custom_scalars(regret_layout(G))
        written = write_regret_summaries(w, 7, agg, adv_agg, reg, goals, min_histogram_samples=2)
    # by hand: goal 0 -> 1.5, goal 2 -> 4.0, goal 3 -> 0.5; all 11.5 / 5
    assert written == pytest.approx({
        "regret/avg": 2.3, "regret/sum": 11.5, "regret/goal_0/avg": 1.5,
        "regret/goal_2/avg": 4.0, "regret/goal_3/avg": 0.5, "advantage/avg": 1.4,
        "advantage/goal_0/avg": 1.0, "advantage/goal_2/avg": 0.5, "advantage/goal_3/avg": 4.0,
    })  # fmt: skip
    reader = TensorBoardReader(tmp_path).reload()
    assert reader.tags("v") == sorted(written)  # goal 1 had no episodes: no scalar
    for tag, value in written.items():
        steps, values, _ = reader.scalars("v", tag)
        assert steps.tolist() == [7] and values[0] == f32(value)
    acc = ea.EventAccumulator(str(tmp_path / "v"), size_guidance={ea.HISTOGRAMS: 0}).Reload()
    # goal 3 has one episode, fewer than min_histogram_samples: no histogram
    assert sorted(acc.Tags()[ea.HISTOGRAMS]) == ["regret/goal_0", "regret/goal_2"]
    (h2,) = acc.Histograms("regret/goal_2")
    assert (h2.step, h2.histogram_value.num, h2.histogram_value.sum) == (7, 2, 8.0)
    assert (h2.histogram_value.min, h2.histogram_value.max) == (3.0, 5.0)
    (layout_event,) = acc.Tensors("custom_scalars__config__")
    layout = layout_pb2.Layout.FromString(layout_event.tensor_proto.string_val[0])
    charts = {c.title: list(c.multiline.tag) for cat in layout.category for c in cat.chart}
    assert charts["avg regret per goal"] == [f"regret/goal_{g}/avg" for g in range(G)]
    assert charts["avg advantage per goal"] == [f"advantage/goal_{g}/avg" for g in range(G)]
