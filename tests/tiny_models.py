"""The tiny random models and inputs every test builds (one set: BERT, LLaMA, token batches, catalogue
architectures on the meta device). Each preset below is ``tiny_bert``/``tiny_llama`` with the sizes
a group of tests was written against; the sizes (and the seeds) are what their expected counts and
values depend on, so a preset never changes."""

from __future__ import annotations

import torch
from torch import nn

HIDDEN, INTERMEDIATE = 32, 64


def tiny_bert(layers: int = 4, hidden: int = HIDDEN, intermediate: int = INTERMEDIATE, seed: int | None = 0, *,
              vocab: int = 64, heads: int = 4, labels: int = 2, max_positions: int = 32, dropout: float = 0.0,
              eval_mode: bool = True) -> nn.Module:
    """A BERT sequence classifier; ``seed`` None draws from the caller's generator state."""
    from transformers import BertConfig, BertForSequenceClassification

    if seed is not None:
        torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
        intermediate_size=intermediate, max_position_embeddings=max_positions, hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout, num_labels=labels,
    )
    model = BertForSequenceClassification(config)
    return model.eval() if eval_mode else model


def tiny_llama(layers: int = 3, seed: int = 0, *, vocab: int = 64, max_positions: int = 32) -> nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab, hidden_size=HIDDEN, intermediate_size=48, num_hidden_layers=layers, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=max_positions,
    )
    return LlamaForCausalLM(config).eval()


def token_batch(seed: int = 1, batch: int = 3, length: int = 7, vocab: int = 64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab, (batch, length), generator=g)


# ---- presets ---------------------------------------------------------------------------------------------


def tiny_bert_classifier(num_labels: int = 2, layers: int = 4, hidden: int = HIDDEN) -> nn.Module:
    """The contract tests' BERT: default dropout, train mode, the caller's generator state."""
    return tiny_bert(layers, hidden, 2 * hidden, seed=None, vocab=100, labels=num_labels, max_positions=64,
                     dropout=0.1, eval_mode=False)


def two_layer_bert(seed: int = 0, hidden: int = HIDDEN) -> nn.Module:
    """Two layers, two heads, three labels (the MELoRA/MoSLoRA/DyLoRA/BitFit/bottleneck tests)."""
    return tiny_bert(2, hidden, INTERMEDIATE, seed, vocab=50, heads=2, labels=3, max_positions=16)


def two_layer_llama(seed: int = 0) -> nn.Module:
    return tiny_llama(2, seed, vocab=50, max_positions=16)


def two_layer_ids(seed: int = 1) -> torch.Tensor:
    return token_batch(seed, 3, 6, vocab=50)


# ---- catalogue architectures on the meta device ------------------------------------------------------------


def meta_catalogue_model(name: str) -> nn.Module:
    """A catalogue model's architecture on the meta device (as ``harness params`` builds it)."""
    from harness.models import get_model_entry, meta_model

    return meta_model(get_model_entry(name))


def meta_roberta(config_file: str = "roberta-base.json") -> nn.Module:
    """A RoBERTa encoder on the meta device from the config JSON shipped with the harness, without
    importing every suite."""
    import json

    from transformers import AutoConfig, AutoModel

    from harness.models import CONFIG_DIR

    data = json.loads((CONFIG_DIR / config_file).read_text())
    config = AutoConfig.for_model(data.pop("model_type"), **data)
    with torch.device("meta"):
        return AutoModel.from_config(config)
