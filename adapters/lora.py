"""LoRA (Hu et al. 2021) through peft: dW = (alpha / r) * B A, A Kaiming-uniform, B zero."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from adapters._peft_common import inject, lora_delta_components, merge_all, target_regex, unmerge_all
from harness.adapter import Adapter, ApplyContext, DeltaComponent, LowRankConfig
from harness.registry import register_adapter
from harness.targets import ATTENTION_QV, LLAMA3_INSTRUCTION_ALL_LINEAR

if TYPE_CHECKING:
    from torch import nn


@dataclass(frozen=True)
class LoraOptions(LowRankConfig):
    pass


@register_adapter("lora")
class LoRA(Adapter):
    description = "LoRA via peft: low-rank B·A added to the target linear layers"
    config_cls = LoraOptions
    # LoRA's own RoBERTa GLUE setting (Hu et al. 2021, Table 9), which MSPLoRA and SeRA compare against.
    paper_options = {
        "glue": {"rank": 8, "alpha": 8},  # targets come from the suite (query,value / query_proj,value_proj)
        "instructeval": {"rank": 64, "alpha": 128, "targets": ATTENTION_QV},
        "mt-bench": {"rank": 64, "alpha": 128, "targets": ATTENTION_QV},
        **LLAMA3_INSTRUCTION_ALL_LINEAR,
    }
    cpu_options = {"glue": {"rank": 8, "alpha": 16}}

    def peft_config(self, ctx: ApplyContext) -> Any:
        from peft import LoraConfig

        c = self.config
        return LoraConfig(
            r=c.rank,
            lora_alpha=c.scaling_alpha,
            lora_dropout=c.dropout,
            target_modules=target_regex(ctx),
            bias="none",
        )

    def apply(self, model: nn.Module, ctx: ApplyContext) -> nn.Module:
        self._sites = ctx.sites
        return inject(model, self.peft_config(ctx))

    def merge(self, model: nn.Module) -> None:
        merge_all(model)

    def unmerge(self, model: nn.Module) -> None:
        unmerge_all(model)

    def delta_components(self, model: nn.Module) -> list[DeltaComponent]:
        return lora_delta_components(model, getattr(self, "_sites", ()))
