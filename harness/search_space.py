"""What `harness tune` may change per adapter: each adapter declares its search space once, next to its
options (``Adapter.search_space``), with its paper's value as the prior (the study's first trial).

A key names a training setting (``lr``, ``head_lr``: harness.spec.TrainConfig) or an option of the
adapter's config. Plain data, no Optuna: ``harness.tuning.study`` turns a dimension into Optuna's own
distribution.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from harness.errors import HarnessError

# training settings a search space may name (the rest of a key must be an adapter option)
TRAIN_KEYS = ("lr", "head_lr", "weight_decay", "warmup_ratio")


@dataclass(frozen=True)
class LogUniform:
    """A positive number searched on a log scale between ``low`` and ``high``; ``prior`` (the paper's
    value, inside the range) is tried first; None: the preset's value where it lies inside."""

    low: float
    high: float
    prior: float | None = None

    def __post_init__(self) -> None:
        if not (0 < self.low < self.high) or not all(math.isfinite(v) for v in (self.low, self.high)):
            raise HarnessError(f"a log-uniform range needs 0 < low < high, got [{self.low}, {self.high}]")
        if self.prior is not None and not self.low <= self.prior <= self.high:
            raise HarnessError(f"the prior {self.prior} lies outside [{self.low}, {self.high}]")

    @property
    def decades(self) -> float:
        return math.log10(self.high / self.low)

    def describe(self) -> str:
        prior = f", prior {self.prior:g}" if self.prior is not None else ""
        return f"log-uniform [{self.low:g}, {self.high:g}]{prior}"


@dataclass(frozen=True)
class Choice:
    """One of a few values (an adapter option such as a rank split); ``prior`` is tried first."""

    values: tuple[Any, ...]
    prior: Any = None

    def __post_init__(self) -> None:
        if len(self.values) < 2:
            raise HarnessError("a choice needs at least two values")
        if self.prior is not None and self.prior not in self.values:
            raise HarnessError(f"the prior {self.prior!r} is not one of {list(self.values)}")

    def describe(self) -> str:
        prior = f", prior {self.prior!r}" if self.prior is not None else ""
        return f"one of {list(self.values)}{prior}"


Dimension = LogUniform | Choice

# The default for an adapter that declares nothing: the learning rate over two orders of magnitude
# around the low-rank methods' usual rates (LoRA's RoBERTa GLUE rates are 4e-4 and 5e-4, Hu et al. 2021).
DEFAULT_SPACE: dict[str, Dimension] = {"lr": LogUniform(1e-4, 1e-2, prior=5e-4)}


def check_space(space: Mapping[str, Dimension], option_names: set[str], where: str) -> None:
    """Every key a training setting or an option of the adapter; the learning rate spans at least two
    orders of magnitude (what the tuning protocol promises)."""
    for key, dim in space.items():
        if key not in TRAIN_KEYS and key not in option_names:
            raise HarnessError(f"{where}: search space key '{key}' is neither a training setting "
                               f"({', '.join(TRAIN_KEYS)}) nor an option of the adapter")
        if not isinstance(dim, (LogUniform, Choice)):
            raise HarnessError(f"{where}: search space '{key}' must be LogUniform or Choice, got {dim!r}")
    lr = space.get("lr")
    if lr is None or not isinstance(lr, LogUniform) or lr.decades < 2 - 1e-9:
        raise HarnessError(f"{where}: the search space must search 'lr' log-uniformly over at least two "
                           "orders of magnitude")


def split_params(params: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(training overrides, adapter options) of a trial's or a choice's values."""
    train = {k: v for k, v in params.items() if k in TRAIN_KEYS}
    options = {k: v for k, v in params.items() if k not in TRAIN_KEYS}
    return train, options
