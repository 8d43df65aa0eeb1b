"""A run's training losses: read back from the device in blocks, checked for divergence, and thinned
to at most ``MAX_LOSS_POINTS`` for the record's loss curve.

Divergence is what a user would call it, each with its ``reason`` (the record's ``error.reason``):

- ``non-finite loss``: a step's loss is NaN or infinite;
- ``loss exploded``: after a warm-up of ``2 x DIVERGENCE_WINDOW`` steps, the mean of the last
  ``DIVERGENCE_WINDOW`` losses is above ``DIVERGENCE_FACTOR`` times the mean of the first
  ``DIVERGENCE_WINDOW`` (a start below ``DIVERGENCE_FLOOR`` counts as that floor, so a loss that starts
  near 0 is not "exploded" by noise); env ``HARNESS_DIVERGENCE_FACTOR`` changes the factor;
- ``undefined metric`` (``harness.pipeline.runner``): training ended but the primary metric is None or NaN
  (Pearson of constant predictions).

A diverged run is a result about the method (done, never rerun) and is shown as diverged in the tables.
"""

from __future__ import annotations

import math
import os
from typing import Any

MAX_LOSS_POINTS = 400
# How often a CUDA run reads its losses back (one host sync per this many steps, not one per step)
LOSS_SYNC_STEPS = 25


# A smoothed loss above this many times its start is divergence (see the module docstring)
DIVERGENCE_FACTOR = float(os.environ.get("HARNESS_DIVERGENCE_FACTOR", "10"))
DIVERGENCE_WINDOW = 10  # steps averaged for the start and for the current loss
DIVERGENCE_FLOOR = 0.1  # a start below this counts as this (a loss from 0.001 to 0.02 is not an explosion)
NON_FINITE, EXPLODED, UNDEFINED_METRIC = "non-finite loss", "loss exploded", "undefined metric"
DIVERGENCE_REASONS = (NON_FINITE, EXPLODED, UNDEFINED_METRIC)


class DivergedError(RuntimeError):
    def __init__(self, step: int | None, loss: float | None, reason: str = NON_FINITE, message: str | None = None):
        super().__init__(message or f"loss became {loss} at step {step}")
        self.step = step
        self.loss = loss
        self.reason = reason


def explosion(values: list[float], end: int | None = None, *, factor: float = DIVERGENCE_FACTOR,
              window: int = DIVERGENCE_WINDOW, floor: float = DIVERGENCE_FLOOR) -> DivergedError | None:
    """The ``loss exploded`` divergence of the per-step losses ``values[:end]`` (all finite), as of
    their last step; None while the smoothed loss stays within ``factor`` times its start, or before
    the warm-up."""
    end = len(values) if end is None else end
    if factor <= 0 or end < 2 * window:
        return None
    start = sum(values[:window]) / window
    now = sum(values[end - window : end]) / window
    limit = factor * max(start, floor)
    if now > limit:
        step = end - 1
        return DivergedError(step, now, EXPLODED,
                             f"loss exploded: {now:.4g} (mean of the last {window} steps) at step {step}, more than "
                             f"{factor:g}x its start {start:.4g} (mean of the first {window} steps)")
    return None


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
            if not math.isfinite(loss):
                raise DivergedError(step, loss)
            exploded = explosion(self.values)
            if exploded is not None:
                raise exploded
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
                exploded = explosion(self.values, first + i + 1)
                if exploded is not None:
                    raise exploded

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
