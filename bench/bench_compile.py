"""``--compile`` against eager on the same batches, interleaved in one process: the cost of compiling
(how many graphs, how long) and the training step time of each once warm, with the fraction of a matmul
peak measured on this machine.

Three copies of the same model (MiniLM-L6 + the harness's LoRA, r=8 on query,value, SST-2 cpu preset,
the suite's length-grouped batches of epoch 0 for seed 0) train on the same batches in lockstep:

* ``eager``: each batch padded to its own longest example (what an eager run does);
* ``bucketed``: ``torch.compile`` (inductor) with the padded width rounded up to a multiple of
  ``--multiple`` (what ``--compile`` does in the GLUE suite: a handful of widths, one graph each);
* ``dynamic`` (with ``--dynamic``): ``torch.compile(dynamic=True)`` on the batches' own widths.

First every distinct shape of the timed batches goes once through each compiled copy (the cold cost:
compilations and seconds); then blocks of ``--steps`` steps are timed, the variants interleaved and
their order rotated every repeat (A B C, B C A, ...), so that a change in the machine's load hits all.
The per-repeat ratios eager/compiled of ms per step are printed with their median and range. The
losses of the copies are compared at the end (same weights, same data: they agree to float tolerance).

FLOPs as bench/bench_loop.py counts them: 4 per encoder linear weight per token; "useful" counts the
eager widths (the work the run needs), so a compiled variant's extra padding shows as a lower fraction.

    python bench/bench_compile.py                        # 20 steps x 4 repeats, multiple 32
    python bench/bench_compile.py --multiple 16 --dynamic
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
import torch._dynamo

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def setup(data_dir: Path, seed: int = 0):
    from harness.pipeline.attach import attach, build_adapter
    from harness.pipeline.train import seed_everything
    from harness.suite import DataSource, RunContext
    from suites.glue import CPU_TRAIN, Glue

    suite = Glue()
    ctx = RunContext(device=torch.device("cpu"), data=DataSource(data_dir), seed=seed, preset="cpu",
                     work_dir=Path("."))
    seed_everything(seed)
    loaded = suite.load_model("minilm-l6", "sst2", ctx)
    data = suite.load_data("sst2", loaded, CPU_TRAIN, ctx)
    adapter = build_adapter("lora", {"rank": 8, "alpha": 16, "targets": ["query", "value"], "dropout": 0.0})
    model = copy.deepcopy(loaded.model)
    seed_everything(seed)
    model = attach(adapter, model, family="encoder", head_modules=loaded.head_modules, total_steps=100)
    for name, p in model.named_parameters():
        if any(name.startswith(h + ".") for h in loaded.head_modules):
            p.requires_grad_(True)
    return model.train(), data


class Variant:
    def __init__(self, name: str, model, forward, multiple: int | None):
        self.name, self.model, self.forward, self.multiple = name, model, forward, multiple
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.opt = torch.optim.AdamW(self.params, lr=1e-3)
        self.ms: list[float] = []
        self.losses: list[float] = []

    def step(self, batch) -> float:
        loss = self.forward(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, 1.0)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        return float(loss.detach())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20, help="steps per timed block")
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--multiple", type=int, default=32, help="padded widths rounded up to this")
    parser.add_argument("--dynamic", action="store_true", help="also torch.compile(dynamic=True)")
    parser.add_argument("--threads", type=int)
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)


    from bench.bench_loop import matmul_peak
    from harness.batching import length_grouped_batches
    from suites.glue import collate

    base, data = setup(Path(args.data_dir))
    enc = data.train
    lengths = [len(x) for x in enc.input_ids]
    batches = length_grouped_batches(lengths, 32, random.Random(0))[: args.steps]
    pad = data.info["pad_token_id"]

    variants = [Variant("eager", base, base, None)]
    m = copy.deepcopy(base)
    variants.append(Variant(f"bucketed{args.multiple}", m, torch.compile(m), args.multiple))
    if args.dynamic:
        m = copy.deepcopy(base)
        variants.append(Variant("dynamic", m, torch.compile(m, dynamic=True), None))

    def batch_for(v: Variant, idx):
        b = collate(enc, idx, pad, "cpu", False, v.multiple, 128)
        b.pop("num_samples")
        return b

    # the cold cost: every distinct width of the timed batches once through each compiled copy (on a
    # throw-away copy of the weights' optimiser state: the lockstep below starts from equal weights)
    widths = {}
    for idx in batches:
        widths.setdefault(max(lengths[i] for i in idx), idx)
    print(f"{len(batches)} batches, {len(widths)} distinct widths {sorted(widths)}, multiple {args.multiple}", flush=True)
    for v in variants[1:]:
        torch._dynamo.utils.counters.clear()
        state = copy.deepcopy(v.model.state_dict())
        t0 = time.perf_counter()
        seen = set()
        for idx in widths.values():
            b = batch_for(v, idx)
            shape = tuple(b["input_ids"].shape)
            if shape in seen:
                continue
            seen.add(shape)
            t1 = time.perf_counter()
            loss = v.forward(**b).loss
            loss.backward()
            v.opt.zero_grad(set_to_none=True)
            print(f"  {v.name}: first step at shape {shape}: {time.perf_counter() - t1:.1f} s", flush=True)
        v.model.load_state_dict(state)
        graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
        print(f"{v.name}: {len(seen)} shapes, {graphs} graphs compiled, cold {time.perf_counter() - t0:.1f} s",
              flush=True)
    variants[0].step(batch_for(variants[0], batches[0]))  # eager warm-up (allocator)
    variants[0].model.load_state_dict(variants[1].model.state_dict())
    for v in variants:
        v.opt = torch.optim.AdamW(v.params, lr=1e-3)

    for r in range(args.repeats):
        order = variants[r % len(variants):] + variants[: r % len(variants)]
        for v in order:
            prepared = [batch_for(v, idx) for idx in batches]
            t0 = time.perf_counter()
            for b in prepared:
                v.losses.append(v.step(b))
            v.ms.append((time.perf_counter() - t0) / len(batches) * 1000)
        print(f"repeat {r + 1}: " + ", ".join(f"{v.name} {v.ms[-1]:.1f} ms/step" for v in variants), flush=True)

    peak = matmul_peak(torch.device("cpu"))
    linear = sum(mod.weight.numel() for n, mod in base.named_modules()
                 if isinstance(mod, torch.nn.Linear) and ".encoder." in f".{n}." and "lora_" not in n)
    useful = sum(len(idx) * max(lengths[i] for i in idx) for idx in batches) / len(batches)
    print(f"\n{args.steps} steps x {args.repeats} interleaved repeats, {torch.get_num_threads()} threads; "
          f"fp32 matmul peak {peak / 1e9:.1f} GFLOP/s; useful padded tokens/step {useful:.0f}")
    eager = variants[0]
    for v in variants:
        computed = sum(batch_for(v, idx)["input_ids"].numel() for idx in batches) / len(batches)
        med = statistics.median(v.ms)
        frac = 4 * linear * useful / (med / 1000) / peak
        line = f"{v.name:<12} ms/step median {med:.1f} (min {min(v.ms):.1f}, max {max(v.ms):.1f}), " \
               f"tokens/step {computed:.0f}, useful fraction of peak {frac:.2f}"
        if v is not eager:
            ratios = [e / c for e, c in zip(eager.ms, v.ms)]
            line += f"; speed-up vs eager median {statistics.median(ratios):.2f}x " \
                    f"(range {min(ratios):.2f}-{max(ratios):.2f})"
            diff = max(abs(a - b) for a, b in zip(eager.losses, v.losses))
            line += f"; max |loss diff| {diff:.2e}"
        print(line)


if __name__ == "__main__":
    main()
