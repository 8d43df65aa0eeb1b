"""LoRA-FA (Zhang et al. 2023) through peft: LoRA with A frozen at its random init, B trained by peft's
``LoraFAOptimizer`` (B's gradient projected with (A A^T)^-1 / s^2 so that it follows the full-weight
gradient's projection). Parameters per module: r d_out (B only).

``apply`` freezes A itself (the harness counts parameters before building the optimiser); the optimiser
comes from peft's ``create_lorafa_optimizer``. That function expects a ``PeftModel`` (``active_adapters``,
``peft_config``) and puts every named parameter in one group with one learning rate, so we hand it a
view of the model holding only the LoRA factors and add the task head as a second group with its own
learning rate (the optimiser falls back to AdamW for parameters without "lora" in their name).
The frozen A is saved with the adapter: it is half of the update.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from adapters._toolkit.peft_tuner import ADAPTER_NAME, PeftLoraAdapter
from adapters.lora import LoRA
from harness.adapter import ApplyContext, LowRankConfig
from harness.errors import HarnessError
from harness.registry import register_adapter
from harness.targets import ATTENTION_QV

if TYPE_CHECKING:
    import torch
    from torch import nn


@dataclass(frozen=True)
class LoraFaOptions(LowRankConfig):
    pass


class _LoraFactorsView:
    """What ``create_lorafa_optimizer`` reads from a PeftModel, restricted to the LoRA factors (A, B of
    each module, in that order, as the optimiser pairs them)."""

    def __init__(self, model: nn.Module):
        self._model = model
        self.peft_config = model.peft_config
        self.active_adapters = [ADAPTER_NAME]

    def named_parameters(self) -> Iterator[tuple[str, nn.Parameter]]:
        for name, param in self._model.named_parameters():
            if ".lora_A." in name or ".lora_B." in name:
                yield name, param

    def get_submodule(self, name: str) -> nn.Module:
        return self._model.get_submodule(name)


@register_adapter("lorafa")
class LoraFA(PeftLoraAdapter[LoraFaOptions]):
    display_name = "LoRA-FA"  # in the report's tables (harness.adapter.Adapter.display_name)
    description = "LoRA-FA via peft: LoRA with frozen random A, B trained by peft's LoRA-FA optimiser"
    # The seeds compare LoRA-FA at LoRA's budget: LoRA's RoBERTa GLUE setting (Hu et al. 2021, Table 9:
    # r=8 on query,value) and the seeds' LoRA instruction setting (adapters/lora.py). Its own row in the
    # seeds' tables could not be read offline when this was written (results/reference/README.md).
    paper_options = {**LoRA.paper_options, "glue": {"rank": 8, "alpha": 8, "targets": ATTENTION_QV}}
    cpu_options = LoRA.cpu_options

    def apply(self, model: nn.Module, ctx: ApplyContext) -> nn.Module:
        model = super().apply(model, ctx)
        for name, param in model.named_parameters():
            if ".lora_A." in name:
                param.requires_grad_(False)
        return model

    def build_optimizer(
        self, model: nn.Module, param_groups: list[dict[str, Any]], lr: float, weight_decay: float
    ) -> torch.optim.Optimizer | None:
        from peft.optimizers import create_lorafa_optimizer

        c = self.config
        optimizer = create_lorafa_optimizer(
            _LoraFactorsView(model), r=c.rank, lora_alpha=c.scaling_alpha, lr=lr, weight_decay=weight_decay
        )
        lora_ids = {id(p) for p in optimizer.param_groups[0]["params"]}
        names = {id(p): n for n, p in model.named_parameters()}
        for group in param_groups:
            extra = [p for p in group["params"] if id(p) not in lora_ids]
            if not extra:
                continue
            if any(".lora_" in names.get(id(p), "") for p in extra):
                raise HarnessError("LoRA-FA: a LoRA factor is missing from peft's optimiser groups")
            optimizer.add_param_group(
                {
                    "params": extra,
                    "names": [names[id(p)] for p in extra],
                    "scaling_factors": [None] * len(extra),
                    "lr": group.get("lr", lr),
                    "weight_decay": weight_decay,
                }
            )
        return optimizer

    def adapter_state_dict(
        self, model: nn.Module, head_param_ids: frozenset[int] = frozenset()
    ) -> dict[str, torch.Tensor]:
        # A is frozen but it is half of the update: a checkpoint without it could not be reloaded
        out = super().adapter_state_dict(model, head_param_ids)
        out.update({name: p.detach() for name, p in model.named_parameters() if ".lora_A." in name})
        return out
