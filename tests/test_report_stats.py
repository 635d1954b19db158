"""The report's statistics at their edges: two values, one side without spread, undefined
ratios (cases the mutation run showed no test covered)."""
import math

import pytest
from scipy import stats as scipy_stats

from ecomeasure.report.stats import cohens_d, mean_ci, welch


def test_two_values_are_enough_for_an_interval_and_an_effect_size():
    ci = mean_ci([1.0, 3.0])
    low, high = scipy_stats.t.interval(0.95, 1, loc=2.0, scale=scipy_stats.sem([1.0, 3.0]))
    assert (ci.n, ci.mean) == (2, 2.0) and (ci.low, ci.high) == pytest.approx((low, high))
    assert math.isnan(mean_ci([1.0]).low)
    # pooled variance of [1, 3] and [2, 4] is 2: d = (2 - 3) / sqrt(2)
    assert cohens_d([1.0, 3.0], [2.0, 4.0]) == pytest.approx(-1 / math.sqrt(2))
    assert math.isnan(cohens_d([1.0], [2.0, 4.0])) and math.isnan(cohens_d([1.0, 3.0], [2.0]))


def test_welch_with_two_values_and_with_one_side_constant():
    expected = scipy_stats.ttest_ind([1.0, 3.0], [2.0, 6.0], equal_var=False)
    assert welch([1.0, 3.0], [2.0, 6.0]) == pytest.approx((expected.statistic, expected.pvalue))
    # One side without spread still has a defined test; neither side with spread has none.
    t, p = welch([5.0, 5.0, 5.0], [1.0, 2.0, 3.0])
    assert math.isfinite(t) and 0 < p < 1
    t, p = welch([1.0, 2.0, 3.0], [5.0, 5.0, 5.0])
    assert math.isfinite(t) and 0 < p < 1
    assert all(math.isnan(v) for v in welch([5.0, 5.0], [7.0, 7.0]))
    assert all(math.isnan(v) for v in welch([1.0], [2.0, 4.0])) and all(math.isnan(v) for v in welch([1.0, 2.0], [3.0]))

