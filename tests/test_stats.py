"""The statistics helper: quantiles against SciPy, intervals against textbook formulas,
the bootstrap's determinism and coverage, and verdicts computed from the numbers."""

import math

import numpy as np
import pytest
from scipy import stats as sps

from maskvid_edu.analysis.stats import (
    bootstrap_ci,
    difference,
    format_estimate,
    mean_ci,
    normal_quantile,
    paired_difference,
    rank_correlation,
    t_quantile,
    verdict,
)


@pytest.mark.parametrize("df", [1, 2, 3, 4, 9, 29, 200])
@pytest.mark.parametrize("p", [0.6, 0.8, 0.975, 0.995])
def test_t_quantile_matches_scipy(p, df):
    assert t_quantile(p, df) == pytest.approx(sps.t.ppf(p, df), rel=1e-7, abs=1e-8)
    assert t_quantile(1 - p, df) == pytest.approx(sps.t.ppf(1 - p, df), rel=1e-7, abs=1e-8)


@pytest.mark.parametrize("p", [0.01, 0.5, 0.8, 0.975])
def test_normal_quantile_matches_scipy(p):
    assert normal_quantile(p) == pytest.approx(sps.norm.ppf(p), abs=1e-9)


def test_mean_ci_is_the_t_interval():
    x = [61.0, 64.5, 58.2]
    e = mean_ci(x)
    lo, hi = sps.t.interval(0.95, len(x) - 1, loc=np.mean(x), scale=sps.sem(x))
    assert (e.low, e.high) == pytest.approx((lo, hi), rel=1e-8)
    assert e.n == 3 and e.method == "t"
    # power 0.8 at the 5 % level: (t_.975 + t_.8) · SE
    assert e.resolvable == pytest.approx((sps.t.ppf(0.975, 2) + sps.t.ppf(0.8, 2)) * sps.sem(x), rel=1e-7)


def test_one_value_gives_an_infinite_interval_not_a_fake_one():
    e = mean_ci([3.0])
    assert math.isinf(e.low) and math.isinf(e.high)
    assert "no difference resolvable" in verdict("a", "b", e)


def test_non_finite_values_are_refused_naming_the_count():
    with pytest.raises(ValueError, match="1 of 3 values are not finite"):
        mean_ci([1.0, float("nan"), 2.0])
    with pytest.raises(ValueError, match="no values"):
        bootstrap_ci([])


def test_bootstrap_is_seeded_and_covers_the_mean():
    rng = np.random.default_rng(1)
    x = rng.normal(10.0, 2.0, size=200)
    a, b = bootstrap_ci(x, seed=3), bootstrap_ci(x, seed=3)
    assert a == b
    assert a.low < x.mean() < a.high
    # for a large normal sample the percentile interval ≈ the t interval
    t = mean_ci(x)
    assert a.low == pytest.approx(t.low, abs=0.1) and a.high == pytest.approx(t.high, abs=0.1)


def test_bootstrap_coverage_is_near_nominal():
    rng = np.random.default_rng(0)
    covered = 0
    for i in range(200):
        e = bootstrap_ci(rng.exponential(1.0, 60), num_resamples=1000, seed=i)
        covered += e.low < 1.0 < e.high
    assert 0.88 <= covered / 200 <= 0.99


def test_paired_difference_removes_the_shared_spread():
    base = np.array([50.0, 70.0, 60.0, 80.0])  # seeds differ a lot
    a, b = base + 3.0 + np.array([0.1, -0.1, 0.2, -0.2]), base
    paired = paired_difference(a, b)
    unpaired = difference(a, b)
    assert paired.excludes_zero() and not unpaired.excludes_zero()
    assert paired.mean == pytest.approx(3.0)
    with pytest.raises(ValueError, match="as many a as b"):
        paired_difference([1, 2, 3], [1, 2])


def test_welch_interval_matches_scipy():
    a, b = [1.0, 2.0, 4.0, 3.5], [0.5, 0.7, 1.9]
    e = difference(a, b)
    res = sps.ttest_ind(a, b, equal_var=False)
    ci = res.confidence_interval(0.95)
    assert (e.low, e.high) == pytest.approx((ci.low, ci.high), rel=1e-6)


def test_verdict_is_computed_from_the_interval():
    win = paired_difference([70.1, 68.0, 72.3], [64.0, 62.5, 65.9])
    text = verdict("tube", "random", win)
    assert text.startswith("tube beats random by 6.0 points, 95 % CI [")
    lose = paired_difference([64.0, 62.5, 65.9], [70.1, 68.0, 72.3])
    assert verdict("random", "tube", lose).startswith("random falls behind tube by 6.0 points")
    # lower is better (a loss): a positive difference means a falls behind
    assert "falls behind" in verdict("A", "B", win, unit="", higher_is_better=False)
    null = paired_difference([1.0, 3.0, 2.0], [2.0, 1.5, 2.2])
    text = verdict("A", "B", null, unit="dB")
    assert text.startswith("no difference resolvable between A and B: 95 % CI [")
    assert text.endswith(f"smallest resolvable difference ≈ {null.resolvable:.1f} dB")


def test_format_estimate():
    e = mean_ci([1.0, 2.0, 3.0])
    assert format_estimate(e, digits=2) == f"2.00 ± {e.half_width:.2f} (95 % CI [{e.low:.2f}, {e.high:.2f}], n = 3)"


def test_verdict_states_the_interval_of_the_gap_it_names():
    """"a beats b by X" comes with the interval of X, positive, whichever of a − b or b − a it is."""
    lower_wins = paired_difference([5.0, 4.0, 6.0, 5.5], [30.0, 28.0, 31.0, 29.5])  # a − b < 0
    text = verdict("flow-guided", "tube", lower_wins, unit="points", higher_is_better=False)
    assert text.startswith("flow-guided beats tube by 24.5 points, 95 % CI [")
    low, high = (float(v) for v in text.split("[")[1].rstrip("]").split(", "))
    assert 0 < low < 24.5 < high
    assert (low, high) == pytest.approx((-lower_wins.high, -lower_wins.low), abs=0.05)
    falls = verdict("random", "tube", lower_wins)  # higher is better: a falls behind by the same gap
    assert falls.endswith(text.split(", ", 1)[1])


def test_rank_correlation_matches_scipy_with_ties_and_has_a_seeded_interval():
    rng = np.random.default_rng(3)
    a = rng.integers(0, 5, size=12).astype(float)  # many ties
    b = a + rng.normal(0, 2, size=12)
    e = rank_correlation(a, b)
    assert e.mean == pytest.approx(sps.spearmanr(a, b).statistic, abs=1e-12)
    assert e.low <= e.mean <= e.high and e.n == 12 and e == rank_correlation(a, b)
    assert rank_correlation([1, 2, 3, 4], [4, 3, 2, 1]).mean == pytest.approx(-1.0)
    with pytest.raises(ValueError, match="paired values, got 3 and 4"):
        rank_correlation([1, 2, 3], [1, 2, 3, 4])
    with pytest.raises(ValueError, match="at least 3 pairs"):
        rank_correlation([1, 2], [2, 1])
