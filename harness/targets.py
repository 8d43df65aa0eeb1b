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


# ---------------------------------------------------------------------------------------------------
# target roles: what a paper's "q and v" or "all linear layers" means for each architecture
# ---------------------------------------------------------------------------------------------------

ATTENTION_QV = "attention-qv"  # the query and value projections (LoRA's default, most seeds' tables)
ATTENTION_QK = "attention-qk"  # query and key (LoRA² Table 4)
ATTENTION_KV = "attention-kv"  # key and value
ATTENTION_QKV = "attention-qkv"  # query, key and value
# every weight type of the block, listed by name (not the all-linear token): LoRA²'s six DeBERTaV3 weight
# types (q, k, v, attention output, FFN in, FFN out), so the spec records the modules it adapted
ATTENTION_FFN = "attention-ffn"

TARGET_ROLES: dict[str, str] = {
    ATTENTION_QV: "the attention query and value projections",
    ATTENTION_QK: "the attention query and key projections",
    ATTENTION_KV: "the attention key and value projections",
    ATTENTION_QKV: "the attention query, key and value projections",
    ATTENTION_FFN: "query, key, value, attention output and both feed-forward projections, by name",
    ALL_LINEAR: "every linear layer inside the blocks (peft's all-linear; kept as the token)",
}


def _attention_roles(q: str, k: str, v: str, *ffn: str) -> dict[str, tuple[str, ...]]:
    roles = {ATTENTION_QV: (q, v), ATTENTION_QK: (q, k), ATTENTION_KV: (k, v), ATTENTION_QKV: (q, k, v)}
    if ffn:
        roles[ATTENTION_FFN] = (q, k, v, *ffn)
    return roles


# Module names (as ``find_sites`` matches them inside a block) per architecture.
ARCHITECTURE_ROLES: dict[str, dict[str, tuple[str, ...]]] = {
    # BERT, RoBERTa, MiniLM: bert.encoder.layer.N.attention.self.{query,key,value}
    "bert": _attention_roles("query", "key", "value", "attention.output.dense", "intermediate.dense", "output.dense"),
    # DeBERTaV2/V3: attention.self.{query,key,value}_proj; same output/FFN names as BERT
    "deberta-v2": _attention_roles("query_proj", "key_proj", "value_proj", "attention.output.dense",
                                   "intermediate.dense", "output.dense"),
    # LLaMA-2/3, SmolLM2: self_attn.{q,k,v,o}_proj, mlp.{gate,up,down}_proj
    "llama": _attention_roles("q_proj", "k_proj", "v_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj",
                              "mlp.down_proj"),
    # open_clip towers after suites._shared.vision splits in_proj into attn.{q,k,v}
    "open_clip": _attention_roles("q", "k", "v", "attn.out_proj", "mlp.c_fc", "mlp.c_proj"),
    # timm ViT after suites._shared.vision splits attn.qkv into attn.{q,k,v}
    "timm-vit": _attention_roles("q", "k", "v", "attn.proj", "mlp.fc1", "mlp.fc2"),
    # convolutional networks: no linear layers in blocks, no roles (only head / full / bitfit apply)
    "convolutional": {},
}

# transformers ``model_type`` -> architecture above (for catalogue entries with an arch config)
MODEL_TYPE_ARCHITECTURES = {"bert": "bert", "roberta": "bert", "deberta-v2": "deberta-v2", "llama": "llama"}


def model_architecture(name: str) -> str | None:
    """The architecture (harness.targets.ARCHITECTURE_ROLES key) of a catalogue model, read without
    torch or the network; None for a model outside the catalogue or of an unknown model type."""
    import json

    from harness.models import CONFIG_DIR, SUITE_MODEL_ARCHITECTURES, find_model_entry

    entry = find_model_entry(name)
    if entry is None:
        return None
    arch = entry.architecture or SUITE_MODEL_ARCHITECTURES.get(entry.name)
    if arch is None:
        config_file = CONFIG_DIR / entry.arch_config if entry.arch_config else None
        # local_path() may unpack weights (SmolLM2's GGUF): only when no arch config says it
        local = entry.local_path() if config_file is None else None
        if local is not None and (local / "config.json").is_file():
            config_file = local / "config.json"
        if config_file is not None:
            arch = MODEL_TYPE_ARCHITECTURES.get(json.loads(config_file.read_text()).get("model_type", ""))
    if arch is not None and arch not in ARCHITECTURE_ROLES:
        raise HarnessError(f"model '{entry.name}' names an unknown architecture '{arch}'; known: {', '.join(ARCHITECTURE_ROLES)}")
    return arch


def resolve_targets(value: object, model: str, *, fallback: object = None) -> object:
    """A target role ("attention-qv", ...) -> the module names it means for ``model``'s architecture
    (``model_architecture``); anything else (module names, "all-linear") is returned as
    is. A model outside the catalogue (a hub id, a local folder) has no known architecture: for the
    q,v role the suite's own per-model default (``fallback``) is used, any other role is an error."""
    if not isinstance(value, str) or value not in TARGET_ROLES or value == ALL_LINEAR:
        return value
    arch = model_architecture(model)
    if arch is None:
        if value == ATTENTION_QV and fallback is not None:
            return fallback
        raise HarnessError(
            f"target role '{value}' needs a catalogue model whose architecture is known; model '{model}' is not one: "
            "pass module names with --targets (e.g. --targets query,value)"
        )
    roles = ARCHITECTURE_ROLES[arch]
    if value not in roles:
        raise HarnessError(
            f"model '{model}' ({arch}) has no '{value}' targets; its roles: {', '.join(roles) or '(none)'}"
        )
    return roles[value]


def resolve_target_options(options: dict, model: str, *, fallback: object = None) -> dict:
    """``options`` with a ``targets`` role replaced by the model's module names (see resolve_targets)."""
    if "targets" not in options:
        return options
    return {**options, "targets": resolve_targets(options["targets"], model, fallback=fallback)}
