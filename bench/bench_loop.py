"""The harness's training loop against a bare hand-written loop, timed the same way, and the achieved
FLOP/s against a matmul peak measured on this machine.

Both loops train the same model (MiniLM-L6 + the harness's LoRA, r=8 on query,value) on the same
SST-2 batches in the same order (the suite's length-grouped batches for the run's seed), with the same
optimiser, schedule and gradient clipping; each is timed from its first batch to its last optimizer
step, collation included (the harness's ``timing.train_seconds``: its loop with every hook, meter,
bar and loss read; the bare loop: a stopwatch around the same work). The repeats are interleaved
(harness, bare, bare, harness, ...) so that a change in the machine's load hits both; the median and
the spread of each, and the median of the per-repeat ratios, are printed.

FLOPs: 4 per weight of the encoder's linear layers per token (forward 2, backward to the
activations 2; the frozen weights get no weight gradient) counted over the padded tokens the loop
computes; the peak is the best of a few n x n fp32 matmuls (2 n^3 FLOPs) with the same threads.

    python bench/bench_loop.py                 # 30 steps x 5 interleaved repeats
    python bench/bench_loop.py --steps 20 --repeats 3 --device cuda
"""

from __future__ import annotations

import argparse
import copy
import random
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def matmul_peak(device: torch.device, n: int = 2048, tries: int = 5) -> float:
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    best = float("inf")
    for _ in range(tries + 1):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        (a @ b).sum().item()
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best


def _spec(steps: int, seed: int):
    from harness.spec import RunSpec
    from suites.glue import CPU_TRAIN

    train = CPU_TRAIN.with_overrides(max_steps=steps, epochs=1.0, eval_each_epoch=False, max_eval_samples=32)
    options = {"rank": 8, "alpha": 16, "targets": ["query", "value"], "dropout": 0.0}
    return RunSpec("glue", "sst2", "lora", "minilm-l6", "cpu", seed, options, train)


def harness_loop(spec, data_dir: Path, device: str) -> tuple[float, int]:
    from harness.pipeline.runner import ExecutionOptions, execute_run
    from harness.suite import DataSource

    record = execute_run(spec, ExecutionOptions(device=device, data=DataSource(data_dir), progress=False))
    if record["status"] != "success":
        raise SystemExit(f"harness run failed: {record.get('error')}")
    return record["timing"]["train_seconds"], record["timing"]["steps"]


def bare_loop(spec, data_dir: Path, device_name: str) -> tuple[float, int, int, int]:
    """(seconds, steps, padded tokens, linear weights in the encoder): the same work, nothing else."""
    from harness.batching import length_grouped_batches
    from harness.pipeline.attach import attach, build_adapter
    from harness.pipeline.runner import resolve_device
    from harness.pipeline.train import lr_lambda, seed_everything
    from harness.suite import DataSource, RunContext
    from suites.glue import Glue, collate

    device = resolve_device(device_name)
    suite = Glue()
    ctx = RunContext(device=device, data=DataSource(data_dir), seed=spec.seed, preset="cpu", work_dir=Path("."))
    seed_everything(spec.seed)
    loaded = suite.load_model(spec.model, spec.task, ctx)
    data = suite.load_data(spec.task, loaded, spec.train, ctx)
    adapter = build_adapter("lora", dict(spec.adapter_options))
    # a deep copy, as the harness's load cache hands each run: a fresh from_pretrained model may sit in
    # memory-mapped file pages, which would time the page cache instead of the loop
    model = copy.deepcopy(loaded.model)
    seed_everything(spec.seed)
    model = attach(adapter, model, family="encoder", head_modules=loaded.head_modules,
                   total_steps=spec.train.max_steps)
    for name, p in model.named_parameters():
        if any(name.startswith(h + ".") for h in loaded.head_modules):
            p.requires_grad_(True)
    model.to(device).train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=spec.train.lr)
    steps = spec.train.max_steps
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda("linear", int(spec.train.warmup_ratio * steps), steps))
    enc = data.train
    lengths = [len(x) for x in enc.input_ids]
    batches = length_grouped_batches(lengths, spec.train.batch_size, random.Random(spec.seed * 1000))[:steps]
    linear = sum(m.weight.numel() for n, m in model.named_modules()
                 if isinstance(m, torch.nn.Linear) and ".encoder." in f".{n}." and "lora_" not in n)
    tokens = sum(len(idx) * max(lengths[i] for i in idx) for idx in batches)
    pad = data.info["pad_token_id"]
    t0 = time.perf_counter()
    for idx in batches:
        batch = collate(enc, idx, pad, device, False)
        batch.pop("num_samples")
        loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, spec.train.grad_clip)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - t0, len(batches), tokens, linear


def spread(values: list[float]) -> str:
    return f"median {statistics.median(values):.3f}, min {min(values):.3f}, max {max(values):.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    data_dir = Path(args.data_dir)
    spec = _spec(args.steps, seed=0)

    # one untimed pass of each: imports, the load cache, allocator warm-up
    harness_loop(_spec(3, seed=0), data_dir, args.device)
    bare_loop(_spec(3, seed=0), data_dir, args.device)
    harness_s: list[float] = []
    bare_s: list[float] = []
    ratios: list[float] = []
    tokens = linear = 0
    for r in range(args.repeats):
        order = ("harness", "bare") if r % 2 == 0 else ("bare", "harness")
        got: dict[str, float] = {}
        for which in order:
            if which == "harness":
                seconds, steps = harness_loop(spec, data_dir, args.device)
            else:
                seconds, steps, tokens, linear = bare_loop(spec, data_dir, args.device)
            got[which] = seconds / steps
        harness_s.append(got["harness"])
        bare_s.append(got["bare"])
        ratios.append(got["bare"] / got["harness"])
        print(f"repeat {r + 1}: harness {got['harness'] * 1000:.1f} ms/step, bare {got['bare'] * 1000:.1f} ms/step, "
              f"harness/bare throughput {ratios[-1]:.3f}", flush=True)
    device = torch.device(args.device)
    peak = matmul_peak(device)
    flops_per_step = 4 * linear * tokens / args.steps
    achieved = flops_per_step / statistics.median(harness_s)
    print(f"steps {args.steps} x {args.repeats} interleaved repeats, {torch.get_num_threads()} threads, {device}")
    print(f"harness ms/step: {spread([s * 1000 for s in harness_s])}")
    print(f"bare    ms/step: {spread([s * 1000 for s in bare_s])}")
    print(f"throughput ratio harness/bare: {spread(ratios)}")
    print(f"achieved {achieved / 1e9:.1f} GFLOP/s (4 x {linear:,} linear weights x {tokens / args.steps:.0f} padded "
          f"tokens/step) = {achieved / peak:.2f} of the measured fp32 matmul peak {peak / 1e9:.1f} GFLOP/s")


if __name__ == "__main__":
    main()
