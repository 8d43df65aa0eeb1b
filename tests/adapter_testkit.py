"""Tiny random models and generic checks for the plain-torch adapter tests (MSPLoRA, LoRA², SeRA)."""

from __future__ import annotations

import torch
from torch import nn

from harness.adapter import Adapter, ApplyContext, LowRankConfig
from harness.measure import count_parameters, module_param_ids
from harness.targets import find_sites

HEAD = ("classifier",)


def tiny_bert(layers: int = 4, hidden: int = 32, intermediate: int = 64, seed: int = 0) -> nn.Module:
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=64, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=4,
        intermediate_size=intermediate, max_position_embeddings=32, hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0, num_labels=2,
    )
    return BertForSequenceClassification(config).eval()


def tiny_llama(layers: int = 3, seed: int = 0) -> nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=layers, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=32,
    )
    return LlamaForCausalLM(config).eval()


def token_batch(seed: int = 1, batch: int = 3, length: int = 7) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 64, (batch, length), generator=g)


def logits(model: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    return model(input_ids=ids).logits


def apply_adapter(adapter: Adapter, model: nn.Module, total_steps: int = 100, head: tuple[str, ...] = HEAD,
                  family: str = "encoder") -> tuple[nn.Module, tuple, frozenset[int]]:
    """What the runner does: sites, check, apply, head trainable. Returns (model, sites, head ids)."""
    head_ids = module_param_ids(model, head)
    assert isinstance(adapter.config, LowRankConfig)
    sites = tuple(find_sites(model, adapter.config.targets, exclude=head))
    adapter.check_sites(sites)
    model = adapter.apply(model, ApplyContext(family=family, sites=sites, head_modules=head, total_steps=total_steps))
    return model, sites, head_ids


def adapter_count(model: nn.Module, head_ids: frozenset[int]) -> int:
    return count_parameters(model, head_ids).adapter_trainable


def adapter_params(model: nn.Module, head_ids: frozenset[int] = frozenset()) -> list[nn.Parameter]:
    return [p for _, p in model.named_parameters() if p.requires_grad and id(p) not in head_ids]


def randomise(params: list[nn.Parameter], seed: int = 3, std: float = 0.2) -> None:
    """Move the adapter away from its zero init so outputs and gradients are non-trivial."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in params:
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * std)


def meta_roberta_count(adapter: Adapter, config_file: str = "roberta-base.json") -> int:
    """Adapter parameters on a catalogue architecture built on the meta device (as ``harness params``,
    from the config JSON shipped with the harness, without importing every suite)."""
    import json

    from transformers import AutoConfig, AutoModel

    from harness.attach import count_on_skeleton
    from harness.models import CONFIG_DIR

    data = json.loads((CONFIG_DIR / config_file).read_text())
    config = AutoConfig.for_model(data.pop("model_type"), **data)
    with torch.device("meta"):
        model = AutoModel.from_config(config)
    return count_on_skeleton(adapter, model, (), "encoder")


def assert_only_adapter_gets_gradients(model: nn.Module, head_ids: frozenset[int], ids: torch.Tensor) -> None:
    """Backward through the adapted model: every adapter tensor gets a non-zero gradient, no other
    tensor gets one, and only adapter tensors (and nothing of the frozen base) are trainable."""
    trainable = {id(p) for p in adapter_params(model, head_ids)}
    assert trainable, "the adapter added no trainable tensors"
    model.zero_grad(set_to_none=True)
    logits(model, ids).pow(2).mean().backward()
    for name, p in model.named_parameters():
        if id(p) in trainable:
            assert p.grad is not None and p.grad.abs().sum() > 0, f"adapter tensor {name} got no gradient"
        elif id(p) not in head_ids:
            assert not p.requires_grad and p.grad is None, f"frozen tensor {name} is trainable or got a gradient"
