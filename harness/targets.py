"""Resolve ``--targets`` to the modules inside the transformer blocks.

A *block stack* is an ``nn.ModuleList`` whose children are all of one class and that holds at least
one ``nn.Linear`` (``bert.encoder.layer``, ``model.layers``, a CLIP tower's ``resblocks``). Targets
match module names inside a stack by name or dotted suffix, as peft does; modules outside the stacks
(pooler, task head, embeddings) never match, because the papers train or freeze those separately.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from harness.adapter import TargetSite
from harness.errors import HarnessError

if TYPE_CHECKING:
    from torch import nn

ALL_LINEAR = "all-linear"
# SeRA's instruction-tuning protocol (LLaMA3-8B) adapts every linear layer. Adapters spread these per-model
# entries into their paper_options; the per-model entry wins over the suite entry's q,v
# (Adapter.preset_options), and ranks and the rest still come from the suite entry.
LLAMA3_INSTRUCTION_ALL_LINEAR = {f"{suite}/llama3-8b": {"targets": ALL_LINEAR} for suite in ("instructeval", "mt-bench")}


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
    from torch import nn

    targets = tuple(targets)
    stacks = block_stacks(model)
    if not stacks:
        raise HarnessError("could not find the transformer blocks (an nn.ModuleList of layers) in the model")
    all_linear = targets == (ALL_LINEAR,)
    if ALL_LINEAR in targets and not all_linear:
        raise HarnessError("'all-linear' cannot be combined with other targets")
    sites: list[TargetSite] = []
    seen_kinds: set[str] = set()
    for stack in stacks:
        blocks = model.get_submodule(stack)
        for index, block in enumerate(blocks):
            for rel, module in block.named_modules():
                if not rel or not isinstance(module, nn.Linear):
                    continue
                full = f"{stack}.{index}.{rel}"
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
                sites.append(
                    TargetSite(
                        name=full,
                        stack=stack,
                        layer=index,
                        num_layers=len(blocks),
                        kind=kind,
                        in_features=module.in_features,
                        out_features=module.out_features,
                    )
                )
    if not all_linear:
        missing = [t for t in targets if t not in seen_kinds]
        if missing:
            available = sorted(linear_names_in_blocks(model))
            raise HarnessError(
                f"target module(s) {', '.join(missing)} not found in the transformer blocks; "
                f"linear modules there: {', '.join(available)}"
            )
    return sites


def linear_names_in_blocks(model: nn.Module) -> set[str]:
    from torch import nn

    names: set[str] = set()
    for stack in block_stacks(model):
        for rel, module in model.get_submodule(stack)[0].named_modules():
            if rel and isinstance(module, nn.Linear):
                names.add(rel)
    return names


def peft_target_regex(sites: list[TargetSite]) -> str:
    """A full-match regex for peft's ``target_modules`` that selects exactly these modules."""
    return "|".join(re.escape(s.name) for s in sites)
