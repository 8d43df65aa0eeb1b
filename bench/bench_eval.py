"""Evaluation before and after: the same GLUE dev set on the same adapted model, evaluated as the
harness used to (adapter unmerged, ``torch.no_grad``) and as it does now (merged into the base
weights, ``torch.inference_mode``), interleaved repeats, median and spread, and the predictions of
both compared. Then the evaluation share of a cpu-preset run is projected from a record's training
time (``--record``, default: the shipped glue/<task>/<adapter> record).

    python bench/bench_eval.py                          # sst2, LoRA, 5 repeats
    python bench/bench_eval.py --task rte --adapter dora --repeats 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="sst2")
    parser.add_argument("--adapter", default="lora")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--record", help="a record whose training time the projection uses")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from harness.pipeline.attach import attach, build_adapter
    from harness.pipeline.evaluation import adapter_merges, merged_for_eval
    from harness.pipeline.plan import GridRequest, adapter_options_for
    from harness.registry import ADAPTERS, SUITES
    from harness.suite import DataSource, RunContext

    suite = SUITES.get("glue")()
    model_name = suite.default_model("cpu")
    train = suite.train_config("cpu", args.task, model_name)
    ctx = RunContext(device=torch.device("cpu"), data=DataSource(Path(args.data_dir)), seed=42, preset="cpu",
                     work_dir=Path("."), progress=False)
    loaded = suite.load_model(model_name, args.task, ctx)
    data = suite.load_data(args.task, loaded, train, ctx)
    cls = ADAPTERS.get(args.adapter)
    adapter = build_adapter(args.adapter, adapter_options_for(cls, suite, "cpu", model_name, GridRequest(suite="glue")))
    model = attach(adapter, loaded.model, family="encoder", head_modules=loaded.head_modules, total_steps=100)
    with torch.no_grad():  # a trained-looking update, so that merging changes the weights
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.02)
    model.eval()

    def before() -> dict:
        with torch.no_grad():
            return suite.evaluate(model, data, loaded, train, ctx)

    def after() -> dict:
        with merged_for_eval(adapter, model), torch.inference_mode():
            return suite.evaluate(model, data, loaded, train, ctx)

    times: dict[str, list[float]] = {"before": [], "after": []}
    metrics: dict[str, dict] = {}
    for r in range(args.repeats):
        for name, fn in (("before", before), ("after", after)) if r % 2 == 0 else (("after", after), ("before", before)):
            t0 = time.perf_counter()
            metrics[name] = fn()
            times[name].append(time.perf_counter() - t0)
        print(f"repeat {r + 1}: before {times['before'][-1]:.2f}s, after {times['after'][-1]:.2f}s", flush=True)
    b, a = statistics.median(times["before"]), statistics.median(times["after"])
    paired = sorted(x / y for x, y in zip(times["after"], times["before"]))
    n = len(data.eval.labels)
    print(f"glue/{args.task} {args.adapter} (merges: {adapter_merges(adapter)}), {n} dev examples, batch "
          f"{train.eval_batch_size}, {torch.get_num_threads()} threads, {args.repeats} interleaved repeats")
    print(f"before (unmerged, no_grad):      median {b:.2f}s (min {min(times['before']):.2f}, max {max(times['before']):.2f})")
    print(f"after (merged, inference_mode):  median {a:.2f}s (min {min(times['after']):.2f}, max {max(times['after']):.2f})")
    print(f"evaluation time after/before, per repeat: {', '.join(f'{x:.3f}' for x in paired)}; median "
          f"{statistics.median(paired):.3f}")
    print(f"evaluation time after/before (medians): {a / b:.3f}; scores equal: {metrics['before'] == metrics['after']} "
          f"({metrics['after']})")

    path = Path(args.record) if args.record else next(iter(sorted(
        (ROOT / "results" / "glue" / args.task).glob(f"{args.adapter}-*-seed42.json"))), None)
    if path is None:
        return
    timing = json.loads(path.read_text())["timing"]
    evals = max(1, timing.get("epochs") or 1)
    other = timing["total_seconds"] - timing["eval_seconds"]
    # the record's evaluations, scaled by this machine's after/before ratio
    projected = timing["eval_seconds"] * statistics.median(paired)
    print(f"record {path.name}: evaluation {timing['eval_seconds']:.1f}s of {timing['total_seconds']:.1f}s "
          f"({100 * timing['eval_seconds'] / timing['total_seconds']:.1f}%, {evals} evaluations); with the after/before "
          f"ratio (median per repeat): {100 * projected / (other + projected):.1f}% of the run")


if __name__ == "__main__":
    main()
