"""The scaling curve: recovery of a, b, c, coverage of the predicted next gain, trust, cost, aggregates."""

from __future__ import annotations

import numpy as np
import pytest
from synthetic_runs import mlp_num_params
from test_diagnosis import synthetic_evidence

from augnes_jax.aggregates import probability_of_improvement, robust_aggregates
from augnes_jax.decision import decide
from augnes_jax.decision_analysis import AnalysisSettings
from augnes_jax.scaling import fit_power_law, next_width, scaling_curve, summarize_cost
from augnes_jax.statistics import iqm

WIDTHS = (8, 16, 32, 64, 128)


@pytest.mark.parametrize(("a", "b", "c"), [(100.0, 0.5, 0.8), (3.0, 1.2, 0.1), (40.0, 0.3, 0.0)])
def test_fit_recovers_a_b_c_on_noiseless_data(a, b, c):
    n = np.asarray([mlp_num_params(h) for h in WIDTHS], np.float64)
    fa, fb, fc = fit_power_law(n, a * n**-b + c)
    assert (fa, fb, fc) == pytest.approx((a, b, c), rel=1e-4, abs=1e-6)


def test_fit_of_a_batch_equals_the_fit_of_each_row():
    n = np.asarray([mlp_num_params(h) for h in WIDTHS], np.float64)
    ys = np.stack([a * n**-b + c for a, b, c in [(10.0, 0.7, 1.0), (5.0, 0.4, 0.2)]])
    batch = fit_power_law(n, ys)
    for i in range(2):
        assert np.asarray(fit_power_law(n, ys[i])) == pytest.approx(np.asarray(batch)[:, i], rel=1e-9)


def _true(h, g):
    return 100.0 * mlp_num_params(h) ** -0.5 + 0.8


def test_predicted_next_gain_interval_covers_the_true_gain_in_90_percent_of_draws():
    truth = 100.0 * (mlp_num_params(128) ** -0.5 - mlp_num_params(256) ** -0.5)
    rng = np.random.default_rng(0)
    draws, covered = 200, 0
    for i in range(draws):
        ev = synthetic_evidence(rng, widths=WIDTHS, seeds=6, goals=1, noise=0.3, true=_true)
        sc = scaling_curve(ev, buffer_size=1000, recommended_width=128, epsilon=0.5,
                           rng=np.random.default_rng(i), bootstrap_samples=400, goal=0)  # fmt: skip
        assert sc["next_width"] == 256 and sc["N_next"] == pytest.approx(mlp_num_params(256), rel=1e-9)
        lo, hi = sc["predicted_next_gain_ci95"]
        covered += lo <= truth <= hi
    assert covered / draws >= 0.9


def test_trust_advice_and_the_next_step():
    rng = np.random.default_rng(1)
    steep = synthetic_evidence(rng, widths=WIDTHS, seeds=4, goals=1, noise=0.01,
                               true=lambda h, g: 2000.0 * mlp_num_params(h) ** -0.5)  # fmt: skip
    sc = scaling_curve(steep, buffer_size=1000, recommended_width=128, epsilon=0.5, rng=rng)
    assert sc["trusted"] and sc["advice"] == "expand" and sc["predicted_next_gain_ci95"][0] > 0.5
    flat = synthetic_evidence(rng, widths=WIDTHS, seeds=4, goals=1, noise=0.01, true=_true)
    # 32 -> 64 still gains 100 * (1542^-0.5 - 5126^-0.5) = 1.15; 128 -> 256 only 0.357
    sc = scaling_curve(flat, buffer_size=1000, recommended_width=32, epsilon=0.5, rng=rng)
    assert sc["advice"] == "expand" and (sc["from_width"], sc["next_width"]) == (32, 64)
    assert sc["predicted_next_gain"] == pytest.approx(1.15, abs=0.05)
    sc = scaling_curve(flat, buffer_size=1000, recommended_width=128, epsilon=0.5, rng=rng)
    assert sc["trusted"] and sc["advice"] == "keep" and "saturation" in sc["why"]
    assert sc["predicted_next_gain"] == pytest.approx(0.357, abs=0.03)
    two = [e for e in flat if e.hidden_dim in (8, 16)]
    sc = scaling_curve(two, buffer_size=1000, recommended_width=16, epsilon=0.5, rng=rng)
    assert not sc["trusted"] and sc["advice"] == "explore one more width" and "only 2 capacities" in sc["why"]
    bumpy = synthetic_evidence(rng, widths=WIDTHS, seeds=4, goals=1, noise=0.01,
                               true=lambda h, g: {8: 5.0, 16: 4.0, 32: 4.5, 64: 1.0, 128: 0.9}[h])  # fmt: skip
    sc = scaling_curve(bumpy, buffer_size=1000, recommended_width=128, epsilon=0.5, rng=rng)
    assert not sc["trusted"] and "non-monotone" in sc["why"]
    jump = synthetic_evidence(rng, widths=WIDTHS, seeds=4, goals=1, noise=0.01,
                              true=lambda h, g: {8: 5.0, 16: 4.9, 32: 4.8, 64: 1.0, 128: 0.95}[h])  # fmt: skip
    sc = scaling_curve(jump, buffer_size=1000, recommended_width=128, epsilon=0.5, rng=rng)
    assert not sc["trusted"] and "jump" in sc["why"]
    assert next_width([8, 32, 128], 32) == (32, 128) and next_width([8, 32, 128], 128) == (128, 256)


def test_cost_of_the_recommended_and_next_width():
    sc = {"N_unit": "params", "N_from": 1542.0, "N_next": 18438.0, "predicted_next_gain": 0.3,
          "predicted_next_gain_ci95": [0.2, 0.4], "trusted": True}  # fmt: skip
    c = summarize_cost(sc, measure="flops", flops_per_param=6 * 256 * 300, epsilon_per_cost=1e-9)
    extra = (18438.0 - 1542.0) * 6 * 256 * 300
    assert c["recommended"] == 1542.0 * 6 * 256 * 300 and c["next"] == 18438.0 * 6 * 256 * 300
    assert c["gain_per_cost"] == pytest.approx(0.3 / extra)
    assert c["worth_it"] is (0.2 / extra > 1e-9)
    p = summarize_cost(sc, measure="params", flops_per_param=None, epsilon_per_cost=1e-5)
    assert p["gain_per_cost"] == pytest.approx(0.3 / 16896.0) and p["worth_it"] is True  # 0.2 / 16896 = 1.2e-5
    assert summarize_cost(sc, measure="params", flops_per_param=None, epsilon_per_cost=2e-5)["worth_it"] is False


def test_iqm_and_probability_of_improvement():
    x = np.asarray([[3.0, 1.0], [4.0, 2.0]])  # [seeds, goals] at the smaller width
    y = np.asarray([[1.0, 2.0], [5.0, 0.5]])
    # goal 0: pairs (y<x) of {1,5} vs {3,4}: 1<3, 1<4 -> 2/4; goal 1: {2,0.5} vs {1,2}: 0.5<1, 0.5<2, tie 2=2 -> 2.5/4
    assert probability_of_improvement(x, y) == pytest.approx((2 / 4 + 2.5 / 4) / 2)
    ev = synthetic_evidence(np.random.default_rng(2), widths=(8, 16), seeds=4, goals=8, noise=0.3)
    agg = robust_aggregates(ev, 1000, rng=np.random.default_rng(0))
    scores = np.asarray([[e.goal_regret[g] for g in range(8)] for e in sorted(ev, key=lambda e: e.seed) if e.hidden_dim == 8])
    assert agg["widths"][0]["iqm"] == pytest.approx(float(np.mean(np.sort(scores.ravel())[8:24])))
    lo, hi = agg["widths"][0]["iqm_ci95"]
    assert lo <= iqm(scores) <= hi


def test_decision_keeps_its_fields_and_gains_the_analysis():
    ev = synthetic_evidence(np.random.default_rng(3), widths=WIDTHS, seeds=4, goals=8, noise=0.3)
    plain = decide(ev, epsilon=0.5, bootstrap_samples=200)
    with_iqm = decide(ev, epsilon=0.5, bootstrap_samples=200, analysis=AnalysisSettings(statistic="iqm"))
    doc = plain.to_json()
    assert {"goals", "scaling", "aggregates", "cost", "multiple_comparisons", "statistic"} <= set(doc)
    assert doc["scaling"]["from_width"] == doc["recommended"]["hidden_dim"]
    assert set(doc["scaling"]["goals"]) == {g for g, d in doc["goals"].items() if d["verdict"] == "capacity_limited"}
    # iqm: each variant's value is the IQM of its window cells
    got = [g for g in with_iqm.gains if g.from_ == 8 and g.to == 16][0]
    want = np.mean([iqm(x.cells) for x in ev if x.hidden_dim == 8])
    assert got.avg_regret_from == pytest.approx(want) and with_iqm.analysis["statistic"] == "iqm"
    assert got.avg_regret_from != pytest.approx(np.mean([x.avg_regret for x in ev if x.hidden_dim == 8]), rel=1e-9)
