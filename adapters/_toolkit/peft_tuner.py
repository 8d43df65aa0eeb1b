"""The methods peft implements (LoRA, DoRA, PiSSA, LoRA-FA, AdaLoRA, VeRA, Lily, ...): a subclass of
``PeftAdapter`` states its peft config; injecting it, freezing the rest, merging, unmerging and the
dense updates for the analyses come from here. ``PeftLoraAdapter`` is peft's ``LoraConfig`` built from
a ``LowRankConfig``: a LoRA variant that peft already has is that class plus its keywords
(``lora_options = {"use_dora": True}``).

peft is imported inside the methods, so importing an adapter module (``harness ls``) stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from adapters._toolkit.surgery import freeze_all
from harness.adapter import Adapter, ApplyContext, ConfigT, DeltaComponent, LowRankConfig, TargetSite
from harness.sites import peft_target_regex

if TYPE_CHECKING:
    import torch
    from torch import nn

ADAPTER_NAME = "default"
LowRankT = TypeVar("LowRankT", bound=LowRankConfig)


def inject(model: nn.Module, peft_config: Any) -> nn.Module:
    """Inject a peft tuner in place (module names stay as they were) and freeze everything else.

    We use ``inject_adapter_in_model`` rather than ``get_peft_model`` so that peft does not wrap the
    task head into ``modules_to_save`` copies: the harness trains the head itself and counts it apart.
    """
    from peft import inject_adapter_in_model

    freeze_all(model)
    return inject_adapter_in_model(peft_config, model, adapter_name=ADAPTER_NAME)


def build_tuner(model: nn.Module, peft_config: Any, tuner_cls: type) -> Any:
    """Construct a peft tuner model (``LoraModel``-like) around ``model`` and return it.

    For methods whose state lives on the tuner object (AdaLoRA's rank allocator, VeRA's shared random
    projections) ``inject_adapter_in_model`` either refuses or throws the tuner away. The tuner injects
    in place just the same: ``tuner.model`` is ``model`` itself, so module names stay findable, and
    without ``modules_to_save`` the task head is not copied. The tuner is kept on the adapter instance
    (not inside the model) and ``apply`` returns ``tuner.model``.
    """
    freeze_all(model)
    tuner = tuner_cls(model, peft_config, ADAPTER_NAME)
    if tuner.model is not model:  # peft contract we rely on; fail loudly if a release changes it
        raise RuntimeError(f"{tuner_cls.__name__} did not adapt the model in place")
    return tuner


def tuner_layers(model: nn.Module) -> list[tuple[str, Any]]:
    from peft.tuners.tuners_utils import BaseTunerLayer

    return [(name, m) for name, m in model.named_modules() if isinstance(m, BaseTunerLayer)]


def site_for(name: str, sites: tuple[TargetSite, ...]) -> TargetSite | None:
    for site in sites:
        if name == site.name:
            return site
    return None


class PeftAdapter(Adapter[ConfigT]):
    """Plug-in base of a peft-backed method. Subclasses implement ``peft_config``; a method whose state
    lives on peft's tuner object names it in ``tuner_class`` (kept as ``self._tuner``)."""

    # the name of the update in ``delta_components`` ("lora", "dora", ...)
    component: ClassVar[str] = "lora"

    def peft_config(self, model: nn.Module, ctx: ApplyContext) -> Any:
        raise NotImplementedError

    def tuner_class(self) -> type | None:
        """peft's tuner model class when ``inject_adapter_in_model`` cannot be used, else None."""
        return None

    def target_regex(self, ctx: ApplyContext) -> str:
        return peft_target_regex(list(ctx.sites))

    def apply(self, model: nn.Module, ctx: ApplyContext) -> nn.Module:
        self._sites = ctx.sites
        config = self.peft_config(model, ctx)
        tuner_cls = self.tuner_class()
        if tuner_cls is None:
            return inject(model, config)
        self._tuner = build_tuner(model, config, tuner_cls)
        return self._tuner.model

    # ---- inference ------------------------------------------------------------------------------------
    def merge(self, model: nn.Module) -> None:
        for _, layer in tuner_layers(model):
            if not layer.merged:
                layer.merge()

    def unmerge(self, model: nn.Module) -> None:
        for _, layer in tuner_layers(model):
            if layer.merged:
                layer.unmerge()

    # ---- analysis ------------------------------------------------------------------------------------
    def layer_delta(self, name: str, layer: Any) -> torch.Tensor | None:
        """The dense update of one peft layer (None: the layer has none); default peft's own
        ``get_delta_weight`` (scaling * B @ A for the LoRA family)."""
        if not hasattr(layer, "get_delta_weight"):
            return None
        return layer.get_delta_weight(ADAPTER_NAME)

    def final_ranks(self, model: nn.Module) -> dict[str, int]:
        """Rank left per module after pruning, for methods that prune (recorded next to the spectrum)."""
        return {}

    def delta_components(self, model: nn.Module) -> list[DeltaComponent]:
        import torch

        sites = getattr(self, "_sites", ())
        ranks = self.final_ranks(model)
        out: list[DeltaComponent] = []
        with torch.no_grad():
            for name, layer in tuner_layers(model):
                delta = self.layer_delta(name, layer)
                if delta is None:
                    continue
                site = site_for(name, sites)
                out.append(
                    DeltaComponent(
                        module=name,
                        kind=site.kind if site else name.rsplit(".", 1)[-1],
                        layer=site.layer if site else None,
                        component=self.component,
                        delta=delta.detach().float().cpu(),
                        final_rank=ranks.get(name),
                    )
                )
        return out


class PeftLoraAdapter(PeftAdapter[LowRankT]):
    """peft's LoRA (``LoraConfig``) from a ``LowRankConfig``; a variant adds its ``lora_options``."""

    # extra LoraConfig keywords of a variant: {"use_dora": True}, {"use_rslora": True}, ...
    lora_options: ClassVar[dict[str, Any]] = {}

    def lora_keywords(self, model: nn.Module, ctx: ApplyContext) -> dict[str, Any]:
        """The variant's LoraConfig keywords for this model (default ``lora_options``)."""
        return dict(self.lora_options)

    def peft_config(self, model: nn.Module, ctx: ApplyContext) -> Any:
        from peft import LoraConfig

        c = self.config
        return LoraConfig(
            r=c.rank,
            lora_alpha=c.scaling_alpha,
            lora_dropout=c.dropout,
            target_modules=self.target_regex(ctx),
            bias="none",
            **self.lora_keywords(model, ctx),
        )
