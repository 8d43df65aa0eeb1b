"""Target roles: what a paper's "q and v" or "all linear layers" means for each architecture, resolved
to the module names ``harness.sites.find_sites`` matches (the site finding itself is harness/sites.py)."""

from __future__ import annotations

from harness.errors import HarnessError
from harness.sites import ALL_LINEAR

# SeRA's instruction-tuning protocol (LLaMA3-8B) adapts every linear layer. Adapters spread these per-model
# entries into their paper_options; the per-model entry wins over the suite entry's q,v
# (Adapter.preset_options), and ranks and the rest still come from the suite entry.
LLAMA3_INSTRUCTION_ALL_LINEAR = {f"{suite}/llama3-8b": {"targets": ALL_LINEAR} for suite in ("instructeval", "mt-bench")}


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
