"""Full fine-tuning: every parameter trains. The head is still counted apart, as the papers do."""

from __future__ import annotations

from typing import TYPE_CHECKING

from adapters._toolkit.surgery import unfreeze_all
from harness.adapter import Adapter, ApplyContext
from harness.registry import register_adapter
from harness.search_space import LogUniform

if TYPE_CHECKING:
    from torch import nn


@register_adapter("full")
class FullFineTuning(Adapter):
    display_name = "Full FT"  # in the report's tables (harness.adapter.Adapter.display_name)
    description = "full fine-tuning: all weights train (reference upper bound on cost)"
    # every weight trains: rates far below an adapter's (RoBERTa-base fine-tuning uses 1e-5 to 3e-5,
    # Liu et al. 2019); the head keeps its own rate (train_overrides)
    search_space = {"lr": LogUniform(1e-5, 1e-3, prior=2e-5)}
    # Adapter learning rates (1e-3 .. 5e-4) wreck a fully trained network; these are the usual
    # full fine-tuning rates (RoBERTa paper: 1e-5..3e-5; a small model tolerates a bit more).
    train_overrides = {"cpu": {"lr": 5e-5, "head_lr": 1e-3}, "paper": {"lr": 2e-5}}

    def apply(self, model: nn.Module, ctx: ApplyContext) -> nn.Module:
        unfreeze_all(model)
        return model
