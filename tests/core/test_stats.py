"""Paired-seed statistics agree with scipy and numpy."""

import math

import numpy as np
import pytest
from scipy import stats as sps

from affectkit.core import stats

A = [44.9, 47.2, 43.4, 41.5, 44.0]
B = [43.4, 42.6, 43.1, 41.7, 43.9]


def test_mean_sd_is_the_sample_sd():
    mean, sd = stats.mean_sd(A)
    assert mean == pytest.approx(np.mean(A))
    assert sd == pytest.approx(np.std(A, ddof=1))
    assert stats.mean_sd([3.0]) == (3.0, 0.0)


def test_t_interval_matches_scipy():
    low, high = stats.t_interval(A)
    ref = sps.t.interval(0.95, len(A) - 1, loc=np.mean(A), scale=sps.sem(A))
    assert (low, high) == pytest.approx(ref)
    low90, high90 = stats.t_interval(A, level=0.9)
    assert low90 > low and high90 < high
    assert stats.t_interval([1.0]) is None


def test_paired_summary_matches_a_paired_t_test():
    deltas = stats.paired_deltas(A, B)
    assert deltas == pytest.approx(np.subtract(A, B))
    row = stats.paired_summary(deltas)
    assert row["mean delta"] == pytest.approx(np.mean(np.subtract(A, B)))
    # the interval excludes zero exactly when the paired t test rejects at 5 %
    p = sps.ttest_rel(A, B).pvalue
    assert (row["ci95 low"] > 0) == (p < 0.05)
    assert row["wins"] == "4/5"
    assert stats.paired_deltas([0.5], [0.25], scale=100) == [25.0]
    with pytest.raises(ValueError):
        stats.paired_deltas([1, 2], [1])


def test_wins_and_z_against_random():
    assert stats.wins([2.5, 1.0, -1.0, 2.0], threshold=2.0) == 1
    draws = [10.0, 12.0, 11.0, 13.0]
    assert stats.z_against(9.0, draws) == pytest.approx((9.0 - np.mean(draws)) / np.std(draws, ddof=1))
    assert math.isnan(stats.z_against(1.0, [2.0, 2.0]))
    assert math.isnan(stats.z_against(1.0, [2.0]))
