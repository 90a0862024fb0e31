"""The Prometheus exporter: scraped over HTTP while a real sweep writes its run and after it has
finished, every value proven against the run's own files read another way (json.loads, NumPy);
the incremental judgments reader; a missing or half-written run; the CLI's exit status 2; the
dashboard's and the rules' PromQL against the exporter's names, promtool, and a real Prometheus.
"""

import json
import logging
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest

from augnes_jax import files, serve
from augnes_jax.judgments import JudgmentWriter, make_judgments
from augnes_jax.run_metrics import DEFAULT_BUCKETS
from tests import prometheus_helpers as ph
from tests.sweep_configs import TINY

BOUNDS = [*DEFAULT_BUCKETS, math.inf]
SCRAPE_EVERY_S = 0.2


def _judgment_lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _numpy_histograms(records: list[dict]) -> dict[tuple, tuple[list[float], float]]:
    """Returns ``{(variant, goal): (cumulative counts per bound, sum)}`` computed with NumPy."""
    groups: dict[tuple, list[float]] = defaultdict(list)
    for r in records:
        groups[(r["variant"], str(r["goal_id"]))].append(r["regret"])
    return {k: (ph.cumulative_counts(np.asarray(v), BOUNDS), float(np.sum(v))) for k, v in groups.items()}


def _exported_histograms(samples: ph.Samples) -> dict[tuple, tuple[list[float], float]]:
    out = {}
    for lab, count in ph.select(samples, "augnes_judgment_regret_count").items():
        d = dict(lab)
        key = (d["variant"], d["goal"])
        buckets = {float(dict(b)["le"]): v for b, v in ph.select(
            samples, "augnes_judgment_regret_bucket", variant=d["variant"], goal=d["goal"]).items()}
        cum = [buckets[b] for b in BOUNDS]
        assert cum[-1] == count
        out[key] = (cum, ph.one(samples, "augnes_judgment_regret_sum", variant=d["variant"], goal=d["goal"]))
    return out


def _assert_histograms_equal(samples: ph.Samples, records: list[dict]) -> None:
    got, want = _exported_histograms(samples), _numpy_histograms(records)
    assert set(got) == set(want)
    for key, (cum, total) in want.items():
        assert got[key][0] == cum, key
        assert got[key][1] == pytest.approx(total, rel=1e-12, abs=1e-12), key


# --------------------------------------------------------------------------------------------
# A real sweep, scraped every 0.2 s while it writes
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def live_run(tmp_path_factory):
    """Scrapes an exporter every 0.2 s from before a tiny sweep creates its run until it ends."""
    run_dir = tmp_path_factory.mktemp("serve") / "live"
    exporter = serve.start(run_dir, port=0)
    log_path = run_dir.parent / "sweep.log"
    env = {**os.environ, "PYTHONPATH": str(ph.REPO), "JAX_PLATFORMS": "cpu"}
    scrapes, errors = [], []
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "augnes_jax.sweep", "--run-dir", str(run_dir), *TINY],
                                cwd=ph.REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 900
            while proc.poll() is None and time.monotonic() < deadline:
                try:
                    scrapes.append(ph.scrape(exporter.url))
                except Exception as e:  # recorded; the test says which scrape failed
                    errors.append(repr(e))
                time.sleep(SCRAPE_EVERY_S)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
    assert proc.returncode == 0, log_path.read_text()[-3000:]
    final = ph.scrape(exporter.url)
    yield {"run_dir": run_dir, "exporter": exporter, "scrapes": scrapes, "errors": errors, "final": final}
    exporter.close()


@pytest.mark.slow
def test_a_live_sweep_scraped_every_fifth_of_a_second_never_errs_and_never_goes_back(live_run):
    scrapes = live_run["scrapes"]
    assert live_run["errors"] == []
    assert len(scrapes) > 10
    # the run directory did not exist at the first scrape: no metrics at all
    assert scrapes[0] == {}
    final_counts = ph.select(live_run["final"], "augnes_judgment_regret_count")
    total = sum(final_counts.values())
    seen_partial = False
    previous: ph.Samples = {}
    for s in [*scrapes, live_run["final"]]:
        for name in ("augnes_judgment_regret_bucket", "augnes_judgment_regret_count",
                     "augnes_sweep_epoch", "augnes_variant_episodes", "augnes_goal_episodes",
                     "augnes_decision_epoch", "augnes_alerts_total"):
            for lab, old in ph.select(previous, name).items():
                assert (name, lab) in s, f"{name}{dict(lab)} disappeared"
                assert s[(name, lab)] >= old, f"{name}{dict(lab)} went back from {old} to {s[(name, lab)]}"
        now = sum(ph.select(s, "augnes_judgment_regret_count").values())
        seen_partial |= 0 < now < total
        previous = s
    # the exporter followed the run while it was written: some scrape saw one epoch of two
    assert seen_partial


@pytest.mark.slow
def test_values_equal_the_runs_json_files(live_run):
    run_dir, s = live_run["run_dir"], live_run["final"]
    run = run_dir.name
    stats = json.loads((run_dir / "strategy_stats.json").read_text())
    assert len(stats["experiments"]) == 4
    for exp in stats["experiments"]:
        lab = {"run": run, "variant": exp["variant"], "hidden_dim": str(exp["hidden_dim"]),
               "buffer_size": str(exp["buffer_size"]), "seed": str(exp["seed"])}
        assert ph.one(s, "augnes_variant_avg_regret", **lab) == exp["avg_regret"]
        assert ph.one(s, "augnes_variant_avg_regret_ci95_lower", **lab) == exp["avg_regret_ci95"][0]
        assert ph.one(s, "augnes_variant_avg_regret_ci95_upper", **lab) == exp["avg_regret_ci95"][1]
        assert ph.one(s, "augnes_variant_avg_advantage", **lab) == exp["avg_advantage"]
        assert ph.one(s, "augnes_variant_episodes", **lab) == exp["episodes"]
        judged = {g: c for g, c in exp["goals"].items() if c["count"]}
        assert {dict(k)["goal"] for k in ph.select(s, "augnes_goal_avg_regret", variant=exp["variant"])} == set(judged)
        for g, cell in judged.items():
            assert ph.one(s, "augnes_goal_avg_regret", **lab, goal=g) == cell["avg_regret"]
            assert ph.one(s, "augnes_goal_avg_advantage", **lab, goal=g) == cell["avg_advantage"]
            assert ph.one(s, "augnes_goal_episodes", **lab, goal=g) == cell["count"]
    wm = json.loads((run_dir / "world_model_stats.json").read_text())
    for name, v in wm["variants"].items():
        last = max(v["epochs"], key=lambda e: e["epoch"])
        assert ph.one(s, "augnes_variant_val_mse", variant=name, hidden_dim=str(v["hidden_dim"])) == last["val_mse"]
        assert ph.one(s, "augnes_variant_num_params", variant=name) == v["num_params"]
    dec = json.loads((run_dir / "decision.json").read_text())
    assert ph.one(s, "augnes_decision", decision=dec["decision"]) == 1.0
    assert sum(ph.select(s, "augnes_decision").values()) == 1.0
    assert ph.one(s, "augnes_recommended_hidden_dim") == dec["recommended"]["hidden_dim"]
    assert ph.one(s, "augnes_recommended_buffer_size") == dec["recommended"]["buffer_size"]
    assert ph.one(s, "augnes_decision_epsilon") == dec["epsilon"]
    assert ph.one(s, "augnes_decision_epoch") == dec["epoch"]
    assert dec["gains"]
    tops = defaultdict(int)
    for g in dec["gains"]:
        tops[(g["axis"], json.dumps(g["ladder"], sort_keys=True))] = max(tops[(g["axis"], json.dumps(g["ladder"], sort_keys=True))], g["to"])
    for g in dec["gains"]:
        ladder = ",".join(f"{k}={v}" for k, v in sorted(g["ladder"].items()))
        last = "true" if g["to"] == tops[(g["axis"], json.dumps(g["ladder"], sort_keys=True))] else "false"
        lab = {"axis": g["axis"], "ladder": ladder, "from": str(g["from"]), "to": str(g["to"]), "last": last}
        assert ph.one(s, "augnes_marginal_gain", **lab) == g["gain"]
        assert ph.one(s, "augnes_marginal_gain_ci95_lower", **lab) == g["gain_ci95"][0]
        assert ph.one(s, "augnes_marginal_gain_ci95_upper", **lab) == g["gain_ci95"][1]
        compared = g["relative_gain"] if dec["relative"] else g["gain"]
        assert ph.one(s, "augnes_marginal_gain_compared", **lab) == compared
        assert ph.one(s, "augnes_marginal_gain_significant", **lab) == float(g["significant"])
    for c in dec["capacities"]:
        lab = {"hidden_dim": str(c["hidden_dim"]), "buffer_size": str(c["buffer_size"])}
        assert ph.one(s, "augnes_capacity_avg_regret", **lab) == c["avg_regret"]
        assert ph.one(s, "augnes_capacity_val_mse", **lab) == c["val_mse"]
        assert ph.one(s, "augnes_capacity_num_params", **lab) == c["num_params"]
    kinds = Counter(json.loads(line)["kind"] for line in (run_dir / "alerts.jsonl").read_text().splitlines())
    assert {dict(k)["kind"]: v for k, v in ph.select(s, "augnes_alerts_total").items()} == dict(kinds)
    state = json.loads((run_dir / "sweep_state.json").read_text())
    assert ph.one(s, "augnes_sweep_epoch") == state["epoch"] == 1


@pytest.mark.slow
def test_regret_histogram_equals_numpy_over_judgments(live_run):
    run_dir, s = live_run["run_dir"], live_run["final"]
    records = _judgment_lines(run_dir / "judgments.jsonl")
    assert len(records) == 4 * 2 * 2 * 2
    _assert_histograms_equal(s, records)
    # the histogram's per-goal mean is strategy_stats.json's (float32 there)
    stats = json.loads((run_dir / "strategy_stats.json").read_text())
    for exp in stats["experiments"]:
        for g, cell in exp["goals"].items():
            if cell["count"]:
                mean = (ph.one(s, "augnes_judgment_regret_sum", variant=exp["variant"], goal=g)
                        / ph.one(s, "augnes_judgment_regret_count", variant=exp["variant"], goal=g))
                assert mean == pytest.approx(cell["avg_regret"], rel=1e-5)
    lab = dict(next(iter(ph.select(s, "augnes_judgment_regret_count", variant="h16-b400-s1"))))
    assert (lab["hidden_dim"], lab["buffer_size"], lab["seed"], lab["run"]) == ("16", "400", "1", run_dir.name)


# --------------------------------------------------------------------------------------------
# Incremental reading
# --------------------------------------------------------------------------------------------


def _synthetic_lines(tmp_path, n: int = 40) -> list[bytes]:
    """Returns ``n`` judgment lines as the sweep's writer writes them: two variants, goals 0 and
    3, regrets from below 0 (first bucket) to above 100 (+Inf bucket)."""
    rng = np.random.default_rng(7)
    regret = np.concatenate([[-0.5, 0.0, 100.0, 250.0], rng.exponential(5.0, n - 4)])
    optimal = rng.normal(-10.0, 2.0, n)
    variants = np.array(["h4-b400-s0", "h16-b400-s1"])[np.arange(n) % 2]
    recs = make_judgments(
        np.where(np.arange(n) % 4 < 2, 0, 3), optimal - regret, optimal, optimal - 3.0, np.arange(n),
        run="inc", variant=variants, hidden_dim=np.where(np.arange(n) % 2, 16, 4), buffer_size=400,
        seed=np.arange(n) % 2, epoch=0, strategy="mpc_world_model", oracle="given",
    )
    path = tmp_path / "source.jsonl"
    with JudgmentWriter(path) as w:
        w.append(recs)
    return path.read_bytes().splitlines(keepends=True)


@pytest.fixture
def exporter_on(tmp_path):
    started = []

    def start(run_dir, **kw):
        e = serve.start(run_dir, port=0, **kw)
        started.append(e)
        return e

    yield start
    for e in started:
        e.close()


def test_judgments_are_read_incrementally_and_a_torn_line_waits(tmp_path, exporter_on, caplog):
    lines = _synthetic_lines(tmp_path)
    records = [json.loads(x) for x in lines]
    run_dir = tmp_path / "inc"
    run_dir.mkdir()
    path = run_dir / "judgments.jsonl"
    e = exporter_on(run_dir)
    path.write_bytes(b"".join(lines[:10]))
    _assert_histograms_equal(ph.scrape(e.url), records[:10])
    torn = lines[20][:57]
    with open(path, "ab") as f:
        f.write(b"".join(lines[10:20]) + torn)
    _assert_histograms_equal(ph.scrape(e.url), records[:20])
    assert e.collector.tail.offset == len(b"".join(lines[:20]))  # the torn line is left for later
    _assert_histograms_equal(ph.scrape(e.url), records[:20])
    with open(path, "ab") as f:
        f.write(lines[20][57:] + b"".join(lines[21:]))
    _assert_histograms_equal(ph.scrape(e.url), records)
    assert e.collector.tail.lines == len(lines)
    # Lines already counted are not parsed again: an in-place edit of the first line (same size,
    # same inode) changes nothing, while a full re-parse would show goal 7.
    first = lines[0].replace(b'"goal_id":0,', b'"goal_id":7,').replace(b'"goal_id":3,', b'"goal_id":7,')
    assert first != lines[0] and len(first) == len(lines[0])
    with open(path, "r+b") as f:
        f.write(first)
    after = ph.scrape(e.url)
    _assert_histograms_equal(after, records)
    assert not ph.select(after, "augnes_judgment_regret_count", goal="7")
    # A malformed line is skipped with its line number; the lines after it still count.
    with caplog.at_level(logging.WARNING, logger="augnes_jax.judgments_tail"):
        with open(path, "ab") as f:
            f.write(b'{"goal_id": "x", "reward": 1, "regret": 0}\n' + lines[0])
        _assert_histograms_equal(ph.scrape(e.url), [*records, records[0]])
    assert [r.getMessage() for r in caplog.records] == [
        f"{path}:{len(lines) + 1}: goal_id must be a non-negative integer, got \"x\"; line skipped"]
    # A replaced file (as --resume rewrites it) is counted again from its start.
    files.write_bytes_atomic(path, b"".join(lines[:5]))
    _assert_histograms_equal(ph.scrape(e.url), records[:5])


def test_a_complete_last_line_without_newline_counts_once(tmp_path, exporter_on):
    lines = _synthetic_lines(tmp_path)
    records = [json.loads(x) for x in lines]
    run_dir = tmp_path / "nonl"
    run_dir.mkdir()
    path = run_dir / "judgments.jsonl"
    path.write_bytes(b"".join(lines[:3]) + lines[3].rstrip(b"\n"))
    e = exporter_on(run_dir)
    _assert_histograms_equal(ph.scrape(e.url), records[:4])
    _assert_histograms_equal(ph.scrape(e.url), records[:4])
    with open(path, "ab") as f:
        f.write(b"\n" + b"".join(lines[4:6]))
    _assert_histograms_equal(ph.scrape(e.url), records[:6])
    assert e.collector.tail.lines == 6


def test_json_files_are_parsed_again_only_when_they_change(tmp_path, exporter_on):
    run_dir = tmp_path / "cache"
    run_dir.mkdir()
    stats = {"schema": 1, "experiments": [{"variant": "h4-b400-s0", "hidden_dim": 4, "buffer_size": 400,
                                           "seed": 0, "episodes": 8, "avg_regret": 6.25, "goals": {}}]}
    files.write_json_atomic(run_dir / "strategy_stats.json", stats)
    e = exporter_on(run_dir)
    for _ in range(3):
        s = ph.scrape(e.url)
    assert e.collector.strategy_stats.parses == 1
    assert ph.one(s, "augnes_variant_avg_regret", variant="h4-b400-s0") == stats["experiments"][0]["avg_regret"]
    stats["experiments"][0]["avg_regret"] = 123.25
    files.write_json_atomic(run_dir / "strategy_stats.json", stats)
    s = ph.scrape(e.url)
    assert e.collector.strategy_stats.parses == 2
    assert ph.one(s, "augnes_variant_avg_regret", variant="h4-b400-s0") == 123.25


def _collect(run_dir) -> ph.Samples:
    """Returns the samples of one collection of a fresh RunCollector over ``run_dir``."""
    from prometheus_client import CollectorRegistry, generate_latest

    from augnes_jax.run_metrics import RunCollector

    registry = CollectorRegistry(auto_describe=False)
    registry.register(RunCollector(run_dir))
    return ph.parse_samples(generate_latest(registry).decode("utf-8"))


def test_an_interval_exports_the_bounds_it_has(tmp_path):
    """A value's interval may be whole, one bound long or null: each bound present is a gauge."""
    run_dir = tmp_path / "ci"
    run_dir.mkdir()
    cap = {"hidden_dim": 4, "buffer_size": 400, "seed": 0, "episodes": 8, "goals": {}}
    stats = {"schema": 1, "experiments": [
        {**cap, "variant": "whole", "avg_regret": 6.25, "avg_regret_ci95": [5.0, 7.5]},
        {**cap, "variant": "lower", "avg_regret": 2.0, "avg_regret_ci95": [1.5]},
        {**cap, "variant": "null", "avg_regret": 1.0, "avg_regret_ci95": None},
        {**cap, "variant": "absent", "avg_regret": 0.5}]}  # fmt: skip
    files.write_json_atomic(run_dir / "strategy_stats.json", stats)
    gains = [{"axis": "hidden_dim", "ladder": {"buffer_size": 400}, "from": 4, "to": 8, "gain": 4.25,
              "gain_ci95": [3.0, 5.5], "relative_gain": 0.68, "relative_gain_ci95": [0.5, 0.875]},
             {"axis": "hidden_dim", "ladder": {"buffer_size": 400}, "from": 8, "to": 16, "gain": 1.0,
              "gain_ci95": [0.25], "relative_gain": 0.5}]  # fmt: skip
    for relative in (False, True):
        files.write_json_atomic(run_dir / "decision.json", {"decision": "keep", "relative": relative, "gains": gains})
        s = _collect(run_dir)
        for name, want in (("augnes_variant_avg_regret", {"whole": 6.25, "lower": 2.0, "null": 1.0, "absent": 0.5}),
                           ("augnes_variant_avg_regret_ci95_lower", {"whole": 5.0, "lower": 1.5}),
                           ("augnes_variant_avg_regret_ci95_upper", {"whole": 7.5})):
            got = {dict(lab)["variant"]: v for lab, v in ph.select(s, name).items()}
            assert got == want, name
        for name, want in (("augnes_marginal_gain", {"8": 4.25, "16": 1.0}),
                           ("augnes_marginal_gain_ci95_lower", {"8": 3.0, "16": 0.25}),
                           ("augnes_marginal_gain_ci95_upper", {"8": 5.5}),
                           ("augnes_marginal_gain_compared_ci95_lower",
                            {"8": 0.5} if relative else {"8": 3.0, "16": 0.25})):
            got = {dict(lab)["to"]: v for lab, v in ph.select(s, name).items()}
            assert got == want, (name, relative)


def test_an_external_log_without_capacity_fields_is_named_as_strategy_stats_names_it(tmp_path, exporter_on):
    run_dir = tmp_path / "ext"
    run_dir.mkdir()
    lines = [{"goal_id": 2, "reward": 1.0, "regret": 0.75, "strategy": "greedy"},
             {"goal_id": 2, "reward": 1.0, "optimal_reward": 3.5},
             {"goal_id": 2, "reward": 1.0, "regret": 30.0, "strategy": "greedy"}]
    (run_dir / "judgments.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    url = exporter_on(run_dir).url
    s = ph.scrape(url)
    blank = {"hidden_dim": "", "buffer_size": "", "seed": "", "goal": "2", "run": "ext"}
    assert ph.one(s, "augnes_judgment_regret_count", variant="greedy", **blank) == 2
    assert ph.one(s, "augnes_judgment_regret_sum", variant="greedy", **blank) == 30.75
    assert ph.one(s, "augnes_judgment_regret_bucket", variant="greedy", le="1.0", **blank) == 1
    assert ph.one(s, "augnes_judgment_regret_bucket", variant="greedy", le="50.0", **blank) == 2
    assert ph.one(s, "augnes_judgment_regret_sum", variant="all", **blank) == 2.5
    assert ph.scrape(url) == s


# --------------------------------------------------------------------------------------------
# Missing and half-written run directories
# --------------------------------------------------------------------------------------------


def test_a_missing_run_dir_gives_empty_metrics_and_one_log_line(tmp_path, exporter_on, caplog):
    run_dir = tmp_path / "later"
    e = exporter_on(run_dir)
    with caplog.at_level(logging.INFO, logger="augnes_jax.run_metrics"):
        assert ph.scrape_text(e.url) == ""
        assert ph.scrape_text(e.url) == ""
        said = [r.getMessage() for r in caplog.records]
        assert len(said) == 1 and f"run directory {run_dir} does not exist" in said[0], said
        # the sweep creates it: a half-written run is served as far as it goes
        before = len(caplog.records)
        run_dir.mkdir()
        files.write_json_atomic(run_dir / "decision.json", {
            "decision": "keep", "recommended": {"hidden_dim": 32, "buffer_size": 400}, "epsilon": 0.5})
        text = json.dumps({"experiments": [{"variant": "h4-b400-s0", "avg_regret": 1.5}]}, indent=2)
        (run_dir / "strategy_stats.json").write_text(text[: len(text) // 2])
        s = ph.scrape(e.url)
        s = ph.scrape(e.url)
    dec = json.loads((run_dir / "decision.json").read_text())
    assert ph.one(s, "augnes_recommended_hidden_dim") == dec["recommended"]["hidden_dim"]
    assert not ph.select(s, "augnes_variant_avg_regret")
    said = [r.getMessage() for r in caplog.records[before:]]
    assert said[0] == f"run directory {run_dir} found; serving its metrics", said
    warned = [r.getMessage() for r in caplog.records[before:] if r.levelno == logging.WARNING]
    assert len(warned) == 1 and f"{run_dir / 'strategy_stats.json'}: invalid JSON at line" in warned[0], warned


def test_a_run_dir_that_is_a_file_at_scrape_time_gives_empty_metrics(tmp_path, exporter_on):
    run_dir = tmp_path / "gone"
    run_dir.mkdir()
    e = exporter_on(run_dir)
    run_dir.rmdir()
    run_dir.write_text("not a run")
    assert ph.scrape_text(e.url) == ""


# --------------------------------------------------------------------------------------------
# The command line
# --------------------------------------------------------------------------------------------


def _exit(argv) -> int:
    try:
        return serve.main(argv)
    except SystemExit as e:
        return e.code


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 or err[0].startswith("usage:"), err
    return err[-1]


def test_cli_refuses_a_run_dir_whose_parent_is_missing(tmp_path, capsys):
    assert _exit([str(tmp_path / "no" / "run")]) == 2
    line = _one_error_line(capsys)
    assert line.startswith("python -m augnes_jax.serve: error: RUN_DIR") and "does not exist" in line


def test_cli_refuses_a_run_dir_that_is_a_file(tmp_path, capsys):
    (tmp_path / "f").write_text("x")
    assert _exit([str(tmp_path / "f")]) == 2
    assert "not a directory" in _one_error_line(capsys)


def test_cli_refuses_a_port_in_use(tmp_path, capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert _exit([str(tmp_path), "--port", str(port)]) == 2
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in _one_error_line(capsys)


def test_cli_refuses_an_address_not_on_this_machine(tmp_path, capsys):
    assert _exit([str(tmp_path), "--host", "192.0.2.1", "--port", "0"]) == 2
    assert "cannot listen on 192.0.2.1:0" in _one_error_line(capsys)


@pytest.mark.parametrize("argv, words", [
    (["--port", "70000"], "--port: must be in 0..65535"),
    (["--port", "x"], "--port: not an integer"),
    (["--buckets", "1,0.5"], "--buckets: bounds must increase strictly"),
    (["--buckets", "1,inf"], "--buckets: every bound must be finite"),
])
def test_cli_refuses_bad_options(tmp_path, capsys, argv, words):
    assert _exit([str(tmp_path), *argv]) == 2
    line = _one_error_line(capsys)
    assert line.startswith("python -m augnes_jax.serve: error: argument") and words in line, line


@pytest.mark.slow
def test_cli_serves_until_sigterm(live_run, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ph.REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "augnes_jax.serve", str(live_run["run_dir"]), "--port", "0"],
                            cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True)
    try:
        head = [proc.stderr.readline() for _ in range(1)]
        while "serving" not in head[-1] and head[-1] and len(head) < 20:
            head.append(proc.stderr.readline())
        line = head[-1]
        assert "serving" in line and "http://127.0.0.1:" in line, head
        url = line.split(" on ")[1].split()[0]
        assert ph.scrape(url) == live_run["final"]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()


# --------------------------------------------------------------------------------------------
# grafana/: names, promtool, a real Prometheus
# --------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_every_metric_in_the_dashboard_and_the_rules_is_exported(live_run):
    exported = {name for name, _ in live_run["final"]}
    exprs = ph.dashboard_exprs() + ph.rule_exprs()
    assert len(exprs) > 15
    used = set()
    for where, expr in exprs:
        names = ph.metric_names(expr)
        assert names, (where, expr)
        missing = names - exported
        assert not missing, f"{where}: {sorted(missing)} not exported ({expr})"
        used |= names
    assert {"augnes_judgment_regret_bucket", "augnes_capacity_avg_regret", "augnes_marginal_gain",
            "augnes_decision", "augnes_alerts_total", "augnes_marginal_gain_compared",
            "augnes_decision_epsilon"} <= used


def test_provisioning_points_at_the_dashboard_and_its_data_source(tmp_path):
    import yaml

    prov = ph.GRAFANA / "provisioning"
    ds = yaml.safe_load((prov / "datasources" / "prometheus.yml").read_text())["datasources"]
    assert [d["type"] for d in ds] == ["prometheus"]
    scrape = yaml.safe_load((ph.GRAFANA / "prometheus.yml").read_text())
    assert scrape["scrape_configs"][0]["static_configs"][0]["targets"] == [f"127.0.0.1:{serve.DEFAULT_PORT}"]
    providers = yaml.safe_load((prov / "dashboards" / "augnes.yml").read_text())["providers"]
    path = os.path.expandvars(providers[0]["options"]["path"].replace("${GF_PATHS_PROVISIONING}", str(prov)))
    assert (Path(path) / ph.DASHBOARD.name).resolve() == ph.DASHBOARD.resolve()
    dash = json.loads(ph.DASHBOARD.read_text())
    uids = {p["datasource"]["uid"] for p in dash["panels"] if p["type"] != "row"}
    uids |= {t["datasource"]["uid"] for p in dash["panels"] for t in p.get("targets", [])}
    uids |= {v["datasource"]["uid"] for v in dash["templating"]["list"]}
    assert uids == {ds[0]["uid"]}
    kinds = {p["type"] for p in dash["panels"]}
    assert {"stat", "timeseries", "barchart", "bargauge", "table"} <= kinds


def test_metric_names_reader_sees_through_promql():
    names = ph.metric_names('histogram_quantile(0.9, sum by (goal, le) (rate(a_bucket{x="b c"}[5m]))) '
                            "/ on (run) group_left () b_total > bool 0")
    assert names == {"a_bucket", "b_total"}
    assert ph.metric_names('label_values(c_count{run="$run"}, goal)') == {"c_count"}


def test_histogram_quantile_reference_matches_hand_values():
    bounds = [0.0, 1.0, 2.0, math.inf]
    assert ph.histogram_quantile(0.5, bounds, [0, 2, 4, 4]) == 1.0  # rank 2 ends bucket (0, 1]
    assert ph.histogram_quantile(0.75, bounds, [0, 2, 4, 4]) == 1.5
    assert ph.histogram_quantile(0.9, bounds, [0, 2, 4, 5]) == 2.0  # in +Inf: the last finite bound
    assert ph.histogram_quantile(0.1, bounds, [1, 2, 4, 4]) == 0.0  # first bucket at or below 0


@pytest.mark.skipif(shutil.which("promtool") is None,
                    reason="promtool not on PATH (Debian: apt-get install prometheus)")
def test_promtool_checks_and_unit_tests_the_rules():
    for args in (["check", "rules", str(ph.RULES)],
                 ["test", "rules", str(ph.RULES.with_name("augnes.rules.test.yml"))],
                 ["check", "config", str(ph.GRAFANA / "prometheus.yml")]):
        done = subprocess.run(["promtool", *args], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "SUCCESS" in done.stdout + done.stderr


def _by(result: list[dict], *labels: str) -> dict[tuple, float]:
    out = {}
    for r in result:
        key = tuple(r["metric"].get(x, "") for x in labels)
        assert key not in out, key
        out[key] = float(r["value"][1])
    return out


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("prometheus") is None,
                    reason="prometheus not on PATH (Debian: apt-get install prometheus)")
def test_a_real_prometheus_evaluates_every_dashboard_query_to_the_runs_values(live_run, tmp_path):
    run_dir = live_run["run_dir"]
    run = run_dir.name
    stats = json.loads((run_dir / "strategy_stats.json").read_text())
    wm = json.loads((run_dir / "world_model_stats.json").read_text())
    dec = json.loads((run_dir / "decision.json").read_text())
    alerts = Counter(json.loads(x)["kind"] for x in (run_dir / "alerts.jsonl").read_text().splitlines())
    records = _judgment_lines(run_dir / "judgments.jsonl")
    regret = np.array([r["regret"] for r in records])
    goal = np.array([str(r["goal_id"]) for r in records])
    width = np.array([str(r["hidden_dim"]) for r in records])
    finite = [b for b in BOUNDS if math.isfinite(b)]

    def quantiles(q, *keys):
        out = {}
        for key in sorted(set(zip(*keys, strict=True))):
            rows = np.all([k == v for k, v in zip(keys, key, strict=True)], axis=0)
            out[key] = ph.histogram_quantile(q, BOUNDS, ph.cumulative_counts(regret[rows], BOUNDS))
        return out

    exps = stats["experiments"]
    last_steps = [g for g in dec["gains"]
                  if g["to"] == max(x["to"] for x in dec["gains"] if x["axis"] == g["axis"] and x["ladder"] == g["ladder"])]
    compared = "relative_gain" if dec["relative"] else "gain"
    expected = {  # title, refId -> (labels of a series' key, {key: value})
        ("Decision", "A"): (("decision",), {(dec["decision"],): 1.0}),
        ("Recommended hidden_dim", "A"): ((), {(): dec["recommended"]["hidden_dim"]}),
        ("Recommended buffer_size", "A"): ((), {(): dec["recommended"]["buffer_size"]}),
        ("Epsilon", "A"): ((), {(): dec["epsilon"]}),
        ("Epoch", "A"): ((), {(): 1.0}),
        ("Alerts", "A"): (("kind",), {(k,): float(v) for k, v in alerts.items()}),
        ("Marginal gain per ladder step, 95% interval", "A"): (("axis", "from", "to"), {
            (g["axis"], str(g["from"]), str(g["to"])): g["gain"] for g in dec["gains"]}),
        ("Marginal gain per ladder step, 95% interval", "B"): (("axis", "from", "to"), {
            (g["axis"], str(g["from"]), str(g["to"])): g["gain_ci95"][0] for g in dec["gains"]}),
        ("Marginal gain per ladder step, 95% interval", "C"): (("axis", "from", "to"), {
            (g["axis"], str(g["from"]), str(g["to"])): g["gain_ci95"][1] for g in dec["gains"]}),
        ("Last step's gain minus epsilon", "A"): (("axis", "from", "to"), {
            (g["axis"], str(g["from"]), str(g["to"])): g[compared] - dec["epsilon"] for g in last_steps}),
        ("Mean regret by capacity", "A"): (("hidden_dim", "buffer_size"), {
            (str(c["hidden_dim"]), str(c["buffer_size"])): c["avg_regret"] for c in dec["capacities"]}),
        ("Mean regret by variant", "A"): (("variant",), {(x["variant"],): x["avg_regret"] for x in exps}),
        ("Validation MSE by variant", "A"): (("variant",), {
            (n,): max(v["epochs"], key=lambda e: e["epoch"])["val_mse"] for n, v in wm["variants"].items()}),
        ("Regret quantiles per goal", "A"): (("goal",), quantiles(0.5, goal)),
        ("Regret quantiles per goal", "B"): (("goal",), quantiles(0.9, goal)),
        ("Median regret per goal and width", "A"): (("goal", "hidden_dim"), quantiles(0.5, goal, width)),
        ("Regret histogram", "A"): (("le",), {
            (("+Inf" if math.isinf(b) else repr(float(b))),): float(np.count_nonzero(regret <= b)) for b in BOUNDS}),
        ("Mean regret per goal", "A"): (("goal",), {(g,): float(regret[goal == g].mean()) for g in set(goal)}),
        ("Per-goal average regret and advantage by variant", "A"): (("variant", "goal"), {
            (x["variant"], g): c["avg_regret"] for x in exps for g, c in x["goals"].items() if c["count"]}),
        ("Per-goal average regret and advantage by variant", "B"): (("variant", "goal"), {
            (x["variant"], g): c["avg_advantage"] for x in exps for g, c in x["goals"].items() if c["count"]}),
    }
    assert len(finite) == len(DEFAULT_BUCKETS)
    dash = json.loads(ph.DASHBOARD.read_text())
    targets = [(p["title"], t["refId"], t["expr"]) for p in dash["panels"] for t in p.get("targets", [])]
    assert {(t, r) for t, r, _ in targets} == set(expected)
    with ph.prometheus_server(tmp_path, f"127.0.0.1:{live_run['exporter'].port}") as base:
        for title, ref, expr in targets:
            labels, want = expected[(title, ref)]
            got = _by(ph.query(base, ph.substitute(expr, run)), *labels)
            if title == "Regret histogram":  # Prometheus names a bucket by its bound as a float
                got = {(repr(float(k[0])) if k[0] != "+Inf" else "+Inf",): v for k, v in got.items()}
            assert set(got) == set(want), (title, ref, got, want)
            for key, value in want.items():
                assert got[key] == pytest.approx(value, rel=1e-12, abs=1e-12), (title, ref, key)
        for where, expr in ph.dashboard_exprs()[-2:]:  # the variables' label_values() selectors
            assert ph.query(base, ph.substitute(ph.metric_names(expr).pop(), run)), where
        # the epsilon rule, evaluated by the server, fires exactly for the last steps below epsilon
        firing = {(g["axis"], str(g["from"]), str(g["to"])) for g in last_steps if g[compared] < dec["epsilon"]}
        rules = _rules_after_an_evaluation(base)
        got = {(a["labels"]["axis"], a["labels"]["from"], a["labels"]["to"])
               for a in rules["alerts"] if a["state"] == "firing"}
        assert got == firing
        assert rules["health"] == "ok"


def _rules_after_an_evaluation(base: str) -> dict:
    """Returns the epsilon rule's state from an evaluation that began after this call."""
    import urllib.request

    def rule() -> dict:
        with urllib.request.urlopen(f"{base}/api/v1/rules", timeout=30) as resp:
            return json.loads(resp.read())["data"]["groups"][0]["rules"][0]

    seen = [rule().get("lastEvaluation")]
    deadline = time.monotonic() + 60
    while len(seen) < 3:  # two evaluations later, the last one began after the first call
        assert time.monotonic() < deadline, seen
        time.sleep(0.3)
        r = rule()
        if r.get("lastEvaluation") != seen[-1]:
            seen.append(r.get("lastEvaluation"))
    return r
