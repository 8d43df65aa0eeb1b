"""The main job's speed at this checkout against a baseline commit, side by side in one run, so that a
speed claim is a ratio measured under the same machine load and never an absolute time.

The baseline's tree is exported (``git archive``, nothing registered in the repository) into a temporary
folder; each repetition runs the same small slice of the main job (default: ``harness run --suite glue
--tasks sst2 --adapters lora --preset cpu --max-steps 30``, its validation and test evaluation included)
once with each tree, in a fresh results folder, as a separate process of the same Python, the order
alternating (A B, B A, ...) so that a change in the machine's load hits both. Each record's own timing
is read back: training ms per step, evaluation seconds, the run's total, and the process wall time.

Printed per figure: baseline/candidate ratio of each repetition (> 1: the candidate is faster), their
median, and a 95% interval of the geometric mean ratio (t interval of the log ratios).

    python bench/bench_compare_commits.py --baseline d1df3cb            # 5 repetitions
    python bench/bench_compare_commits.py --baseline HEAD~3 --repeats 7 --max-steps 60 --task mrpc
    python bench/bench_compare_commits.py --baseline main --extra=--compile   # flags for both sides
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIGURES = (("train ms/step", "ms_step"), ("eval seconds", "eval_s"), ("run total seconds", "total_s"),
           ("process wall seconds", "wall_s"))


def export_tree(commit: str, into: Path) -> str:
    """The baseline commit's files under ``into``; returns the full commit id."""
    full = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--verify", f"{commit}^{{commit}}"],
                          check=True, capture_output=True, text=True).stdout.strip()
    into.mkdir(parents=True)
    archive = subprocess.Popen(["git", "-C", str(ROOT), "archive", full], stdout=subprocess.PIPE)
    subprocess.run(["tar", "-x", "-C", str(into)], stdin=archive.stdout, check=True)
    if archive.wait() != 0:
        raise SystemExit(f"git archive {full} failed")
    return full


def one_run(tree: Path, args: argparse.Namespace, results: Path) -> dict[str, float]:
    command = [sys.executable, "-m", "harness", "run", "--suite", "glue", "--tasks", args.task,
               "--adapters", args.adapter, "--preset", "cpu", "--seeds", "0", "--max-steps", str(args.max_steps),
               "--data-dir", args.data_dir, "--results-dir", str(results), "--no-progress", *args.extra]
    if args.threads:
        command += ["--threads", str(args.threads)]
    env = {**os.environ, "PYTHONPATH": str(tree)}
    t0 = time.perf_counter()
    done = subprocess.run(command, cwd=tree, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    records = [p for p in results.glob("glue/**/*.json")]
    if done.returncode != 0 or len(records) != 1:
        raise SystemExit(f"run in {tree} failed (exit {done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    record = json.loads(records[0].read_text())
    if record.get("status") != "success":
        raise SystemExit(f"run in {tree}: {record.get('status')}: {record.get('error')}")
    timing = record["timing"]
    return {"ms_step": 1000 * timing["train_seconds"] / max(1, timing["steps"]), "eval_s": timing["eval_seconds"],
            "total_s": timing["total_seconds"], "wall_s": wall, "score": record["metrics"]["score"]}


def interval(ratios: list[float]) -> str:
    logs = [math.log(r) for r in ratios]
    mean = statistics.fmean(logs)
    if len(logs) < 2:
        return f"{math.exp(mean):.3f}"
    from scipy.stats import t

    half = t.ppf(0.975, len(logs) - 1) * statistics.stdev(logs) / math.sqrt(len(logs))
    return f"{math.exp(mean):.3f} [{math.exp(mean - half):.3f}, {math.exp(mean + half):.3f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", required=True, help="commit, branch or tag to compare against")
    parser.add_argument("--repeats", type=int, default=5, help="repetitions of each side, interleaved")
    parser.add_argument("--task", default="sst2")
    parser.add_argument("--adapter", default="lora")
    parser.add_argument("--max-steps", type=int, default=30)
    parser.add_argument("--threads", type=int, help="--threads of both runs (default: torch's)")
    parser.add_argument("--extra", action="append", default=[], help="one more flag for both runs (repeatable)")
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    args = parser.parse_args()
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="harness-compare-") as tmp:
        base_tree = Path(tmp) / "baseline"
        full = export_tree(args.baseline, base_tree)
        sides = {"baseline": base_tree, "candidate": ROOT}
        print(f"baseline {full[:10]} ({args.baseline}) against candidate {head}{' + uncommitted changes' if dirty else ''}"
              f" ({ROOT}); glue {args.task} {args.adapter} cpu preset --max-steps {args.max_steps} "
              f"{' '.join(args.extra)}; {args.repeats} interleaved repetitions; load average "
              f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cpus", flush=True)
        got: dict[str, list[dict[str, float]]] = {"baseline": [], "candidate": []}
        for r in range(args.repeats):
            order = ("baseline", "candidate") if r % 2 == 0 else ("candidate", "baseline")
            for side in order:
                got[side].append(one_run(sides[side], args, Path(tmp) / f"results-{side}-{r}"))
            b, c = got["baseline"][-1], got["candidate"][-1]
            print(f"repeat {r + 1} ({order[0]} first): " + ", ".join(
                f"{name} {b[key]:.2f} / {c[key]:.2f}" for name, key in FIGURES) +
                f"; score {b['score']:.4f} / {c['score']:.4f}", flush=True)
    print(f"\nbaseline/candidate (> 1: the candidate is faster), load average now {os.getloadavg()[0]:.1f}:")
    for name, key in FIGURES:
        ratios = [b[key] / c[key] for b, c in zip(got["baseline"], got["candidate"])]
        base = statistics.median(x[key] for x in got["baseline"])
        cand = statistics.median(x[key] for x in got["candidate"])
        print(f"  {name:<22} median {base:8.2f} vs {cand:8.2f}; ratio median {statistics.median(ratios):.3f}, "
              f"geometric mean [95% interval] {interval(ratios)}, range {min(ratios):.3f}-{max(ratios):.3f}")


if __name__ == "__main__":
    main()
