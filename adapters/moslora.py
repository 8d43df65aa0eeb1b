"""MoSLoRA (Wu et al. 2024, "Mixture-of-Subspaces in Low-Rank Adaptation"): LoRA with a trainable
r x r mixer between A and B, dW = (alpha / r) * B M A. A and the mixer start Kaiming-uniform (the
paper's best mixer init), B starts at zero so the model starts unchanged. Costs r^2 more parameters per
module than LoRA of the same rank.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from adapters._toolkit.lowrank import LowRankAdapter, LowRankLinear
from adapters._toolkit.surgery import kaiming_uniform_, zeros_
from harness.adapter import LowRankConfig, TargetSite
from harness.registry import register_adapter


@dataclass(frozen=True)
class MosloraOptions(LowRankConfig):
    pass


class MosloraLinear(LowRankLinear):
    """A: (r, d_in), mixer: (r, r), B: (d_out, r)."""

    def __init__(self, base: nn.Linear, site: TargetSite, options: MosloraOptions):
        super().__init__(base, site, options.dropout)
        r = options.rank
        self.scaling = options.scaling_alpha / r
        self.lora_A = self.new_parameter(r, self.in_features)
        self.lora_mixer = self.new_parameter(r, r)
        self.lora_B = self.new_parameter(self.out_features, r)
        kaiming_uniform_(self.lora_A, fan_in=self.in_features)
        kaiming_uniform_(self.lora_mixer, fan_in=r)
        zeros_(self.lora_B)

    def update(self, x: torch.Tensor) -> torch.Tensor:
        h = nn.functional.linear(x, self.lora_A)
        h = nn.functional.linear(h, self.lora_mixer)
        return self.scaling * nn.functional.linear(h, self.lora_B)

    def delta_weight(self) -> torch.Tensor:
        return self.scaling * (self.lora_B @ self.lora_mixer @ self.lora_A)


@register_adapter("moslora")
class MoSLoRA(LowRankAdapter[MosloraOptions, MosloraLinear]):
    display_name = "MoSLoRA"  # in the report's tables (harness.adapter.Adapter.display_name)
    description = "MoSLoRA: LoRA with a trainable r x r subspace mixer between A and B"
    wrapper_cls = MosloraLinear
    # Rank 8 on the query/value projections (from the suite's per-model targets), as LoRA's RoBERTa row.
    paper_options = {"glue": {"rank": 8, "alpha": 8}}
    cpu_options = {"glue": {"rank": 8, "alpha": 16}}

    def build_wrapper(self, base: nn.Linear, site: TargetSite) -> MosloraLinear:
        return MosloraLinear(base, site, self.config)
