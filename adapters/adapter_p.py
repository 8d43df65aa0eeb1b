"""Adapter-P (Pfeiffer et al. 2021): one bottleneck adapter ``y + up(act(down(y)))`` after the FFN
output projection of every block (none after attention). ``up`` starts at zero, so the adapted model
starts exactly as the pretrained one. Nonlinear: cannot be merged.
"""

from __future__ import annotations

from adapters._toolkit.bottleneck import BottleneckAdapter
from harness.registry import register_adapter


@register_adapter("adapter-p")
class AdapterP(BottleneckAdapter):
    display_name = "Adapterᴾ"  # in the report's tables (harness.adapter.Adapter.display_name)
    description = "Adapter-P (Pfeiffer): one bottleneck adapter after the FFN of each block"
    positions = ("ffn",)
    # LoRA's GLUE tables (Hu et al. 2021, Table 2) run Pfeiffer adapters at 0.8M parameters on
    # RoBERTa-large (bottleneck 16) next to LoRA r=8; bottleneck 16 on RoBERTa-base is likewise LoRA
    # r=8's 0.3M budget. The 3M row is bottleneck 64 (``--opt bottleneck=64``).
    paper_options = {"glue": {"bottleneck": 16}}
    cpu_options = {"glue": {"bottleneck": 16}}
