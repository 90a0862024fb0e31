"""Per-goal diagnosis: verdicts on known synthetic curves, the false-positive rate, and the reference run."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
from synthetic_runs import mlp_num_params, variant_name

from augnes_jax import meta
from augnes_jax.diagnosis import diagnose, trend_tests
from augnes_jax.evidence import VariantEvidence
from augnes_jax.statistics import adjust_p_values, iqm, t_two_sided_p

WIDTHS = (8, 16, 32, 64)
LEVEL = 0.05
EPS = 0.5


def _true(h: int, g: int) -> float:
    """Goals 0-3 follow a * N^(-b) + c in parameters; goals 4-7 are flat."""
    return 100.0 * mlp_num_params(h) ** -0.5 + 0.8 if g < 4 else 1.5


def synthetic_evidence(rng, *, widths=WIDTHS, buffers=(1000,), seeds=4, goals=8, noise=0.3, k=2, true=_true):
    """Returns evidence windows: per-seed offsets shared across capacities plus per-cell noise."""
    offsets = rng.normal(0.0, 0.3, seeds)
    out = []
    for b in buffers:
        for h in widths:
            for s in range(seeds):
                per_goal = [true(h, g) + offsets[s] + rng.normal(0.0, noise, k) for g in range(goals)]
                cells = np.concatenate(per_goal)
                out.append(VariantEvidence(
                    name=variant_name(h, b, s), hidden_dim=h, buffer_size=b, seed=s, steps=tuple(range(k)),
                    avg_regret=float(cells.mean()), cells=cells,
                    cell_tags=tuple(f"regret/goal_{g}/avg" for g in range(goals)),
                    num_params=float(mlp_num_params(h)), avg_advantage=None, val_mse=None,
                    goal_regret={g: float(v.mean()) for g, v in enumerate(per_goal)},
                ))  # fmt: skip
    return out


REC = {"hidden_dim": WIDTHS[-1], "buffer_size": 1000}


def test_capacity_limited_goals_are_found_and_flat_goals_are_not():
    d = diagnose(synthetic_evidence(np.random.default_rng(0)), epsilon=EPS, recommended=REC, level=LEVEL)
    assert [d[g].verdict for g in range(4)] == ["capacity_limited"] * 4
    assert all(d[g].verdict != "capacity_limited" for g in range(4, 8))
    # the reasoning names the numbers of the evidence
    ev = d[0].evidence["width_trend"]
    assert f"{ev['p_adjusted']:.3g}" in d[0].why and f"{d[0].evidence['regret_at_recommended']:.3g}" in d[0].why


def test_gain_and_interval_match_a_numpy_paired_computation():
    evidence = synthetic_evidence(np.random.default_rng(1))
    d = diagnose(evidence, epsilon=EPS, recommended=REC, level=LEVEL)
    y = np.asarray([[e.goal_regret[2] for e in sorted((e for e in evidence if e.hidden_dim == h), key=lambda e: e.seed)]
                    for h in WIDTHS]).T  # [S, K]  # fmt: skip
    s, k = y.shape
    resid = y - y.mean(1, keepdims=True) - y.mean(0)[None] + y.mean()
    se = math.sqrt(2 * (resid**2).sum() / ((s - 1) * (k - 1)) / s)
    gain = y[:, 0].mean() - y[:, -1].mean()
    assert d[2].gain == pytest.approx(gain, rel=1e-12)
    # t_{.975, 9} = 2.2622 (printed tables)
    assert d[2].gain_ci95 == pytest.approx((gain - 2.2622 * se, gain + 2.2622 * se), rel=1e-4)
    # with two capacities the test is the paired t-test: same p as the t distribution's tail
    two = [e for e in evidence if e.hidden_dim in (8, 64)]
    t = trend_tests(two, "hidden_dim", REC, method="holm")[2]
    diff = y[:, 0] - y[:, -1]
    t_stat = diff.mean() / (diff.std(ddof=1) / math.sqrt(s))
    assert t.p == pytest.approx(float(t_two_sided_p(t_stat, s - 1)), rel=1e-5)


def test_false_positive_rate_on_flat_goals_is_at_most_the_level():
    rng = np.random.default_rng(2)
    draws, flagged, found = 200, 0, 0
    for _ in range(draws):
        d = diagnose(synthetic_evidence(rng), epsilon=EPS, recommended=REC, level=LEVEL)
        flagged += sum(d[g].verdict == "capacity_limited" for g in range(4, 8))
        found += sum(d[g].verdict == "capacity_limited" for g in range(4))
    assert flagged / (4 * draws) <= LEVEL
    assert found / (4 * draws) >= 0.95


def test_data_limited_solved_and_planner_limited():
    def true(h, b, g):
        if g == 0:
            return 3.0 * (1000 / b)  # falls with buffer_size only
        if g == 1:
            return 0.1  # solved at the smallest width
        return 2.0  # flat: the planner's, when the model is accurate on it

    rng = np.random.default_rng(3)
    ev = [e for b in (1000, 2000, 4000) for e in synthetic_evidence(
        rng, buffers=(b,), goals=3, noise=0.05, true=lambda h, g, b=b: true(h, b, g))]  # fmt: skip
    rec = {"hidden_dim": 8, "buffer_size": 4000}
    model_error = {e.name: {0: 0.5, 1: 0.5, 2: 1e-4} for e in ev}
    d = diagnose(ev, epsilon=EPS, recommended=rec, model_error=model_error, model_epsilon=1e-3)
    assert d[0].verdict == "data_limited" and d[0].gain == pytest.approx(3.0 * (1 - 1000 / 4000), abs=0.2)
    assert d[1].verdict == "solved"
    assert d[2].verdict == "planner_limited" and "0.0001" in d[2].why
    # an exact optimum that the true-dynamics planner misses also makes a goal planner-limited
    d = diagnose(ev, epsilon=EPS, recommended=rec, planner_gap={2: 1.7})
    assert d[2].verdict == "planner_limited" and "1.7" in d[2].why


def test_inconclusive_says_how_many_more_seeds_would_decide():
    def true(h, g):
        return 2.0 - 0.3 * math.log2(h / 8)  # a real but small gain, buried in noise

    ev = synthetic_evidence(np.random.default_rng(4), widths=(8, 64), seeds=2, goals=1, noise=1.0, k=1, true=true)
    d = diagnose(ev, epsilon=EPS, recommended={"hidden_dim": 64, "buffer_size": 1000})[0]
    assert d.verdict == "inconclusive"
    t = d.evidence["width_trend"]
    effect = max(abs(t["gain"]), EPS)
    se = (t["gain_ci95"][1] - t["gain"]) / 12.7062  # t_{.975, 1}
    sd = se * math.sqrt(2)
    # Student's t 97.5% quantiles by degrees of freedom (a printed table), one goal: no adjustment
    table = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262,
             10: 2.228, 11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120, 17: 2.110,
             18: 2.101, 19: 2.093, 20: 2.086, 25: 2.060, 30: 2.042, 40: 2.021, 60: 2.000, 120: 1.980}
    t975 = lambda df: table.get(df) or table[max(k for k in table if k <= df)]  # noqa: E731 (never too small)
    n = next(n for n in range(3, 10_000) if effect >= (t975(n - 1) + 0.841621) * sd / math.sqrt(n))
    assert abs(d.evidence["more_seeds"] - (n - 2)) <= 1 + (n - 1 > 20)  # the table's gaps above 20
    assert d.evidence["more_seeds"] >= 1
    assert f"{d.evidence['more_seeds']} more seeds" in d.why


def test_adjusted_p_values_match_hand_computation():
    p = [0.01, 0.04, 0.03, 0.005]
    assert adjust_p_values(p, "holm") == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert adjust_p_values(p, "bh") == pytest.approx([0.02, 0.04, 0.04, 0.02])
    assert t_two_sided_p(2.7764, 4) == pytest.approx(0.05, abs=1e-4)
    assert iqm([1, 2, 3, 4, 5, 6, 7, 100]) == pytest.approx(4.5)


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    """The default reacher sweep (two epochs): the run every goal's verdict is read from."""
    from augnes_jax.config import load_config
    from augnes_jax.sweep import Sweep

    run = tmp_path_factory.mktemp("reference") / "run"
    Sweep(load_config(None, ["epochs=2"]), run, progress=False).run()
    return run


def test_reference_run_every_goal_gets_a_verdict_with_its_numbers(reference_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(reference_run, run)
    before = json.loads((run / "decision.json").read_text())
    assert meta.main([str(run)]) == 0
    out = capsys.readouterr().out
    doc = json.loads((run / "decision.json").read_text())
    for key in ("decision", "recommended", "suggested_next", "gains", "capacities", "reason"):
        assert doc[key] == before[key]
    num_goals = len({int(t.split("/")[1][5:]) for t in doc["evidence"]["tags"] if t.startswith("regret/goal_")})
    assert sorted(doc["goals"]) == [str(g) for g in range(num_goals)] and num_goals == 8
    assert doc["multiple_comparisons"]["method"] == "holm"
    for d in doc["goals"].values():
        assert d["verdict"] in ("capacity_limited", "data_limited", "planner_limited", "solved", "inconclusive")
        trend = d["evidence"]["width_trend"]
        # the reasoning names the regret at both ends, the adjusted p-value and the regret at the
        # recommended width, and is printed in full (the table wraps it: compare without spaces)
        assert f"{trend['mean_regret'][0]:.3g}->{trend['mean_regret'][-1]:.3g}" in d["why"]
        assert f"{trend['p_adjusted']:.3g}" in d["why"]
        assert "".join(d["why"].split()) in "".join(out.split())
        assert f"{d['evidence']['regret_at_recommended']:.3g}" in d["why"]
    assert "per-goal diagnosis" in out and "scaling:" in out


def test_reference_run_model_error_comes_from_world_model_stats(reference_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(reference_run, run)
    assert meta.main([str(run)]) == 0
    doc = json.loads((run / "decision.json").read_text())
    stats = json.loads((run / "world_model_stats.json").read_text())
    rec = doc["recommended"]
    steps = doc["evidence"]["steps"][-doc["k_last"]:]
    names = [n for n in stats["variants"] if n.startswith(f"h{rec['hidden_dim']}-b{rec['buffer_size']}-")]
    for g, d in doc["goals"].items():
        want = np.mean([np.mean([x["per_goal_mse"][g] for x in stats["variants"][n]["epochs"] if x["epoch"] in steps])
                        for n in names])  # fmt: skip
        assert d["evidence"]["model_error"] == pytest.approx(want, rel=1e-12)
        assert d["evidence"]["model_epsilon"] == stats["epsilon"]


def test_a_bad_meta_setting_fails_with_one_line_and_writes_nothing(reference_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(reference_run, run)
    before = (run / "decision.json").read_bytes()
    cfg = (run / "config.yaml").read_text().replace("\n  cost: params\n", "\n  cost: wall_clock\n")
    assert "cost: wall_clock" in cfg
    (run / "config.yaml").write_text(cfg)
    assert meta.main([str(run)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "meta.cost" in err[0] and "config.yaml" in err[0]
    assert (run / "decision.json").read_bytes() == before
