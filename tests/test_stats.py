"""harness/stats.py against examples worked by hand (numbers in the comments)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from harness import stats


def test_one_seed_has_a_mean_and_no_interval():
    one = stats.mean_ci([0.8])
    assert one.mean == 0.8 and one.n == 1 and math.isnan(one.low) and math.isnan(one.high) and not one.has_ci
    assert stats.mean_ci([]).n == 0 and math.isnan(stats.mean_ci([]).mean)
    assert stats.mean_ci([float("nan"), 0.5]).n == 1  # a missing score is not a seed


def test_exact_bootstrap_interval_of_three_seeds():
    # x = 2, 3, 4: the 27 resamples' sums are 6..12 with counts 1, 3, 6, 7, 6, 3, 1 (the coefficients of
    # x^6 (1 + x + x^2)^3), so the sorted means start 6/3, 7/3, 7/3 ... and end ... 11/3, 4.
    # 2.5% quantile: position 26 * 0.025 = 0.65 -> 2 + 0.65 * (7/3 - 2) = 2.216667
    # 97.5% quantile: position 26 * 0.975 = 25.35 -> 11/3 + 0.35 * (4 - 11/3) = 3.783333
    interval = stats.mean_ci([2.0, 3.0, 4.0])
    assert interval.mean == pytest.approx(3.0)
    assert interval.low == pytest.approx(2.0 + 0.65 / 3)
    assert interval.high == pytest.approx(11 / 3 + 0.35 / 3)
    assert interval.n == 3 and interval.has_ci


def test_equal_seeds_give_a_zero_width_interval():
    interval = stats.mean_ci([0.5, 0.5, 0.5])
    assert (interval.low, interval.mean, interval.high) == (0.5, 0.5, 0.5)


def test_many_seeds_use_scipy_bootstrap_deterministically():
    values = np.linspace(0.5, 0.7, 8)
    a, b = stats.mean_ci(values), stats.mean_ci(values)
    assert (a.low, a.high) == (b.low, b.high)  # fixed random state
    assert a.low < values.mean() < a.high and values.min() <= a.low and a.high <= values.max()


def test_paired_comparison_matches_the_hand_worked_example():
    # x = 0.80, 0.82, 0.84 and y = 0.78, 0.79, 0.80 on seeds 1..3: d = 0.02, 0.03, 0.04.
    # mean d = 0.03, sd = 0.01, t = 0.03 / (0.01 / sqrt 3) = 5.196 on 2 degrees of freedom; the t
    # distribution with 2 df has two-sided p = 1 - t / sqrt(2 + t^2) = 1 - 5.19615 / 5.38516 = 0.035099.
    # The interval is the exact bootstrap of d (as above, scaled by 0.01): [0.0221667, 0.0378333].
    # P(X > Y) over the 9 (x, y) pairs: x = 0.80 beats 0.78 and 0.79 and ties 0.80 -> 2.5; the other two
    # x beat all three -> 6; (2.5 + 6) / 9 = 0.9444.
    c = stats.paired_comparison([0.80, 0.82, 0.84], [0.78, 0.79, 0.80])
    t = 0.03 / (0.01 / math.sqrt(3))
    assert c.n_pairs == 3 and c.delta == pytest.approx(0.03)
    assert c.p_value == pytest.approx(1 - t / math.sqrt(2 + t * t))
    assert c.p_value == pytest.approx(0.035099, abs=1e-6)
    assert c.ci_low == pytest.approx(0.02 + 0.0065 / 3) and c.ci_high == pytest.approx(0.11 / 3 + 0.0035 / 3)
    assert c.p_improvement == pytest.approx(8.5 / 9)
    assert c.verdict == "better"


def test_an_interval_that_includes_zero_is_a_tie_and_direction_is_honoured():
    tied = stats.paired_comparison([0.80, 0.78, 0.83], [0.79, 0.80, 0.80])  # d = +0.01, -0.02, +0.03
    assert tied.ci_low < 0 < tied.ci_high and tied.verdict == "tied"
    worse = stats.paired_comparison([0.70, 0.71, 0.72], [0.80, 0.80, 0.81])
    assert worse.verdict == "worse" and worse.p_improvement == 0.0
    # a lower-is-better metric: a lower x is the better one
    assert stats.paired_comparison([0.70, 0.71, 0.72], [0.80, 0.80, 0.81], higher_is_better=False).verdict == "better"


def test_pairs_with_a_missing_side_are_dropped_and_one_pair_claims_nothing():
    c = stats.paired_comparison([0.8, float("nan"), 0.7], [0.6, 0.6, float("nan")])
    assert c.n_pairs == 1 and c.delta == pytest.approx(0.2)
    assert c.verdict == "n/a" and math.isnan(c.p_value) and math.isnan(c.p_improvement) and math.isnan(c.ci_low)
    with pytest.raises(ValueError):
        stats.paired_comparison([1.0, 2.0], [1.0])


def test_identical_runs_have_p_one():
    c = stats.paired_comparison([0.5, 0.6, 0.7], [0.5, 0.6, 0.7])
    assert c.delta == 0 and c.p_value == 1.0 and c.verdict == "tied" and c.p_improvement == pytest.approx(0.5)


def test_average_interval_resamples_seeds_within_tasks():
    # task A seeds 0.6, 0.8 and task B seeds 0.4 (one seed): the average is (0.7 + 0.4) / 2 = 0.55; B never
    # varies, A's resample means are 0.6, 0.7 or 0.8, so every resampled average lies in [0.5, 0.6] and
    # both ends are reached (each with probability 1/4 per resample).
    interval = stats.average_ci([[0.6, 0.8], [0.4]])
    assert interval.mean == pytest.approx(0.55) and interval.n == 1
    assert interval.low == pytest.approx(0.5) and interval.high == pytest.approx(0.6)
    assert math.isnan(stats.average_ci([[0.6], [0.4]]).low)  # one seed everywhere: no interval


def test_paired_average_comparison_is_the_t_test_of_per_seed_averages():
    x = [[0.80, 0.82, 0.84], [0.60, 0.61, 0.62]]
    y = [[0.78, 0.79, 0.80], [0.60, 0.60, 0.60]]
    c = stats.paired_average_comparison(x, y)
    # per-seed averages: x 0.70, 0.715, 0.73; y 0.69, 0.695, 0.70 -> d = 0.01, 0.02, 0.03 (t = 3.464)
    t = 0.02 / (0.01 / math.sqrt(3))
    assert c.delta == pytest.approx(0.02) and c.p_value == pytest.approx(1 - t / math.sqrt(2 + t * t))
    # the exact bootstrap interval excludes 0, but p = 0.074: not distinguishable from seed noise
    assert c.n_pairs == 3 and c.ci_low > 0 and c.p_value > 0.05 and c.verdict == "tied"


def test_an_average_over_tasks_with_different_seed_sets_is_tested_on_the_seeds_every_task_has():
    # task 1 has seeds 42, 64, 128; task 2 only 42 and 64 (its seed-128 run is missing): the t-test takes
    # the per-seed averages of 42 and 64 (x 0.70, 0.72; y 0.69, 0.70 -> d = 0.01, 0.02; t = 3, 1 dof)
    x = [[0.80, 0.82, 0.90], [0.60, 0.62]]
    y = [[0.78, 0.79, 0.70], [0.60, 0.61]]
    c = stats.paired_average_comparison(x, y, seeds=[[42, 64, 128], [42, 64]])
    t = 0.015 / (math.sqrt(0.00005) / math.sqrt(2))
    assert c.p_value == pytest.approx(1 - 2 * math.atan(t) / math.pi)  # Student t with 1 dof: 0.205
    assert c.ci_low > 0 and c.verdict == "tied"  # every resample is positive, but the test does not agree
    # positions are not seeds: the same lists in another seed order pair other runs
    swapped = stats.paired_average_comparison(x, y, seeds=[[42, 64, 128], [64, 42]])
    assert swapped.p_value != pytest.approx(c.p_value)
    # fewer than two seeds in common: no p-value (the interval decides, as documented in verdict)
    assert math.isnan(stats.paired_average_comparison(x, y, seeds=[[42, 64, 128], [128, 256]]).p_value)


def test_three_same_sign_differences_are_not_enough_without_the_paired_test():
    # d = +0.01, +0.05, +0.002: every bootstrap resample mean is positive (the interval excludes 0), as it
    # is for any three differences of one sign, which two equal methods give one time in four; the t-test
    # (p = 0.30) does not separate them, so the verdict is a tie
    c = stats.paired_comparison([0.81, 0.85, 0.802], [0.80, 0.80, 0.80])
    assert c.ci_low > 0 and c.p_value > 0.05 and c.verdict == "tied"
    assert stats.verdict(0.01, 0.02, p_value=0.2) == "tied" and stats.verdict(0.01, 0.02, p_value=0.01) == "better"
    # no variance in the differences: no p-value, the interval decides
    assert stats.verdict(0.1, 0.1, p_value=math.nan) == "better"
