"""harness/aggregate/stats.py against examples worked by hand (numbers in the comments)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from harness.aggregate import stats


def test_one_seed_has_a_mean_and_no_interval():
    one = stats.mean_ci([0.8])
    assert one.mean == 0.8 and one.n == 1 and math.isnan(one.low) and math.isnan(one.high) and not one.has_ci
    assert stats.mean_ci([]).n == 0 and math.isnan(stats.mean_ci([]).mean)
    assert stats.mean_ci([float("nan"), 0.5]).n == 1  # a missing score is not a seed


T2 = 4.302652729911275  # Student t, 2 degrees of freedom, 97.5% quantile


def test_student_t_interval_of_three_seeds():
    # x = 2, 3, 4: mean 3, sd 1, se 1/sqrt 3; t(0.975, 2) = 4.302653 -> 3 -+ 2.484138
    interval = stats.mean_ci([2.0, 3.0, 4.0])
    assert interval.mean == pytest.approx(3.0)
    assert interval.low == pytest.approx(3 - T2 / math.sqrt(3)) and interval.high == pytest.approx(3 + T2 / math.sqrt(3))
    assert interval.n == 3 and interval.has_ci and interval.df == 2


def test_a_three_seed_cell_is_at_least_as_wide_as_95_percent_of_the_t_interval():
    # 60, 61, 62: the Student-t interval is 61 -+ 4.302653 / sqrt 3 = [58.516, 63.484] (width 4.968); the
    # old exact percentile bootstrap gave [60.22, 61.78] (width 1.57), strictly inside the data
    interval = stats.mean_ci([60.0, 61.0, 62.0])
    t_width = 2 * T2 / math.sqrt(3)
    assert interval.high - interval.low >= 0.95 * t_width
    assert interval.low < 60.0 and interval.high > 62.0


def test_equal_seeds_give_a_zero_width_interval():
    interval = stats.mean_ci([0.5, 0.5, 0.5])
    assert (interval.low, interval.mean, interval.high) == (0.5, 0.5, 0.5)


def test_many_seeds_use_the_same_t_interval():
    values = np.linspace(0.5, 0.7, 8)
    a = stats.mean_ci(values)
    half = float(__import__("scipy").stats.t.ppf(0.975, 7)) * values.std(ddof=1) / math.sqrt(8)
    assert a.low == pytest.approx(values.mean() - half) and a.high == pytest.approx(values.mean() + half)


def test_paired_comparison_matches_the_hand_worked_example():
    # x = 0.80, 0.82, 0.84 and y = 0.78, 0.79, 0.80 on seeds 1..3: d = 0.02, 0.03, 0.04.
    # mean d = 0.03, sd = 0.01, t = 0.03 / (0.01 / sqrt 3) = 5.196 on 2 degrees of freedom; the t
    # distribution with 2 df has two-sided p = 1 - t / sqrt(2 + t^2) = 1 - 5.19615 / 5.38516 = 0.035099.
    # The interval is the t interval of d: 0.03 -+ 4.302653 * 0.01 / sqrt 3 = [0.005159, 0.054841].
    # P(X > Y) over the 9 (x, y) pairs: x = 0.80 beats 0.78 and 0.79 and ties 0.80 -> 2.5; the other two
    # x beat all three -> 6; (2.5 + 6) / 9 = 0.9444.
    # Detectable with 80% power at 0.05 (two-sided, 3 pairs): 3.264044 sd (statsmodels' TTestPower
    # effect size for nobs 3) = 0.03264.
    c = stats.paired_comparison([0.80, 0.82, 0.84], [0.78, 0.79, 0.80])
    t = 0.03 / (0.01 / math.sqrt(3))
    assert c.n_pairs == 3 and c.delta == pytest.approx(0.03)
    assert c.p_value == pytest.approx(1 - t / math.sqrt(2 + t * t))
    assert c.p_value == pytest.approx(0.035099, abs=1e-6)
    assert c.ci_low == pytest.approx(0.03 - T2 * 0.01 / math.sqrt(3))
    assert c.ci_high == pytest.approx(0.03 + T2 * 0.01 / math.sqrt(3))
    assert c.p_improvement == pytest.approx(8.5 / 9)
    assert c.detectable == pytest.approx(0.03264044, rel=1e-4)
    assert c.verdict == "better"  # unadjusted: a family of one


def test_detectable_difference_matches_statsmodels():
    from statsmodels.stats.power import TTestPower

    for n in (2, 3, 5, 10):
        effect = TTestPower().solve_power(nobs=n, alpha=0.05, power=0.8, alternative="two-sided")
        assert stats.detectable_difference(1 / math.sqrt(n), n - 1) == pytest.approx(effect, rel=1e-4)


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


def test_average_interval_is_a_welch_satterthwaite_t_interval():
    # task A seeds 0.6, 0.8 and task B seeds 0.4 (one seed): the average is (0.7 + 0.4) / 2 = 0.55; only A
    # has a variance: s^2 / n = 0.02 / 2 = 0.01, se = sqrt(0.01) / 2 = 0.05, 1 degree of freedom (t 12.706)
    interval = stats.average_ci([[0.6, 0.8], [0.4]])
    t1 = 12.706204736174696
    assert interval.mean == pytest.approx(0.55) and interval.n == 1
    assert interval.low == pytest.approx(0.55 - t1 * 0.05) and interval.high == pytest.approx(0.55 + t1 * 0.05)
    assert math.isnan(stats.average_ci([[0.6], [0.4]]).low)  # one seed everywhere: no interval


def test_paired_average_comparison_tests_the_average_difference_and_agrees_with_its_interval():
    x = [[0.80, 0.82, 0.84], [0.60, 0.61, 0.62]]
    y = [[0.78, 0.79, 0.80], [0.60, 0.60, 0.60]]
    c = stats.paired_average_comparison(x, y)
    # differences: task 1 0.02, 0.03, 0.04; task 2 0, 0.01, 0.02 (each sd 0.01, s^2/n = 1e-4/3); average
    # 0.02 with se = sqrt(2e-4/3) / 2 = 0.0040825, Welch-Satterthwaite df = (2v)^2 / (2 v^2 / 2) = 4
    se = math.sqrt(2e-4 / 3) / 2
    t4 = 2.7764451051977987
    assert c.delta == pytest.approx(0.02)
    assert c.ci_low == pytest.approx(0.02 - t4 * se) and c.ci_high == pytest.approx(0.02 + t4 * se)
    from scipy import stats as sps

    assert c.p_value == pytest.approx(2 * sps.t.sf(0.02 / se, 4))
    assert c.n_pairs == 3 and c.ci_low > 0 and c.p_value < 0.05 and c.verdict == "better"


def test_interval_and_p_value_agree_on_random_data():
    rng = np.random.default_rng(1)
    for _ in range(200):
        n = int(rng.integers(2, 8))
        c = stats.paired_comparison(rng.normal(0.3, 1, n), rng.normal(0, 1, n))
        assert (c.ci_low > 0 or c.ci_high < 0) == (c.p_value < stats.ALPHA)
        xs = [rng.normal(0.3, s, n) for s in (0.5, 1, 2)]
        ys = [rng.normal(0, s, n) for s in (0.5, 1, 2)]
        a = stats.paired_average_comparison(xs, ys)
        assert (a.ci_low > 0 or a.ci_high < 0) == (a.p_value < stats.ALPHA)


def test_an_average_over_tasks_with_different_seed_sets_keeps_each_tasks_pairs():
    # task 1 has seeds 42, 64, 128; task 2 only 42 and 64: each task's differences enter with their own n
    x = [[0.80, 0.82, 0.90], [0.60, 0.62]]
    y = [[0.78, 0.79, 0.70], [0.60, 0.61]]
    c = stats.paired_average_comparison(x, y, seeds=[[42, 64, 128], [42, 64]])
    assert c.n_pairs == 2 and c.delta == pytest.approx((np.mean([0.02, 0.03, 0.2]) + 0.005) / 2)
    # P(X > Y) compares the per-seed averages over the seeds every task has (42 and 64): x 0.70, 0.72 and
    # y 0.69, 0.70: 0.70 beats 0.69 and ties 0.70, 0.72 beats both -> 3.5 / 4
    assert c.p_improvement == pytest.approx(0.875)
    assert math.isnan(stats.paired_average_comparison(x, y, seeds=[[42, 64, 128], [128, 256]]).p_improvement)


def test_holm_and_benjamini_hochberg_on_a_hand_worked_family():
    # p = 0.01, 0.04, 0.03, 0.005. Holm: sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 = 0.02, 0.03, 0.06,
    # 0.04, made non-decreasing: 0.02, 0.03, 0.06, 0.06. BH: sorted times 4/1, 4/2, 4/3, 4/4 = 0.02, 0.02,
    # 0.04, 0.04, made non-increasing from the top: the same. NaN is not in the family.
    p = [0.01, 0.04, 0.03, 0.005, math.nan]
    holm = stats.adjust_p(p, "holm")
    assert list(holm[:4]) == pytest.approx([0.03, 0.06, 0.06, 0.02]) and math.isnan(holm[4])
    assert list(stats.adjust_p(p, "bh")[:4]) == pytest.approx([0.02, 0.04, 0.04, 0.02])
    assert list(stats.adjust_p(p, "none")[:4]) == pytest.approx(p[:4])
    with pytest.raises(ValueError):
        stats.adjust_p(p, "bonferroni")
    # verdicts follow the adjusted value: 0.04 and 0.03 are below 0.05 raw, not after Holm
    comparisons = [stats.Comparison(3, d, 0.0, 0.0, pv, 0.5, "better") for d, pv in zip((1, 1, -1, 1), p[:4])]
    adjusted = stats.adjust_comparisons(comparisons, "holm")
    assert [c.verdict for c in adjusted] == ["better", "tied", "tied", "better"]
    assert [c.p_value for c in adjusted] == p[:4]  # the raw value is kept


def test_the_verdict_rule_is_one_sentence_per_adjustment():
    assert "Holm-adjusted" in stats.verdict_rule("holm") and "below 0.05" in stats.verdict_rule()
    assert "Benjamini-Hochberg" in stats.verdict_rule("bh") and "unadjusted" in stats.verdict_rule("none")
    assert stats.verdict(0.01, 0.5) == "better" and stats.verdict(0.01, 0.5, higher_is_better=False) == "worse"
    assert stats.verdict(0.2, 0.5) == "tied" and stats.verdict(math.nan, 0.5) == "tied"


def test_seed_and_item_bootstrap_pairs_items_and_covers_both_sources():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 400)
    # x is right on 80% of the items, y on 70%, each seed flipping a few other items
    def preds(acc, seed):
        r = np.random.default_rng(seed)
        return np.where(r.random(400) < acc, labels, 1 - labels)

    def accuracy(lab, pred):
        return float(np.mean(lab == pred))

    xs = [preds(0.8, s) for s in (1, 2, 3)]
    ys = [preds(0.7, s + 10) for s in (1, 2, 3)]
    c = stats.item_seed_bootstrap(xs, ys, labels, accuracy, n_resamples=300)
    assert c.interval_source == stats.ITEM_INTERVAL_METHOD and c.n_pairs == 3
    assert 0.05 < c.delta < 0.15 and c.ci_low > 0 and c.verdict == "better"
    same = stats.item_seed_bootstrap(xs, xs, labels, accuracy, n_resamples=100)
    assert same.delta == 0 and same.ci_low == 0 == same.ci_high and same.verdict == "tied"
