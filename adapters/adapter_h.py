"""Adapter-H (Houlsby et al. 2019): a bottleneck adapter ``y + up(act(down(y)))`` after the attention
output projection and another after the FFN output projection of every block. ``up`` starts at zero,
so the adapted model starts exactly as the pretrained one. Nonlinear: cannot be merged.
"""

from __future__ import annotations

from adapters._toolkit.bottleneck import BottleneckAdapter
from harness.registry import register_adapter


@register_adapter("adapter-h")
class AdapterH(BottleneckAdapter):
    display_name = "Adapterᴴ"  # in the report's tables (harness.adapter.Adapter.display_name)
    description = "Adapter-H (Houlsby): bottleneck adapters after attention and after the FFN"
    positions = ("attention", "ffn")
    # LoRA's GLUE tables (Hu et al. 2021, Table 2) run Houlsby adapters at 0.8M parameters on
    # RoBERTa-large (bottleneck 8) next to LoRA r=8; bottleneck 8 on RoBERTa-base is likewise LoRA r=8's
    # 0.3M budget. The 6M row is bottleneck 64 (``--opt bottleneck=64``).
    paper_options = {"glue": {"bottleneck": 8}}
    cpu_options = {"glue": {"bottleneck": 8}}
