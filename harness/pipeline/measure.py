"""Measurements recorded for every run: parameter counts, peak memory, time.

Parameter counts de-duplicate by tensor identity, so a tensor shared by many layers counts once.
Memory: on CUDA, ``max_memory_allocated``/``max_memory_reserved`` relative to the start of the run.
On CPU there is no allocator peak to read, so we report an *estimate with the same meaning* (parameters
+ gradients + optimiser state + tensors saved for backward during one training step, measured with
autograd's saved-tensor hooks) next to the process's peak RSS, each labelled.
"""

from __future__ import annotations

import contextlib
import os
import resource
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from harness.parameters import tensor_bytes, unique_named_buffers, unique_named_parameters

if TYPE_CHECKING:
    import torch
    from torch import nn


@dataclass(frozen=True)
class ParamCounts:
    adapter_trainable: int  # trainable, not head, each tensor once: the number the papers report
    head: int  # task head (trained in full where the suite needs one), counted apart
    total: int  # every parameter of the adapted model, each tensor once
    trainable_total: int  # adapter_trainable + head
    frozen_adapter_buffers: int = 0  # non-trainable tensors an adapter adds (e.g. VeRA's projections)

    def to_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


def count_parameters(model: nn.Module, head_param_ids: frozenset[int]) -> ParamCounts:
    adapter = head = total = 0
    for _, p in unique_named_parameters(model):
        n = p.numel()
        total += n
        if id(p) in head_param_ids:
            if p.requires_grad:
                head += n
        elif p.requires_grad:
            adapter += n
    return ParamCounts(adapter_trainable=adapter, head=head, total=total, trainable_total=adapter + head)


def optimizer_state_bytes(optimizer: torch.optim.Optimizer) -> int:
    import torch

    seen: set[int] = set()
    total = 0
    for state in optimizer.state.values():
        for value in state.values():
            if isinstance(value, torch.Tensor) and value.data_ptr() not in seen:
                seen.add(value.data_ptr())
                total += tensor_bytes(value)
    return total


class SavedTensorMeter:
    """Sums the bytes of distinct storages autograd saves for backward while active."""

    def __init__(self) -> None:
        self.bytes = 0
        self._seen: set[int] = set()

    def _pack(self, tensor: torch.Tensor) -> torch.Tensor:
        try:
            storage = tensor.untyped_storage()
            key = storage.data_ptr()
            if key not in self._seen:
                self._seen.add(key)
                self.bytes += storage.nbytes()
        except (RuntimeError, NotImplementedError):  # e.g. tensors without storage
            self.bytes += tensor_bytes(tensor)
        return tensor

    @contextlib.contextmanager
    def measure(self) -> Iterator[SavedTensorMeter]:
        import torch

        self.bytes = 0
        self._seen = set()
        with torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t):
            yield self


def peak_rss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def current_rss_bytes() -> int:
    try:
        with open(f"/proc/{os.getpid()}/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


@dataclass
class MemoryMeter:
    """Peak memory of one run, with each figure labelled by what it means."""

    device: torch.device
    start_allocated: int = 0
    start_rss: int = 0
    saved_for_backward: int = 0
    extras: dict[str, Any] = field(default_factory=dict)

    def start(self) -> None:
        import torch

        self.start_rss = current_rss_bytes()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.start_allocated = torch.cuda.memory_allocated(self.device)

    def report(self, model: nn.Module, optimizer: torch.optim.Optimizer | None) -> dict[str, Any]:
        import torch

        params = sum(tensor_bytes(p) for _, p in unique_named_parameters(model))
        buffers = sum(tensor_bytes(b) for _, b in unique_named_buffers(model))
        grads = sum(tensor_bytes(p) for _, p in unique_named_parameters(model) if p.requires_grad)
        optim = optimizer_state_bytes(optimizer) if optimizer is not None else 0
        estimate = params + buffers + grads + optim + self.saved_for_backward
        out: dict[str, Any] = {
            "device": self.device.type,
            "estimate_bytes": estimate,
            "estimate_breakdown": {
                "parameters": params,
                "buffers": buffers,
                "gradients": grads,
                "optimizer_state": optim,
                "saved_for_backward": self.saved_for_backward,
            },
            "estimate_label": "estimate: parameters + buffers + gradients + optimizer state + tensors saved for backward (one step)",
            "peak_rss_bytes": peak_rss_bytes(),
            "peak_rss_label": "process peak resident set size (whole process, not relative to the run)",
        }
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            out["cuda_max_allocated_bytes"] = torch.cuda.max_memory_allocated(self.device) - self.start_allocated
            out["cuda_max_reserved_bytes"] = torch.cuda.max_memory_reserved(self.device)
            out["peak_bytes"] = out["cuda_max_allocated_bytes"]
            out["peak_label"] = "CUDA max_memory_allocated relative to the run's start"
        else:
            out["peak_bytes"] = estimate
            out["peak_label"] = "CPU estimate (parameters + gradients + optimizer state + saved activations)"
        out.update(self.extras)
        return out


class StepTimer:
    """Wall time of optimisation steps. On CUDA each step is bracketed by CUDA events, read once at
    the end (``mean_step_seconds``), so timing costs no host sync per step and the figure is still
    the device's real time; on the CPU it is ``perf_counter``."""

    def __init__(self, device: torch.device):
        self.device = device
        self._cpu_seconds: list[float] = []
        self._events: list[tuple[Any, Any]] = []
        self._t0 = 0.0
        self._begin: Any = None

    def begin(self) -> None:
        if self.device.type == "cuda":
            import torch

            self._begin = torch.cuda.Event(enable_timing=True)
            self._begin.record()
        else:
            self._t0 = time.perf_counter()

    def end(self) -> None:
        if self.device.type == "cuda":
            import torch

            end = torch.cuda.Event(enable_timing=True)
            end.record()
            self._events.append((self._begin, end))
        else:
            self._cpu_seconds.append(time.perf_counter() - self._t0)

    @property
    def step_seconds(self) -> list[float]:
        if self._events:
            import torch

            torch.cuda.synchronize(self.device)
            self._cpu_seconds.extend(a.elapsed_time(b) / 1000.0 for a, b in self._events)
            self._events = []
        return self._cpu_seconds

    @property
    def mean_step_seconds(self) -> float | None:
        # the first step pays one-off costs (allocations, lazy init): leave it out when we can
        seconds = self.step_seconds
        steps = seconds[1:] if len(seconds) > 2 else seconds
        return sum(steps) / len(steps) if steps else None


class PhaseTimer:
    """Seconds per named phase of a run (load, setup, train, eval, ...), so that a record says where
    its wall time went; ``add`` accumulates, ``time`` measures a block."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def add(self, name: str, seconds: float) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds

    @contextlib.contextmanager
    def time(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - t0)


# another process holding more than this much of the GPU when a run starts makes its memory and speed
# figures unreliable (env HARNESS_BUSY_GPU_MB)
BUSY_GPU_BYTES = int(float(os.environ.get("HARNESS_BUSY_GPU_MB", 1024)) * 2**20)


def _percentile(values: list[int], q: float) -> int:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(round(q / 100 * (len(ordered) - 1)))))]


class CudaStepMemory:
    """Accelerator memory over the training steps, as peft's method_comparison measures it: a baseline
    taken before the model loads, then after every optimisation step ``memory_allocated`` and
    ``memory_reserved`` (host-side allocator counters: no sync), summarised as average, 99th
    percentile and max relative to the baseline. Evaluation happens between steps and is not sampled;
    the in-step peak of the training steps alone is the running ``max_memory_allocated`` read before
    each evaluation."""

    def __init__(self, device: torch.device):
        self.device = device
        self.enabled = device.type == "cuda"
        self.base_allocated = 0
        self.base_reserved = 0
        self.busy_bytes = 0
        self.allocated: list[int] = []
        self.reserved: list[int] = []
        self.train_peak = 0

    def baseline(self) -> str | None:
        """Before the model loads. Returns a warning when other processes already hold the GPU."""
        if not self.enabled:
            return None
        import torch

        torch.cuda.synchronize(self.device)
        self.base_allocated = torch.cuda.memory_allocated(self.device)
        self.base_reserved = torch.cuda.memory_reserved(self.device)
        free, total = torch.cuda.mem_get_info(self.device)
        self.busy_bytes = max(0, total - free - self.base_reserved)
        if self.busy_bytes > BUSY_GPU_BYTES:
            return (f"warning: {self.busy_bytes / 2**30:.1f} GiB of {self.device} are held by other processes: "
                    "this run's memory and step times are not reliable (recorded as cuda_busy_bytes_at_start)")
        return None

    def sample(self) -> None:
        if self.enabled:
            import torch

            self.allocated.append(torch.cuda.memory_allocated(self.device))
            self.reserved.append(torch.cuda.memory_reserved(self.device))

    def before_eval(self) -> None:
        if self.enabled:
            import torch

            self.train_peak = max(self.train_peak, torch.cuda.max_memory_allocated(self.device))

    def report(self) -> dict[str, Any]:
        if not self.enabled:
            return {}
        self.before_eval()
        out: dict[str, Any] = {
            "label": "accelerator memory over training steps (evaluation excluded), relative to the baseline taken "
                     "before the model loaded, as peft's method_comparison",
            "baseline_allocated_bytes": self.base_allocated,
            "baseline_reserved_bytes": self.base_reserved,
            "busy_bytes_at_start": self.busy_bytes,
            "steps_sampled": len(self.allocated),
            "train_peak_allocated_bytes": self.train_peak - self.base_allocated,
        }
        for name, values, base in (("allocated", self.allocated, self.base_allocated),
                                   ("reserved", self.reserved, self.base_reserved)):
            if values:
                out[f"{name}_avg_bytes"] = int(sum(values) / len(values)) - base
                out[f"{name}_p99_bytes"] = _percentile(values, 99) - base
                out[f"{name}_max_bytes"] = max(values) - base
        return out
