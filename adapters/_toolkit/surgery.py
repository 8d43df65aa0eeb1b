"""Model surgery shared by every in-place adapter written here in plain torch.

A wrapper keeps the frozen layer as its child ``base`` and replaces it in its parent, so the wrapped
module keeps its name (``...query`` holds ``...query.base.weight`` plus the method's own tensors) and
``adapter_state_dict``'s names are stable across runs.

New tensors live on the base weight's device (the meta device included: ``harness params`` builds models
there, so every initialiser here is a no-op on meta tensors) and in float32 when the base is half
precision or quantised, as peft does, so optimiser updates do not underflow.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, TypeVar

import torch
from torch import nn

from harness.adapter import TargetSite
from harness.errors import HarnessError

# ---------------------------------------------------------------------------------------------------
# new tensors: dtype rule and initialisers that leave meta tensors alone
# ---------------------------------------------------------------------------------------------------


def adapter_dtype(weight: torch.Tensor) -> torch.dtype:
    """float32 for half-precision or quantised bases, else the base's own dtype."""
    if not weight.dtype.is_floating_point or weight.dtype in (torch.float16, torch.bfloat16):
        return torch.float32
    return weight.dtype


def kaiming_uniform_(tensor: torch.Tensor, fan_in: int | None = None) -> None:
    """LoRA's init of A (``kaiming_uniform_(a=sqrt(5))`` = U(-1/sqrt(fan_in), 1/sqrt(fan_in))), with an
    explicit fan-in (default: the last dimension) so block-structured tensors use their block's fan-in."""
    if tensor.is_meta:
        return
    bound = 1.0 / math.sqrt(fan_in if fan_in is not None else tensor.shape[-1])
    with torch.no_grad():
        tensor.uniform_(-bound, bound)


def normal_(tensor: torch.Tensor, std: float) -> None:
    if not tensor.is_meta:
        with torch.no_grad():
            tensor.normal_(0.0, std)


def zeros_(tensor: torch.Tensor) -> None:
    if not tensor.is_meta:
        with torch.no_grad():
            tensor.zero_()


# ---------------------------------------------------------------------------------------------------
# the wrapper base
# ---------------------------------------------------------------------------------------------------


class LinearWrapper(nn.Module):
    """A frozen ``nn.Linear`` (child ``base``) plus the method's tensors."""

    def __init__(self, base: nn.Linear, site: TargetSite):
        super().__init__()
        self.base = base
        self.site = site
        self.in_features = base.in_features
        self.out_features = base.out_features
        self.factory: dict[str, Any] = {"device": base.weight.device, "dtype": adapter_dtype(base.weight)}

    def new_parameter(self, *shape: int) -> nn.Parameter:
        return nn.Parameter(torch.empty(*shape, **self.factory))

    @property
    def compute_dtype(self) -> torch.dtype:
        """The dtype of the method's own tensors, read at call time so that it follows
        ``model.to(dtype)`` after wrapping (the factory dtype is only what they were created in)."""
        for p in self._parameters.values():  # the method's own tensors: no module walk per call
            if p is not None:
                return p.dtype
        for name, p in self.named_parameters():  # tensors kept in (shared) child modules
            if not name.startswith("base."):
                return p.dtype
        return self.factory["dtype"]

    # Code that probes ``module.weight`` (dtype/device checks in transformers) keeps working.
    @property
    def weight(self) -> torch.Tensor:
        return self.base.weight

    @property
    def bias(self) -> torch.Tensor | None:
        return self.base.bias

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}"


W = TypeVar("W", bound=LinearWrapper)

# ---------------------------------------------------------------------------------------------------
# surgery: freeze, replace the targets, find the wrappers again
# ---------------------------------------------------------------------------------------------------


def freeze_all(model: nn.Module) -> None:
    for p in model.parameters():
        p.requires_grad_(False)


def unfreeze_all(model: nn.Module) -> None:
    for p in model.parameters():
        p.requires_grad_(True)


def module_type(site: TargetSite) -> str:
    """The module's name inside its block (``attention.output.dense``): what "one module type" means
    when sharing across layers. ``site.kind`` is the matched target, which a suffix target such as
    ``output.dense`` gives to two different modules of a BERT block."""
    prefix = f"{site.stack}.{site.layer}."
    return site.name[len(prefix):] if site.name.startswith(prefix) else site.kind


def target_linear(model: nn.Module, site: TargetSite) -> nn.Linear:
    module = model.get_submodule(site.name)
    if isinstance(module, LinearWrapper):
        raise HarnessError(f"{site.name} is already adapted; apply an adapter once per model")
    if not isinstance(module, nn.Linear):
        raise HarnessError(f"{site.name} is a {type(module).__name__}, not an nn.Linear")
    return module


def replace_module(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def wrap_sites(model: nn.Module, sites: tuple[TargetSite, ...], build: Callable[[nn.Linear, TargetSite], W]) -> list[W]:
    """Freeze the model, then replace every site's Linear by ``build(linear, site)``. The wrapper takes
    the replaced module's train/eval mode (a new module starts in train mode: dropout would be live in
    a model wrapped while in eval mode)."""
    if not sites:
        raise HarnessError("no target modules to adapt (check --targets)")
    freeze_all(model)
    wrappers = []
    for site in sites:
        linear = target_linear(model, site)
        wrapper = build(linear, site)
        wrapper.train(linear.training)
        replace_module(model, site.name, wrapper)
        wrappers.append(wrapper)
    return wrappers


def wrappers_in(model: nn.Module, cls: type[W], adapter: str) -> list[tuple[str, W]]:
    """(name, wrapper) of every ``cls`` module in model order; none at all is an error."""
    found = [(name, m) for name, m in model.named_modules() if isinstance(m, cls)]
    if not found:
        raise HarnessError(f"adapter '{adapter}' found none of its modules in the model")
    return found
