"""The kit's paired statistics against scipy.stats on fixed numbers, and Holm's step-down against its definition."""

from __future__ import annotations

import math

import pytest

from uldviz.maths.stats import holm_levels, judge_family, paired_difference, t_cdf, t_quantile

scipy_stats = pytest.importorskip("scipy.stats")


@pytest.mark.parametrize("df", [1, 2, 4, 9, 30, 200])
def test_t_distribution_matches_scipy(df):
    for p in (0.5, 0.6, 0.9, 0.975, 0.99886, 0.999999):
        assert t_quantile(p, df) == pytest.approx(scipy_stats.t.ppf(p, df), rel=1e-9, abs=1e-12)
        assert t_quantile(1 - p, df) == pytest.approx(scipy_stats.t.ppf(1 - p, df), rel=1e-9, abs=1e-12)
    for t in (-12.0, -2.5, -0.1, 0.0, 0.7, 3.0, 40.0):
        assert t_cdf(t, df) == pytest.approx(scipy_stats.t.cdf(t, df), abs=1e-13)


def test_paired_difference_matches_scipy_on_fixed_numbers():
    a = {0: 2.7150, 1: 2.6811, 2: 2.7542, 3: 2.6921, 4: 2.7000}
    b = {0: 2.7482, 1: 2.7290, 2: 2.7700, 3: 2.7335, 4: 2.7601, 9: 1.0}  # seed 9 has no partner: left out
    d = paired_difference(a, b)
    sa, sb = [a[s] for s in range(5)], [b[s] for s in range(5)]
    ref = scipy_stats.ttest_rel(sa, sb)
    assert d.seeds == (0, 1, 2, 3, 4) and d.t == pytest.approx(ref.statistic) and d.p == pytest.approx(ref.pvalue)
    diffs = [x - y for x, y in zip(sa, sb)]
    lo, hi = scipy_stats.t.interval(0.95, 4, loc=sum(diffs) / 5, scale=scipy_stats.sem(diffs))
    assert d.interval(0.95) == pytest.approx((lo, hi))
    with pytest.raises(ValueError, match="share no seed"):
        paired_difference({0: 1.0}, {1: 1.0})


def test_holm_steps_down_and_stops_at_the_first_failure():
    ps = [0.001, 0.04, 0.012, 0.3]  # sorted: 0.001 < 0.05/4; 0.012 < 0.05/3; 0.04 > 0.05/2: stop there
    levels = holm_levels(ps)
    assert [r for _, r in levels] == [True, False, True, False]
    assert levels[0][0] == pytest.approx(0.05 / 4) and levels[2][0] == pytest.approx(0.05 / 3)
    assert levels[1][0] == pytest.approx(0.05 / 2) and levels[3][0] == pytest.approx(0.05 / 2)  # the failed level
    # each verdict is read off its interval at that level: excludes 0 exactly when Holm rejects
    diffs = [paired_difference([2.0 + 0.01 * i for i in range(5)], [2.0 + 0.01 * i + delta + 0.003 * (i % 2)
                                                                     for i in range(5)])
             for delta in (0.2, 0.004, 0.05, 0.0)]
    for v, (_, reject) in zip(judge_family(diffs), holm_levels([d.p for d in diffs])):
        assert v.decided == reject == (v.low > 0 or v.high < 0)
        assert v.words in ("better", "worse") if v.decided else v.words.startswith("no difference larger than")
    one_seed = paired_difference([1.0], [2.0])
    assert math.isnan(one_seed.p) and not judge_family([one_seed])[0].decided
