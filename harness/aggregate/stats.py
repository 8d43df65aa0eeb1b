"""Uncertainty over seeds (and, where records keep their predictions, over test items): Student-t
intervals, paired comparisons, adjusted p-values, detectable differences. numpy, scipy, statsmodels.

Method (docs/statistics.md says the same at length; README "Reading the leaderboard" in short):

- A cell's interval is the Student-t 95% interval of the mean over seeds: mean +- t(0.975, n-1) s/sqrt(n).
  The percentile bootstrap it replaces lies strictly inside the range of the n values and covered the
  mean about 67% of the time at 3 seeds (bench/bench_interval_coverage.py measures every interval the
  tables show). One seed has no interval (NaN; the tables print "1 seed").
- A multi-task average's interval (``average_ci``) is the t interval of the mean of the task means:
  its variance is the sum of the task means' variances / T^2, its degrees of freedom
  Welch-Satterthwaite's. A task with one seed adds its value and no variance.
- A paired comparison of a configuration against a baseline uses the seeds both have: the mean
  difference, the t interval of the per-seed differences, the paired t-test p-value (the interval
  excludes 0 exactly when p < 0.05), and the probability of improvement P(X > Y) of rliable (Agarwal
  et al., 2021; ties counting one half). The average's comparison is the same t test on the average
  of the per-task differences (Welch-Satterthwaite df), so its interval and p-value agree too.
- The comparisons of one table against its baseline form a family: their p-values are adjusted
  (``adjust_p``: Holm by default, Benjamini-Hochberg or none), and the verdict uses the adjusted value
  (``verdict``; the sentence the tables print is ``verdict_rule``).
- ``detectable_difference``: the smallest true difference the seeds at hand would detect with 80% power
  in a two-sided paired t-test at the table's alpha, from the observed spread of the differences.
- ``item_seed_bootstrap``: with per-example predictions of both configurations (same test items, same
  seeds), a bootstrap over seeds and items of the paired difference of the metric.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np
from scipy import stats as _scipy_stats

CONFIDENCE = 0.95
ALPHA = 1.0 - CONFIDENCE  # the level of a better/worse verdict (after adjustment)
POWER = 0.8  # of the detectable difference
P_ADJUST_METHODS = ("holm", "bh", "none")
DEFAULT_P_ADJUST = "holm"
N_RESAMPLES = 2000  # of the seed-and-item bootstrap
RANDOM_SEED = 0

INTERVAL_METHOD = "Student-t 95% interval over seeds"
ITEM_INTERVAL_METHOD = "95% bootstrap over seeds and test items"
_ADJUST_NAMES = {"holm": "Holm-adjusted", "bh": "Benjamini-Hochberg-adjusted", "none": "unadjusted"}


def verdict_rule(p_adjust: str = DEFAULT_P_ADJUST, alpha: float = ALPHA) -> str:
    """The one sentence that states how ▲ / ▼ / ≈ are decided: every legend, caption and CSV prints
    exactly this text (``verdict`` applies it)."""
    check_p_adjust(p_adjust)
    family = "" if p_adjust == "none" else " over all comparisons with the baseline in this table"
    return (f"▲ better / ▼ worse when the paired t-test's p-value, {_ADJUST_NAMES[p_adjust]}{family}, is below "
            f"{alpha:g}; ≈ tied otherwise (also when the differences have no variance).")


def check_p_adjust(method: str) -> str:
    if method not in P_ADJUST_METHODS:
        raise ValueError(f"p-value adjustment {method!r}: valid are {', '.join(P_ADJUST_METHODS)}")
    return method


@dataclass(frozen=True)
class Interval:
    mean: float
    low: float
    high: float
    n: int
    df: float = math.nan  # the t distribution's degrees of freedom
    se: float = math.nan  # standard error of the mean

    @property
    def has_ci(self) -> bool:
        return self.n >= 2 and not (math.isnan(self.low) or math.isnan(self.high))


@dataclass(frozen=True)
class Comparison:
    n_pairs: int
    delta: float  # mean over shared seeds of (configuration - baseline)
    ci_low: float
    ci_high: float
    p_value: float  # raw paired t-test
    p_improvement: float
    verdict: str  # better | worse | tied | n/a (fewer than two shared seeds); from p_adjusted
    p_adjusted: float = math.nan  # set by the table's adjustment (adjust_comparisons); raw until then
    detectable: float = math.nan  # smallest difference detectable with POWER at ALPHA (same units as delta)
    interval_source: str = INTERVAL_METHOD
    higher_is_better: bool = True


def _values(values: Sequence[float] | np.ndarray) -> np.ndarray:
    array = np.asarray(values, dtype=float).ravel()
    return array[np.isfinite(array)]


def _t_interval(mean: float, se: float, df: float, n: int, confidence: float) -> Interval:
    if se == 0:
        return Interval(mean, mean, mean, n, df, 0.0)
    q = float(_scipy_stats.t.ppf(0.5 + confidence / 2.0, df))
    return Interval(mean, mean - q * se, mean + q * se, n, df, se)


def mean_ci(values: Sequence[float] | np.ndarray, confidence: float = CONFIDENCE) -> Interval:
    """Mean over seeds with its Student-t interval; NaN bounds for fewer than two values."""
    x = _values(values)
    n = len(x)
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, 0)
    mean = float(x.mean())
    if n == 1:
        return Interval(mean, math.nan, math.nan, 1)
    return _t_interval(mean, float(x.std(ddof=1)) / math.sqrt(n), n - 1, n, confidence)


def average_ci(per_task: Sequence[Sequence[float] | np.ndarray], confidence: float = CONFIDENCE) -> Interval:
    """The mean over tasks of the per-task seed means with a t interval: the task means are independent,
    so the average's variance is sum(s_t^2 / n_t) / T^2, with Welch-Satterthwaite degrees of freedom.
    ``n`` is the smallest number of seeds of any task; no interval when every task has one seed (a task
    with one seed adds its value and no variance)."""
    tasks = [_values(v) for v in per_task]
    if not tasks or any(len(t) == 0 for t in tasks):
        return Interval(math.nan, math.nan, math.nan, 0)
    k = len(tasks)
    mean = float(np.mean([t.mean() for t in tasks]))
    n_min = min(len(t) for t in tasks)
    varied = [t for t in tasks if len(t) >= 2]
    if not varied:
        return Interval(mean, math.nan, math.nan, 1)
    v = np.array([t.var(ddof=1) / len(t) for t in varied])
    dfs = np.array([len(t) - 1 for t in varied], dtype=float)
    total = float(v.sum())
    if total == 0:
        return Interval(mean, mean, mean, n_min, float(dfs.sum()), 0.0)
    df = total**2 / float(np.sum(v**2 / dfs))
    return _t_interval(mean, math.sqrt(total) / k, df, n_min, confidence)


def _p_from_t(mean: float, se: float, df: float) -> float:
    if se == 0:
        return 1.0 if mean == 0 else math.nan
    return float(2.0 * _scipy_stats.t.sf(abs(mean / se), df))


def verdict(p_value: float, delta: float, higher_is_better: bool = True, alpha: float = ALPHA) -> str:
    """better / worse when ``p_value`` (the adjusted one in the tables) is below ``alpha``; tied
    otherwise, also without a p-value (differences without variance); n/a without a difference."""
    if delta is None or math.isnan(delta):
        return "n/a"
    if p_value is None or math.isnan(p_value) or p_value >= alpha or delta == 0:
        return "tied"
    return "better" if (delta > 0) == higher_is_better else "worse"


def detectable_difference(se: float, df: float, alpha: float = ALPHA, power: float = POWER) -> float:
    """The smallest true difference a two-sided t-test with standard error ``se`` and ``df`` degrees of
    freedom detects with probability ``power`` at level ``alpha`` (noncentral t; statsmodels'
    TTestPower gives the same for a one-sample test): delta = nc * se, where
    P(|T'| > t(1 - alpha/2, df)) = power for T' ~ nct(df, nc)."""
    if se is None or df is None or not math.isfinite(se) or not math.isfinite(df) or df <= 0:
        return math.nan
    if se == 0:
        return 0.0
    # the noncentrality changes slowly with df: a Welch-Satterthwaite df is rounded to 0.1 for the cache
    return _noncentrality(round(float(df), 1), float(alpha), float(power)) * se


@functools.lru_cache(maxsize=1024)
def _noncentrality(df: float, alpha: float, power: float) -> float:
    """The noncentrality at which a two-sided t-test with ``df`` degrees of freedom has ``power``. The
    power is averaged over the chi-square of the variance estimate at 4000 equal-probability points
    (scipy's nct loses precision at one degree of freedom and large noncentralities):
    T' = (Z + nc) / sqrt(V / df)."""
    from scipy.optimize import brentq
    from scipy.special import ndtr

    crit = float(_scipy_stats.t.ppf(1 - alpha / 2, df))
    v = _scipy_stats.chi2.ppf((np.arange(4000) + 0.5) / 4000, df)
    s = crit * np.sqrt(v / df)

    def achieved(nc: float) -> float:
        return float(np.mean(ndtr(nc - s) + ndtr(-s - nc)))

    high = 4.0
    while achieved(high) < power:
        high *= 2
    return float(brentq(lambda nc: achieved(nc) - power, 0.0, high, xtol=1e-8))


def paired_comparison(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray,
                      higher_is_better: bool = True, confidence: float = CONFIDENCE) -> Comparison:
    """``x`` (a configuration) against ``y`` (the baseline), aligned by seed: ``x[i]`` and ``y[i]`` are
    the same seed. Pairs with a missing value on either side are dropped. The verdict is the raw
    p-value's until the table adjusts it (``adjust_comparisons``)."""
    a, b = np.asarray(x, dtype=float).ravel(), np.asarray(y, dtype=float).ravel()
    if a.shape != b.shape:
        raise ValueError(f"paired samples must have the same length, got {a.shape} and {b.shape}")
    keep = np.isfinite(a) & np.isfinite(b)
    a, b = a[keep], b[keep]
    n = len(a)
    if n == 0:
        return Comparison(0, math.nan, math.nan, math.nan, math.nan, math.nan, "n/a",
                          higher_is_better=higher_is_better)
    d = a - b
    interval = mean_ci(d, confidence)
    if n < 2:
        return Comparison(n, interval.mean, math.nan, math.nan, math.nan, math.nan, "n/a",
                          higher_is_better=higher_is_better)
    # equal differences: all zero (p = 1) or the same non-zero shift, for which no p-value is claimed
    p_value = _p_from_t(interval.mean, interval.se, interval.df)
    # one pair gives 0, 1/2 or 1: not an estimate of a probability worth printing
    # Mann-Whitney's U / (n m): the share of (x, y) pairs with x higher, ties counting half
    p_improvement = float(np.mean((a[:, None] > b[None, :]) + 0.5 * (a[:, None] == b[None, :])))
    if not higher_is_better:
        p_improvement = 1.0 - p_improvement
    return Comparison(n, interval.mean, interval.low, interval.high, p_value, p_improvement,
                      verdict(p_value, interval.mean, higher_is_better), p_value,
                      detectable_difference(interval.se, interval.df, 1 - confidence), INTERVAL_METHOD,
                      higher_is_better)


def paired_average_comparison(x_tasks: Sequence[Sequence[float]], y_tasks: Sequence[Sequence[float]],
                              higher_is_better: bool = True, confidence: float = CONFIDENCE,
                              seeds: Sequence[Sequence[int]] | None = None) -> Comparison:
    """The multi-task average of ``x`` against ``y``: per task the per-seed differences over the shared
    seeds (each pair of lists aligned by seed); the average of the task mean differences with its t
    interval (``average_ci``) and the t-test of that same statistic, so that interval and p-value agree.
    P(X > Y) compares the per-seed task averages: with ``seeds`` (each task's seeds, aligned with its
    lists) over the seeds every task has (NaN when fewer than two); without, only when every task has
    as many pairs (then taken as the same seeds)."""
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
        return Comparison(0, math.nan, math.nan, math.nan, math.nan, math.nan, "n/a",
                          higher_is_better=higher_is_better)
    interval = average_ci(diffs, confidence)
    n_pairs = min(len(d) for d in diffs)
    if not interval.has_ci and not (interval.se == 0 and n_pairs >= 2):
        return Comparison(n_pairs, interval.mean, math.nan, math.nan, math.nan, math.nan, "n/a",
                          higher_is_better=higher_is_better)
    p_value = _p_from_t(interval.mean, interval.se, interval.df)
    p_improvement = math.nan
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
        p_improvement = paired_comparison(per_seed[0], per_seed[1], higher_is_better, confidence).p_improvement
    return Comparison(n_pairs, interval.mean, interval.low, interval.high, p_value, p_improvement,
                      verdict(p_value, interval.mean, higher_is_better), p_value,
                      detectable_difference(interval.se, interval.df, 1 - confidence), INTERVAL_METHOD,
                      higher_is_better)


def adjust_p(p_values: Sequence[float], method: str = DEFAULT_P_ADJUST) -> np.ndarray:
    """The family's p-values adjusted for multiple comparisons (statsmodels' multipletests: ``holm`` is
    Holm's step-down, ``bh`` Benjamini-Hochberg's false discovery rate); NaN stays NaN and is not counted
    in the family."""
    check_p_adjust(method)
    p = np.asarray(p_values, dtype=float)
    out = p.copy()
    finite = np.isfinite(p)
    if method == "none" or not finite.any():
        return out
    from statsmodels.stats.multitest import multipletests

    out[finite] = multipletests(p[finite], alpha=ALPHA, method={"holm": "holm", "bh": "fdr_bh"}[method])[1]
    return out


def adjust_comparisons(comparisons: Sequence[Comparison], method: str = DEFAULT_P_ADJUST) -> list[Comparison]:
    """One family (one table against its baseline): each comparison with its adjusted p-value and the
    verdict that value gives."""
    adjusted = adjust_p([c.p_value for c in comparisons], method)
    return [replace(c, p_adjusted=float(p), verdict=(verdict(float(p), c.delta, c.higher_is_better)
                                                     if c.verdict != "n/a" else "n/a"))
            for c, p in zip(comparisons, adjusted)]


def item_seed_bootstrap(x_preds: Sequence[np.ndarray], y_preds: Sequence[np.ndarray], labels: np.ndarray,
                        metric: Callable[[np.ndarray, np.ndarray], float], higher_is_better: bool = True,
                        confidence: float = CONFIDENCE, n_resamples: int = N_RESAMPLES,
                        seed: int = RANDOM_SEED) -> Comparison:
    """The paired difference of ``metric`` between two configurations whose predictions of the same test
    items (``labels``) are kept per seed (``x_preds[i]`` and ``y_preds[i]`` are seed i's), with an
    interval from resampling the seeds and, independently, the test items (the same item resample for
    both configurations, so the comparison stays paired). The p-value is the two-sided bootstrap
    p-value (twice the smaller share of resampled differences on one side of 0, at least 1/(B+1))."""
    xs = [np.asarray(p) for p in x_preds]
    ys = [np.asarray(p) for p in y_preds]
    labels = np.asarray(labels)
    n, m = len(xs), len(labels)
    if n == 0 or n != len(ys) or m == 0:
        return Comparison(0, math.nan, math.nan, math.nan, math.nan, math.nan, "n/a",
                          interval_source=ITEM_INTERVAL_METHOD, higher_is_better=higher_is_better)
    observed = float(np.mean([metric(labels, x) - metric(labels, y) for x, y in zip(xs, ys)]))
    rng = np.random.default_rng(seed)
    deltas = np.empty(n_resamples)
    for b in range(n_resamples):
        seeds = rng.integers(0, n, size=n)
        items = rng.integers(0, m, size=m)
        lab = labels[items]
        deltas[b] = np.mean([metric(lab, xs[s][items]) - metric(lab, ys[s][items]) for s in seeds])
    alpha = (1 - confidence) / 2
    low, high = (float(v) for v in np.quantile(deltas, [alpha, 1 - alpha]))
    p_value = min(1.0, max(2 * min(np.mean(deltas <= 0), np.mean(deltas >= 0)), 1.0 / (n_resamples + 1)))
    return Comparison(n, observed, low, high, float(p_value), math.nan, verdict(p_value, observed, higher_is_better),
                      float(p_value), math.nan, ITEM_INTERVAL_METHOD, higher_is_better)
