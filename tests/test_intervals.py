"""Every interval the package reports, proven by coverage and against an independent computation.

Coverage: over a few hundred (or thousand) seeded synthetic draws with a known true value, a 95%
interval must cover the truth in 93-97% of the draws. That band fails a 90% or a 50% interval,
and a Student-t interval built with the normal quantile at few degrees of freedom.

Independent computation: the controller's bootstrap is redone in NumPy on the same resamples
(the same generator, seeded alike, draws the same indices), vectorised over all draws at once;
the Student-t quantiles come from the closed-form t distribution (Abramowitz & Stegun 26.7.3-4)
inverted by bisection.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from augnes_jax import regret, stats
from augnes_jax.decision import Gain, avg_regret_ci, marginal_gain
from augnes_jax.evidence import VariantEvidence
from augnes_jax.judgments import JudgmentWriter, make_judgments, read_judgments
from augnes_jax.statistics import student_t_quantile, t_interval, t_quantile_975, welch_t_interval

BOOT = 1000
BOOT_SEED = 1234


# ------------------------------------------------------------------ Student-t, in closed form


def t_abs_cdf(t: np.ndarray, df: int) -> np.ndarray:
    """Returns ``P(|T| <= t)`` for Student's t with integer ``df`` (A&S 26.7.3 and 26.7.4)."""
    theta = np.arctan(t / math.sqrt(df))
    c2 = np.cos(theta) ** 2
    if df % 2 == 1:
        if df == 1:
            return 2 * theta / math.pi
        term = total = np.cos(theta)
        for k in range(1, (df - 3) // 2 + 1):
            term = term * (2 * k) / (2 * k + 1) * c2
            total = total + term
        return 2 / math.pi * (theta + np.sin(theta) * total)
    term = total = np.ones_like(theta)
    for k in range(1, (df - 2) // 2 + 1):
        term = term * (2 * k - 1) / (2 * k) * c2
        total = total + term
    return np.sin(theta) * total


def t_quantile(p: float, df: int) -> float:
    """Returns the ``p``-quantile (p > 0.5) of Student's t by bisection on :func:`t_abs_cdf`."""
    lo, hi = 0.0, 1e7
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if t_abs_cdf(np.float64(mid), df) < 2 * p - 1 else (lo, mid)
    return 0.5 * (lo + hi)


def test_the_closed_form_reference_has_the_textbook_values():
    # the two df with elementary quantiles, and two table values
    assert t_quantile(0.975, 1) == pytest.approx(math.tan(math.pi * 0.475), rel=1e-12)
    assert t_quantile(0.975, 2) == pytest.approx(0.95 / math.sqrt(2 * 0.975 * 0.025), rel=1e-12)
    assert t_quantile(0.975, 10) == pytest.approx(2.228138852, abs=1e-8)
    assert t_quantile(0.95, 5) == pytest.approx(2.015048373, abs=1e-8)


def test_t_quantile_975_matches_the_t_distribution():
    for df in [*range(1, 32), 45, 100, 1000]:
        assert t_quantile_975(df) == pytest.approx(t_quantile(0.975, df), abs=2e-4), df
    # fractional (Welch) df round down below 31: the interval is never narrower
    for df in (1.5, 7.3, 29.5, 30.7):
        assert t_quantile_975(df) == pytest.approx(t_quantile(0.975, math.floor(df)), abs=2e-4)
    # above 30 the expansion takes fractional df: it lies between its integer neighbours
    assert t_quantile(0.975, 46) < t_quantile_975(45.5) < t_quantile(0.975, 45)


def test_t_quantile_975_is_the_t_table_to_four_decimals():
    # the printed table's rows: the exact quantile rounded to 4 decimals, e.g. 12.7062, 2.0423
    for df in range(1, 31):
        assert t_quantile_975(df) == round(t_quantile(0.975, df), 4), df
    assert t_quantile_975(1) == 12.7062 and t_quantile_975(30) == 2.0423
    with pytest.raises(ValueError, match="degrees of freedom"):
        t_quantile_975(0.5)


def test_t_intervals_equal_the_textbook_formulas():
    x = np.array([1.0, 2.5, 0.5, 3.0])
    half = t_quantile(0.975, 3) * math.sqrt(np.sum((x - x.mean()) ** 2) / 3) / 2
    assert t_interval(x) == pytest.approx((x.mean() - half, x.mean() + half), abs=1e-4)
    assert t_interval([1.0]) is None and t_interval([]) is None
    a, b = np.array([3.0, 4.0, 5.0]), np.array([1.0, 1.5, 2.0, 2.5, 3.0])
    va, vb = np.var(a, ddof=1) / 3, np.var(b, ddof=1) / 5
    df = (va + vb) ** 2 / (va**2 / 2 + vb**2 / 4)  # Welch-Satterthwaite, 3.53 here: the t row of 3
    half = t_quantile(0.975, math.floor(df)) * math.sqrt(va + vb)
    diff = a.mean() - b.mean()
    assert welch_t_interval(a, b) == pytest.approx((diff - half, diff + half), abs=1e-4)
    assert welch_t_interval(a, [1.0]) is None
    assert welch_t_interval([2.0, 2.0], [1.0, 1.0]) == (1.0, 1.0)


@pytest.mark.parametrize("level", [0.5, 0.9, 0.95, 0.99, 0.999])
def test_student_t_quantile_matches_the_t_distribution(level):
    dfs = [1, 2, 3, 4, 5, 7, 10, 15, 16, 17, 30, 63, 64, 100, 1000]
    p = (1 + level) / 2
    got = np.asarray(jax.jit(student_t_quantile)(p, jnp.asarray(dfs, jnp.float32)))
    np.testing.assert_allclose(got, [t_quantile(p, df) for df in dfs], rtol=5e-5)


# ------------------------------------------------------- Student-t intervals, by coverage


def covered(lo, hi, truth) -> float:
    """Returns the fraction of intervals ``[lo, hi]`` that contain ``truth``."""
    lo, hi = np.asarray(lo, np.float64), np.asarray(hi, np.float64)
    assert np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))
    return float(np.mean((lo <= truth) & (truth <= hi)))


def test_per_goal_t_intervals_cover_the_true_mean_95_percent_of_the_time():
    # 3 episodes per goal: a normal quantile instead of t_{.975,2} would cover only ~81%
    rng = np.random.default_rng(0)
    goals, n, truth = 3000, 3, 2.5
    values = rng.normal(truth, 1.7, (goals, n)).astype(np.float32)
    agg = regret.aggregate(jnp.asarray(values.reshape(-1)), jnp.repeat(jnp.arange(goals), n), goals)
    lo, hi = regret.confidence_interval(agg, level=0.95)
    x = values.astype(np.float64)
    half = t_quantile(0.975, n - 1) * x.std(axis=1, ddof=1) / math.sqrt(n)
    np.testing.assert_allclose(lo, x.mean(axis=1) - half, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(hi, x.mean(axis=1) + half, rtol=1e-4, atol=1e-4)
    assert 0.93 <= covered(lo, hi, truth) <= 0.97


def test_strategy_stats_per_goal_intervals_cover_the_true_regret(tmp_path):
    rng = np.random.default_rng(1)
    goals, n = 1000, 4
    true_regret = rng.uniform(0.5, 3.0, goals)
    regrets = true_regret[:, None] + rng.normal(0.0, 0.8, (goals, n))
    path = tmp_path / "judgments.jsonl"
    gid = np.repeat(np.arange(goals), n)
    with JudgmentWriter(path) as w:
        w.append(make_judgments(gid, np.zeros(goals * n), regrets.reshape(-1), variant="h8-b100-s0",
                                hidden_dim=8, buffer_size=100, seed=0, epoch=0))  # fmt: skip
    doc = stats.build_strategy_stats(read_judgments(path), source=str(path))
    rows = doc["experiments"][0]["goals"]
    ci = np.array([rows[str(g)]["avg_regret_ci95"] for g in range(goals)])
    x = regrets.astype(np.float32).astype(np.float64)  # the log keeps float32 decimals
    half = t_quantile(0.975, n - 1) * x.std(axis=1, ddof=1) / math.sqrt(n)
    np.testing.assert_allclose(ci[:, 0], x.mean(axis=1) - half, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(ci[:, 1], x.mean(axis=1) + half, rtol=1e-4, atol=1e-4)
    assert 0.93 <= covered(ci[:, 0], ci[:, 1], true_regret) <= 0.97


# ------------------------------------------------- the controller's bootstrap intervals


def evidence(h: int, seed: int, cells: np.ndarray) -> VariantEvidence:
    cells = np.asarray(cells, np.float64)
    return VariantEvidence(
        name=f"h{h}-b100-s{seed}", hidden_dim=h, buffer_size=100, seed=seed, steps=(0,),
        avg_regret=float(cells.mean()), cells=cells, cell_tags=("regret/avg",), num_params=None,
        avg_advantage=None, val_mse=None,
    )  # fmt: skip


def gains(small: np.ndarray, large: np.ndarray) -> list[Gain]:
    """Returns the controller's gain for each draw; ``small``/``large`` are ``[R, S, C]`` cells."""
    out = []
    for a, b in zip(small, large, strict=True):
        out.append(marginal_gain(
            "hidden_dim", {"buffer_size": 100}, [evidence(8, s, c) for s, c in enumerate(a)],
            [evidence(16, s, c) for s, c in enumerate(b)], epsilon=0.0, relative=False,
            bootstrap_samples=BOOT, rng=np.random.default_rng(BOOT_SEED),
        ))  # fmt: skip
    return out


def numpy_paired_bootstrap(small: np.ndarray, large: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Returns the bootstrap means ``[R, BOOT]`` of both sides, every draw on the same resamples.

    The resamples are the controller's: seeds with replacement, then each drawn seed's cells
    with replacement, from a generator seeded with ``BOOT_SEED``. A resample is a count matrix,
    so all draws are averaged with one matrix product per seed.
    """
    _, num_seeds, num_cells = small.shape
    rng = np.random.default_rng(BOOT_SEED)
    seed_idx = rng.integers(0, num_seeds, size=(BOOT, num_seeds))
    sums_a = np.zeros((small.shape[0], BOOT))
    sums_b = np.zeros_like(sums_a)
    for s in range(num_seeds):
        mask = seed_idx == s
        if not mask.any():
            continue
        cell_idx = rng.integers(0, num_cells, size=(int(mask.sum()), num_cells))
        counts = np.zeros((len(cell_idx), num_cells))
        np.add.at(counts, (np.arange(len(cell_idx))[:, None], cell_idx), 1.0)
        times = mask.sum(axis=1)  # how often each replicate drew seed s
        rows = np.repeat(np.arange(BOOT), times)  # the replicate of each row of cell_idx
        weight = np.zeros((BOOT, num_cells))
        np.add.at(weight, rows, counts)
        sums_a += small[:, s, :] @ weight.T / num_cells
        sums_b += large[:, s, :] @ weight.T / num_cells
    return sums_a / num_seeds, sums_b / num_seeds


def numpy_gain_interval(small: np.ndarray, large: np.ndarray) -> np.ndarray:
    """Returns ``[R, 2]``: the percentile interval of the gain, hulled with the paired t-interval."""
    a_boot, b_boot = numpy_paired_bootstrap(small, large)
    point = small.mean(axis=(1, 2)) - large.mean(axis=(1, 2))
    q = np.quantile((a_boot - b_boot) - point[:, None], [0.025, 0.975], axis=1).T
    ci = point[:, None] + q
    num_seeds = small.shape[1]
    if num_seeds >= 2:
        d = small.mean(axis=2) - large.mean(axis=2)
        half = t_quantile(0.975, num_seeds - 1) * d.std(axis=1, ddof=1) / math.sqrt(num_seeds)
        ci = np.stack([np.minimum(ci[:, 0], point - half), np.maximum(ci[:, 1], point + half)], axis=1)
    return ci


def paired_draws(rng, draws, seeds, cells, seed_sd, cell_sd, true_gain):
    """Returns ``(small, large)`` cells ``[R, S, C]``: shared goal effects, per-seed offsets."""
    common = rng.normal(2.0, 1.0, (draws, seeds, cells))  # a goal's difficulty cancels in the pair
    small = common + rng.normal(0.0, seed_sd, (draws, seeds, 1)) + rng.normal(0.0, cell_sd, (draws, seeds, cells))
    large = common - true_gain + rng.normal(0.0, seed_sd, (draws, seeds, 1)) + rng.normal(0.0, cell_sd, (draws, seeds, cells))
    return small, large


def test_one_seed_bootstrap_interval_covers_the_true_gain_and_equals_a_numpy_bootstrap():
    # one seed: no t-interval, the percentile bootstrap alone is the reported interval
    small, large = paired_draws(np.random.default_rng(7), 1000, 1, 150, 0.0, 0.5, true_gain=0.3)
    got = gains(small, large)
    ci = np.array([g.gain_ci95 for g in got])
    np.testing.assert_allclose(ci, numpy_gain_interval(small, large), rtol=1e-9, atol=1e-12)
    assert all(g.paired for g in got)
    assert 0.93 <= covered(ci[:, 0], ci[:, 1], 0.3) <= 0.97


def test_multi_seed_interval_covers_the_true_gain_and_equals_a_numpy_bootstrap_and_t_interval():
    # seeds differ more than cells: the per-seed t-interval carries the width
    small, large = paired_draws(np.random.default_rng(8), 1000, 4, 12, 0.4, 0.2, true_gain=0.3)
    got = gains(small, large)
    ci = np.array([g.gain_ci95 for g in got])
    # meta's t table is rounded to 4 decimals: 3.1824 for t_{.975,3} = 3.18245
    np.testing.assert_allclose(ci, numpy_gain_interval(small, large), rtol=0, atol=1e-4)
    assert 0.93 <= covered(ci[:, 0], ci[:, 1], 0.3) <= 0.97


def test_relative_gain_interval_covers_the_true_relative_gain():
    small, large = paired_draws(np.random.default_rng(9), 1000, 1, 150, 0.0, 0.5, true_gain=0.3)
    got = gains(small, large)
    a_boot, b_boot = numpy_paired_bootstrap(small, large)
    ra = small.mean(axis=(1, 2))
    rel = (ra - large.mean(axis=(1, 2))) / ra
    q = np.quantile((a_boot - b_boot) / a_boot - rel[:, None], [0.025, 0.975], axis=1).T
    ci = np.array([g.relative_gain_ci95 for g in got])
    np.testing.assert_allclose(ci, rel[:, None] + q, rtol=1e-9, atol=1e-12)
    assert 0.93 <= covered(ci[:, 0], ci[:, 1], 0.3 / 2.0) <= 0.97


def test_avg_regret_interval_covers_the_true_regret():
    rng = np.random.default_rng(10)
    draws, cells, truth = 1000, 150, 1.5
    x = rng.normal(truth, 0.7, (draws, 1, cells))
    ci = np.array([
        avg_regret_ci([evidence(8, 0, c[0])], bootstrap_samples=BOOT, rng=np.random.default_rng(BOOT_SEED))
        for c in x
    ])  # fmt: skip
    a_boot, _ = numpy_paired_bootstrap(x, x)
    point = x.mean(axis=(1, 2))
    want = point[:, None] + np.quantile(a_boot - point[:, None], [0.025, 0.975], axis=1).T
    np.testing.assert_allclose(ci, want, rtol=1e-9, atol=1e-12)
    assert 0.93 <= covered(ci[:, 0], ci[:, 1], truth) <= 0.97
