"""DoRA (Liu et al. 2024) through peft ``use_dora=True``: W' = m * (W + s B A) / ||W + s B A||_c.

The magnitude vector m (one entry per output feature) starts at the column norms of W and B starts at
zero, so the adapted model equals the pretrained one at init. Parameters per module: r (d_in + d_out)
+ d_out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from adapters._peft_common import inject, merge_all, merged_delta_components, target_regex, unmerge_all
from harness.adapter import Adapter, ApplyContext, DeltaComponent, LowRankConfig
from harness.registry import register_adapter
from harness.targets import ATTENTION_QV, LLAMA3_INSTRUCTION_ALL_LINEAR

if TYPE_CHECKING:
    from torch import nn


@dataclass(frozen=True)
class DoraOptions(LowRankConfig):
    pass


@register_adapter("dora")
class DoRA(Adapter):
    description = "DoRA via peft: LoRA direction plus a trained per-output magnitude vector"
    config_cls = DoraOptions
    # The seeds' tables (MSPLoRA Tables 1-2, SeRA Tables 1-2) compare DoRA at the LoRA row's budget, i.e.
    # LoRA's RoBERTa GLUE setting (Hu et al. 2021, Table 9: r=8 on query,value) and the seeds' LoRA
    # instruction setting. The tables' per-method hyper-parameters could not be read offline when this
    # was written (see results/reference/README.md), so these mirror adapters/lora.py: check them there.
    paper_options = {
        "glue": {"rank": 8, "alpha": 8, "targets": ATTENTION_QV},
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
            use_dora=True,
        )

    def apply(self, model: nn.Module, ctx: ApplyContext) -> nn.Module:
        self._sites = ctx.sites
        return inject(model, self.peft_config(ctx))

    def merge(self, model: nn.Module) -> None:
        merge_all(model)

    def unmerge(self, model: nn.Module) -> None:
        unmerge_all(model)

    def delta_components(self, model: nn.Module) -> list[DeltaComponent]:
        # DoRA's update is the whole re-normalised weight minus W, not s B A: read it off peft's merge.
        return merged_delta_components(model, getattr(self, "_sites", ()), component="dora")
