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


def compile_for_run(model: Any, enabled: bool) -> tuple[Any, dict[str, Any]]:
    """torch.compile after the adapter is applied (``--compile``); the adapter and the bookkeeping keep
    the plain module (parameter names, hooks), only the forward passes go through the compiled one.
    ``HARNESS_COMPILE_BACKEND`` picks the backend (default inductor)."""
    if not enabled:
        return model, {"enabled": False}
    import torch

    backend = os.environ.get("HARNESS_COMPILE_BACKEND", "inductor")
    return torch.compile(model, backend=backend), {"enabled": True, "backend": backend}


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
