"""A run's training losses: read back from the device in blocks, checked for divergence, and thinned
to at most ``MAX_LOSS_POINTS`` for the record's loss curve.
"""

from __future__ import annotations

import math
from typing import Any

MAX_LOSS_POINTS = 400
# How often a CUDA run reads its losses back (one host sync per this many steps, not one per step)
LOSS_SYNC_STEPS = 25


class DivergedError(RuntimeError):
    def __init__(self, step: int, loss: float):
        super().__init__(f"loss became {loss} at step {step}")
        self.step = step
        self.loss = loss


class LossLog:
    """Per-step training losses. On the CPU a loss is read at once (free there) and checked for NaN
    every step; on CUDA the losses stay on the device and are read and checked every
    ``LOSS_SYNC_STEPS`` steps, so the loop has no host sync per step (a divergence is still reported
    with the first bad step)."""

    def __init__(self, on_device: bool):
        self.on_device = on_device
        self.values: list[float] = []
        self._pending: list[Any] = []

    def append(self, loss: Any, step: int) -> None:
        if not self.on_device:
            self.values.append(loss)
            return
        self._pending.append(loss)
        if len(self._pending) >= LOSS_SYNC_STEPS:
            self.flush()

    def flush(self, check: bool = True) -> None:
        if not self._pending:
            return
        import torch

        first = len(self.values)
        read = torch.stack(self._pending).float().tolist()
        self._pending = []
        self.values.extend(read)
        if check:
            for i, value in enumerate(read):
                if not math.isfinite(value):
                    raise DivergedError(first + i, value)

    @property
    def last(self) -> float | None:
        return self.values[-1] if self.values else None


def loss_points(losses: list[float]) -> list[list[float]]:
    """[[step, loss]] with at most MAX_LOSS_POINTS points (window means for long runs)."""
    if len(losses) <= MAX_LOSS_POINTS:
        return [[i + 1, v] for i, v in enumerate(losses)]
    window = math.ceil(len(losses) / MAX_LOSS_POINTS)
    out = []
    for start in range(0, len(losses), window):
        chunk = losses[start : start + window]
        out.append([start + len(chunk), sum(chunk) / len(chunk)])
    return out
