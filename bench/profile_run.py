"""Where the wall time of one run goes: runs the CLI in this process (one suite task, one adapter) into
a fresh results folder and prints the record's own accounting next to the process's wall time:
startup (imports, planning, shape checks, preflight), then the run's phases (load, setup, training,
each evaluation, evaluation variants, analyses, adapter saving, environment), and what is left
(writing the record, the totals line).

    python bench/profile_run.py                      # one cpu-preset run: glue/sst2 with LoRA
    python bench/profile_run.py --max-steps 3        # the 3-step smoke run
    python bench/profile_run.py --cprofile 25        # plus the 25 most expensive functions (cumulative)

The machine's load changes every figure; the shares are what to compare.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite", default="glue")
    parser.add_argument("--task", default="sst2")
    parser.add_argument("--adapter", default="lora")
    parser.add_argument("--max-steps", type=int, help="stop after this many steps (default: the full cpu budget)")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--cprofile", type=int, default=0, metavar="N", help="print the N top functions")
    args = parser.parse_args()

    from harness.pipeline.runner import process_age_seconds

    t_start = time.perf_counter()
    age_at_start = process_age_seconds() or 0.0
    with tempfile.TemporaryDirectory(prefix="profile-run-") as tmp:
        argv = ["run", "--suite", args.suite, "--tasks", args.task, "--adapters", args.adapter, "--preset", "cpu",
                "--data-dir", args.data_dir, "--results-dir", tmp, "--no-progress"]
        if args.max_steps:
            argv += ["--max-steps", str(args.max_steps)]
        if args.threads:
            argv += ["--threads", str(args.threads)]
        from harness.cli.main import main as cli_main

        profiler = cProfile.Profile() if args.cprofile else None
        if profiler:
            profiler.enable()
        code = cli_main(argv)
        if profiler:
            profiler.disable()
        wall = age_at_start + time.perf_counter() - t_start
        records = list(Path(tmp).rglob("*.json"))
        if code != 0 or len(records) != 1:
            raise SystemExit(f"the run failed (exit {code}, {len(records)} records)")
        record = json.loads(records[0].read_text())
    print(report(record, wall))
    if profiler:
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(args.cprofile)
        print(out.getvalue())


def report(record: dict, wall: float) -> str:
    from harness.grid.progress import busy_fraction

    timing = record["timing"]
    startup = timing.get("startup", {})
    phases = timing.get("phases", {})
    rows: list[tuple[str, float]] = []
    for key, value in startup.items():
        if value is not None:
            rows.append((f"startup: {key}", value))
    for key, value in phases.items():
        if key == "eval":
            for i, seconds in enumerate(timing.get("eval_seconds_per_epoch", []), 1):
                rows.append((f"run: eval {i}" + (" (merged)" if timing.get("eval_merged") else ""), seconds))
            continue
        rows.append((f"run: {key}", value))
    accounted = sum(v for _, v in rows)
    rows.append(("after the run: record write, totals, exit of cli.main", wall - accounted))
    lines = [f"{record['run_id']}: {record['status']}, {timing.get('steps')} steps, wall {wall:.1f}s "
             f"(process start to the end of cli.main)"]
    for name, value in rows:
        lines.append(f"  {name:<48} {value:8.2f}s  {100 * value / wall:5.1f}%")
    in_record = sum(v for k, v in rows[:-1])
    lines.append(f"  {'in the record (startup + total_seconds)':<48} {in_record:8.2f}s  {100 * in_record / wall:5.1f}%")
    eval_total = sum(timing.get("eval_seconds_per_epoch", []))
    lines.append(f"evaluation share of the run: {100 * eval_total / timing['total_seconds']:.1f}% "
                 f"({eval_total:.1f}s of {timing['total_seconds']:.1f}s total_seconds)")
    busy = busy_fraction(record, timing["total_seconds"])
    if busy is not None:  # well below a quiet run's figure: other jobs shared the cores (the estimator discounts it)
        lines.append(f"CPU time of the run: {timing['cpu_seconds']:.1f}s = {100 * busy:.0f}% of "
                     f"{record['environment']['torch_threads']} thread(s) x total_seconds")
    mean_step = timing.get("mean_step_seconds")
    if mean_step:
        lines.append(f"mean step {mean_step * 1000:.0f} ms, {timing.get('samples_per_second') or 0:.1f} samples/s")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
