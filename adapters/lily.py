"""Lily (Zhong et al. 2024, low-rank interconnected adaptation across layers) through peft.

Per target module type: one A (r x d_in) per ``stride_a`` consecutive layers, ``num_b`` B's (r x d_out
each) shared by all layers, and a router (num_b x r) per layer that mixes the B's from the input:
dW x = scaling * (sum_e p_e B_e) A x with p the mean softmax of router(A x) over the tokens. B starts at
zero. Parameters per type with L layers: ceil(L / stride_a) r d_in + num_b r d_out + L r num_b.

peft shares A and B by putting one ``nn.Linear`` object in several layers, so each shared tensor is one
Parameter: the harness counts it once (by identity) and ``adapter_state_dict`` (unique names, first
wins) saves it once, where peft's own checkpoint stores it once per layer. The update depends on the
input through the router, so Lily has no fixed dW to merge or to analyse (peft raises on both).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from adapters._toolkit.peft_tuner import PeftAdapter
from harness.adapter import Adapter, ApplyContext, TargetSite, UnscaledLowRankConfig
from harness.errors import HarnessError
from harness.registry import register_adapter
from harness.targets import ATTENTION_QV, LLAMA3_INSTRUCTION_ALL_LINEAR

if TYPE_CHECKING:
    from torch import nn


@dataclass(frozen=True)
class LilyOptions(UnscaledLowRankConfig):
    """``stride_a`` layers share one A; ``num_b`` B's shared by all layers of a type (>= 2 so the router
    trains); ``scaling`` multiplies the update directly (Lily has no alpha / r)."""

    rank: int = 16
    stride_a: int = 4
    num_b: int = 3
    scaling: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.dropout:
            raise HarnessError("peft's Lily has no dropout; leave dropout at 0")
        if not isinstance(self.stride_a, int) or self.stride_a < 1:
            raise HarnessError(f"stride_a must be a positive integer, got {self.stride_a!r}")
        if not isinstance(self.num_b, int) or self.num_b < 2:
            raise HarnessError(
                f"num_b must be an integer >= 2 (the router mixes the B's), got {self.num_b!r}"
            )
        if self.scaling <= 0:
            raise HarnessError(f"scaling must be positive, got {self.scaling!r}")


def kinds_by_specificity(sites: tuple[TargetSite, ...]) -> list[str]:
    """Target kinds, shortest first: peft's Lily groups a layer under the *last* suffix it ends with,
    so the most specific suffix must come last (``attention.output.dense`` after ``output.dense``)."""
    return sorted({s.kind for s in sites}, key=lambda k: (len(k), k))


def unwanted_matches(model: nn.Module, kinds: list[str], sites: tuple[TargetSite, ...]) -> list[str]:
    """Modules a kind suffix would match outside the resolved sites (e.g. in the head): excluded."""
    wanted = {s.name for s in sites}
    return [
        name
        for name, _ in model.named_modules()
        if name and name not in wanted and any(name == k or name.endswith("." + k) for k in kinds)
    ]


@register_adapter("lily")
class Lily(PeftAdapter[LilyOptions]):
    display_name = "Lily"  # in the report's tables (harness.adapter.Adapter.display_name)
    description = (
        "Lily via peft: A shared by neighbouring layers, B's shared by all layers, mixed by a router"
    )
    # Lily's row in the seeds' tables could not be read offline when this was written
    # (results/reference/README.md). These follow peft's documented recommendation for Lily (rank about
    # 2x the LoRA rank it replaces, stride_a and num_b about L/4) at LoRA's RoBERTa targets (Hu et al.
    # 2021, Table 9: query,value): 148,608 parameters on RoBERTa-base, about half of LoRA r=8.
    paper_options = {
        "glue": {"rank": 16, "stride_a": 4, "num_b": 3, "targets": ATTENTION_QV},
        "instructeval": {"rank": 128, "stride_a": 4, "num_b": 8, "targets": ATTENTION_QV},
        "mt-bench": {"rank": 128, "stride_a": 4, "num_b": 8, "targets": ATTENTION_QV},
        **LLAMA3_INSTRUCTION_ALL_LINEAR,
    }
    cpu_options = {"glue": {"rank": 16, "stride_a": 2, "num_b": 3}}

    def peft_config(self, model: nn.Module, ctx: ApplyContext) -> Any:
        from peft import LilyConfig

        c = self.config
        # A list of suffixes, not the usual exact-name regex: peft's Lily groups layers for sharing by the
        # matched suffix, and a single regex would put every type (query with value) into one group.
        kinds = kinds_by_specificity(ctx.sites)
        return LilyConfig(
            r=c.rank,
            stride_A=c.stride_a,
            num_B=c.num_b,
            scaling=c.scaling,
            target_modules=kinds,
            exclude_modules=unwanted_matches(model, kinds, ctx.sites) or None,
        )

    # The update depends on the input through the router: no fixed dW to merge or analyse (peft raises
    # on both), so these stay the contract's (the runner evaluates Lily unmerged).
    merge = Adapter.merge
    unmerge = Adapter.unmerge
    delta_components = Adapter.delta_components
