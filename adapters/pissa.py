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

from adapters._peft_common import (
    ADAPTER_NAME,
    inject,
    merge_all,
    site_for,
    target_regex,
    tuner_layers,
    unmerge_all,
)
from harness.adapter import Adapter, ApplyContext, DeltaComponent, LowRankConfig
from harness.errors import HarnessError
from harness.registry import register_adapter
from harness.targets import ATTENTION_QV, LLAMA3_INSTRUCTION_ALL_LINEAR

if TYPE_CHECKING:
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
class PiSSA(Adapter):
    description = "PiSSA via peft: LoRA initialised from the principal singular vectors, W frozen as residual"
    config_cls = PissaOptions
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

    def peft_config(self, ctx: ApplyContext, *, shapes_only: bool = False) -> Any:
        from peft import LoraConfig

        c = self.config
        return LoraConfig(
            r=c.rank,
            lora_alpha=c.scaling_alpha,
            lora_dropout=c.dropout,
            target_modules=target_regex(ctx),
            bias="none",
            # a meta-device skeleton (parameter counts, shape checks) has no weights to decompose
            init_lora_weights=True if shapes_only else c.peft_init,
        )

    def apply(self, model: nn.Module, ctx: ApplyContext) -> nn.Module:
        self._sites = ctx.sites
        shapes_only = any(model.get_submodule(s.name).weight.is_meta for s in ctx.sites)
        model = inject(model, self.peft_config(ctx, shapes_only=shapes_only))
        if shapes_only:
            self._initial = {}
            return model
        # the initial factors, on CPU: as small as the adapter itself
        self._initial = {
            name: (
                layer.lora_A[ADAPTER_NAME].weight.detach().cpu().clone(),
                layer.lora_B[ADAPTER_NAME].weight.detach().cpu().clone(),
            )
            for name, layer in tuner_layers(model)
        }
        return model

    def merge(self, model: nn.Module) -> None:
        merge_all(model)

    def unmerge(self, model: nn.Module) -> None:
        unmerge_all(model)

    def delta_components(self, model: nn.Module) -> list[DeltaComponent]:
        import torch

        sites = getattr(self, "_sites", ())
        initial = getattr(self, "_initial", {})
        out: list[DeltaComponent] = []
        with torch.no_grad():
            for name, layer in tuner_layers(model):
                if name not in initial:
                    continue
                a0, b0 = (t.float() for t in initial[name])
                a = layer.lora_A[ADAPTER_NAME].weight.detach().float().cpu()
                b = layer.lora_B[ADAPTER_NAME].weight.detach().float().cpu()
                delta = layer.scaling[ADAPTER_NAME] * (b @ a - b0 @ a0)
                site = site_for(name, sites)
                out.append(
                    DeltaComponent(
                        module=name,
                        kind=site.kind if site else name.rsplit(".", 1)[-1],
                        layer=site.layer if site else None,
                        component="pissa",
                        delta=delta,
                    )
                )
        return out
