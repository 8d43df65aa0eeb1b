"""Evaluating a run: merged into the base weights when that is exact, under the run's precision
(bf16 autocast or fp32), through ``torch.compile`` when asked, in inference mode.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable, Iterator
from typing import Any

from harness.adapter import Adapter
from harness.batching import compile_pad_multiple
from harness.errors import HarnessError
from harness.spec import TrainConfig
from harness.suite import LoadedModel, RunContext, Suite, TaskData

PRECISIONS = ("auto", "fp32", "bf16")


def adapter_merges(adapter: Adapter) -> bool:
    """Whether the adapter overrides the merge/unmerge hooks (the base class refuses both)."""
    return type(adapter).merge is not Adapter.merge and type(adapter).unmerge is not Adapter.unmerge


def merged_eval_limit_bytes() -> int:
    """Frozen weights up to this size (env HARNESS_MERGED_EVAL_MAX_MB, default 4096) are evaluated merged."""
    return int(float(os.environ.get("HARNESS_MERGED_EVAL_MAX_MB", 4096)) * 2**20)


@contextlib.contextmanager
def merged_for_eval(adapter: Adapter, model: Any) -> Iterator[bool]:
    """Evaluate at the cost of the base model: merge the adapter into the base weights, and afterwards
    unmerge it and put back the exact frozen weights (a copy on the CPU), because W + BA - BA is not W
    in floating point and the next epoch must train from the very same weights as an unmerged run.
    Yields whether the weights were merged."""
    import torch

    if not adapter_merges(adapter):
        yield False
        return
    frozen_params = [(name, p) for name, p in model.named_parameters() if not p.requires_grad]
    # The exact restore needs a host copy of every frozen weight: not for a quantised base (its integer
    # weights cannot take a merged float update and are not copied back bit for bit) nor for a base
    # whose copy would not pay (a 7-8B model: tens of GB of host memory per evaluation). Those are
    # evaluated unmerged, which is always correct.
    frozen_bytes = sum(p.numel() * p.element_size() for _, p in frozen_params)
    if any(not p.is_floating_point() for _, p in frozen_params) or frozen_bytes > merged_eval_limit_bytes():
        yield False
        return
    with torch.no_grad():
        frozen = {name: p.detach().to("cpu", copy=True) for name, p in frozen_params}

    def restore() -> None:
        with torch.no_grad():
            adapter.unmerge(model)
            for name, p in model.named_parameters():
                saved = frozen.get(name)
                if saved is not None:
                    p.copy_(saved)

    try:
        with torch.no_grad():
            adapter.merge(model)
    except HarnessError:  # this configuration cannot merge (e.g. a quantised base): evaluate unmerged
        restore()
        yield False
        return
    try:
        yield True
    finally:
        restore()


def resolve_precision(name: str, device: Any) -> str:
    """``auto``: bf16 autocast on a CUDA device that supports bf16, else fp32. On the CPU ``auto``
    stays fp32 (bf16 autocast is slower than fp32 on most CPUs); an explicit ``bf16`` is honoured."""
    import torch

    if name not in PRECISIONS:
        raise HarnessError(f"precision must be one of {', '.join(PRECISIONS)}, got {name!r}")
    if name == "auto":
        cuda = getattr(device, "type", str(device)) == "cuda"
        return "bf16" if cuda and torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "fp32"
    return name


def autocast_for(precision: str, device: Any) -> Callable[[], contextlib.AbstractContextManager]:
    import torch

    if precision != "bf16":
        return contextlib.nullcontext
    return lambda: torch.autocast(device_type=device.type, dtype=torch.bfloat16)


# printed once per compiled run on the CPU; the figures are bench/bench_compile.py's (issue 38)
CPU_COMPILE_WARNING = (
    "warning: --compile on the CPU was not measured to pay: compiling MiniLM-L6's training step (2 graphs) "
    "took 1254 s on a busy 2-core machine, longer than a whole cpu-preset run, and no warm speed-up over eager "
    "was established (bench/bench_compile.py); eager stays the default")


class CompileStats:
    """How often torch.compile compiled during a run and how long it took: dynamo's own counters
    (``unique_graphs``: one per compiled graph, a recompilation for a new shape included) and compile
    timers (the forward compile, inductor included, and the lazily compiled backward), read as the
    difference between the run's start and end, so a process that ran other runs first counts only
    this run's."""

    TIMERS = ("_compile.compile_inner", "backward._backward_impl")

    def __init__(self) -> None:
        self.start = self._now()

    @classmethod
    def _now(cls) -> tuple[int, float]:
        from torch._dynamo import utils

        times = getattr(utils, "compilation_time_metrics", {})
        return (int(utils.counters["stats"]["unique_graphs"]),
                sum(sum(times.get(name, ())) for name in cls.TIMERS))

    def since_start(self) -> dict[str, Any]:
        graphs, seconds = self._now()
        return {"graphs": graphs - self.start[0], "compile_seconds": round(seconds - self.start[1], 3)}


def compile_for_run(model: Any, enabled: bool, device: Any = None) -> tuple[Any, dict[str, Any]]:
    """torch.compile after the adapter is applied (``--compile``); the adapter and the bookkeeping keep
    the plain module (parameter names, hooks), only the forward passes go through the compiled one.
    ``HARNESS_COMPILE_BACKEND`` picks the backend (default inductor). The suites that pad batches round
    the padded length up to a multiple of ``compile_pad_multiple()`` when compile is on (GLUE), so the
    number of compiled shapes is bounded; ``compile_stats(info)`` after the run adds how many graphs
    were compiled and how long that took. On the CPU a one-line warning says what it was measured to
    gain there (bench/bench_compile.py)."""
    if not enabled:
        return model, {"enabled": False}
    import sys

    import torch
    import torch._dynamo

    backend = os.environ.get("HARNESS_COMPILE_BACKEND", "inductor")
    # a run compiles one graph per padded width and mode (training, evaluation): more than dynamo's
    # default limit of 8 recompilations would silently fall back to eager for the rest of the run
    for name in ("recompile_limit", "cache_size_limit"):
        if hasattr(torch._dynamo.config, name):
            setattr(torch._dynamo.config, name, max(getattr(torch._dynamo.config, name), 64))
            break
    if getattr(device, "type", None) == "cpu" and backend == "inductor":
        print(CPU_COMPILE_WARNING, file=sys.stderr)
    info: dict[str, Any] = {"enabled": True, "backend": backend, "pad_multiple": compile_pad_multiple()}
    info["_stats"] = CompileStats()
    return torch.compile(model, backend=backend), info


def compile_stats(info: dict[str, Any]) -> dict[str, Any]:
    """The record's ``precision.compile``: the settings and, for a compiled run, the graphs compiled
    and the seconds spent compiling them."""
    stats = info.get("_stats")
    out = {k: v for k, v in info.items() if k != "_stats"}
    if stats is not None:
        out.update(stats.since_start())
    return out


def evaluate(suite: Suite, model: Any, data: TaskData, loaded: LoadedModel, train: TrainConfig,
             ctx: RunContext, split: str = "test") -> dict[str, float]:
    """One evaluation of the test split (``data.eval``) or the held-out ``validation`` split: eval mode,
    ``torch.inference_mode`` (no autograd bookkeeping at all)."""
    import torch

    model.eval()
    with torch.inference_mode():
        if split == "validation":
            return suite.evaluate_validation(model, data, loaded, train, ctx)
        return suite.evaluate(model, data, loaded, train, ctx)


def better(a: float | None, b: float | None) -> bool:
    if a is None or (isinstance(a, float) and math.isnan(a)):
        return False
    return b is None or a > b


def sync_device(device: Any) -> None:
    if getattr(device, "type", None) == "cuda":
        import torch

        torch.cuda.synchronize(device)


def evaluate_variants(adapter: Adapter, model: Any, suite: Suite, data: TaskData, loaded: LoadedModel,
                      train: TrainConfig, ctx: RunContext) -> tuple[dict[str, dict[str, float]], float]:
    """The adapter's extra evaluations of the trained model (``Adapter.evaluation_variants``, e.g.
    DyLoRA's lower ranks): (metrics per variant, seconds spent evaluating them)."""
    import time

    import torch

    variants: dict[str, dict[str, float]] = {}
    seconds = 0.0
    for variant, manager in adapter.evaluation_variants(model):
        t_eval = time.perf_counter()
        model.eval()
        with manager, torch.no_grad():
            variants[variant] = suite.evaluate(model, data, loaded, train, ctx)
        seconds += time.perf_counter() - t_eval
    return variants, seconds
