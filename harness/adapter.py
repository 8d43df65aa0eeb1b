"""The adapter plug-in contract.

An adapter is a class registered with ``@register_adapter("name")`` that has a typed frozen config
(the type argument of its base, ``class LoRA(PeftLoraAdapter[LoraOptions])``, becomes ``config_cls``) and
an ``apply`` method that turns a pretrained model into the model to train: it adds
its own trainable tensors and freezes what must stay frozen. Everything else is an optional hook that the
training loop calls; the defaults do the right thing for a plain additive adapter.

The harness (not the adapter) trains the task head: parameters of the modules listed in
``ApplyContext.head_modules`` are set trainable after ``apply`` (unless ``trains_head`` is False) and are
counted apart from the adapter's parameters, as the papers do. Parameters are identified by object
identity, so an adapter may wrap the model (e.g. peft's PeftModel) without breaking that bookkeeping.

Shared tensors (one tensor used by many layers, e.g. MSPLoRA's global component or VeRA's random
projections) must be one ``nn.Parameter``/buffer object: counts de-duplicate by identity, gradients from
all layers accumulate in it and ``adapter_state_dict`` stores it once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar, cast

from harness.config import to_jsonable
from harness.errors import HarnessError
from harness.sites import TargetSite, find_sites

if TYPE_CHECKING:  # torch is imported lazily so that `harness ls` and the app stay light
    import torch
    from torch import nn

MODEL_FAMILIES = ("encoder", "causal_lm", "vision", "dual_encoder")


@dataclass(frozen=True)
class AdapterConfig:
    """Base config: adapters without options (full fine-tuning, head only) use it as is.

    The options are the constructor's fields; a field with ``init=False`` is no option (the CLI and
    ``--opt`` skip it, ``to_dict`` leaves it out, so it is not in the spec nor in the config hash)."""

    def to_dict(self) -> dict[str, Any]:
        return {f.name: to_jsonable(getattr(self, f.name)) for f in dataclasses.fields(self) if f.init}


@dataclass(frozen=True)
class LowRankConfig(AdapterConfig):
    """Options shared by the low-rank family.

    ``targets`` are module names inside the transformer blocks (matched by name or dotted suffix, as
    peft does) or the single token ``all-linear``. ``alpha`` None means "equal to rank" (scaling 1).
    """

    rank: int = 8
    alpha: float | None = None
    targets: tuple[str, ...] = ("query", "value")
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if not isinstance(self.rank, int) or isinstance(self.rank, bool) or self.rank < 1:
            raise HarnessError(f"rank must be a positive integer, got {self.rank!r}")
        if self.alpha is not None and (isinstance(self.alpha, bool) or not isinstance(self.alpha, (int, float))
                                       or not math.isfinite(self.alpha)):
            raise HarnessError(f"alpha must be a finite positive number, got {self.alpha!r}")
        if self.alpha is not None and self.alpha <= 0:
            raise HarnessError(f"alpha must be positive, got {self.alpha!r}")
        if not self.targets or any(not t for t in self.targets):
            raise HarnessError("targets must name at least one module (or 'all-linear')")
        if not 0.0 <= self.dropout < 1.0:
            raise HarnessError(f"dropout must be in [0, 1), got {self.dropout!r}")

    @property
    def scaling_alpha(self) -> float:
        return float(self.alpha if self.alpha is not None else self.rank)


@dataclass(frozen=True)
class UnscaledLowRankConfig(LowRankConfig):
    """A low-rank method without an alpha / r scaling (VeRA's and Lily's trained vectors or fixed
    factor set the scale): ``alpha`` is no option, so ``--alpha`` skips it and it is in no record."""

    alpha: float | None = field(default=None, init=False)


ConfigT = TypeVar("ConfigT", bound=AdapterConfig)


@dataclass(frozen=True)
class ApplyContext:
    family: str  # one of MODEL_FAMILIES
    sites: tuple[TargetSite, ...]  # resolved targets (empty for adapters without targets)
    head_modules: tuple[str, ...]  # trained in full by the harness and counted apart
    total_steps: int  # optimizer steps planned for the run (schedules such as AdaLoRA's need it)
    seed: int = 0
    task_type: str = ""  # peft TaskType name where it matters ("SEQ_CLS", "CAUSAL_LM"); informational


@dataclass(frozen=True)
class DeltaComponent:
    """A dense weight update (out x in) for the SVD analyses; ``component`` names the level
    ("global", "mid", "layer", "lora", ...) so multi-component methods can be analysed per level."""

    module: str
    kind: str
    layer: int | None
    component: str
    delta: torch.Tensor = field(repr=False)
    final_rank: int | None = None  # rank left after pruning (LoRA²), recorded next to the spectrum


class Adapter(Generic[ConfigT]):
    """Base class of every adapter plug-in. Subclass as ``Adapter[MyOptions]`` (or a toolkit base such as
    ``PeftLoraAdapter[MyOptions]``) and implement ``apply``: ``MyOptions`` becomes ``config_cls``, the class
    the registry builds from options (``__init_subclass__``; setting ``config_cls`` yourself still works),
    and ``self.config`` is typed ``MyOptions`` in every method. The registry checks all this when the
    class is registered (harness.registry)."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "config_cls" not in vars(cls):
            config = config_type_argument(cls)
            if config is not None:
                cls.config_cls = config

    name: ClassVar[str] = ""
    # the method's name in papers and in the report's tables ("LoRA²", "Adapterᴴ"); the registry sets it to
    # ``name`` for an adapter that declares none
    display_name: ClassVar[str] = ""
    config_cls: ClassVar[type[AdapterConfig]] = AdapterConfig
    description: ClassVar[str] = ""
    # Model families this method applies to; the runner refuses other combinations up front.
    families: ClassVar[tuple[str, ...]] = MODEL_FAMILIES
    # Whether ``rank`` (of a LowRankConfig) must not exceed min(in, out) of every target module: true
    # of a factorised update B @ A, where a larger rank adds parameters but no capacity; False for
    # methods whose "rank" is something else (VeRA's shared random projections are wider than the layer).
    rank_bounded_by_shape: ClassVar[bool] = True
    # Whether the harness should train the task head next to this adapter.
    trains_head: ClassVar[bool] = True
    # False for a method that is only evaluated (zero-shot): the runner skips training altogether.
    trains: ClassVar[bool] = True
    # Options of the ``paper`` preset, keyed by suite name or "suite/model" (model = catalogue name);
    # the more specific key wins. Values are option dicts like ``--opt`` gives.
    paper_options: ClassVar[dict[str, dict[str, Any]]] = {}
    cpu_options: ClassVar[dict[str, dict[str, Any]]] = {}
    # Training-budget changes this method needs under a preset (e.g. full fine-tuning needs a far
    # smaller learning rate than an adapter), keyed by "preset", "preset/suite" or
    # "preset/suite/model"; the more specific key wins: {"cpu": {"lr": 5e-5}, "paper/glue": {...}}.
    train_overrides: ClassVar[dict[str, dict[str, Any]]] = {}
    # What `harness tune` searches for this method (harness/search_space.py): the learning rate on a log
    # scale over at least two orders of magnitude, plus any option worth tuning, each with the method's
    # paper value as the prior. None: harness.search_space.DEFAULT_SPACE.
    search_space: ClassVar[dict[str, Any] | None] = None

    def __init__(self, config: ConfigT | None = None):
        self.config: ConfigT = config if config is not None else cast(ConfigT, self.config_cls())
        if not isinstance(self.config, self.config_cls):
            raise TypeError(f"{type(self).__name__} expects {self.config_cls.__name__}, got {type(self.config).__name__}")

    # ---- required -----------------------------------------------------------------------------
    def apply(self, model: nn.Module, ctx: ApplyContext) -> nn.Module:
        raise NotImplementedError

    # ---- where it attaches ---------------------------------------------------------------------------
    def sites(self, model: nn.Module, head_modules: tuple[str, ...]) -> tuple[TargetSite, ...]:
        """The modules this adapter attaches to (``ApplyContext.sites``), never inside the head. The
        default: a low-rank config's ``targets`` (harness.sites.find_sites: inside the transformer blocks,
        or any named linear module of a model without blocks); no sites for any other config. An adapter
        that places itself differently overrides this."""
        if not isinstance(self.config, LowRankConfig):
            return ()
        return tuple(find_sites(model, self.config.targets, exclude=head_modules))

    # ---- validation before any model is loaded ------------------------------------------------------
    def check_sites(self, sites: tuple[TargetSite, ...]) -> None:
        """Raise HarnessError when the config cannot fit these modules (e.g. a split that does not
        divide a dimension). Called by ``harness params`` and by the runner before training."""

    # ---- training-loop hooks -------------------------------------------------------------------
    def extra_loss(self, model: nn.Module) -> torch.Tensor | None:
        """A term added to the task loss (e.g. orthogonality regularisers)."""
        return None

    def on_step_begin(self, model: nn.Module, step: int) -> None:
        """Before the forward pass of optimizer step ``step`` (0-based)."""

    def on_step_end(self, model: nn.Module, step: int) -> None:
        """After ``optimizer.step()`` and before ``zero_grad()``: gradients are still there (AdaLoRA)."""

    # ---- in-run checkpoints (harness/pipeline/checkpoint.py) -----------------------------------------------
    def training_state(self) -> dict[str, Any]:
        """State the adapter keeps outside the model's tensors and changes while training (a sampler's
        generator, an allocator's statistics), for a checkpoint; {} when there is none."""
        return {}

    def load_training_state(self, state: dict[str, Any]) -> None:
        """Restore what ``training_state`` returned (a run resumed from its checkpoint)."""

    def checkpointable(self) -> bool:
        """Whether a checkpoint restores this adapter exactly: True unless it overrides a step hook (it
        may keep state there) without overriding ``training_state``. A run of an adapter that is not is
        not checkpointed: it restarts from scratch when interrupted, as before."""
        cls = type(self)
        hooks = cls.on_step_begin is not Adapter.on_step_begin or cls.on_step_end is not Adapter.on_step_end
        return not hooks or cls.training_state is not Adapter.training_state

    def build_optimizer(
        self, model: nn.Module, param_groups: list[dict[str, Any]], lr: float, weight_decay: float
    ) -> torch.optim.Optimizer | None:
        """Return a custom optimizer, or None for AdamW over ``param_groups`` (adapter group, head group)."""
        return None

    def evaluation_variants(self, model: nn.Module) -> Iterator[tuple[str, contextlib.AbstractContextManager]]:
        """Extra evaluations besides the default one (e.g. DyLoRA at several ranks):
        yields (variant name, context manager that puts the model in that state)."""
        return iter(())

    # ---- inference --------------------------------------------------------------------------------
    def merge(self, model: nn.Module) -> None:
        raise HarnessError(f"adapter '{self.name}' does not support merging into the base weights")

    def unmerge(self, model: nn.Module) -> None:
        raise HarnessError(f"adapter '{self.name}' does not support unmerging")

    # ---- persistence ------------------------------------------------------------------------------
    def adapter_state_dict(self, model: nn.Module, head_param_ids: frozenset[int] = frozenset()) -> dict[str, torch.Tensor]:
        """The adapter's own tensors, each shared tensor once (first name wins). Default: every
        trainable parameter that is not a head parameter. An adapter with frozen tensors of its own that a
        reload needs (VeRA's shared random projections) overrides this to add them (adapters/vera.py)."""
        from harness.parameters import unique_named_parameters

        out: dict[str, torch.Tensor] = {}
        for pname, param in unique_named_parameters(model):
            if param.requires_grad and id(param) not in head_param_ids:
                out[pname] = param.detach()
        return out

    def load_adapter_state_dict(self, model: nn.Module, state: dict[str, torch.Tensor]) -> None:
        """Inverse of ``adapter_state_dict``; shared tensors are loaded once and stay shared."""
        from harness.parameters import unique_named_parameters

        params = dict(unique_named_parameters(model))
        missing = [k for k in state if k not in params]
        if missing:
            raise HarnessError(f"adapter state has tensors the model lacks: {missing[:5]}")
        import torch

        with torch.no_grad():
            for key, tensor in state.items():
                params[key].copy_(tensor.to(params[key].device, params[key].dtype))

    # ---- analysis and reporting ---------------------------------------------------------------------
    def delta_components(self, model: nn.Module) -> list[DeltaComponent]:
        """Dense weight updates for the SVD analyses; empty when the method has none."""
        return []

    def summary(self, model: nn.Module) -> dict[str, Any]:
        """Method-specific facts recorded in the run record (final ranks, parameters after pruning)."""
        return {}

    @classmethod
    def tuning_space(cls) -> dict[str, Any]:
        from harness.search_space import DEFAULT_SPACE

        return dict(cls.search_space if cls.search_space is not None else DEFAULT_SPACE)

    @classmethod
    def train_overrides_for(cls, preset: str, suite: str, model: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key in (preset, f"{preset}/{suite}", f"{preset}/{suite}/{model}"):
            out.update(cls.train_overrides.get(key, {}))
        return out

    @classmethod
    def preset_options(cls, preset: str, suite: str, model: str) -> dict[str, Any]:
        table = {"paper": cls.paper_options, "cpu": cls.cpu_options}.get(preset, {})
        out: dict[str, Any] = {}
        out.update(table.get(suite, {}))
        out.update(table.get(f"{suite}/{model}", {}))
        return out


def check_rank_fits(adapter: Adapter[Any], sites: tuple[TargetSite, ...]) -> None:
    """A low-rank adapter's rank larger than min(in, out) of a target module is a plan-time error."""
    config = adapter.config
    if not isinstance(config, LowRankConfig) or not type(adapter).rank_bounded_by_shape:
        return
    for site in sites:
        limit = min(site.in_features, site.out_features)
        if config.rank > limit:
            raise HarnessError(
                f"rank {config.rank} of adapter '{adapter.name}' is larger than min(in, out) = {limit} of target "
                f"module {site.name} ({site.out_features} x {site.in_features}); use --rank {limit} or less"
            )


def config_type_argument(cls: type) -> type[AdapterConfig] | None:
    """The config class a subclass names as its base's type argument (``Adapter[MyOptions]``,
    ``LowRankAdapter[MyOptions, MyLinear]``: the first argument that is an AdapterConfig), or None."""
    for base in getattr(cls, "__orig_bases__", ()):
        for arg in getattr(base, "__args__", ()):
            if isinstance(arg, type) and issubclass(arg, AdapterConfig):
                return arg
    return None
