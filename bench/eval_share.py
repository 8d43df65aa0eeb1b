"""Where a cpu-preset GLUE run's time goes between training and evaluation, read from the records of
a result store (default: the shipped results/): the evaluation share (``timing.eval_seconds`` over
``timing.total_seconds``) per task, per adapter, for the whole grid (time-weighted: the share of the
grid's wall time a user waits for evaluation) and for the median run. Both times of a record come
from the same process on the same machine state, so the ratio holds even where a record was timed
on a busy machine.

    python bench/eval_share.py
    python bench/eval_share.py --results-dir /path/to/results --preset cpu
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def shares(results: Path, preset: str) -> list[tuple[str, str, bool | None, float, float]]:
    """(task, adapter, evaluated merged (None: the record predates the field), eval seconds, total
    seconds) of each successful GLUE record."""
    rows = []
    for path in sorted((results / "glue").glob("*/*.json")):
        record = json.loads(path.read_text())
        spec, timing = record.get("spec", {}), record.get("timing") or {}
        if record.get("status") != "success" or spec.get("preset") != preset or not timing.get("total_seconds"):
            continue
        rows.append((spec["task"], spec["adapter"], timing.get("eval_merged"),
                     timing["eval_seconds"], timing["total_seconds"]))
    return rows


def _line(name: str, group: list[tuple[str, str, bool | None, float, float]]) -> str:
    weighted = 100 * sum(r[3] for r in group) / sum(r[4] for r in group)
    median = 100 * statistics.median(r[3] / r[4] for r in group)
    return f"{name:<12} {len(group):>4}  {weighted:>8.1f}%  {median:>8.1f}%"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results-dir", default=str(ROOT / "results"))
    parser.add_argument("--preset", default="cpu")
    args = parser.parse_args()
    rows = shares(Path(args.results_dir), args.preset)
    if not rows:
        sys.exit(f"no successful {args.preset}-preset GLUE records under {args.results_dir}")
    header = f"{'':<12} {'runs':>4}  {'of time':>9}  {'median':>9}"
    for title, index in (("per task", 0), ("per adapter", 1)):
        groups: dict[str, list] = defaultdict(list)
        for r in rows:
            groups[r[index]].append(r)
        print(f"evaluation share of a {args.preset}-preset GLUE run, {title}:\n{header}")
        for name in sorted(groups):
            print(_line(name, groups[name]))
        print()
    print(header)
    print(_line("whole grid", rows))
    for name, value in (("merged eval", True), ("unmerged", False), ("not recorded", None)):
        group = [r for r in rows if r[2] is value]
        if group:
            print(_line(name, group))


if __name__ == "__main__":
    main()
