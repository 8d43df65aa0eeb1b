"""The low-rank family in plain torch: ``base(x) + update(dropout(x))`` with an update that is linear in
x, so it is a dense dW (out x in) that can be merged into the base weight and analysed.

``LowRankLinear`` is the wrapper: a subclass implements ``update`` (the training-time computation,
scaling included, never through a dense dW) and ``delta_weight`` (the same map as one dense dW). A method
whose update has several named parts (MSPLoRA's levels) also overrides ``components``; the others name
their single part with ``component``. ``LowRankAdapter`` is the plug-in base: ``apply`` wraps every
target site with ``build_wrapper``, and merge/unmerge and ``delta_components`` come with it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import ClassVar, Generic, TypeVar

import torch
from torch import nn

from adapters._toolkit.surgery import LinearWrapper, wrap_sites, wrappers_in
from harness.adapter import Adapter, ApplyContext, ConfigT, DeltaComponent, TargetSite
from harness.errors import HarnessError


class LowRankLinear(LinearWrapper):
    """A frozen ``nn.Linear`` plus an additive update that is linear in its input."""

    # the name of the single part in ``delta_components`` ("lora", "sera", ...)
    component: ClassVar[str] = "lora"

    def __init__(self, base: nn.Linear, site: TargetSite, dropout: float):
        super().__init__(base, site)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.merged = False

    # ---- to implement ------------------------------------------------------------------------------
    def update(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def delta_weight(self) -> torch.Tensor:
        """The whole update as one dense dW, out x in like ``base.weight``."""
        raise NotImplementedError

    def components(self, cache: dict[int, torch.Tensor] | None = None) -> list[tuple[str, torch.Tensor]]:
        """(part name, dW) pairs for the analyses; ``cache`` (keyed by the id of a shared owner) lets a
        part shared by several modules be computed once per call of ``delta_components``."""
        return [(self.component, self.delta_weight())]

    # ---- shared ------------------------------------------------------------------------------------
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
        return f"{super().extra_repr()}, merged={self.merged}"


WrapperT = TypeVar("WrapperT", bound=LowRankLinear)


class LowRankAdapter(Adapter[ConfigT], Generic[ConfigT, WrapperT]):
    """Plug-in base of the plain-torch low-rank methods: one ``wrapper_cls`` per target site, built by
    ``build_wrapper``; merge, unmerge and ``delta_components`` for free."""

    wrapper_cls: type[WrapperT]

    def build_wrapper(self, base: nn.Linear, site: TargetSite) -> WrapperT:
        raise NotImplementedError

    def apply(self, model: nn.Module, ctx: ApplyContext) -> nn.Module:
        self.check_sites(ctx.sites)
        wrap_sites(model, ctx.sites, self.build_wrapper)
        return model

    def wrappers(self, model: nn.Module) -> list[tuple[str, WrapperT]]:
        return wrappers_in(model, self.wrapper_cls, self.name)

    def merge(self, model: nn.Module) -> None:
        for _, module in self.wrappers(model):
            module.merge()

    def unmerge(self, model: nn.Module) -> None:
        for _, module in self.wrappers(model):
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
            for name, module in self.wrappers(model):
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
