"""BitFit (Ben Zaken et al. 2022): only the bias terms of the transformer blocks train.

Every parameter named ``bias`` inside the block stacks trains (attention, FFN and, as in the paper,
LayerNorm biases); embeddings and the task head are left to the harness. A model without biases in its
blocks (LLaMA) has nothing to train: that is an error, not a silent zero-parameter run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from adapters._toolkit.surgery import freeze_all
from harness.adapter import Adapter, AdapterConfig, ApplyContext
from harness.errors import HarnessError
from harness.parameters import module_param_ids
from harness.registry import register_adapter
from harness.sites import block_stacks

if TYPE_CHECKING:
    from torch import nn


@dataclass(frozen=True)
class BitfitOptions(AdapterConfig):
    include_norms: bool = True  # also train the LayerNorm/RMSNorm biases (the paper does)


def is_norm(module: nn.Module) -> bool:
    return "norm" in type(module).__name__.lower()


def block_biases(
    model: nn.Module, exclude: tuple[str, ...], include_norms: bool
) -> list[tuple[str, nn.Parameter]]:
    """(name, parameter) of every bias inside the block stacks, outside the ``exclude`` modules."""
    excluded = module_param_ids(model, exclude)
    found: list[tuple[str, nn.Parameter]] = []
    seen: set[int] = set()
    for stack in block_stacks(model):
        for module_name, module in model.get_submodule(stack).named_modules():
            bias = module._parameters.get("bias")
            if bias is None or id(bias) in excluded or id(bias) in seen:
                continue
            if not include_norms and is_norm(module):
                continue
            seen.add(id(bias))
            found.append((f"{stack}.{module_name}.bias" if module_name else f"{stack}.bias", bias))
    return found


@register_adapter("bitfit")
class BitFit(Adapter[BitfitOptions]):
    display_name = "BitFit"  # in the report's tables (harness.adapter.Adapter.display_name)
    description = "BitFit: only the bias terms inside the transformer blocks train"
    # LLaMA-style causal LMs have no biases; the seeds run BitFit on encoders only.
    families = ("encoder", "vision", "dual_encoder")

    def apply(self, model: nn.Module, ctx: ApplyContext) -> nn.Module:
        biases = block_biases(model, ctx.head_modules, self.config.include_norms)
        if not biases:
            raise HarnessError(
                "BitFit found no bias terms in the transformer blocks of this model (e.g. LLaMA has none)"
            )
        freeze_all(model)
        for _, bias in biases:
            bias.requires_grad_(True)
        return model
