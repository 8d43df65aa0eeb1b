"""Coverage of every interval the tables show, by simulation (no records, no torch).

For n = 2, 3, 5, 10 seeds and three kinds of seed noise (normal, lognormal (sigma 0.5), exponential;
the skewed ones centred on their mean) it draws many tables and counts how often each interval holds
the true value:

- cell: a task's mean over seeds (``stats.mean_ci``);
- average: the mean over 6 tasks of unequal noise (``stats.average_ci``);
- paired: a configuration minus the baseline over shared seeds (``stats.paired_comparison``; the
  differences of two independently noisy runs);
- paired average: the same over 6 tasks (``stats.paired_average_comparison``).

It also prints the old percentile bootstrap's cell coverage for comparison, and the false-positive
rate of the verdict (two equal methods declared different) per test and with Holm over a family of 42.

    python bench/bench_interval_coverage.py [--reps 4000]

Goal: every interval >= 0.93 at nominal 0.95.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.aggregate import stats  # noqa: E402

TASK_SCALES = np.array([0.5, 1.0, 1.0, 2.0, 3.0, 4.0])  # six tasks of unequal seed noise (points)


def noise(kind: str, rng: np.random.Generator, size) -> np.ndarray:
    """Zero-mean noise of unit standard deviation."""
    if kind == "normal":
        return rng.standard_normal(size)
    if kind == "lognormal":
        s = 0.5
        mean, sd = np.exp(s * s / 2), np.sqrt((np.exp(s * s) - 1) * np.exp(s * s))
        return (rng.lognormal(0.0, s, size) - mean) / sd
    if kind == "exponential":
        return rng.exponential(1.0, size) - 1.0
    raise ValueError(kind)


def _bootstrap_cell(x: np.ndarray) -> tuple[float, float]:
    """The old interval: exact percentile bootstrap (up to 5 seeds), else 2000 random resamples."""
    n = len(x)
    if n**n <= 3125:
        idx = np.array(list(itertools.product(range(n), repeat=n)))
    else:
        idx = np.random.default_rng(0).integers(0, n, size=(2000, n))
    means = x[idx].mean(axis=1)
    low, high = np.quantile(means, [0.025, 0.975])
    return float(low), float(high)


def covered(interval, truth: float) -> bool:
    return interval.low <= truth <= interval.high


def run(n: int, kind: str, reps: int, rng: np.random.Generator) -> dict[str, float]:
    hits = dict.fromkeys(("cell", "average", "paired", "paired average", "old bootstrap cell"), 0)
    for _ in range(reps):
        cell = 60.0 + noise(kind, rng, n)
        hits["cell"] += covered(stats.mean_ci(cell), 60.0)
        hits["old bootstrap cell"] += (lambda lo_hi: lo_hi[0] <= 60.0 <= lo_hi[1])(_bootstrap_cell(cell))
        tasks = [50.0 + 10 * t + s * noise(kind, rng, n) for t, s in enumerate(TASK_SCALES)]
        hits["average"] += covered(stats.average_ci(tasks), float(np.mean(50.0 + 10 * np.arange(6))))
        x, y = 61.0 + noise(kind, rng, n), 60.0 + noise(kind, rng, n)
        c = stats.paired_comparison(x, y)
        hits["paired"] += c.ci_low <= 1.0 <= c.ci_high
        xs = [51.0 + s * noise(kind, rng, n) for s in TASK_SCALES]
        ys = [50.0 + s * noise(kind, rng, n) for s in TASK_SCALES]
        c = stats.paired_average_comparison(xs, ys)
        hits["paired average"] += c.ci_low <= 1.0 <= c.ci_high
    return {k: v / reps for k, v in hits.items()}


def false_positives(n: int, reps: int, rng: np.random.Generator, family: int = 42) -> tuple[float, float]:
    """Share of single tests and of whole families (any test) calling two equal methods different."""
    single = any_raw = any_holm = 0
    for _ in range(reps):
        ps = []
        for _ in range(family):
            c = stats.paired_comparison(60.0 + rng.standard_normal(n), 60.0 + rng.standard_normal(n))
            ps.append(c.p_value)
        ps = np.array(ps)
        single += np.mean(ps < stats.ALPHA)
        any_raw += bool((ps < stats.ALPHA).any())
        any_holm += bool((stats.adjust_p(ps, "holm") < stats.ALPHA).any())
    return single / reps, any_raw / reps, any_holm / reps


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=4000)
    parser.add_argument("--seed", type=int, default=20261207)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    names = ("cell", "average", "paired", "paired average", "old bootstrap cell")
    print(f"coverage of nominal 95% intervals, {args.reps} simulated tables each (goal >= 0.93)")
    print(f"{'noise':<12}{'n':>3}  " + "".join(f"{h:>20}" for h in names))
    worst = 1.0
    for kind in ("normal", "lognormal", "exponential"):
        for n in (2, 3, 5, 10):
            result = run(n, kind, args.reps, rng)
            worst = min(worst, *(result[k] for k in names[:4]))
            print(f"{kind:<12}{n:>3}  " + "".join(f"{result[k]:>20.3f}" for k in names))
    print(f"lowest coverage of the intervals the tables show: {worst:.3f} "
          f"({'meets' if worst >= 0.93 else 'MISSES'} the goal 0.93)")
    print("false positives of the verdict between equal methods (normal noise, families of 42 tests):")
    for n in (3, 5):
        single, fam_raw, fam_holm = false_positives(n, max(200, args.reps // 20), rng)
        print(f"  n={n}: per test {single:.3f}; a family with any ▲/▼: unadjusted {fam_raw:.3f}, Holm {fam_holm:.3f}")
    return 0 if worst >= 0.93 else 1


if __name__ == "__main__":
    sys.exit(main())
