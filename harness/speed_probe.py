"""How fast this machine trains, in one figure that records from different machines can share.

The same runs took twice as long on one session's 2-core machine as on another's, with the CPU fully
theirs (see docs/measurements/main-job-wall-time.md), and a plain matmul saw only part of that
difference. So the probe is a short piece of the workload itself: forward and backward passes of an
encoder shaped like the cpu preset's MiniLM-L6 (6 layers, hidden 384, randomly initialised, embeddings
frozen as a PEFT run keeps them) on a fixed 32 x 32 token batch, at this process's torch threads. Its
figure, the fastest of 5 steps after warm-up (noise on a shared machine only adds time), goes into
every CPU record's environment. Between processes it varies by about +-10% (cv 9.6% over 10 processes
on one 2-core machine; on that machine the median of 20 steps varied less, 5.9%, the reverse of what
an earlier machine showed; see docs/measurements/main-job-wall-time.md, segment E), so one reference's
scale factor is good to about +-14%. The workload is not changed for that: a new one would unprobe
every shipped reference. The
estimator scales a reference record's timing by (this machine's figure / the record's), so that
timings recorded on a faster or slower machine predict this one.

The probe runs once per process and thread count (about 5 s on the 2-core machine), inside
``torch.random.fork_rng`` so that no run's random stream depends on whether it ran. Only the CPU is
probed: a GPU's speed depends on far more than one figure, and GPU timings are not mixed with CPU ones.
"""

from __future__ import annotations

import functools
import time
from typing import Any

# names the workload: figures of different workloads are never compared (change it with the workload)
WORKLOAD = "minilm-l6-shape-fwd-bwd-32x32-min"
WARMUP_STEPS = 3  # the first steps pay allocator and kernel warm-up, several times a later step
TIMED_STEPS = 5


def measure(threads: int | None = None) -> dict[str, Any] | None:
    """This process's probe at ``threads`` torch threads (default: its current ones; cached), or None
    when it cannot run."""
    try:
        import torch

        current = torch.get_num_threads()
        if threads is None or threads == current:
            return dict(_measure_at(current))
        torch.set_num_threads(threads)
        try:
            return dict(_measure_at(threads))
        finally:
            torch.set_num_threads(current)
    except Exception:  # a probe that cannot run leaves the record without one, never fails a run
        return None


def measured() -> dict[str, Any] | None:
    """The probe this process measured already at its current threads, without measuring one."""
    try:
        import torch

        threads = torch.get_num_threads()
    except Exception:
        return None
    return dict(_measure_at(threads)) if threads in _MEASURED else None


_MEASURED: set[int] = set()  # the thread counts _measure_at has measured in this process


@functools.lru_cache(maxsize=4)
def _measure_at(threads: int) -> dict[str, Any]:
    import torch
    from transformers import BertConfig, BertModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        config = BertConfig(vocab_size=30522, hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
                            intermediate_size=1536, max_position_embeddings=512)
        model = BertModel(config, add_pooling_layer=False)
        model.embeddings.requires_grad_(False)
        ids = torch.randint(0, config.vocab_size, (32, 32))
        step_seconds = []
        for _ in range(WARMUP_STEPS + TIMED_STEPS):  # in train mode: dropout draws, as in training
            start = time.perf_counter()
            model(input_ids=ids).last_hidden_state.pow(2).mean().backward()
            model.zero_grad(set_to_none=True)
            step_seconds.append(time.perf_counter() - start)
    _MEASURED.add(threads)
    return {"workload": WORKLOAD, "threads": threads,
            "seconds_per_step": min(step_seconds[WARMUP_STEPS:])}


def seconds_per_step(probe: Any, threads: int | None = None) -> float | None:
    """The figure of a recorded probe of this workload (at ``threads`` when given), else None."""
    if not isinstance(probe, dict) or probe.get("workload") != WORKLOAD:
        return None
    if threads is not None and probe.get("threads") != threads:
        return None
    value = probe.get("seconds_per_step")
    return float(value) if isinstance(value, (int, float)) and value > 0 else None
