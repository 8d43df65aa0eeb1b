"""The bottleneck adapters: Adapter-H (Houlsby, adapters/adapter_h.py) and Adapter-P (Pfeiffer,
adapters/adapter_p.py), both adapters/_toolkit/bottleneck.py.

The checks the methods written here share come from tests/adapter_testkit.py (WrapperChecks, StartsUnchangedCheck, ...) on the
two-layer BERT/LLaMA of tests/tiny_models.py; the tests below are the bottleneck family's own."""

from __future__ import annotations

import pytest
from torch import nn

from adapters.adapter_h import AdapterH
from adapters.adapter_p import AdapterP
from harness.config import build
from harness.errors import HarnessError
from tests.adapter_testkit import (
    HIDDEN,
    TWO_LAYERS,
    CausalLMCheck,
    HalfPrecisionCheck,
    StartsUnchangedCheck,
    WrapperChecks,
    adapt,
    adapter_count,
)
from tests.tiny_models import meta_catalogue_model, two_layer_bert, two_layer_llama

LAYERS = TWO_LAYERS

class TestAdapterH(WrapperChecks, StartsUnchangedCheck, CausalLMCheck):
    name = "adapter-h"
    paper_count = 12 * 2 * (2 * 768 * 8 + 8 + 768)  # RoBERTa-base, bottleneck 8 after attention and FFN

    def make_adapter(self):
        return AdapterH(AdapterH.config_cls(bottleneck=4))

    def causal_lm_adapter(self):
        return AdapterH(AdapterH.config_cls(bottleneck=4))


class TestAdapterP(WrapperChecks, StartsUnchangedCheck, HalfPrecisionCheck):
    name = "adapter-p"
    paper_count = 12 * (2 * 768 * 16 + 16 + 768)  # RoBERTa-base, bottleneck 16 after the FFN

    def make_adapter(self):
        return AdapterP(AdapterP.config_cls(bottleneck=4))


def test_bottleneck_counts_on_tiny_models() -> None:
    per_adapter = 2 * HIDDEN * 4 + 4 + HIDDEN  # down and up weights and biases, width = hidden size
    model, head_ids = adapt(AdapterH(AdapterH.config_cls(bottleneck=4)), two_layer_bert())
    assert adapter_count(model, head_ids) == LAYERS * 2 * per_adapter
    model, head_ids = adapt(AdapterP(AdapterP.config_cls(bottleneck=4)), two_layer_bert())
    assert adapter_count(model, head_ids) == LAYERS * per_adapter
    model, head_ids = adapt(AdapterH(AdapterH.config_cls(bottleneck=4)), two_layer_llama(), head=())
    assert adapter_count(model, head_ids) == LAYERS * 2 * per_adapter


def test_bottleneck_sites_are_the_right_projections() -> None:
    model, _ = adapt(AdapterP(AdapterP.config_cls(bottleneck=2)), two_layer_bert())
    wrapped = sorted(n for n, m in model.named_modules() if hasattr(m, "up_weight"))
    assert wrapped == [f"bert.encoder.layer.{i}.output.dense" for i in range(LAYERS)]
    model, _ = adapt(AdapterH(AdapterH.config_cls(bottleneck=2)), two_layer_llama(), head=())
    wrapped = sorted(n for n, m in model.named_modules() if hasattr(m, "up_weight"))
    assert wrapped == sorted(
        f"model.layers.{i}.{part}" for i in range(LAYERS) for part in ("self_attn.o_proj", "mlp.down_proj")
    )


def test_bottleneck_paper_sizes_match_lora_table_on_roberta_large() -> None:
    """LoRA's Table 2 lists Adapter-H and Adapter-P at 0.8M trainable parameters on RoBERTa-large."""
    for cls in (AdapterH, AdapterP):
        adapter = cls(build(cls.config_cls, cls.preset_options("paper", "glue", "roberta-large"), cls.name))
        model, head_ids = adapt(adapter, meta_catalogue_model("roberta-large"), head=())
        assert round(adapter_count(model, head_ids) / 1e6, 1) == 0.8


def test_bottleneck_adapters_cannot_merge() -> None:
    adapter = AdapterH(AdapterH.config_cls(bottleneck=2))
    model, _ = adapt(adapter, two_layer_bert())
    with pytest.raises(HarnessError, match="does not support merging"):
        adapter.merge(model)
    assert adapter.delta_components(model) == []


@pytest.mark.parametrize(
    ("options", "message"), [({"bottleneck": "0"}, "bottleneck"), ({"activation": "softmax"}, "activation")]
)
def test_bad_options_are_one_line_errors(options, message) -> None:
    with pytest.raises(HarnessError, match=message):
        build(AdapterH.config_cls, options, "adapter")


def test_bottleneck_needs_recognisable_projections() -> None:
    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Linear(8, 8), nn.Linear(8, 8)

    class Odd(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.blocks = nn.ModuleList([Block(), Block()])

    with pytest.raises(HarnessError, match="attention_output=NAME"):
        adapt(AdapterP(AdapterP.config_cls(bottleneck=2)), Odd(), head=())
    named = AdapterH(AdapterH.config_cls(bottleneck=2, attention_output="a", ffn_output="b"))
    model, head_ids = adapt(named, Odd(), head=())
    assert adapter_count(model, head_ids) == 2 * 2 * (2 * 8 * 2 + 2 + 8)
