"""Bottleneck adapters on a projection's output (Houlsby, Pfeiffer): ``y + up(act(down(y)))`` with
``y = base(x)``. Nonlinear, so never merged and without a dense dW: merge/unmerge stay the contract's
clear error and there are no delta components.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from adapters._toolkit.surgery import LinearWrapper, normal_, wrap_sites, zeros_
from harness.adapter import Adapter, AdapterConfig, ApplyContext, TargetSite
from harness.errors import HarnessError

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "swish": nn.SiLU,
    "tanh": nn.Tanh,
}

# (attention output projection, FFN output projection) per architecture, as ``find_sites`` targets.
# The adapter goes on the projection's output, before dropout and the residual add.
OUTPUT_PROJECTIONS: tuple[tuple[str, str], ...] = (
    ("attention.output.dense", "output.dense"),  # BERT, RoBERTa, DeBERTa, HF ViT
    ("self_attn.o_proj", "mlp.down_proj"),  # LLaMA, Mistral, Qwen
    ("self_attn.out_proj", "mlp.fc2"),  # HF CLIP
    ("attn.out_proj", "mlp.c_proj"),  # open_clip towers (after suites._shared.vision's q/k/v surgery)
    ("attn.proj", "mlp.fc2"),  # timm ViT
)


@dataclass(frozen=True)
class BottleneckOptions(AdapterConfig):
    """``bottleneck`` is the budget: each adapter costs 2 * d * bottleneck + bottleneck + d parameters
    (d = the wrapped projection's output size). ``attention_output`` / ``ffn_output`` override the
    automatic choice of projections (module names inside a block, matched by dotted suffix)."""

    bottleneck: int = 64
    activation: str = "relu"
    attention_output: str | None = None
    ffn_output: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.bottleneck, int) or isinstance(self.bottleneck, bool) or self.bottleneck < 1:
            raise HarnessError(f"bottleneck must be a positive integer, got {self.bottleneck!r}")
        if self.activation not in ACTIVATIONS:
            known = ", ".join(ACTIVATIONS)
            raise HarnessError(f"unknown activation '{self.activation}'; choose one of {known}")


class BottleneckLinear(LinearWrapper):
    """``y + up(act(down(y)))`` on the output ``y = base(x)`` (Houlsby et al. 2019): ``down`` is BERT's
    init (normal, std 0.02), ``up`` is zero, so the wrapped model starts exactly as the pretrained one."""

    def __init__(self, base: nn.Linear, site: TargetSite, bottleneck: int, activation: str):
        super().__init__(base, site)
        width = self.out_features
        self.down_weight = self.new_parameter(bottleneck, width)
        self.down_bias = self.new_parameter(bottleneck)
        self.up_weight = self.new_parameter(width, bottleneck)
        self.up_bias = self.new_parameter(width)
        self.act = ACTIVATIONS[activation]()
        normal_(self.down_weight, 0.02)
        for zero in (self.down_bias, self.up_weight, self.up_bias):
            zeros_(zero)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base(x)
        h = y.to(self.compute_dtype)
        h = self.act(nn.functional.linear(h, self.down_weight, self.down_bias))
        h = nn.functional.linear(h, self.up_weight, self.up_bias)
        return y + h.to(y.dtype)


def _has(names: set[str], target: str) -> bool:
    return any(n == target or n.endswith("." + target) for n in names)


def output_projections(model: nn.Module, options: BottleneckOptions) -> tuple[str, str]:
    """The (attention output, FFN output) projection names for this model."""
    from harness.sites import linear_names_in_blocks

    names = linear_names_in_blocks(model)
    for attention, ffn in OUTPUT_PROJECTIONS:
        if _has(names, attention) and _has(names, ffn):
            return options.attention_output or attention, options.ffn_output or ffn
    if options.attention_output and options.ffn_output:
        return options.attention_output, options.ffn_output
    raise HarnessError(
        "could not tell the attention and FFN output projections of this model apart; pass "
        "--opt attention_output=NAME --opt ffn_output=NAME "
        f"(linear modules in a block: {', '.join(sorted(names))})"
    )


class BottleneckAdapter(Adapter[BottleneckOptions]):
    """Bottleneck adapters on the outputs of the projections named by ``positions`` ("attention", "ffn")."""

    positions: ClassVar[tuple[str, ...]] = ("attention", "ffn")

    def sites(self, model: nn.Module, head_modules: tuple[str, ...]) -> tuple[TargetSite, ...]:
        from harness.sites import find_sites

        attention, ffn = output_projections(model, self.config)
        wanted = {"attention": attention, "ffn": ffn}
        kinds = {wanted[p] for p in self.positions}
        # Both are searched even for FFN-only adapters: "output.dense" also suffix-matches BERT's
        # "attention.output.dense", and find_sites labels each module with its longest matching target.
        found = find_sites(model, (attention, ffn), exclude=head_modules)
        return tuple(s for s in found if s.kind in kinds)

    def apply(self, model: nn.Module, ctx: ApplyContext) -> nn.Module:
        c = self.config
        sites = self.sites(model, ctx.head_modules)
        wrap_sites(model, sites, lambda base, site: BottleneckLinear(base, site, c.bottleneck, c.activation))
        return model
