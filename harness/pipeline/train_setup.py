"""The pieces of a run around the training loop (harness/pipeline/train.py): seeding, the learning-rate schedule,
the planned number of steps, library bars, and a host copy of the trainable state (the validation-
selected epoch, harness/pipeline/checkpoint.py)."""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable
from typing import Any

from harness.adapter import Adapter
from harness.spec import TrainConfig


def seed_everything(seed: int) -> None:
    import random

    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def lr_lambda(kind: str, warmup: int, total: int) -> Callable[[int], float]:
    def fn(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        if kind == "constant":
            return 1.0
        progress = (step - warmup) / max(1, total - warmup)
        if kind == "cosine":
            return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
        return max(0.0, 1.0 - progress)

    return fn


def silence_library_bars() -> None:
    """--no-progress reaches the libraries' own bars too (transformers' weight loading, the hub)."""
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    if "transformers" in sys.modules:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()


def planned_steps(adapter: Adapter, batches_per_epoch: int, train: TrainConfig) -> int:
    """Optimiser steps of the run: epochs x steps per epoch, capped by ``max_steps``; 0 for an adapter
    that does not train (evaluation only: the pretrained model as it is)."""
    steps_per_epoch = max(1, math.ceil(batches_per_epoch / train.grad_accum))
    total_steps = math.ceil(train.epochs * steps_per_epoch)
    if train.max_steps is not None:
        total_steps = min(total_steps, train.max_steps)
    return total_steps if adapter.trains else 0


def trainable_state(model: Any) -> dict[str, Any]:
    """A host copy of what training changes (trainable parameters and buffers), to come back to the
    validation-selected epoch without keeping the frozen base twice."""
    names = {n for n, p in model.named_parameters() if p.requires_grad} | {n for n, _ in model.named_buffers()}
    return {n: t.detach().to("cpu", copy=True) for n, t in model.state_dict().items() if n in names}


def restore_trainable_state(model: Any, state: dict[str, Any]) -> None:
    import torch

    current = model.state_dict()
    with torch.no_grad():
        for name, saved in state.items():
            current[name].copy_(saved)
