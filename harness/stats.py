"""Uncertainty over seeds: bootstrap confidence intervals and paired comparisons. numpy and scipy only.

Method (the README's "Statistics" section says the same):

- A cell's interval is a 95% percentile bootstrap of the mean over seeds. With few seeds (n**n at most
  ``EXACT_LIMIT`` resamples, i.e. up to 5 seeds) every resample is enumerated, so the interval is the
  exact bootstrap distribution's 2.5% and 97.5% quantiles (numpy's linear interpolation) and does not
  depend on a random state; above that ``scipy.stats.bootstrap`` (percentile method, a fixed seed).
  One seed has no interval (NaN; the tables print "1 seed").
- A multi-task average resamples the seeds within each task independently and averages the task means
  of each resample (``average_ci``); a task with one seed contributes its single value.
- A paired comparison of a configuration against a baseline uses the seeds both have: the mean
  difference, a paired bootstrap interval of it (the same bootstrap applied to the per-seed
  differences), the paired t-test p-value (``scipy.stats.ttest_rel``), and the probability of
  improvement P(X > Y) of rliable (Agarwal et al., 2021): the share of (seed of X, seed of Y) pairs
  in which X scores higher, ties counting one half (``scipy.stats.mannwhitneyu``'s U / (n m)).
  The t-test rather than the Wilcoxon signed-rank test: with 3 seeds the exact Wilcoxon test cannot go
  below p = 0.25, so it could never tell any two methods apart at this budget, while the t-test can
  (it assumes roughly normal seed-to-seed differences, the usual assumption for seed noise).
- A difference whose interval includes 0 is "tied"; "better" / "worse" only when the whole interval
  lies on one side (taking the metric's direction into account).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as _scipy_stats

CONFIDENCE = 0.95
ALPHA = 1.0 - CONFIDENCE  # the paired test's level for a better/worse verdict
EXACT_LIMIT = 3125  # 5**5: enumerate every resample up to five seeds
N_RESAMPLES = 9999
RANDOM_SEED = 0


@dataclass(frozen=True)
class Interval:
    mean: float
    low: float
    high: float
    n: int

    @property
    def has_ci(self) -> bool:
        return self.n >= 2 and not (math.isnan(self.low) or math.isnan(self.high))


@dataclass(frozen=True)
class Comparison:
    n_pairs: int
    delta: float  # mean over shared seeds of (configuration - baseline)
    ci_low: float
    ci_high: float
    p_value: float
    p_improvement: float
    verdict: str  # better | worse | tied | n/a (fewer than two shared seeds)


def _values(values: Sequence[float] | np.ndarray) -> np.ndarray:
    array = np.asarray(values, dtype=float).ravel()
    return array[np.isfinite(array)]


def _exact_bootstrap_means(x: np.ndarray) -> np.ndarray:
    """The mean of every one of the n**n resamples with replacement (the exact bootstrap distribution)."""
    n = len(x)
    idx = np.array(list(itertools.product(range(n), repeat=n)), dtype=int)
    return x[idx].mean(axis=1)


def _quantiles(means: np.ndarray, confidence: float) -> tuple[float, float]:
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return float(low), float(high)


def mean_ci(values: Sequence[float] | np.ndarray, confidence: float = CONFIDENCE) -> Interval:
    """Mean over seeds with a percentile bootstrap interval; NaN bounds for fewer than two values."""
    x = _values(values)
    n = len(x)
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, 0)
    mean = float(x.mean())
    if n == 1:
        return Interval(mean, math.nan, math.nan, 1)
    if np.all(x == x[0]):
        return Interval(mean, mean, mean, n)
    if n**n <= EXACT_LIMIT:
        low, high = _quantiles(_exact_bootstrap_means(x), confidence)
    else:
        res = _scipy_stats.bootstrap((x,), np.mean, confidence_level=confidence, n_resamples=N_RESAMPLES,
                                     method="percentile", random_state=np.random.default_rng(RANDOM_SEED))
        low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
    return Interval(mean, low, high, n)


def average_ci(per_task: Sequence[Sequence[float] | np.ndarray], confidence: float = CONFIDENCE,
               n_resamples: int = N_RESAMPLES) -> Interval:
    """The mean over tasks of the per-task seed means, with an interval from resampling seeds within
    each task (independently) and averaging the task means of each resample. ``n`` is the smallest
    number of seeds of any task; no interval when every task has one seed."""
    tasks = [_values(v) for v in per_task]
    if not tasks or any(len(t) == 0 for t in tasks):
        return Interval(math.nan, math.nan, math.nan, 0)
    mean = float(np.mean([t.mean() for t in tasks]))
    n_min = min(len(t) for t in tasks)
    if all(len(t) == 1 for t in tasks):
        return Interval(mean, math.nan, math.nan, 1)
    rng = np.random.default_rng(RANDOM_SEED)
    total = np.zeros(n_resamples)
    for t in tasks:
        picks = rng.integers(0, len(t), size=(n_resamples, len(t)))
        total += t[picks].mean(axis=1)
    low, high = _quantiles(total / len(tasks), confidence)
    return Interval(mean, low, high, n_min)


def verdict(ci_low: float, ci_high: float, higher_is_better: bool = True, p_value: float = math.nan) -> str:
    """better / worse only when the interval excludes 0 AND the paired test agrees (p < ALPHA); tied
    otherwise. The percentile bootstrap of 2-5 seeds is narrow (with 3 seeds it excludes 0 whenever the
    three differences share a sign, which two equal methods do one time in four), so the t-test, which
    accounts for the few seeds through its degrees of freedom, must agree. A NaN p-value (differences
    without variance, or an average whose tasks share fewer than two seeds) leaves the interval to decide."""
    if math.isnan(ci_low) or math.isnan(ci_high):
        return "n/a"
    if not math.isnan(p_value) and p_value >= ALPHA:
        return "tied"
    if ci_low > 0:
        return "better" if higher_is_better else "worse"
    if ci_high < 0:
        return "worse" if higher_is_better else "better"
    return "tied"


def paired_comparison(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray,
                      higher_is_better: bool = True, confidence: float = CONFIDENCE) -> Comparison:
    """``x`` (a configuration) against ``y`` (the baseline), aligned by seed: ``x[i]`` and ``y[i]`` are
    the same seed. Pairs with a missing value on either side are dropped."""
    a, b = np.asarray(x, dtype=float).ravel(), np.asarray(y, dtype=float).ravel()
    if a.shape != b.shape:
        raise ValueError(f"paired samples must have the same length, got {a.shape} and {b.shape}")
    keep = np.isfinite(a) & np.isfinite(b)
    a, b = a[keep], b[keep]
    n = len(a)
    if n == 0:
        return Comparison(0, math.nan, math.nan, math.nan, math.nan, math.nan, "n/a")
    d = a - b
    interval = mean_ci(d, confidence)
    p_value = math.nan
    if n >= 2:
        if np.all(d == d[0]):
            # ttest_rel is undefined without variance: equal differences are all zero (p = 1) or all the
            # same non-zero shift, for which no p-value is claimed
            p_value = 1.0 if d[0] == 0 else math.nan
        else:
            p_value = float(_scipy_stats.ttest_rel(a, b).pvalue)
    # one pair gives 0, 1/2 or 1: not an estimate of a probability worth printing
    p_improvement = math.nan
    if n >= 2:
        p_improvement = float(_scipy_stats.mannwhitneyu(a, b, alternative="two-sided").statistic / (n * n))
        if not higher_is_better:
            p_improvement = 1.0 - p_improvement
    return Comparison(n, interval.mean, interval.low, interval.high, p_value, p_improvement,
                      verdict(interval.low, interval.high, higher_is_better, p_value) if n >= 2 else "n/a")


def paired_average_comparison(x_tasks: Sequence[Sequence[float]], y_tasks: Sequence[Sequence[float]],
                              higher_is_better: bool = True, confidence: float = CONFIDENCE,
                              seeds: Sequence[Sequence[int]] | None = None) -> Comparison:
    """The multi-task average of ``x`` against ``y``: per task the per-seed differences over the shared
    seeds (each pair of lists aligned by seed), resampled within tasks for the interval. The p-value is
    the paired t-test over seeds of the per-seed task averages, and P(X > Y) compares those averages:
    with ``seeds`` (each task's seeds, aligned with its lists) over the seeds every task has (NaN when
    fewer than two); without, only when every task has as many pairs (then taken as the same seeds)."""
    diffs, xa, ya, kept_seeds = [], [], [], []
    for t, (xs, ys) in enumerate(zip(x_tasks, y_tasks)):
        a, b = np.asarray(xs, dtype=float), np.asarray(ys, dtype=float)
        keep = np.isfinite(a) & np.isfinite(b)
        diffs.append(a[keep] - b[keep])
        xa.append(a[keep])
        ya.append(b[keep])
        if seeds is not None:
            kept_seeds.append([int(s) for s, k in zip(seeds[t], keep) if k])
    if not diffs or any(len(d) == 0 for d in diffs):
        return Comparison(0, math.nan, math.nan, math.nan, math.nan, math.nan, "n/a")
    interval = average_ci(diffs, confidence)
    n_pairs = min(len(d) for d in diffs)
    p_value = p_improvement = math.nan
    per_seed: tuple[np.ndarray, np.ndarray] | None = None
    if seeds is not None:
        common = sorted(set.intersection(*(set(s) for s in kept_seeds)))
        if len(common) >= 2:
            rows = [[list(s).index(seed) for seed in common] for s in kept_seeds]
            per_seed = (np.mean([a[r] for a, r in zip(xa, rows)], axis=0),
                        np.mean([b[r] for b, r in zip(ya, rows)], axis=0))
    elif len({len(d) for d in diffs}) == 1:
        per_seed = np.mean(xa, axis=0), np.mean(ya, axis=0)
    if per_seed is not None:
        whole = paired_comparison(per_seed[0], per_seed[1], higher_is_better, confidence)
        p_value, p_improvement = whole.p_value, whole.p_improvement
    return Comparison(n_pairs, interval.mean, interval.low, interval.high, p_value, p_improvement,
                      verdict(interval.low, interval.high, higher_is_better, p_value) if n_pairs >= 2 else "n/a")
