"""MELoRA (Ren et al. 2024, "Mini-Ensemble Low-Rank Adapters"): ``split`` mini-LoRAs side by side.

The input is cut into ``split`` equal slices and the output likewise; mini-LoRA i maps input slice i to
output slice i with rank ``rank / split``. Stacked, the update is block diagonal with total rank up to
``rank``, for ``rank * (d_in + d_out) / split`` parameters per module (1/split of a LoRA of that rank).
The blocks run as one batched einsum; the dense block-diagonal dW is built only for merging and analysis.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from adapters._toolkit.lowrank import LowRankAdapter, LowRankLinear
from adapters._toolkit.surgery import kaiming_uniform_, zeros_
from harness.adapter import LowRankConfig, TargetSite
from harness.errors import HarnessError
from harness.registry import register_adapter


@dataclass(frozen=True)
class MeloraOptions(LowRankConfig):
    split: int = 8  # number of mini-LoRAs; must divide rank, d_in and d_out

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.split, int) or isinstance(self.split, bool) or self.split < 1:
            raise HarnessError(f"split must be a positive integer, got {self.split!r}")
        if self.rank % self.split:
            raise HarnessError(f"MELoRA split={self.split} must divide rank={self.rank}")


class MeloraLinear(LowRankLinear):
    """A: (split, rank/split, d_in/split), B: (split, d_out/split, rank/split); B starts at zero."""

    def __init__(self, base: nn.Linear, site: TargetSite, options: MeloraOptions):
        super().__init__(base, site, options.dropout)
        n = options.split
        self.split = n
        self.scaling = options.scaling_alpha / options.rank
        self.lora_A = self.new_parameter(n, options.rank // n, self.in_features // n)
        self.lora_B = self.new_parameter(n, self.out_features // n, options.rank // n)
        kaiming_uniform_(self.lora_A, fan_in=self.in_features // n)
        zeros_(self.lora_B)

    def update(self, x: torch.Tensor) -> torch.Tensor:
        blocks = x.reshape(*x.shape[:-1], self.split, self.in_features // self.split)
        hidden = torch.einsum("...nk,nrk->...nr", blocks, self.lora_A)
        out = torch.einsum("...nr,nor->...no", hidden, self.lora_B)
        return self.scaling * out.reshape(*x.shape[:-1], self.out_features)

    def delta_weight(self) -> torch.Tensor:
        return self.scaling * torch.block_diag(*torch.bmm(self.lora_B, self.lora_A))


@register_adapter("melora")
class MELoRA(LowRankAdapter[MeloraOptions, MeloraLinear]):
    display_name = "MELoRA"  # in the report's tables (harness.adapter.Adapter.display_name)
    description = "MELoRA: `split` mini-LoRAs on slices of input/output (block-diagonal), total rank r"
    wrapper_cls = MeloraLinear
    # The setting, matched to LoRA r=8 on the query/value projections (targets come from the
    # suite's per-model default): 8 rank-1 blocks, 1/8 of LoRA's parameters.
    paper_options = {"glue": {"rank": 8, "split": 8}}
    cpu_options = {"glue": {"rank": 8, "split": 8, "alpha": 16}}

    def check_sites(self, sites: tuple[TargetSite, ...]) -> None:
        n = self.config.split
        for site in sites:
            if site.in_features % n or site.out_features % n:
                raise HarnessError(
                    f"MELoRA split={n} must divide the input and output sizes of {site.name} "
                    f"({site.in_features} -> {site.out_features})"
                )

    def build_wrapper(self, base: nn.Linear, site: TargetSite) -> MeloraLinear:
        return MeloraLinear(base, site, self.config)
