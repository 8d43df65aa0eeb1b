"""LoRA (Hu et al. 2021) through peft: dW = (alpha / r) * B A, A Kaiming-uniform, B zero."""

from __future__ import annotations

from dataclasses import dataclass

from adapters._toolkit.peft_tuner import PeftLoraAdapter
from harness.adapter import LowRankConfig
from harness.registry import register_adapter
from harness.search_space import LogUniform
from harness.targets import ATTENTION_QV, LLAMA3_INSTRUCTION_ALL_LINEAR


@dataclass(frozen=True)
class LoraOptions(LowRankConfig):
    pass


@register_adapter("lora")
class LoRA(PeftLoraAdapter[LoraOptions]):
    display_name = "LoRA"  # in the report's tables (harness.adapter.Adapter.display_name)
    description = "LoRA via peft: low-rank B·A added to the target linear layers"
    # LoRA's RoBERTa-base GLUE rates are 4e-4 and 5e-4 (Hu et al. 2021, Table 9)
    search_space = {"lr": LogUniform(1e-4, 1e-2, prior=5e-4)}
    # LoRA's own RoBERTa GLUE setting (Hu et al. 2021, Table 9), which MSPLoRA and SeRA compare against.
    paper_options = {
        "glue": {"rank": 8, "alpha": 8},  # targets come from the suite (query,value / query_proj,value_proj)
        "instructeval": {"rank": 64, "alpha": 128, "targets": ATTENTION_QV},
        "mt-bench": {"rank": 64, "alpha": 128, "targets": ATTENTION_QV},
        **LLAMA3_INSTRUCTION_ALL_LINEAR,
    }
    cpu_options = {"glue": {"rank": 8, "alpha": 16}}
