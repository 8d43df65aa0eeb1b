"""DoRA (Liu et al. 2024) through peft ``use_dora=True``: W' = m * (W + s B A) / ||W + s B A||_c.

The magnitude vector m (one entry per output feature) starts at the column norms of W and B starts at
zero, so the adapted model equals the pretrained one at init. Parameters per module: r (d_in + d_out)
+ d_out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from adapters._toolkit.peft_tuner import ADAPTER_NAME, PeftLoraAdapter
from adapters.lora import LoRA
from harness.adapter import LowRankConfig
from harness.registry import register_adapter
from harness.search_space import LogUniform
from harness.targets import ATTENTION_QV

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class DoraOptions(LowRankConfig):
    pass


@register_adapter("dora")
class DoRA(PeftLoraAdapter[DoraOptions]):
    display_name = "DoRA"  # in the report's tables (harness.adapter.Adapter.display_name)
    description = "DoRA via peft: LoRA direction plus a trained per-output magnitude vector"
    # LoRA's RoBERTa-base GLUE rates are 4e-4 and 5e-4 (Hu et al. 2021, Table 9)
    search_space = {"lr": LogUniform(1e-4, 1e-2, prior=5e-4)}
    lora_options = {"use_dora": True}
    component = "dora"
    # The seeds' tables (MSPLoRA Tables 1-2, SeRA Tables 1-2) compare DoRA at the LoRA row's budget, i.e.
    # LoRA's RoBERTa GLUE setting (Hu et al. 2021, Table 9: r=8 on query,value) and the seeds' LoRA
    # instruction setting. The tables' per-method hyper-parameters could not be read offline when this
    # was written (see results/reference/README.md), so these are adapters/lora.py's: check them there.
    paper_options = {**LoRA.paper_options, "glue": {"rank": 8, "alpha": 8, "targets": ATTENTION_QV}}
    cpu_options = LoRA.cpu_options

    def layer_delta(self, name: str, layer: Any) -> torch.Tensor:
        """DoRA's update is the whole re-normalised weight minus W, not s B A: read off peft's own
        ``merge`` (merged weight - base weight); the base weight is restored exactly."""
        if layer.merged:
            raise RuntimeError(f"{name} is merged; unmerge before taking delta components")
        weight = layer.get_base_layer().weight
        original = weight.detach().clone()
        layer.merge(adapter_names=[ADAPTER_NAME])
        delta = (weight.detach() - original).float().cpu()
        layer.unmerge()
        weight.copy_(original)  # unmerge is exact only up to rounding
        return delta
