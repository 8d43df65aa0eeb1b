"""Rewrite tests/slow_tests.txt from a measured test run, so that the fast lane stays fast.

    python -m pytest tests --durations=0 -q > durations.txt
    python scripts/slow_tests.py durations.txt [--budget 90]

Reads pytest's "slowest durations" lines (``1.23s call tests/test_x.py::test_y[case]``), sums setup, call
and teardown per test, and lists as slow every test outside the fastest set whose total stays within the
budget (seconds; collection and imports come on top). Tests already marked @pytest.mark.slow in their
files are in neither count. Prints the fast lane's expected time.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import defaultdict
from pathlib import Path

LINE = re.compile(r"^\s*([0-9.]+)s\s+(setup|call|teardown)\s+(.+?)\s*$")
OUT = Path(__file__).resolve().parents[1] / "tests" / "slow_tests.txt"


def durations(text: str) -> dict[str, float]:
    per_test: dict[str, float] = defaultdict(float)
    for line in text.splitlines():
        match = LINE.match(line)
        if match:
            per_test[match.group(3)] += float(match.group(1))
    return dict(per_test)


def split(per_test: dict[str, float], budget: float) -> tuple[list[str], float]:
    """The slow tests (slowest first) and the fast lane's total."""
    total, fast = 0.0, set()
    for test, seconds in sorted(per_test.items(), key=lambda kv: (kv[1], kv[0])):
        if total + seconds > budget:
            break
        total += seconds
        fast.add(test)
    slow = sorted((t for t in per_test if t not in fast), key=lambda t: -per_test[t])
    return slow, total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("durations", type=Path, help="the output of pytest --durations=0")
    parser.add_argument("--budget", type=float, default=90.0, help="seconds of fast tests (default 90)")
    args = parser.parse_args(argv)
    per_test = durations(args.durations.read_text(encoding="utf-8", errors="replace"))
    if not per_test:
        print(f"error: {args.durations}: no pytest duration lines (run pytest with --durations=0)", file=sys.stderr)
        return 2
    slow, fast_total = split(per_test, args.budget)
    header = ("# Tests of the slow lane, measured (scripts/slow_tests.py; regenerate after adding slow tests).\n"
              f"# The {len(per_test) - len(slow)} others took {fast_total:.0f} s in the measured run.\n")
    OUT.write_text(header + "".join(f"{t}  # {per_test[t]:.1f} s\n" for t in slow), encoding="utf-8")
    print(f"{len(slow)} slow tests written to {OUT}; the fast lane's {len(per_test) - len(slow)} tests took "
          f"{fast_total:.0f} s (budget {args.budget:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
