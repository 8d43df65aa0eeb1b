"""Runs per hour of one small cpu grid under two layouts of the same cores: 1 worker x N threads (the
sequential executor) against N workers x 1 thread (``--workers N``), each the full command from the
shell (imports, worker start-up and record writing included), into fresh results folders. The
layouts alternate over the repeats; records of the two layouts are compared (same runs, same scores).

    python bench/bench_workers.py                       # glue/sst2: 4 adapters, small budget
    python bench/bench_workers.py --repeats 2 --adapters lora,sera,bitfit,head --max-train-samples 256
    python bench/bench_workers.py --preset-budget --tasks sst2,rte --adapters lora,full  # the main job's runs
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_layout(args: argparse.Namespace, workers: int, threads: int, results: Path) -> float:
    command = [sys.executable, "-m", "harness", "run", "--suite", "glue", "--tasks", args.tasks,
               "--adapters", args.adapters, "--preset", "cpu", "--seeds", args.seeds, "--data-dir", args.data_dir,
               "--results-dir", str(results), "--no-progress"]
    if not args.preset_budget:
        command += ["--max-train-samples", str(args.max_train_samples), "--max-eval-samples",
                    str(args.max_eval_samples), "--epochs", str(args.epochs)]
    command += ["--threads", str(threads)] if workers == 1 else ["--workers", str(workers)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    t0 = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return seconds


def scores(results: Path) -> dict[str, object]:
    out = {}
    for path in results.rglob("*.json"):
        record = json.loads(path.read_text())
        out[record["run_id"]] = (record["status"], record["metrics"].get("score"))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", default="sst2")
    parser.add_argument("--adapters", default="lora,sera,bitfit,head")
    parser.add_argument("--seeds", default="42")
    parser.add_argument("--max-train-samples", type=int, default=256)
    parser.add_argument("--max-eval-samples", type=int, default=128)
    parser.add_argument("--epochs", default="1")
    parser.add_argument("--preset-budget", action="store_true",
                        help="the cpu preset's own budget (the main job's runs), not the small one")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--cores", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    args = parser.parse_args()
    runs = len(args.adapters.split(",")) * len(args.tasks.split(",")) * len(args.seeds.split(","))
    layouts = {f"1 worker x {args.cores} threads": (1, args.cores), f"{args.cores} workers x 1 thread": (args.cores, 1)}
    seconds: dict[str, list[float]] = {name: [] for name in layouts}
    found: dict[str, dict[str, object]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-workers-") as tmp:
        for r in range(args.repeats):
            names = list(layouts) if r % 2 == 0 else list(reversed(layouts))
            for name in names:
                workers, threads = layouts[name]
                results = Path(tmp) / f"{r}-{workers}"
                seconds[name].append(run_layout(args, workers, threads, results))
                found[name] = scores(results)
                print(f"repeat {r + 1}: {name}: {seconds[name][-1]:.1f}s for {runs} runs "
                      f"= {runs * 3600 / seconds[name][-1]:.0f} runs/hour", flush=True)
    budget = ("the cpu preset's budget" if args.preset_budget else f"{args.max_train_samples} training examples x "
              f"{args.epochs} epoch(s), {args.max_eval_samples} evaluation examples")
    print(f"grid: glue/{args.tasks} x {args.adapters} x seeds {args.seeds}, {budget}; {args.cores} cores")
    for name, values in seconds.items():
        median = statistics.median(values)
        print(f"{name:<24} median {median:.1f}s (min {min(values):.1f}, max {max(values):.1f}) "
              f"= {runs * 3600 / median:.0f} runs/hour")
    a, b = found.values()
    same = a == b
    print("records of the two layouts: " + ("same runs, same scores" if same else "DIFFER: " + json.dumps(
        {k: (a.get(k), b.get(k)) for k in set(a) | set(b) if a.get(k) != b.get(k)})))


if __name__ == "__main__":
    main()
