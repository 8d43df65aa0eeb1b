"""SeRA: vector segmented and recombined adaptation, in plain torch.

h = x·W0 + (alpha / r)·x·A·C·B with the input split into ``split`` sub-vectors:

- A is block diagonal: ``split`` blocks of (d_in/split x r/split), each reducing one input segment;
- C is a dense r x r matrix that recombines the reduced segments;
- B is block diagonal: ``split`` blocks of (r/split x d_out/split), each expanding into one output segment.

Per module (d_in + d_out)·r/split + r² trainable parameters; ``split`` must divide r, d_in and d_out and
defaults to r (blocks of rank 1).

Choices where the paper is silent:

- The block products run as batched matmuls over the blocks (``torch.bmm`` on (split, tokens, block)
  views): no dense block-diagonal matrix is built during training, so time and memory scale with the
  block sizes. The dense dW (``torch.block_diag``) is built only to merge and for the SVD analyses.
- Scaling alpha / r as in LoRA (with alpha unset, 1), so that split = 1 with C = I is LoRA exactly.
- Init: A Kaiming-uniform with its block's fan-in (d_in/split), which for split = 1 is LoRA's init of A;
  C Kaiming-uniform (fan-in r); B zero, so the adapted model starts equal to the pretrained one.
- Alpha for the GLUE preset: SeRA runs RoBERTa-large on query,value at r = 8 and r = 16; we use LoRA's
  RoBERTa-large setting (alpha 16), which SeRA compares against. ``--rank 16`` gives the r = 16 run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from adapters._toolkit.lowrank import LowRankAdapter, LowRankLinear
from adapters._toolkit.surgery import kaiming_uniform_, zeros_
from harness.adapter import LowRankConfig, TargetSite
from harness.errors import HarnessError
from harness.registry import register_adapter
from harness.search_space import LogUniform
from harness.targets import ATTENTION_QV, LLAMA3_INSTRUCTION_ALL_LINEAR


@dataclass(frozen=True)
class SeraOptions(LowRankConfig):
    """``split``: number of input/output segments (default: equal to ``rank``)."""

    split: int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.split is not None and (not isinstance(self.split, int) or isinstance(self.split, bool) or self.split < 1):
            raise HarnessError(f"split must be a positive integer, got {self.split!r}")
        if self.rank % self.segments:
            raise HarnessError(f"SeRA split={self.segments} must divide the rank r={self.rank}")

    @property
    def segments(self) -> int:
        return self.split if self.split is not None else self.rank


def sera_parameter_count(in_features: int, out_features: int, rank: int, split: int) -> int:
    return (in_features + out_features) * rank // split + rank * rank


class SeRALinear(LowRankLinear):
    component = "sera"

    def __init__(self, base: nn.Linear, site: TargetSite, dropout: float, rank: int, split: int, scaling: float):
        super().__init__(base, site, dropout)
        self.rank, self.split, self.scaling = rank, split, scaling
        f = self.factory
        self.A = nn.Parameter(torch.empty(split, self.in_features // split, rank // split, **f))
        self.C = nn.Parameter(torch.empty(rank, rank, **f))
        self.B = nn.Parameter(torch.empty(split, rank // split, self.out_features // split, **f))
        kaiming_uniform_(self.A, fan_in=self.in_features // split)
        kaiming_uniform_(self.C, fan_in=rank)
        zeros_(self.B)

    def update(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        s = self.split
        segments = x.reshape(-1, s, self.in_features // s).transpose(0, 1)  # (split, tokens, d_in/split)
        reduced = torch.bmm(segments, self.A)  # (split, tokens, r/split)
        mixed = reduced.transpose(0, 1).reshape(-1, self.rank) @ self.C  # (tokens, r)
        expanded = torch.bmm(mixed.reshape(-1, s, self.rank // s).transpose(0, 1), self.B)  # (split, tokens, d_out/split)
        return expanded.transpose(0, 1).reshape(*lead, self.out_features) * self.scaling

    def delta_weight(self) -> torch.Tensor:
        a = torch.block_diag(*self.A.unbind(0))  # d_in x r
        b = torch.block_diag(*self.B.unbind(0))  # r x d_out
        return (a @ self.C @ b).T * self.scaling

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, rank={self.rank}, split={self.split}, scaling={self.scaling:g}"


@register_adapter("sera")
class SeRA(LowRankAdapter[SeraOptions, SeRALinear]):
    display_name = "SeRA"  # in the report's tables (harness.adapter.Adapter.display_name)
    description = "SeRA: block-diagonal A (split segments), dense r x r C, block-diagonal B"
    # SeRA trains small square matrices between frozen random projections, like VeRA's vectors: rates
    # of VeRA's order (measured here: 4e-3 to 1e-2 beat LoRA's 1e-3 on SST-2 and STS-B)
    search_space = {"lr": LogUniform(1e-3, 1e-1, prior=4e-3)}
    wrapper_cls = SeRALinear
    # SeRA's GLUE setting: RoBERTa-large, query and value, r = 8 (and r = 16 with --rank 16), split = r.
    paper_options = {
        "glue": {"rank": 8, "alpha": 16, "targets": ATTENTION_QV},
        "glue/roberta-large": {"rank": 8, "alpha": 16, "targets": ATTENTION_QV},
        # Instruction tuning at LoRA's rank there (r = 64, alpha 128; split = r): MSPLoRA's protocol adapts q,v
        # of LLaMA2-7B; SeRA's own (LLaMA3-8B, 4-bit base) adapts all linear layers.
        "instructeval": {"rank": 64, "alpha": 128, "targets": ATTENTION_QV},
        "mt-bench": {"rank": 64, "alpha": 128, "targets": ATTENTION_QV},
        **LLAMA3_INSTRUCTION_ALL_LINEAR,
    }
    cpu_options = {"glue": {"rank": 8, "alpha": 16}}

    def check_sites(self, sites: tuple[TargetSite, ...]) -> None:
        c = self.config
        for site in sites:
            for what, size in (("d_in", site.in_features), ("d_out", site.out_features)):
                if size % c.segments:
                    raise HarnessError(
                        f"SeRA split={c.segments} must divide {what}={size} of {site.name}; "
                        "pick a split that divides r, d_in and d_out"
                    )

    def build_wrapper(self, base: nn.Linear, site: TargetSite) -> SeRALinear:
        c = self.config
        scaling = c.scaling_alpha / c.rank
        return SeRALinear(base, site, c.dropout, c.rank, c.segments, scaling)

    def summary(self, model: nn.Module) -> dict[str, Any]:
        c = self.config
        return {"rank": c.rank, "split": c.segments, "scaling": c.scaling_alpha / c.rank,
                "modules": len(self.wrappers(model))}
