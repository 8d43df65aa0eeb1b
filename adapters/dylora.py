"""DyLoRA (Valipour et al. 2023, "Dynamic Search-Free Low-Rank Adaptation"): one LoRA trained for every
rank up to ``rank`` at once.

Each optimizer step samples a rank b uniformly from [min_rank, rank] (one b for all modules, as the
paper does) and the forward pass uses the nested truncation ``(alpha / b) * B[:, :b] A[:b]``, so the
first b rows of A and columns of B form a working rank-b LoRA. Evaluation runs at full rank, plus one
evaluation variant per rank in ``eval_ranks`` (default rank/2, rank/4, ..., 1). With
``update_only_sampled`` only the b-th row/column gets gradients at a step (the paper's "frozen" variant).
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from adapters._toolkit.lowrank import LowRankAdapter, LowRankLinear
from adapters._toolkit.surgery import kaiming_uniform_, zeros_
from harness.adapter import ApplyContext, LowRankConfig, TargetSite
from harness.errors import HarnessError
from harness.registry import register_adapter


@dataclass(frozen=True)
class DyloraOptions(LowRankConfig):
    min_rank: int = 1  # smallest rank sampled during training
    eval_ranks: tuple[int, ...] = ()  # extra evaluations besides full rank; empty: rank/2, rank/4, ..., 1
    update_only_sampled: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.min_rank, int) or not 1 <= self.min_rank <= self.rank:
            raise HarnessError(f"DyLoRA min_rank must be in [1, rank={self.rank}], got {self.min_rank!r}")
        bad = [b for b in self.eval_ranks if not isinstance(b, int) or not 1 <= b <= self.rank]
        if bad:
            raise HarnessError(
                f"DyLoRA eval_ranks must lie in [1, rank={self.rank}], got {list(self.eval_ranks)}"
            )

    def variant_ranks(self) -> tuple[int, ...]:
        if self.eval_ranks:
            return tuple(b for b in dict.fromkeys(self.eval_ranks) if b != self.rank)
        halvings = []
        b = self.rank // 2
        while b >= 1:
            halvings.append(b)
            b //= 2
        return tuple(halvings)


class DyloraLinear(LowRankLinear):
    """A: (rank, d_in) Kaiming-uniform, B: (d_out, rank) zero. Training mode uses ``train_rank`` (set each
    step by the adapter), eval mode ``eval_rank`` (full rank unless an evaluation variant set it)."""

    def __init__(self, base: nn.Linear, site: TargetSite, options: DyloraOptions):
        super().__init__(base, site, options.dropout)
        self.max_rank = options.rank
        self.alpha = options.scaling_alpha
        self.update_only_sampled = options.update_only_sampled
        self.train_rank = options.rank
        self.eval_rank = options.rank
        self.lora_A = self.new_parameter(options.rank, self.in_features)
        self.lora_B = self.new_parameter(self.out_features, options.rank)
        kaiming_uniform_(self.lora_A, fan_in=self.in_features)
        zeros_(self.lora_B)

    def set_eval_rank(self, rank: int) -> None:
        if self.merged:
            raise HarnessError(f"{self.site.name}: unmerge DyLoRA before changing its evaluation rank")
        if not 1 <= rank <= self.max_rank:
            raise HarnessError(f"DyLoRA rank {rank} is outside [1, {self.max_rank}]")
        self.eval_rank = rank

    def factors(self, rank: int, only_last_trains: bool) -> tuple[torch.Tensor, torch.Tensor]:
        a, b = self.lora_A[:rank], self.lora_B[:, :rank]
        if only_last_trains and rank > 1:
            a = torch.cat([a[:-1].detach(), a[-1:]], dim=0)
            b = torch.cat([b[:, :-1].detach(), b[:, -1:]], dim=1)
        return a, b

    def update(self, x: torch.Tensor) -> torch.Tensor:
        rank = self.train_rank if self.training else self.eval_rank
        a, b = self.factors(rank, self.training and self.update_only_sampled)
        return (self.alpha / rank) * nn.functional.linear(nn.functional.linear(x, a), b)

    def delta_weight(self) -> torch.Tensor:
        a, b = self.factors(self.eval_rank, False)
        return (self.alpha / self.eval_rank) * (b @ a)


@register_adapter("dylora")
class DyLoRA(LowRankAdapter[DyloraOptions, DyloraLinear]):
    display_name = "DyLoRA"  # in the report's tables (harness.adapter.Adapter.display_name)
    description = "DyLoRA: rank sampled per step with nested truncation; evaluated at several ranks"
    wrapper_cls = DyloraLinear
    # Rank 8 on the query/value projections (the suite's per-model targets), as LoRA's RoBERTa row;
    # evaluated at 8 and (variants) 4, 2, 1.
    paper_options = {"glue": {"rank": 8, "alpha": 8}}
    cpu_options = {"glue": {"rank": 8, "alpha": 16}}

    def __init__(self, config: DyloraOptions | None = None):
        super().__init__(config)
        self._generator = torch.Generator().manual_seed(0)
        self._sampled: Counter[int] = Counter()

    def build_wrapper(self, base: nn.Linear, site: TargetSite) -> DyloraLinear:
        return DyloraLinear(base, site, self.config)

    def apply(self, model: nn.Module, ctx: ApplyContext) -> nn.Module:
        self._generator = torch.Generator().manual_seed(ctx.seed)
        self._sampled = Counter()
        return super().apply(model, ctx)

    def training_state(self) -> dict[str, Any]:
        return {"generator": self._generator.get_state(), "sampled": dict(self._sampled)}

    def load_training_state(self, state: dict[str, Any]) -> None:
        self._generator.set_state(state["generator"])
        self._sampled = Counter(state["sampled"])

    def on_step_begin(self, model: nn.Module, step: int) -> None:
        c = self.config
        rank = int(torch.randint(c.min_rank, c.rank + 1, (1,), generator=self._generator))
        self._sampled[rank] += 1
        for _, module in self.wrappers(model):
            module.train_rank = rank

    def set_eval_rank(self, model: nn.Module, rank: int) -> None:
        for _, module in self.wrappers(model):
            module.set_eval_rank(rank)

    @contextlib.contextmanager
    def at_rank(self, model: nn.Module, rank: int) -> Iterator[nn.Module]:
        """Evaluate the truncation to ``rank``; full rank again afterwards."""
        self.set_eval_rank(model, rank)
        try:
            yield model
        finally:
            self.set_eval_rank(model, self.config.rank)

    def evaluation_variants(
        self, model: nn.Module
    ) -> Iterator[tuple[str, contextlib.AbstractContextManager]]:
        for rank in self.config.variant_ranks():
            yield f"rank{rank}", self.at_rank(model, rank)

    def summary(self, model: nn.Module) -> dict[str, Any]:
        return {
            "sampled_rank_counts": {str(b): n for b, n in sorted(self._sampled.items())},
            "evaluated_ranks": [self.config.rank, *self.config.variant_ranks()],
        }
