"""Resolve ``--targets`` to the modules inside the transformer blocks, or in a model without blocks to
its named linear modules.

A *block stack* is an ``nn.ModuleList`` whose children are all of one class and that holds at least
one ``nn.Linear`` (``bert.encoder.layer``, ``model.layers``, a CLIP tower's ``resblocks``). Targets
match module names inside a stack by name or dotted suffix, as peft does; modules outside the stacks
(pooler, task head, embeddings) never match, because the papers train or freeze those separately.
A model with no block stack (an MLP, the toy suite's template) has its linear modules outside the head
as sites, each its own one-layer "stack": a low-rank adapter attaches to any named linear module.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from harness.errors import HarnessError

if TYPE_CHECKING:
    from torch import nn

ALL_LINEAR = "all-linear"


@dataclass(frozen=True)
class TargetSite:
    """One module an adapter attaches to, found inside a stack of transformer blocks."""

    name: str  # full dotted module name in the model given to ``apply``
    stack: str  # dotted name of the block ModuleList (e.g. "bert.encoder.layer"): towers differ
    layer: int  # index of the block in its stack
    num_layers: int  # length of that stack
    kind: str  # the module type: the matched target name ("query", "v_proj", ...)
    in_features: int
    out_features: int



def block_stacks(model: nn.Module) -> list[str]:
    """Names of the block ModuleLists, outermost first; nested lists inside a block are ignored."""
    from torch import nn

    stacks: list[str] = []
    for name, module in model.named_modules():
        if not isinstance(module, nn.ModuleList) or len(module) == 0:
            continue
        if len({type(child) for child in module}) != 1:
            continue
        if not any(isinstance(m, nn.Linear) for m in module[0].modules()):
            continue
        if any(name.startswith(s + ".") for s in stacks):
            continue
        stacks.append(name)
    return stacks


def _matches(relative: str, target: str) -> bool:
    return relative == target or relative.endswith("." + target)


def find_sites(model: nn.Module, targets: tuple[str, ...] | list[str], *, exclude: tuple[str, ...] = ()) -> list[TargetSite]:
    """The target modules (``nn.Linear``) inside the block stacks, in model order.

    ``exclude`` lists module-name prefixes never to touch (the task head). A target that matches
    nothing is an error that lists what the blocks contain.
    """

    targets = tuple(targets)
    all_linear = targets == (ALL_LINEAR,)
    if ALL_LINEAR in targets and not all_linear:
        raise HarnessError("'all-linear' cannot be combined with other targets")
    stacks = block_stacks(model)
    where = "in the transformer blocks" if stacks else "among the model's linear modules outside its head"
    sites: list[TargetSite] = []
    seen_kinds: set[str] = set()
    for stack, index, num_layers, rel, module in _candidate_linears(model, stacks):
        full = f"{stack}.{index}.{rel}" if stack else rel
        if any(full == e or full.startswith(e + ".") for e in exclude):
            continue
        if all_linear:
            kind = rel
        else:
            matched = [t for t in targets if _matches(rel, t)]
            if not matched:
                continue
            kind = max(matched, key=len)
        seen_kinds.add(kind)
        sites.append(TargetSite(name=full, stack=stack, layer=index, num_layers=num_layers, kind=kind,
                                in_features=module.in_features, out_features=module.out_features))
    if all_linear and not sites:
        raise HarnessError(f"no linear module {where} for 'all-linear'")
    if not all_linear:
        missing = [t for t in targets if t not in seen_kinds]
        if missing:
            available = sorted(linear_names_in_blocks(model, exclude=exclude)) or ["(none)"]
            raise HarnessError(f"target module(s) {', '.join(missing)} not found {where}; "
                               f"linear modules there: {', '.join(available)}")
    return sites


def _candidate_linears(model: nn.Module, stacks: list[str]) -> Iterator[tuple[str, int, int, str, nn.Linear]]:
    """(stack, layer, num_layers, name relative to the block, module) of every linear module a target may
    name: inside the block stacks, or, in a model without any, anywhere (stack "", layer 0 of 1)."""
    from torch import nn

    if not stacks:
        for rel, module in model.named_modules():
            if rel and isinstance(module, nn.Linear):
                yield "", 0, 1, rel, module
        return
    for stack in stacks:
        blocks = model.get_submodule(stack)
        for index, block in enumerate(blocks):
            for rel, module in block.named_modules():
                if rel and isinstance(module, nn.Linear):
                    yield stack, index, len(blocks), rel, module


def linear_names_in_blocks(model: nn.Module, exclude: tuple[str, ...] = ()) -> set[str]:
    """The names targets can match: the linear modules of the first block of each stack, or in a model
    without blocks its linear modules outside ``exclude`` (the head)."""
    stacks = block_stacks(model)
    names: set[str] = set()
    for stack, index, _, rel, _ in _candidate_linears(model, stacks):
        full = f"{stack}.{index}.{rel}" if stack else rel
        if index == 0 and not any(full == e or full.startswith(e + ".") for e in exclude):
            names.add(rel)
    return names


def peft_target_regex(sites: list[TargetSite]) -> str:
    """A full-match regex for peft's ``target_modules`` that selects exactly these modules."""
    return "|".join(re.escape(s.name) for s in sites)


