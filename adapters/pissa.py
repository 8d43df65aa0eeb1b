"""PiSSA (Meng et al. 2024) through peft ``init_lora_weights="pissa"``.

The adapter starts at the top-r singular triplets of W (A = sqrt(S_r) V_r^T / s, B = U_r sqrt(S_r)) and
the frozen base weight becomes the residual W - s B A, so residual + adapter reproduces W exactly (PiSSA
is not zero-init: the adapter is not zero, the model output is unchanged). Parameters per module are
LoRA's: r (d_in + d_out).

The weight update analysed by the SVD tools is the change from the pretrained weight, s (B A - B0 A0),
not s B A (which holds the principal part of W itself): we keep B0, A0 from ``apply`` for that.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from adapters._toolkit.peft_tuner import ADAPTER_NAME, PeftLoraAdapter, tuner_layers
from harness.adapter import ApplyContext, LowRankConfig
from harness.errors import HarnessError
from harness.registry import register_adapter
from harness.search_space import LogUniform
from harness.targets import ATTENTION_QV, LLAMA3_INSTRUCTION_ALL_LINEAR

if TYPE_CHECKING:
    import torch
    from torch import nn

# "svd": exact SVD; "niter_N": peft's randomized SVD with N subspace iterations (fast on 7B models).
_INIT_PATTERN = re.compile(r"^(svd|niter_[1-9][0-9]*)$")


@dataclass(frozen=True)
class PissaOptions(LowRankConfig):
    """``init``: ``svd`` (exact, peft "pissa") or ``niter_N`` (randomized, peft "pissa_niter_N")."""

    init: str = "svd"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not _INIT_PATTERN.match(self.init):
            raise HarnessError(f"init must be 'svd' or 'niter_N' (N a positive integer), got {self.init!r}")

    @property
    def peft_init(self) -> str:
        return "pissa" if self.init == "svd" else f"pissa_{self.init}"


@register_adapter("pissa")
class PiSSA(PeftLoraAdapter[PissaOptions]):
    display_name = "PiSSA"  # in the report's tables (harness.adapter.Adapter.display_name)
    description = "PiSSA via peft: LoRA initialised from the principal singular vectors, W frozen as residual"
    # LoRA's RoBERTa-base GLUE rates are 4e-4 and 5e-4 (Hu et al. 2021, Table 9)
    search_space = {"lr": LogUniform(1e-4, 1e-2, prior=5e-4)}
    component = "pissa"
    # As DoRA: the seeds' tables compare PiSSA at the LoRA row's budget (LoRA's RoBERTa GLUE setting,
    # Hu et al. 2021 Table 9, r=8 on query,value; the seeds' LoRA instruction setting). PiSSA's own
    # runs use alpha = r (Meng et al. 2024, Sec. 5). The tables' per-method settings could not be read
    # offline when this was written (results/reference/README.md): these mirror adapters/lora.py.
    paper_options = {
        "glue": {"rank": 8, "alpha": 8, "targets": ATTENTION_QV},
        "instructeval": {"rank": 64, "alpha": 64, "targets": ATTENTION_QV, "init": "niter_4"},
        "mt-bench": {"rank": 64, "alpha": 64, "targets": ATTENTION_QV, "init": "niter_4"},
        **LLAMA3_INSTRUCTION_ALL_LINEAR,
    }
    cpu_options = {"glue": {"rank": 8, "alpha": 8}}

    def lora_keywords(self, model: nn.Module, ctx: ApplyContext) -> dict[str, Any]:
        # a meta-device skeleton (parameter counts, shape checks) has no weights to decompose
        return {"init_lora_weights": True if self._shapes_only(model, ctx) else self.config.peft_init}

    @staticmethod
    def _shapes_only(model: nn.Module, ctx: ApplyContext) -> bool:
        return any(model.get_submodule(s.name).weight.is_meta for s in ctx.sites)

    def apply(self, model: nn.Module, ctx: ApplyContext) -> nn.Module:
        shapes_only = self._shapes_only(model, ctx)
        model = super().apply(model, ctx)
        # the initial factors, on CPU: as small as the adapter itself
        self._initial = {} if shapes_only else {
            name: (
                layer.lora_A[ADAPTER_NAME].weight.detach().cpu().clone(),
                layer.lora_B[ADAPTER_NAME].weight.detach().cpu().clone(),
            )
            for name, layer in tuner_layers(model)
        }
        return model

    def layer_delta(self, name: str, layer: Any) -> torch.Tensor | None:
        """s (B A - B0 A0): the change from the pretrained weight, not s B A."""
        initial = getattr(self, "_initial", {})
        if name not in initial:
            return None
        a0, b0 = (t.float() for t in initial[name])
        a = layer.lora_A[ADAPTER_NAME].weight.detach().float().cpu()
        b = layer.lora_B[ADAPTER_NAME].weight.detach().float().cpu()
        return layer.scaling[ADAPTER_NAME] * (b @ a - b0 @ a0)
