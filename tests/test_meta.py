"""MetaJudgmentController: evidence values, intervals and decisions on known synthetic curves."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from synthetic_runs import SyntheticRun, build_run, mlp_num_params, variant_name

from augnes_jax import files, meta
from augnes_jax.decision import decide, latest_gains, marginal_gain
from augnes_jax.evidence import VariantEvidence
from augnes_jax.meta import MetaJudgmentController
from augnes_jax.statistics import two_level_bootstrap

EPS = 0.05


def _controller(run_dir, **kw) -> MetaJudgmentController:
    kw.setdefault("epsilon", EPS)
    return MetaJudgmentController(run_dir, **kw)


def _curve(values: dict[int, float], goal_step: float = 0.1):
    return lambda h, b, e, g: values[h] + goal_step * g


# ------------------------------------------------------------------------ statistics


def _exact_two_level_var(cells: list[np.ndarray]) -> float:
    """Variance of the two-level bootstrap mean, in closed form.

    A replicate averages S iid draws M_j (seed uniform, then C_s cells with replacement), so
    Var = (mean_s pvar(x_s) / C_s + pvar_s(mean x_s)) / S.
    """
    s = len(cells)
    within = np.mean([c.var() / len(c) for c in cells])
    between = np.var([c.mean() for c in cells])
    return float((within + between) / s)


def test_two_level_bootstrap_matches_closed_form_moments():
    rng = np.random.default_rng(3)
    cells = [rng.normal(mu, sd, n) for mu, sd, n in [(1.0, 0.3, 6), (1.4, 0.1, 9), (0.7, 0.5, 4)]]
    boot = two_level_bootstrap([cells], np.random.default_rng(0), 40000)[:, 0]
    assert boot.mean() == pytest.approx(np.mean([c.mean() for c in cells]), abs=3e-3)
    assert boot.std() == pytest.approx(np.sqrt(_exact_two_level_var(cells)), rel=0.03)


def test_paired_bootstrap_difference_matches_closed_form():
    rng = np.random.default_rng(5)
    a = [rng.normal(1.0, 0.2, 8) for _ in range(4)]
    common = [rng.normal(0.0, 0.5, 8) for _ in range(4)]  # shared per-cell effect: pairing cancels it
    a = [x + c for x, c in zip(a, common, strict=True)]
    b = [x - 0.3 + rng.normal(0, 0.05, 8) for x in a]
    boot = two_level_bootstrap([a, b], np.random.default_rng(1), 40000)
    diff = boot[:, 0] - boot[:, 1]
    d = [x - y for x, y in zip(a, b, strict=True)]
    assert diff.mean() == pytest.approx(np.mean([x.mean() for x in d]), abs=2e-3)
    assert diff.std() == pytest.approx(np.sqrt(_exact_two_level_var(d)), rel=0.03)


def _ev(h, b, seed, cells, num_params=None) -> VariantEvidence:
    cells = np.asarray(cells, np.float64)
    return VariantEvidence(
        name=variant_name(h, b, seed), hidden_dim=h, buffer_size=b, seed=seed, steps=(0, 1),
        avg_regret=float(cells.mean()), cells=cells, cell_tags=("regret/avg",), num_params=num_params,
        avg_advantage=None, val_mse=None,
    )  # fmt: skip


def test_constant_cells_single_seed_gives_a_point_interval():
    small, large = [_ev(8, 1, 0, [1.0, 1.0, 1.0])], [_ev(16, 1, 0, [0.7, 0.7, 0.7])]
    g = marginal_gain(
        "hidden_dim", {"buffer_size": 1}, small, large, epsilon=0.1, relative=False,
        bootstrap_samples=200, rng=np.random.default_rng(0),
    )  # fmt: skip
    assert g.gain == pytest.approx(0.3)
    assert g.gain_ci95 == pytest.approx((0.3, 0.3))
    assert g.relative_gain == pytest.approx(0.3)
    assert g.significant and g.paired and g.seeds == 1


def test_interval_covers_the_student_t_interval_over_seeds():
    # Two seeds that disagree: the percentile bootstrap alone sees only three seed-level draws.
    small = [_ev(8, 1, 0, [1.0, 1.02]), _ev(8, 1, 1, [0.9, 0.92])]
    large = [_ev(16, 1, 0, [0.6, 0.62]), _ev(16, 1, 1, [0.88, 0.9])]
    g = marginal_gain(
        "hidden_dim", {"buffer_size": 1}, small, large, epsilon=0.05, relative=False,
        bootstrap_samples=500, rng=np.random.default_rng(0),
    )  # fmt: skip
    d = np.array([1.01 - 0.61, 0.91 - 0.89])
    half = 12.7062 * d.std(ddof=1) / np.sqrt(2)
    assert g.gain == pytest.approx(d.mean())
    assert g.gain_ci95[0] <= d.mean() - half + 1e-9
    assert g.gain_ci95[1] >= d.mean() + half - 1e-9
    assert not g.significant  # a lucky seed does not make the step significant


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    noise_seed=st.integers(0, 2**31 - 1),
    num_seeds=st.integers(2, 5),
    seed_sd=st.floats(0.0, 0.05),
    cell_sd=st.floats(0.0, 0.2),
    level=st.floats(0.2, 2.0),
)
def test_noise_alone_never_expands(noise_seed, num_seeds, seed_sd, cell_sd, level):
    # Identical true regret at every capacity; seed luck and episode noise only. Epsilon is a few
    # times the noise of a per-seed difference, the regime where a point estimate still can
    # exceed epsilon by luck.
    rng = np.random.default_rng(noise_seed)
    cells = 6
    eps = 3 * np.sqrt(2) * (seed_sd + cell_sd / np.sqrt(cells)) + 1e-6
    evidence = [
        _ev(h, 100, s, level + rng.normal(0, seed_sd) + rng.normal(0, cell_sd, cells))
        for h in (8, 16, 32) for s in range(num_seeds)
    ]  # fmt: skip
    d = decide(evidence, epsilon=eps, bootstrap_samples=300, seed=noise_seed % 1000)
    assert d.decision == "keep"
    assert d.suggested_next is None
    assert not any(g.significant for g in d.gains)


# --------------------------------------------------------------- evidence from event files


def test_latest_gains_keeps_each_ladders_step_into_its_largest_capacity():
    # two ladders per axis, three widths on one: by hand, the steps 16->32 (b=1) and 8->16 (b=2)
    evs = [_ev(h, b, 0, [1.0 / h, 1.1 / h]) for h in (8, 16, 32) for b in (1, 2) if (h, b) != (32, 2)]
    d = decide(evs, epsilon=0.0, bootstrap_samples=50)
    got = [(g.axis, dict(g.ladder), g.from_, g.to) for g in latest_gains(d.gains)]
    assert got == [
        ("hidden_dim", {"buffer_size": 1}, 16, 32),
        ("hidden_dim", {"buffer_size": 2}, 8, 16),
        ("buffer_size", {"hidden_dim": 8}, 1, 2),
        ("buffer_size", {"hidden_dim": 16}, 1, 2),
    ]
    assert latest_gains([]) == []


def test_evidence_values_match_float64_reference(tmp_path):
    run = build_run(
        tmp_path, 5, hidden_dims=(8, 16, 32), buffer_sizes=(100, 400), seeds=(0, 1, 2),
        true_regret=lambda h, b, e, g: 2.0 / np.log2(h) + 0.05 * g + 0.1 / (e + 1) - 1e-4 * b,
        seed_noise=0.03, cell_noise=0.02,
    )  # fmt: skip
    ctrl = _controller(tmp_path, k_last=3)
    d = ctrl.update()
    assert d.evidence["steps"] == [2, 3, 4]
    assert len(d.evidence["runs"]) == 18
    caps = {(c["hidden_dim"], c["buffer_size"]): c for c in d.capacities}
    for (h, b), c in caps.items():
        assert c["avg_regret"] == pytest.approx(run.expected_avg_regret(h, b, 3), abs=1e-9)
        assert c["num_params"] == mlp_num_params(h)
    gains = {(g.axis, tuple(g.ladder.values()), g.from_, g.to): g for g in d.gains}
    assert len(gains) == 2 * 2 + 3 * 1  # two hidden steps per buffer size, one buffer step per width
    for b in (100, 400):
        for lo, hi in ((8, 16), (16, 32)):
            g = gains[("hidden_dim", (b,), lo, hi)]
            ra, rb = run.expected_avg_regret(lo, b, 3), run.expected_avg_regret(hi, b, 3)
            assert g.gain == pytest.approx(ra - rb, abs=1e-9)
            assert g.relative_gain == pytest.approx((ra - rb) / ra, abs=1e-9)
            assert g.gain_per_param == pytest.approx((ra - rb) / (mlp_num_params(hi) - mlp_num_params(lo)), rel=1e-9)
            assert g.gain_ci95[0] <= g.gain <= g.gain_ci95[1]
            assert g.paired and g.seeds == 3
    g = gains[("buffer_size", (16,), 100, 400)]
    assert g.gain == pytest.approx(run.expected_avg_regret(16, 100, 3) - run.expected_avg_regret(16, 400, 3), abs=1e-9)
    assert g.gain_per_param is None  # the buffer adds no parameters
    # The cells behind each interval are the per-goal-per-epoch values of the window.
    ev = next(e for e in ctrl.evidence if e.name == "h8-b100-s1")
    expected = np.stack(run.cells["h8-b100-s1"][-3:]).T.ravel()  # goal-major [G * k]
    np.testing.assert_allclose(ev.cells, expected, atol=1e-7)


def test_gains_above_epsilon_expand(tmp_path):
    build_run(
        tmp_path, 3, hidden_dims=(8, 16, 32), seeds=(0, 1, 2), true_regret=_curve({8: 1.0, 16: 0.6, 32: 0.3}),
        seed_noise=0.01, cell_noise=0.02,
    )  # fmt: skip
    d = _controller(tmp_path).update()
    assert d.decision == "expand"
    assert d.recommended == {"hidden_dim": 32, "buffer_size": 1000}
    assert d.suggested_next == {"hidden_dim": 64, "buffer_size": 1000}
    assert [g.significant for g in d.gains] == [True, True]
    assert "64" in d.reason


def test_gains_below_epsilon_keep_smallest(tmp_path):
    build_run(
        tmp_path, 3, hidden_dims=(8, 16, 32), seeds=(0, 1, 2), true_regret=_curve({8: 1.0, 16: 0.98, 32: 0.97}),
        seed_noise=0.005, cell_noise=0.01,
    )  # fmt: skip
    d = _controller(tmp_path).update()
    assert d.decision == "keep"
    assert d.recommended["hidden_dim"] == 8
    assert d.suggested_next is None
    assert all(g.gain < EPS and not g.significant for g in d.gains)


def test_diminishing_gains_recommend_the_knee(tmp_path):
    build_run(
        tmp_path, 3, hidden_dims=(8, 16, 32, 64), seeds=(0, 1, 2),
        true_regret=_curve({8: 1.0, 16: 0.5, 32: 0.48, 64: 0.475}), seed_noise=0.01, cell_noise=0.02,
    )  # fmt: skip
    d = _controller(tmp_path).update()
    assert d.decision == "keep"
    assert d.recommended["hidden_dim"] == 16
    assert [g.significant for g in d.gains] == [True, False, False]


def test_lucky_seed_does_not_expand(tmp_path):
    # Identical true curves. One seed of the larger model is lucky: the point gain exceeds epsilon.
    offsets = {"h8-b1000-s0": 0.10, "h8-b1000-s1": -0.02, "h16-b1000-s0": -0.10, "h16-b1000-s1": 0.02}
    run = build_run(
        tmp_path, 3, hidden_dims=(8, 16), seeds=(0, 1), true_regret=_curve({8: 0.5, 16: 0.5}),
        offsets=offsets, cell_noise=0.01,
    )  # fmt: skip
    d = _controller(tmp_path).update()
    naive_gain = run.expected_avg_regret(8, 1000, 2) - run.expected_avg_regret(16, 1000, 2)
    assert naive_gain > EPS  # a rule on the point estimate alone would buy the bigger model
    assert d.decision == "keep"
    assert d.recommended["hidden_dim"] == 8


def test_noisy_seeds_with_identical_curves_keep(tmp_path):
    build_run(
        tmp_path, 4, hidden_dims=(8, 16, 32), seeds=(0, 1, 2, 3), true_regret=_curve({8: 0.7, 16: 0.7, 32: 0.7}),
        seed_noise=0.04, cell_noise=0.1, rng_seed=11,
    )  # fmt: skip
    d = _controller(tmp_path).update()
    assert d.decision == "keep"
    assert d.recommended["hidden_dim"] == 8


def test_single_seed_uses_within_seed_level(tmp_path):
    build_run(
        tmp_path, 4, hidden_dims=(8, 16), seeds=(0,), true_regret=_curve({8: 1.0, 16: 0.5}), cell_noise=0.03,
    )  # fmt: skip
    d = _controller(tmp_path).update()
    (g,) = d.gains
    assert g.seeds == 1
    assert g.gain_ci95[0] < g.gain < g.gain_ci95[1]  # cell noise gives a real interval
    assert d.decision == "expand"


def test_single_capacity_is_insufficient_evidence(tmp_path):
    build_run(tmp_path, 2, hidden_dims=(32,), seeds=(0, 1), true_regret=_curve({32: 0.4}))
    d = _controller(tmp_path).update()
    assert d.decision == "keep"
    assert d.gains == ()
    assert d.recommended == {"hidden_dim": 32, "buffer_size": 1000}
    assert d.reason.startswith("insufficient evidence")


def test_diverged_variant_is_excluded(tmp_path):
    # Seed 0 of the large model "wins" by far but diverged: without it there is no gain.
    offsets = {"h16-b1000-s0": -0.8}
    build_run(
        tmp_path, 3, hidden_dims=(8, 16), seeds=(0, 1, 2), true_regret=_curve({8: 1.0, 16: 1.0}),
        offsets=offsets, diverged=("h16-b1000-s0",), cell_noise=0.01,
    )  # fmt: skip
    d = _controller(tmp_path).update()
    assert d.evidence["excluded_diverged"] == ["h16-b1000-s0"]
    assert "h16-b1000-s0" not in d.evidence["runs"]
    (g,) = d.gains
    assert g.seeds == 2 and not g.paired  # seeds {0,1,2} vs {1,2}
    assert abs(g.gain) < 0.05
    assert d.decision == "keep"


def test_buffer_axis_gets_the_same_treatment(tmp_path):
    build_run(
        tmp_path, 3, hidden_dims=(16,), buffer_sizes=(100, 1000, 10000), seeds=(0, 1, 2),
        true_regret=lambda h, b, e, g: {100: 1.0, 1000: 0.6, 10000: 0.3}[b] + 0.1 * g, seed_noise=0.01,
    )  # fmt: skip
    d = _controller(tmp_path).update()
    assert {g.axis for g in d.gains} == {"buffer_size"}
    assert d.decision == "expand"
    assert d.suggested_next == {"hidden_dim": 16, "buffer_size": 20000}


def test_relative_mode_compares_relative_gain(tmp_path):
    # Absolute gains 0.10 then 0.05; relative 10% then 5.6%.
    build_run(
        tmp_path, 3, hidden_dims=(8, 16, 32), seeds=(0, 1, 2), true_regret=_curve({8: 1.0, 16: 0.9, 32: 0.85}, 0.0),
        cell_noise=0.002,
    )  # fmt: skip
    absolute = _controller(tmp_path, epsilon=0.06).update()
    relative = _controller(tmp_path, epsilon=0.06, relative=True).update()
    assert [g.significant for g in absolute.gains] == [True, False]
    assert [g.significant for g in relative.gains] == [True, False]
    assert absolute.gains[1].relative_gain == pytest.approx(0.05 / 0.9, abs=0.005)
    # epsilon 0.045 tells them apart: 0.05 absolute is too close to call, 5.6% relative is not.
    assert [g.significant for g in _controller(tmp_path, epsilon=0.052).update().gains] == [True, False]
    assert [g.significant for g in _controller(tmp_path, epsilon=0.045, relative=True).update().gains] == [True, True]


# ------------------------------------------------------------------------------ live runs


def test_reads_a_live_run_incrementally(tmp_path):
    # Epochs 0-1 identical curves, then the larger model pulls away.
    curve = lambda h, b, e, g: 1.0 - (0.5 if (h == 16 and e >= 2) else 0.0) + 0.1 * g  # noqa: E731
    run = SyntheticRun(tmp_path, hidden_dims=(8, 16), seeds=(0, 1, 2), true_regret=curve, cell_noise=0.01)
    run.write_epochs(2)
    ctrl = _controller(tmp_path)
    reader = ctrl.reader
    d1 = ctrl.update()
    assert d1.decision == "keep" and d1.evidence["steps"] == [0, 1]
    run.write_epochs(2)
    d2 = ctrl.update()
    run.close()
    assert ctrl.reader is reader  # the same accumulators, reloaded
    assert d2.evidence["steps"] == [2, 3]
    assert d2.decision == "expand"


def test_tolerates_a_writer_that_is_still_appending(tmp_path):
    run = SyntheticRun(tmp_path, hidden_dims=(8, 16), seeds=(0, 1), true_regret=_curve({8: 1.0, 16: 0.5}))
    run.write_epoch()
    ctrl = _controller(tmp_path)
    errors: list[BaseException] = []

    def writer():
        try:
            run.write_epochs(6)
        except BaseException as e:  # reported by the main thread
            errors.append(e)

    t = threading.Thread(target=writer, daemon=True)
    t.start()
    seen = []
    for _ in range(30):  # bounded: read while the writer appends
        d = ctrl.update()
        if d.epoch is not None:
            seen.append(d.epoch)
        if not t.is_alive():
            break
    t.join(timeout=60)
    run.close()
    assert not t.is_alive() and not errors
    assert seen == sorted(seen)  # never goes back in time
    final = ctrl.update()
    assert final.evidence["steps"] == [5, 6]
    assert final.decision == "expand"


def test_windows_align_to_the_epoch_every_variant_reached(tmp_path):
    run = SyntheticRun(tmp_path, hidden_dims=(8, 16), seeds=(0,), true_regret=_curve({8: 1.0, 16: 0.5}))
    run.write_epochs(3)
    run.close()
    # A variant that is one epoch ahead (read mid-epoch) is compared at the common epoch.
    w = SummaryWriterAppend(tmp_path / "tb" / "h16-b1000-s0")
    w.add(3, 0.0)
    ctrl = _controller(tmp_path)
    d = ctrl.update()
    assert d.evidence["steps"] == [1, 2]
    unaligned = _controller(tmp_path, align_epochs=False).update()
    assert unaligned.evidence["steps"] == [1, 2, 3]


class SummaryWriterAppend:
    """Appends a ``regret/avg`` value to an existing variant run (a new event file)."""

    def __init__(self, logdir):
        from tensorboardX import SummaryWriter

        # A distinct suffix: two writers opened in the same second would otherwise share a file name.
        self.w = SummaryWriter(logdir=str(logdir), filename_suffix=".append")

    def add(self, step, value):
        self.w.add_scalar("regret/avg", value, step)
        self.w.close()


# ---------------------------------------------------------------------- decision.json


def test_write_decision_json_history_and_growth(tmp_path):
    run = SyntheticRun(tmp_path, hidden_dims=(8, 16), seeds=(0, 1), true_regret=lambda h, b, e, g: 1.0 - (0.5 if h == 16 and e >= 2 else 0) + 0.1 * g)
    run.write_epochs(2)
    ctrl = _controller(tmp_path)
    ctrl.update()
    ctrl.write()
    ctrl.write()  # same decision, same epoch: no new history entry
    run.write_epochs(2)
    ctrl.update()
    growth = [{"epoch": 3, "from": "h8-b1000-s0", "to": "h16-b1000-s0", "hidden_dim": [8, 16]}]
    ctrl.write(growth=growth)
    run.close()
    doc = files.read_json(tmp_path / "decision.json")
    assert doc["schema"] == 1
    assert doc["decision"] == "expand"
    assert doc["recommended"] == {"hidden_dim": 16, "buffer_size": 1000}
    assert doc["suggested_next"] == {"hidden_dim": 32, "buffer_size": 1000}
    assert doc["epsilon"] == EPS and doc["relative"] is False and doc["k_last"] == 2
    assert [h["decision"] for h in doc["history"]] == ["keep", "expand"]
    assert [h["epoch"] for h in doc["history"]] == [1, 3]
    assert doc["growth"] == growth
    assert doc["evidence"]["tags"] == sorted(doc["evidence"]["tags"][:-1]) + ["model/num_params"]
    assert "regret/avg" in doc["evidence"]["tags"] and "regret/goal_0/avg" in doc["evidence"]["tags"]
    assert doc["evidence"]["steps"] == [2, 3]
    g = doc["gains"][0]
    assert set(g) >= {"axis", "ladder", "from", "to", "gain", "gain_ci95", "relative_gain", "gain_per_param", "significant"}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".decision.json")]  # no temp file left
    # A new controller (a restarted process) continues the history.
    again = _controller(tmp_path)
    assert [h["decision"] for h in again.history] == ["keep", "expand"]


# ------------------------------------------------------------------------------------ CLI


def test_cli_errors_exit_2(tmp_path, capsys):
    assert meta.main([str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert "no such directory" in err and len(err.strip().splitlines()) == 1
    (tmp_path / "tb").mkdir()
    assert meta.main([str(tmp_path)]) == 2
    assert "no TensorBoard runs" in capsys.readouterr().err
    assert not (tmp_path / "decision.json").exists()


def test_cli_writes_decision_and_explains(tmp_path, capsys):
    build_run(tmp_path, 3, hidden_dims=(8, 16), seeds=(0, 1), true_regret=_curve({8: 1.0, 16: 0.99}))
    assert meta.main([str(tmp_path), "--epsilon", "0.2", "--k", "1"]) == 0
    out = capsys.readouterr().out
    assert "KEEP" in out and "h 8->16" in out
    doc = files.read_json(tmp_path / "decision.json")
    assert doc["epsilon"] == 0.2 and doc["k_last"] == 1 and doc["evidence"]["steps"] == [2]
    alerts = [json.loads(x) for x in (tmp_path / "alerts.jsonl").read_text().splitlines()]
    assert [(a["axis"], a["from"], a["to"]) for a in alerts] == [("hidden_dim", 8, 16)]


def test_cli_reads_epsilon_from_the_run_config(tmp_path):
    build_run(tmp_path, 2, hidden_dims=(8, 16), seeds=(0, 1), true_regret=_curve({8: 1.0, 16: 0.9}))
    (tmp_path / "config.yaml").write_text("meta:\n  epsilon: 0.3\n  last_k_epochs: 1\n")
    assert meta.main([str(tmp_path)]) == 0
    doc = files.read_json(tmp_path / "decision.json")
    assert doc["epsilon"] == 0.3 and doc["k_last"] == 1


def test_cli_watch_prints_only_when_the_decision_changes(tmp_path, capsys):
    build_run(tmp_path, 3, hidden_dims=(8, 16), seeds=(0, 1), true_regret=_curve({8: 1.0, 16: 1.0}))
    assert meta.main([str(tmp_path), "--watch", "--interval", "0.01", "--max-polls", "3"]) == 0
    out = capsys.readouterr().out
    assert out.count("decision:") == 1
    assert files.read_json(tmp_path / "decision.json")["decision"] == "keep"


def test_unreplicated_evidence_is_never_significant():
    small, large = [_ev(8, 1, 0, [1.0])], [_ev(16, 1, 0, [0.2])]
    g = marginal_gain(
        "hidden_dim", {"buffer_size": 1}, small, large, epsilon=0.05, relative=False,
        bootstrap_samples=100, rng=np.random.default_rng(0),
    )  # fmt: skip
    assert g.gain == pytest.approx(0.8) and g.gain_ci95 == pytest.approx((0.8, 0.8))
    assert not g.significant  # one seed, one value: no way to tell signal from noise


# ------------------------------------------------------------------------ the planner's gap and latency


def _write_scalars(run_dir, run: str, values: dict[int, dict[str, float]]) -> None:
    from tensorboardX import SummaryWriter

    with SummaryWriter(logdir=str(run_dir / "tb" / run)) as w:
        for step, tags in values.items():
            for tag, v in tags.items():
                w.add_scalar(tag, v, step)


def _flat_and_falling(h, b, e, g):
    """Goal 0's regret falls with width; goal 1 stays at 1.5 whatever the width."""
    return {8: 2.0, 16: 1.2, 32: 0.8}[h] if g == 0 else 1.5


def test_the_reference_runs_planner_gap_reaches_the_diagnosis(tmp_path):
    from augnes_jax.evidence import REFERENCE_RUN, planner_gap_tag

    build_run(tmp_path, 3, hidden_dims=(8, 16, 32), seeds=(0, 1, 2), num_goals=2, true_regret=_flat_and_falling,
              seed_noise=0.05, cell_noise=0.02)  # fmt: skip
    gaps = {0: {0: 0.0, 1: 4.0}, 1: {0: 0.0, 1: 1.0}, 2: {0: 0.0, 1: 2.0}}
    _write_scalars(tmp_path, REFERENCE_RUN, {e: {planner_gap_tag(g): v for g, v in by_goal.items()}
                                             for e, by_goal in gaps.items()})  # fmt: skip
    d = _controller(tmp_path, k_last=2).update()
    goals = d.analysis["goals"]
    # the window is epochs 1 and 2: goal 1's gap is (1 + 2) / 2, goal 0's is 0
    assert goals["1"]["evidence"]["planner_gap"] == pytest.approx(1.5, rel=1e-6)
    assert goals["0"]["evidence"]["planner_gap"] == 0.0
    assert goals["1"]["verdict"] == "planner_limited" and "1.5 short of the exact optimum" in goals["1"]["why"]
    assert goals["0"]["verdict"] != "planner_limited"


def test_without_a_reference_run_the_gap_is_unknown(tmp_path):
    build_run(tmp_path, 3, hidden_dims=(8, 16, 32), seeds=(0, 1), num_goals=2, true_regret=_flat_and_falling,
              seed_noise=0.05, cell_noise=0.02)  # fmt: skip
    d = _controller(tmp_path).update()
    assert all(g["evidence"]["planner_gap"] is None for g in d.analysis["goals"].values())


def test_latency_cost_prices_the_next_step_in_measured_milliseconds(tmp_path):
    from augnes_jax.decision_analysis import AnalysisSettings
    from augnes_jax.evidence import LATENCY_TAG

    regret = {8: 1.0, 16: 0.6, 32: 0.3}
    ms = {8: 0.5, 16: 0.8, 32: 1.4}
    rng = np.random.default_rng(3)
    for h in regret:
        for s in (0, 1):
            # one event file per run, as the sweep writes it; epoch 0 is never timed (it compiles)
            epochs = {e: {"regret/avg": regret[h] + 0.01 * s + rng.normal(0, 0.01), "model/num_params": mlp_num_params(h)}
                      for e in range(3)}  # fmt: skip
            epochs[1][LATENCY_TAG] = ms[h] + 0.1 * s
            epochs[2][LATENCY_TAG] = ms[h] + 0.1 * s + 0.02
            _write_scalars(tmp_path, variant_name(h, 1000, s), epochs)
    settings = AnalysisSettings(cost="latency_ms", epsilon_per_cost=0.0)
    d = _controller(tmp_path, analysis=settings).update()
    cost, scaling = d.analysis["cost"], d.analysis["scaling"]
    assert cost["measure"] == "latency_ms"
    lat = {h: np.mean([ms[h] + 0.1 * s + 0.01 for s in (0, 1)]) for h in ms}
    assert cost["recommended"] == pytest.approx(lat[scaling["from_width"]], rel=1e-6)
    if scaling["next_width"] in lat:
        extra = lat[scaling["next_width"]] - lat[scaling["from_width"]]
        assert cost["next"] == pytest.approx(lat[scaling["next_width"]], rel=1e-6)
        assert cost["gain_per_cost"] == pytest.approx(scaling["predicted_next_gain"] / extra, rel=1e-6)
    else:  # past the ladder's end: never run, never extrapolated
        assert cost["next"] is None and cost["gain_per_cost"] is None
        assert f"hidden_dim {scaling['next_width']} was not run" in cost["why"]
    # a params-priced decision carries no wall-clock figure (it stays the same from run to run)
    d2 = _controller(tmp_path).update()
    assert d2.analysis["cost"]["measure"] == "params"
    assert "meta.cost: latency_ms" in d2.analysis["cost"]["latency_ms"]


def test_latency_cost_on_a_ladder_step_inside_the_sweep():
    from augnes_jax.decision_analysis import latency_cost

    def ev(h, s, ms):
        return VariantEvidence(name=variant_name(h, 1000, s), hidden_dim=h, buffer_size=1000, seed=s, steps=(0,),
                               avg_regret=0.0, cells=np.zeros(1), cell_tags=("regret/avg",), num_params=None,
                               avg_advantage=None, val_mse=None, latency_ms=ms)  # fmt: skip

    evidence = [ev(8, 0, 1.0), ev(8, 1, 2.0), ev(16, 0, 3.0), ev(16, 1, 4.0)]
    scaling = {"buffer_size": 1000, "from_width": 8, "next_width": 16, "predicted_next_gain": 0.4,
               "predicted_next_gain_ci95": [0.2, 0.6], "trusted": True}  # fmt: skip
    cost = latency_cost(scaling, evidence, epsilon_per_cost=0.1)
    # 1.5 ms -> 3.5 ms: 2 ms more for a gain of 0.4, [0.1, 0.3] per ms; 0.1 is not above 0.1
    assert (cost["recommended"], cost["next"]) == (1.5, 3.5)
    assert cost["gain_per_cost"] == pytest.approx(0.2) and cost["gain_per_cost_ci95"] == pytest.approx([0.1, 0.3])
    assert cost["worth_it"] is False
    assert latency_cost(scaling, evidence, epsilon_per_cost=0.05)["worth_it"] is True


def test_tensorboard_runs_named_without_capacity_are_one_clear_error(tmp_path, capsys):
    from augnes_jax.tensorboard_io import RunWriter

    for name in ("small", "big"):
        with RunWriter(tmp_path / "tb" / name) as w:
            for step in range(3):
                w.scalars(step, {"regret/avg": 1.0 + step})
    with RunWriter(tmp_path / "tb" / "_reference") as w:  # the sweep's own runs do not count
        w.scalars(0, {"regret/avg": 0.0})
    assert meta.main([str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "no run is named as a capacity variant" in err and "found big, small)" in err
    assert "augnes_jax.stats" in err
    # once one run carries a capacity name, the controller reads the evidence as before
    with RunWriter(tmp_path / "tb" / variant_name(8, 100, 0)) as w:
        w.scalars(0, {"regret/avg": 1.0})
    assert meta.run_dir_problem(tmp_path) is None
