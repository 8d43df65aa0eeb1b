"""Shared pieces of the plain-torch adapters (MSPLoRA, LoRA², SeRA; peft has none of them).

Each method wraps every target ``nn.Linear`` in place: the wrapper keeps the frozen layer as its child
``base`` and adds ``update(x)``, so module names change only by the wrapper's children
(``...query`` -> ``...query.base.weight`` plus the method's own tensors). Adapter tensors are created
on the base weight's device (the meta device included, for ``harness params``) in float32 when the
base is half precision or quantised, as peft does, so optimiser updates do not underflow.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from harness.adapter import Adapter, ApplyContext, DeltaComponent, TargetSite
from harness.errors import HarnessError

if TYPE_CHECKING:
    from collections.abc import Callable


def adapter_dtype_for(weight: torch.Tensor) -> torch.dtype:
    """float32 for half-precision or quantised bases, else the base's own dtype."""
    if not weight.dtype.is_floating_point or weight.dtype in (torch.float16, torch.bfloat16):
        return torch.float32
    return weight.dtype


def kaiming_uniform_(tensor: torch.Tensor, fan_in: int | None = None) -> None:
    """LoRA's init for A (``kaiming_uniform_(a=sqrt(5))``, i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in))), with
    an explicit fan-in so block-structured tensors can use their block's fan-in. No-op on meta tensors."""
    if tensor.is_meta:
        return
    fan = fan_in if fan_in is not None else tensor.shape[-1]
    bound = 1.0 / math.sqrt(fan)
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


class AdaptedLinear(nn.Module):
    """A frozen ``nn.Linear`` plus an additive update: ``base(x) + update(dropout(x))``.

    Subclasses implement ``update`` (the training-time computation, never a dense dW) and
    ``components`` (the dense dW per named part, out x in like ``base.weight``, for merging and the SVD
    analyses).
    """

    def __init__(self, base: nn.Linear, site: TargetSite, dropout: float):
        super().__init__()
        self.base = base
        self.site = site
        self.in_features = base.in_features
        self.out_features = base.out_features
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.merged = False
        self.factory: dict[str, Any] = {"device": base.weight.device, "dtype": adapter_dtype_for(base.weight)}

    # ---- to implement ------------------------------------------------------------------------------
    def update(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def components(self, cache: dict[int, torch.Tensor] | None = None) -> list[tuple[str, torch.Tensor]]:
        """(part name, dW) pairs; ``cache`` (keyed by the id of a shared owner) lets a part shared by
        several modules be computed once per call of ``delta_components``."""
        raise NotImplementedError

    # ---- shared ------------------------------------------------------------------------------------
    def delta_weight(self) -> torch.Tensor:
        parts = [delta for _, delta in self.components({})]
        total = parts[0]
        for part in parts[1:]:
            total = total + part
        return total

    @property
    def weight(self) -> torch.Tensor:  # code that reads ``module.weight`` (dtype/device probes) still works
        return self.base.weight

    @property
    def bias(self) -> torch.Tensor | None:
        return self.base.bias

    @property
    def compute_dtype(self) -> torch.dtype:
        """The dtype of the method's own tensors, read at call time so that it follows
        ``model.to(dtype)`` after wrapping (the factory dtype is only what they were created in)."""
        for p in self._parameters.values():  # SeRA's and LoRA²'s own tensors: no module walk per call
            if p is not None:
                return p.dtype
        for name, p in self.named_parameters():  # MSPLoRA's live in its (shared) level modules
            if not name.startswith("base."):
                return p.dtype
        return self.factory["dtype"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base(x)
        if self.merged:
            return out
        dtype = self.compute_dtype
        h = self.dropout(x)
        update = self.update(h if h.dtype == dtype else h.to(dtype))
        return out + (update if update.dtype == out.dtype else update.to(out.dtype))

    def merge(self) -> None:
        if self.merged:
            return
        weight = self.base.weight
        if not weight.dtype.is_floating_point:
            raise HarnessError(f"cannot merge into {self.site.name}: its weight is quantised ({weight.dtype})")
        with torch.no_grad():
            weight.add_(self.delta_weight().to(weight.dtype))
        self.merged = True

    def unmerge(self) -> None:
        if not self.merged:
            return
        weight = self.base.weight
        with torch.no_grad():
            weight.sub_(self.delta_weight().to(weight.dtype))
        self.merged = False

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, merged={self.merged}"


def module_type(site: TargetSite) -> str:
    """The module's name inside its block (``attention.output.dense``): what "one module type" means
    when sharing across layers. ``site.kind`` is the matched target, which a suffix target such as
    ``output.dense`` gives to two different modules of a BERT block."""
    prefix = f"{site.stack}.{site.layer}."
    return site.name[len(prefix):] if site.name.startswith(prefix) else site.kind


def freeze_all(model: nn.Module) -> None:
    for p in model.parameters():
        p.requires_grad_(False)


def target_linear(model: nn.Module, site: TargetSite) -> nn.Linear:
    module = model.get_submodule(site.name)
    if isinstance(module, AdaptedLinear):
        raise HarnessError(f"{site.name} is already adapted; apply an adapter once per model")
    if not isinstance(module, nn.Linear):
        raise HarnessError(f"{site.name} is a {type(module).__name__}, not an nn.Linear")
    return module


def replace_module(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def wrap_sites(
    model: nn.Module, sites: tuple[TargetSite, ...], build: Callable[[nn.Linear, TargetSite], AdaptedLinear]
) -> list[AdaptedLinear]:
    """Freeze the model, then replace every site's Linear by ``build(linear, site)``. The wrapper takes
    the replaced module's train/eval mode (a new module starts in train mode: dropout would be live in
    a model wrapped while in eval mode)."""
    if not sites:
        raise HarnessError("no target modules to adapt")
    freeze_all(model)
    wrappers = []
    for site in sites:
        linear = target_linear(model, site)
        wrapper = build(linear, site)
        wrapper.train(linear.training)
        replace_module(model, site.name, wrapper)
        wrappers.append(wrapper)
    return wrappers


def adapted_modules(model: nn.Module, cls: type[AdaptedLinear] = AdaptedLinear) -> Iterator[tuple[str, AdaptedLinear]]:
    for name, module in model.named_modules():
        if isinstance(module, cls):
            yield name, module


class WrappingAdapter(Adapter):
    """Merge, unmerge and ``delta_components`` for adapters built from ``AdaptedLinear`` wrappers."""

    wrapper_cls: type[AdaptedLinear] = AdaptedLinear

    def _wrappers(self, model: nn.Module) -> list[tuple[str, AdaptedLinear]]:
        found = list(adapted_modules(model, self.wrapper_cls))
        if not found:
            raise HarnessError(f"adapter '{self.name}' found none of its modules in the model")
        return found

    def merge(self, model: nn.Module) -> None:
        for _, module in self._wrappers(model):
            module.merge()

    def unmerge(self, model: nn.Module) -> None:
        for _, module in self._wrappers(model):
            module.unmerge()

    @contextlib.contextmanager
    def merged(self, model: nn.Module) -> Iterator[nn.Module]:
        self.merge(model)
        try:
            yield model
        finally:
            self.unmerge(model)

    def delta_components(self, model: nn.Module) -> list[DeltaComponent]:
        """One component per named part per module, float32 on the CPU. A part shared by several
        modules (MSPLoRA's global and mid levels) is computed once and the same tensor object is
        given to each module, so the analyses can compute its spectrum once."""
        out: list[DeltaComponent] = []
        shared: dict[int, torch.Tensor] = {}
        # keyed by id: the source tensor is kept alive next to its copy so an id is never reused
        on_cpu: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        with torch.no_grad():
            for name, module in self._wrappers(model):
                for part, delta in module.components(shared):
                    key = id(delta)
                    if key not in on_cpu:
                        on_cpu[key] = (delta, delta.detach().float().cpu())
                    out.append(
                        DeltaComponent(
                            module=name, kind=module.site.kind, layer=module.site.layer, component=part,
                            delta=on_cpu[key][1],
                        )
                    )
        return out


def check_applicable(ctx: ApplyContext, name: str) -> None:
    if not ctx.sites:
        raise HarnessError(f"adapter '{name}' needs target modules (--targets)")
