"""Where a cpu-preset GLUE run's time goes between training and evaluation, read from the records of
a result store (default: the shipped results/): the evaluation share (``timing.eval_seconds`` over
``timing.total_seconds``) per task, per adapter, for the whole grid (time-weighted: the share of the
grid's wall time a user waits for evaluation) and for the median run. The evaluation includes the
validation passes (records since issue 38 also say which part: ``timing.eval_validation_seconds``,
the ``val`` column; "-" where a record predates it or has no validation split). Both times of a record
come from the same process on the same machine state, so the ratio holds even where a record was
timed on a busy machine.

``--run`` first runs the cpu preset's GLUE tasks (one adapter, one seed, the preset's budget and
validation split) into a temporary folder, once with the test split scored every epoch
(``test_each_epoch`` True, the default) and once only at the validation-selected epoch (False), the
two interleaved per task, and prints both.

    python bench/eval_share.py
    python bench/eval_share.py --results-dir /path/to/results --preset cpu
    python bench/eval_share.py --run --tasks sst2,stsb,qnli --adapter lora
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import statistics
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

Row = tuple[str, str, "bool | None", float, float, "float | None"]


def shares(results: Path, preset: str) -> list[Row]:
    """(task, adapter, evaluated merged (None: the record predates the field), eval seconds, total
    seconds, validation seconds (None: not recorded)) of each successful GLUE record."""
    rows = []
    for path in sorted((results / "glue").glob("*/*.json")):
        record = json.loads(path.read_text())
        spec, timing = record.get("spec", {}), record.get("timing") or {}
        if record.get("status") != "success" or spec.get("preset") != preset or not timing.get("total_seconds"):
            continue
        rows.append((spec["task"], spec["adapter"], timing.get("eval_merged"),
                     timing["eval_seconds"], timing["total_seconds"], timing.get("eval_validation_seconds")))
    return rows


def _line(name: str, group: list[Row]) -> str:
    weighted = 100 * sum(r[3] for r in group) / sum(r[4] for r in group)
    median = 100 * statistics.median(r[3] / r[4] for r in group)
    with_val = [r for r in group if r[5]]
    val = f"{100 * sum(r[5] for r in with_val) / sum(r[4] for r in with_val):>8.1f}%" if with_val else f"{'-':>9}"
    return f"{name:<12} {len(group):>4}  {weighted:>8.1f}%  {median:>8.1f}%  {val}"


def report(rows: list[Row], preset: str, label: str = "") -> None:
    header = f"{'':<12} {'runs':>4}  {'of time':>9}  {'median':>9}  {'val':>9}"
    for title, index in (("per task", 0), ("per adapter", 1)):
        groups: dict[str, list] = defaultdict(list)
        for r in rows:
            groups[r[index]].append(r)
        print(f"evaluation share of a {preset}-preset GLUE run{label}, {title}:\n{header}")
        for name in sorted(groups):
            print(_line(name, groups[name]))
        print()
    print(header)
    print(_line("whole grid", rows))
    for name, value in (("merged eval", True), ("unmerged", False), ("not recorded", None)):
        group = [r for r in rows if r[2] is value]
        if group:
            print(_line(name, group))


def run_grid(tasks: list[str], adapter: str, seed: int, data_dir: Path, out: Path) -> None:
    """The cpu preset's runs of ``tasks`` with both test_each_epoch settings, interleaved per task, into
    ``out/each`` and ``out/once``."""
    from harness.pipeline.plan import GridRequest, adapter_options_for
    from harness.pipeline.runner import ExecutionOptions, execute_run
    from harness.records.store import ResultStore
    from harness.registry import ADAPTERS, SUITES
    from harness.spec import RunSpec
    from harness.suite import DataSource

    suite = SUITES.get("glue")()
    model = suite.default_model("cpu")
    options = adapter_options_for(ADAPTERS.get(adapter), suite, "cpu", model, GridRequest(suite="glue"))
    execution = ExecutionOptions(device="cpu", data=DataSource(data_dir), progress=False)
    for i, task in enumerate(tasks):
        base = suite.train_config("cpu", task, model)
        modes = (("each", True), ("once", False)) if i % 2 == 0 else (("once", False), ("each", True))
        for name, each in modes:
            train = dataclasses.replace(base, test_each_epoch=each)
            spec = RunSpec("glue", task, adapter, model, "cpu", seed, options, train)
            record = execute_run(spec, execution)
            ResultStore(out / name).write(record)
            t = record.get("timing") or {}
            print(f"{task} test_each_epoch={each}: {record['status']}, eval {t.get('eval_seconds', 0):.1f}s "
                  f"(validation {t.get('eval_validation_seconds', 0):.1f}s) of {t.get('total_seconds', 0):.1f}s",
                  flush=True)


def project(tasks: list[str], adapter_name: str, steps: int, repeats: int, data_dir: Path) -> None:
    """The evaluation share of each task's cpu-preset run projected from its parts, measured in this
    process and interleaved (a block of ``steps`` training steps, one validation pass, one test pass,
    the order rotated every repeat): training = median ms/step x the run's planned steps; evaluation =
    epochs x validation + (epochs or 1) x test. Load, setup and saving are left out of the run's time
    (so the share is, if anything, overstated)."""
    import itertools
    import time

    import torch

    from harness.pipeline.attach import attach, build_adapter
    from harness.pipeline.evaluation import evaluate, merged_for_eval
    from harness.pipeline.plan import GridRequest, adapter_options_for
    from harness.pipeline.train import planned_steps, seed_everything
    from harness.registry import ADAPTERS, SUITES
    from harness.suite import DataSource, RunContext

    suite = SUITES.get("glue")()
    model_name = suite.default_model("cpu")
    options = adapter_options_for(ADAPTERS.get(adapter_name), suite, "cpu", model_name, GridRequest(suite="glue"))
    print(f"projected from parts: {adapter_name}, {steps} steps x {repeats} interleaved repeats, "
          f"{torch.get_num_threads()} threads")
    print(f"{'task':<6} {'steps':>5} {'ms/step':>8} {'val s':>7} {'test s':>7}  {'each epoch':>10}  {'once':>6}")
    def one(task: str) -> None:
        train = suite.train_config("cpu", task, model_name)
        ctx = RunContext(device=torch.device("cpu"), data=DataSource(data_dir), seed=42, preset="cpu",
                         work_dir=Path("."), progress=False)
        seed_everything(42)
        loaded = suite.load_model(model_name, task, ctx)
        data = suite.load_data(task, loaded, train, ctx)
        adapter = build_adapter(adapter_name, dict(options))
        total = planned_steps(adapter, suite.num_train_batches(data, train), train)
        model = attach(adapter, loaded.model, family="encoder", head_modules=loaded.head_modules, total_steps=total)
        for name, p in model.named_parameters():
            if any(name.startswith(h + ".") for h in loaded.head_modules):
                p.requires_grad_(True)
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=train.lr)

        def endless():  # the run's batches, epoch after epoch
            for epoch in itertools.count():
                yield from suite.train_batches(data, train, epoch, ctx)

        batches = endless()

        def train_block() -> float:
            model.train()
            t0 = time.perf_counter()
            for batch in itertools.islice(batches, steps):
                batch.pop("num_samples")
                suite.training_loss(model, batch).backward()
                torch.nn.utils.clip_grad_norm_(params, train.grad_clip)
                opt.step()
                opt.zero_grad(set_to_none=True)
            return (time.perf_counter() - t0) / steps

        def eval_pass(split: str) -> float:
            t0 = time.perf_counter()
            with merged_for_eval(adapter, model):
                evaluate(suite, model, data, loaded, train, ctx, split=split)
            return time.perf_counter() - t0

        parts = {"train": train_block, "validation": lambda: eval_pass("validation"), "test": lambda: eval_pass("test")}
        got: dict[str, list[float]] = {k: [] for k in parts}
        names = list(parts)
        for r in range(repeats):
            for name in names[r % 3:] + names[: r % 3]:
                if name == "train" and r == 0:
                    train_block()  # the first steps warm the allocator
                got[name].append(parts[name]())
        step, val, test = (statistics.median(got[k]) for k in names)
        epochs = math.ceil(train.epochs)
        train_s = step * total
        each = epochs * (val + test)
        once = epochs * val + test
        print(f"{task:<6} {total:>5} {1000 * step:>8.1f} {val:>7.2f} {test:>7.2f}  "
              f"{100 * each / (train_s + each):>9.1f}%  {100 * once / (train_s + once):>5.1f}%", flush=True)
    for task in tasks:
        one(task)


def flop_shares(tasks: list[str], data_dir: Path) -> None:
    """The evaluation share of each task's cpu-preset run in FLOPs, from the padded tokens the run
    computes (independent of the machine's load): training 4 FLOPs per encoder linear weight per token
    (forward and the backward to the activations; bench/bench_loop.py), evaluation 2 (forward); the
    training batches as the suite builds them (length-grouped, epoch 0 for seed 42), the evaluation
    batches sorted by length in eval_batch_size chunks. Attention's quadratic part is left out."""
    import random

    import torch

    from harness.batching import length_grouped_batches
    from harness.registry import SUITES
    from harness.suite import DataSource, RunContext

    suite = SUITES.get("glue")()
    model_name = suite.default_model("cpu")
    print("evaluation share in FLOPs (padded tokens x 4 per weight training, x 2 evaluation), load-independent")
    print(f"{'task':<6} {'train tok/epoch':>15} {'val tok':>8} {'test tok':>8}  {'each epoch':>10}  {'once':>6}")
    for task in tasks:
        train = suite.train_config("cpu", task, model_name)
        ctx = RunContext(device=torch.device("cpu"), data=DataSource(data_dir), seed=42, preset="cpu",
                         work_dir=Path("."), progress=False)
        loaded = suite.load_model(model_name, task, ctx)
        data = suite.load_data(task, loaded, train, ctx)

        def padded(lengths: list[int], batches: list[list[int]]) -> int:
            return sum(len(idx) * max(lengths[i] for i in idx) for idx in batches)

        def sorted_tokens(enc, size: int) -> int:
            lengths = sorted(len(x) for x in enc.input_ids)
            return sum(len(lengths[i:i + size]) * lengths[min(i + size, len(lengths)) - 1]
                       for i in range(0, len(lengths), size))

        lengths = [len(x) for x in data.train.input_ids]
        train_tok = padded(lengths, length_grouped_batches(lengths, train.batch_size, random.Random(42 * 1000)))
        val_tok = sorted_tokens(data.validation, train.eval_batch_size) if data.validation else 0
        test_tok = sorted_tokens(data.eval, train.eval_batch_size)
        epochs = math.ceil(train.epochs)
        t = 4 * train_tok * epochs
        each = 2 * epochs * (val_tok + test_tok)
        once = 2 * (epochs * val_tok + test_tok)
        print(f"{task:<6} {train_tok:>15,} {val_tok:>8,} {test_tok:>8,}  {100 * each / (t + each):>9.1f}%  "
              f"{100 * once / (t + once):>5.1f}%", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results-dir", default=str(ROOT / "results"))
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--run", action="store_true", help="run the cpu preset's tasks first (both protocols)")
    parser.add_argument("--tasks", default="sst2,mrpc,cola,qnli,rte,stsb", help="with --run")
    parser.add_argument("--adapter", default="lora", help="with --run")
    parser.add_argument("--seed", type=int, default=42, help="with --run")
    parser.add_argument("--project", action="store_true",
                        help="project each task's share from its parts measured here (faster than --run)")
    parser.add_argument("--flops", action="store_true",
                        help="each task's share in FLOPs from the padded tokens (independent of the machine's load)")
    parser.add_argument("--steps", type=int, default=20, help="with --project: training steps per block")
    parser.add_argument("--repeats", type=int, default=3, help="with --project")
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"), help="with --run")
    args = parser.parse_args()
    if args.flops:
        flop_shares(args.tasks.split(","), Path(args.data_dir))
        return
    if args.project:
        project(args.tasks.split(","), args.adapter, args.steps, args.repeats, Path(args.data_dir))
        return
    if args.run:
        with tempfile.TemporaryDirectory(prefix="eval-share-") as tmp:
            run_grid(args.tasks.split(","), args.adapter, args.seed, Path(args.data_dir), Path(tmp))
            for name, label in (("each", " (test split every epoch: test_each_epoch True, the default)"),
                                ("once", " (test split once, at the selected epoch: test_each_epoch False)")):
                print()
                report(shares(Path(tmp) / name, "cpu"), "cpu", label)
        return
    rows = shares(Path(args.results_dir), args.preset)
    if not rows:
        sys.exit(f"no successful {args.preset}-preset GLUE records under {args.results_dir}")
    report(rows, args.preset)


if __name__ == "__main__":
    main()
