"""Parameter identity: each tensor counted once, the parameters under named modules, a tensor's bytes.
The helpers adapters, the measurements and the analyses share (torch only for type hints here)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    from torch import nn


def unique_named_parameters(model: nn.Module) -> Iterator[tuple[str, torch.nn.Parameter]]:
    """named_parameters without duplicates (first name of a shared tensor wins)."""
    yield from model.named_parameters(remove_duplicate=True)


def unique_named_buffers(model: nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    yield from model.named_buffers(remove_duplicate=True)


def module_param_ids(model: nn.Module, module_names: tuple[str, ...]) -> frozenset[int]:
    """Identities of every parameter under the named modules (missing names are ignored)."""
    ids: set[int] = set()
    for name in module_names:
        try:
            module = model.get_submodule(name)
        except AttributeError:
            continue
        ids.update(id(p) for p in module.parameters())
    return frozenset(ids)


def tensor_bytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()
