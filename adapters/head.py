"""Head only (linear probing): the backbone is frozen, only the task head trains.

Its adapter parameter count is 0 by construction; the head is reported in its own column.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from adapters._toolkit.surgery import freeze_all
from harness.adapter import Adapter, ApplyContext
from harness.registry import register_adapter
from harness.search_space import LogUniform

if TYPE_CHECKING:
    from torch import nn


@register_adapter("head")
class HeadOnly(Adapter):
    display_name = "Head only"  # in the report's tables (harness.adapter.Adapter.display_name)
    description = "head only: frozen backbone, the task head trains (lower bound on cost)"
    # a linear probe: a freshly initialised head alone tolerates large rates
    search_space = {"lr": LogUniform(1e-4, 1e-1, prior=1e-3)}
    families = ("encoder", "vision", "dual_encoder")  # a causal LM has no separate head to train

    def apply(self, model: nn.Module, ctx: ApplyContext) -> nn.Module:
        freeze_all(model)
        return model
