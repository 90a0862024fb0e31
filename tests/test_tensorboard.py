"""What a sweep shows in TensorBoard: no repeated steps, the controller's own numbers, images.

One tiny real sweep (module fixture) is read three ways: tensorboard's ``EventAccumulator`` with
every size guidance 0 (keep everything), and the real ``tensorboard`` server's HTTP data API
with the Rust loader (``--load_fast=true``) and with the Python loader (``--load_fast=false``).
Expected values come from ``decision.json`` and, computed another way, from ``judgments.jsonl``.
"""

import io
import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

import numpy as np
import pytest
from PIL import Image
from tensorboard.backend.event_processing import event_accumulator as ea
from tensorboard.plugins.custom_scalar import layout_pb2
from tensorboard.plugins.hparams import plugin_data_pb2

from augnes_jax import dashboard
from augnes_jax.alerts import alert_sentence
from augnes_jax.evidence import DIVERGED_TAG, NUM_PARAMS_TAG, read_variants
from augnes_jax.judgments import read_judgments
from augnes_jax.meta import MetaJudgmentController
from augnes_jax.sweep_io import TB_FIGURES, capacity_run
from augnes_jax.tensorboard_io import (
    MAX_LINES,
    RunWriter,
    TensorBoardReader,
    png_size,
    write_regret_summaries,
)

KEEP_ALL = {kind: 0 for kind in ea.DEFAULT_SIZE_GUIDANCE}
VARIANTS = ["h16-b400-s0", "h16-b400-s1", "h4-b400-s0", "h4-b400-s1"]
CURVE = "capacity/avg_regret_vs_hidden_dim/buffer_size_400"


@pytest.fixture(scope="module")
def run(tiny_sweep):
    """The session's TINY sweep (tests/conftest.py), read-only."""
    cfg, run_dir, _ = tiny_sweep
    return cfg, run_dir


def _accumulators(tb):
    out = {}
    for dirpath, _dirs, names in os.walk(tb):
        if any(n.startswith("events.out.tfevents.") for n in names):
            out[os.path.relpath(dirpath, tb)] = ea.EventAccumulator(dirpath, size_guidance=KEEP_ALL).Reload()
    return out


def _decision(run_dir):
    return json.loads((run_dir / "decision.json").read_text())


def test_runs_are_named_apart_and_no_tag_repeats_a_step(run):
    _, run_dir = run
    accs = _accumulators(run_dir / "tb")
    assert sorted(accs) == ["_alerts", "_capacity/epoch_0000", "_capacity/epoch_0001", "_controller", *VARIANTS]
    assert sorted(accs)[:4] == ["_alerts", "_capacity/epoch_0000", "_capacity/epoch_0001", "_controller"]  # first
    checked = 0
    for name, acc in accs.items():
        tags = acc.Tags()
        for kind, read in ((ea.SCALARS, acc.Scalars), (ea.TENSORS, acc.Tensors), (ea.IMAGES, acc.Images),
                           (ea.HISTOGRAMS, acc.Histograms)):
            for tag in tags.get(kind, []):
                steps = [e.step for e in read(tag)]
                assert len(steps) == len(set(steps)), (name, kind, tag, steps)
                checked += 1
    assert checked > 100


def test_capacity_curve_equals_decision_json_and_the_judgments(run):
    _, run_dir = run
    doc = _decision(run_dir)
    assert doc["epoch"] == 1 and doc["k_last"] == 2
    acc = ea.EventAccumulator(str(run_dir / "tb" / capacity_run(1)), size_guidance=KEEP_ALL).Reload()
    caps = {c["hidden_dim"]: c for c in doc["capacities"]}
    for tag, key in ((CURVE, "avg_regret"),
                     ("capacity/avg_advantage_vs_hidden_dim/buffer_size_400", "avg_advantage"),
                     ("capacity/val_mse_vs_hidden_dim/buffer_size_400", "val_mse")):
        points = [(e.step, e.value) for e in acc.Scalars(tag)]
        assert [s for s, _ in points] == [4, 16]
        assert [v for _, v in points] == [np.float32(caps[h][key]) for h, _ in points], tag
    # another way: the window is both epochs and every variant has as many episodes per epoch,
    # so the mean over seeds of the window means is the mean of all episodes of that width
    j = read_judgments(run_dir / "judgments.jsonl")
    for e in acc.Scalars(CURVE):
        assert e.value == pytest.approx(j.regret[j.hidden_dim == e.step].mean(), rel=1e-5)
    # epoch 0's curve is the one decided on at epoch 0: its window is epoch 0 alone
    first = ea.EventAccumulator(str(run_dir / "tb" / capacity_run(0)), size_guidance=KEEP_ALL).Reload()
    for e in first.Scalars(CURVE):
        sel = (j.hidden_dim == e.step) & (j.epoch == 0)
        assert e.value == pytest.approx(j.regret[sel].mean(), rel=1e-5)


def test_the_decision_is_in_tensorboard_every_epoch(run):
    _, run_dir = run
    doc = _decision(run_dir)
    acc = ea.EventAccumulator(str(run_dir / "tb" / "_controller"), size_guidance=KEEP_ALL).Reload()
    rec = [(e.step, e.value) for e in acc.Scalars("decision/recommended_hidden_dim")]
    assert [s for s, _ in rec] == [0, 1]
    assert rec[-1][1] == doc["recommended"]["hidden_dim"]
    assert rec[0][1] == doc["history"][0]["recommended"]["hidden_dim"]
    assert acc.Scalars("decision/recommended_buffer_size")[-1].value == doc["recommended"]["buffer_size"]
    assert acc.Scalars("decision/expand")[-1].value == (1.0 if doc["decision"] == "expand" else 0.0)
    texts = {e.step: e.tensor_proto.string_val[0].decode() for e in acc.Tensors("decision")}
    assert sorted(texts) == [0, 1]
    assert texts[1].startswith(f"**{doc['decision']}**: recommended hidden_dim {doc['recommended']['hidden_dim']}")
    caps = {c["hidden_dim"]: c["avg_regret"] for c in doc["capacities"]}
    assert f"(mean over seeds): h4-b400: {caps[4]:.3g}; h16-b400: {caps[16]:.3g}.  \n" in texts[1]
    assert texts[1].endswith(f"Why: {doc['reason']}")
    # the alert: one sentence per alert under the tag "alerts" in a run of its own, as alerts.jsonl
    # recorded it; the controller's run keeps one event file, so a live reader misses nothing
    assert len(list((run_dir / "tb" / "_controller").glob("events.out.tfevents.*"))) == 1
    alerts = [json.loads(line) for line in (run_dir / "alerts.jsonl").read_text().splitlines()]
    acc = ea.EventAccumulator(str(run_dir / "tb" / "_alerts"), size_guidance=KEEP_ALL).Reload()
    (event,) = acc.Tensors("alerts")
    assert event.tensor_proto.string_val[0].decode() == "  \n".join(alert_sentence(a) for a in alerts)


def test_alert_sentence_rounds_and_says_what_it_means():
    alert = {"axis": "hidden_dim", "ladder": {"buffer_size": 400}, "from": 4, "to": 16, "gain": 0.24781,
             "gain_ci95": [-11.5634, 12.0591], "relative_gain": 0.0361, "relative": False, "epsilon": 0.5,
             "decision": "keep"}
    assert alert_sentence(alert) == (
        "Going from hidden_dim 4 to 16 (buffer_size 400) lowers avg regret by 0.25 (95% CI -12 to 12), "
        "less than epsilon 0.5: the larger capacity is not worth its cost here. Decision: keep.")
    assert alert_sentence({**alert, "relative": True, "epsilon": 0.05}) == (
        "Going from hidden_dim 4 to 16 (buffer_size 400) lowers avg regret by 4% (absolute 0.25, "
        "95% CI -12 to 12), less than epsilon 5%: the larger capacity is not worth its cost here. Decision: keep.")


def test_dashboard_figures_are_exact_pngs_in_the_event_files(run):
    cfg, run_dir = run
    acc = ea.EventAccumulator(str(run_dir / "tb" / "_controller"), size_guidance=KEEP_ALL).Reload()
    tags = sorted(acc.Tags()[ea.IMAGES])
    assert tags == sorted(f"dashboard/{n.removesuffix('.png')}" for n in TB_FIGURES)
    # the same figures, drawn now from the finished run with the sweep's controller settings
    ctrl = MetaJudgmentController.from_config(run_dir, cfg)
    figs = dashboard.figures(run_dir, controller=ctrl, names=TB_FIGURES)
    for name, fig in figs.items():
        events = acc.Images(f"dashboard/{name.removesuffix('.png')}")
        assert [e.step for e in events] == [0, 1]
        last = events[-1]
        png = last.encoded_image_string
        expected = tuple(int(round(x * fig.dpi)) for x in fig.get_size_inches())
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and png_size(png) == expected == (last.width, last.height)
        shown = np.asarray(Image.open(io.BytesIO(png)))
        assert shown.shape[:2] == expected[::-1]
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        np.testing.assert_array_equal(shown, np.asarray(Image.open(buf)), err_msg=name)


def test_health_counters_are_written_when_they_change(run):
    cfg, run_dir = run
    reader = TensorBoardReader(run_dir / "tb").reload()
    stats = json.loads((run_dir / "world_model_stats.json").read_text())["variants"]
    for name in VARIANTS:
        steps, values, _ = reader.scalars(name, DIVERGED_TAG)
        assert steps.tolist() == [0] and values.tolist() == [0.0]
        steps, values, _ = reader.scalars(name, NUM_PARAMS_TAG)
        assert steps.tolist() == [0] and values.tolist() == [_num_params(cfg, name)]
        seen = [e["samples_seen"] for e in stats[name]["epochs"]]
        expect = [i for i, s in enumerate(seen) if i == 0 or s != seen[i - 1]]
        assert reader.scalars(name, "health/samples_seen")[0].tolist() == expect
        assert reader.scalars(name, "health/nonfinite_updates")[0].tolist() == [0]
        assert not [t for t in reader.tags(name) if t.startswith("world_model/") and
                    re.search("diverged|nonfinite|samples_seen", t)]


def _num_params(cfg, name):
    """Returns the parameter count of an MLP world model of the variant's width, by hand."""
    from augnes_jax.envs import make

    env = make(cfg.env.name)
    h = int(re.match(r"h(\d+)-", name).group(1))
    assert not env.discrete  # a continuous action enters the model as is
    dims = [env.obs_dim + env.action_dim] + [h] * cfg.world_model.num_layers + [env.obs_dim]
    return float(sum((a + 1) * b for a, b in zip(dims[:-1], dims[1:], strict=False)))


def test_per_goal_histograms_need_twenty_episodes(run, tmp_path):
    _, run_dir = run
    j = read_judgments(run_dir / "judgments.jsonl")
    accs = _accumulators(run_dir / "tb")
    for name in VARIANTS:
        sel = np.asarray([v == name for v in j.variant])
        assert max(np.bincount(j.goal_id[sel])) < 20  # 2 episodes x 2 epochs per goal
        assert accs[name].Tags()[ea.HISTOGRAMS] == []
    import jax.numpy as jnp

    from augnes_jax import regret

    reg = np.arange(30, dtype=np.float32)
    goals = np.array([0] * 25 + [1] * 5)
    agg = regret.aggregate(jnp.asarray(reg), jnp.asarray(goals), 2)
    with RunWriter(tmp_path / "v") as w:
        write_regret_summaries(w, 3, agg, None, reg, goals)
    acc = ea.EventAccumulator(str(tmp_path / "v"), size_guidance=KEEP_ALL).Reload()
    assert acc.Tags()[ea.HISTOGRAMS] == ["regret/goal_0"]
    (h,) = acc.Histograms("regret/goal_0")
    assert (h.step, h.histogram_value.num, h.histogram_value.sum) == (3, 25, float(reg[:25].sum()))


def test_layout_has_one_question_per_chart_and_few_lines(run):
    _, run_dir = run
    accs = _accumulators(run_dir / "tb")
    layouts = [(name, acc.Tensors("custom_scalars__config__")) for name, acc in accs.items()
               if "custom_scalars__config__" in acc.Tags()[ea.TENSORS]]
    assert [name for name, _ in layouts] == ["_controller"]  # one layout for the whole sweep
    (event,) = layouts[0][1]
    layout = layout_pb2.Layout.FromString(event.tensor_proto.string_val[0])
    all_tags = {t for acc in accs.values() for t in acc.Tags()[ea.SCALARS]}
    charts = [c for cat in layout.category for c in cat.chart]
    assert len(charts) >= 5
    for c in charts:
        tags = list(c.multiline.tag)
        assert 1 <= len(tags) <= MAX_LINES, c.title
        assert not any("sum" in t for t in tags) or all("sum" in t for t in tags), c.title
        for pattern in tags:  # every line exists in some run
            assert any(re.search(pattern, t) for t in all_tags), (c.title, pattern)
    titles = [c.title for c in charts]
    assert "avg regret vs hidden_dim (x), buffer_size 400" in titles and "recommended hidden_dim" in titles


def test_hparams_have_discrete_domains_and_integer_values(run):
    _, run_dir = run
    accs = _accumulators(run_dir / "tb")
    for name in VARIANTS:
        content = accs[name].PluginTagToContent("hparams")
        exp = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment
        domains = {h.name: [v.number_value for v in h.domain_discrete.values] for h in exp.hparam_infos}
        assert domains == {"hidden_dim": [4.0, 16.0], "buffer_size": [400.0], "seed": [0.0, 1.0]}
        assert [m.name.tag for m in exp.metric_infos] == ["regret/avg", "advantage/avg", "world_model/val_mse"]
        start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
        hp = {k: v.number_value for k, v in start.session_start_info.hparams.items()}
        h, b, s = (int(x) for x in re.match(r"h(\d+)-b(\d+)-s(\d+)", name).groups())
        assert hp == {"hidden_dim": h, "buffer_size": b, "seed": s}


def test_the_controller_reads_runs_written_before_the_health_namespace(tmp_path):
    with RunWriter(tmp_path / "tb" / "h8-b100-s0") as w:
        for e in range(2):
            w.scalars(e, {"regret/avg": 1.0 + e, "capacity/num_params": 123.0, "world_model/diverged": float(e)})
    with RunWriter(tmp_path / "tb" / "h16-b100-s0") as w:
        w.scalars(0, {"regret/avg": 1.0, NUM_PARAMS_TAG: 456.0, DIVERGED_TAG: 0.0, "capacity/num_params": 9.0})
    old, new = sorted(read_variants(TensorBoardReader(tmp_path / "tb").reload()), key=lambda v: v.hidden_dim)
    assert old.diverged and old.series[NUM_PARAMS_TAG][1].tolist() == [123.0, 123.0]
    assert not new.diverged and new.series[NUM_PARAMS_TAG][1].tolist() == [456.0]  # the current tag wins


# ------------------------------------------------------------------------- the real server


def _serve(logdir, load_fast: str, log_path):
    """Starts ``tensorboard`` on 127.0.0.1 with an OS-chosen port; returns (process, base URL)."""
    log = open(log_path, "w")  # a file, not a pipe: a full pipe would block the server
    proc = subprocess.Popen(
        [sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir), "--host", "127.0.0.1",
         "--port", "0", f"--load_fast={load_fast}", "--reload_interval", "1"],
        stdout=log, stderr=subprocess.STDOUT, text=True)
    log.close()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # it announces "TensorBoard 2.x at http://127.0.0.1:PORT/"
        text = log_path.read_text()
        if m := re.search(r"at (http://127\.0\.0\.1:\d+)/", text):
            return proc, m.group(1)
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    proc.kill()
    proc.wait()
    raise AssertionError(f"tensorboard --load_fast={load_fast} did not serve:\n{log_path.read_text()}")


def _get(url: str):
    with urllib.request.urlopen(url, timeout=30) as r:
        return json.loads(r.read())


@pytest.mark.parametrize("load_fast", ["true", "false"])
def test_the_tensorboard_server_shows_the_decisions_numbers(run, load_fast, tmp_path):
    """Both loaders give decision.json's values. ``--load_fast=true`` refuses to start without
    the Rust data server (package ``tensorboard_data_server``), so serving at all proves it ran."""
    _, run_dir = run
    doc = _decision(run_dir)
    expected = [(c["hidden_dim"], np.float32(c["avg_regret"])) for c in doc["capacities"]]
    proc, base = _serve(run_dir / "tb", load_fast, tmp_path / "tensorboard.log")
    try:
        query = urllib.parse.urlencode({"run": capacity_run(1), "tag": CURVE})
        points, deadline = [], time.monotonic() + 120
        while len(points) < len(expected) and time.monotonic() < deadline:  # the first load is asynchronous
            try:
                points = _get(f"{base}/data/plugin/scalars/scalars?{query}")
            except urllib.error.HTTPError:  # 400 while the run is not loaded yet
                points = []
            if len(points) < len(expected):
                time.sleep(0.5)
        assert [(int(step), np.float32(value)) for _wall, step, value in points] == expected
        runs = _get(f"{base}/data/runs")
        assert set(runs) >= {"_controller", capacity_run(0), capacity_run(1), *VARIANTS}
        tags = _get(f"{base}/data/plugin/scalars/tags")
        assert set(tags[capacity_run(1)]) == {CURVE, "capacity/avg_advantage_vs_hidden_dim/buffer_size_400",
                                              "capacity/val_mse_vs_hidden_dim/buffer_size_400"}
    finally:
        proc.terminate()
        proc.wait(timeout=30)
