"""Zero-shot: the pretrained model evaluated as is, nothing trains (the "no fine-tuning" row).

SeRA's retrieval table has a zero-shot CLIP row; for an instruction-tuned causal LM it is the base
model's score. Only for families without a freshly initialised task head: a GLUE or RSCD classifier
head is random before training, so a zero-shot row there would only measure chance.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from adapters._toolkit.surgery import freeze_all
from harness.adapter import Adapter, ApplyContext
from harness.registry import register_adapter

if TYPE_CHECKING:
    from torch import nn


@register_adapter("zero-shot")
class ZeroShot(Adapter):
    display_name = "Zero-shot"  # in the report's tables (harness.adapter.Adapter.display_name)
    description = "zero-shot: the pretrained model evaluated without training (reference row)"
    families = ("dual_encoder", "causal_lm")
    trains_head = False
    trains = False  # the runner evaluates once and skips the training loop

    def apply(self, model: nn.Module, ctx: ApplyContext) -> nn.Module:
        freeze_all(model)
        return model
