"""BitFit (adapters/bitfit.py): only the bias terms inside the transformer blocks train.

The checks the methods written here share come from tests/adapter_testkit.py (WrapperChecks) on the
two-layer BERT/LLaMA of tests/tiny_models.py; the tests below are BitFit's own."""

from __future__ import annotations

import pytest

from adapters.bitfit import BitFit, BitfitOptions
from harness.errors import HarnessError
from tests.adapter_testkit import HIDDEN, INTERMEDIATE, TWO_LAYERS, WrapperChecks, adapt, adapter_count
from tests.tiny_models import two_layer_bert, two_layer_ids, two_layer_llama

LAYERS = TWO_LAYERS

class TestBitFit(WrapperChecks):
    name = "bitfit"
    paper_count = 12 * (7 * 768 + 3072)  # RoBERTa-base: 12 layers, hidden 768, FFN 3072

    def make_adapter(self):
        return BitFit()


def test_bitfit_counts_on_tiny_models() -> None:
    # BitFit on BERT: q, k, v, attention output, attention LayerNorm, intermediate, output, output LayerNorm
    model, head_ids = adapt(BitFit(), two_layer_bert())
    assert adapter_count(model, head_ids) == LAYERS * (7 * HIDDEN + INTERMEDIATE)
    model, head_ids = adapt(BitFit(BitfitOptions(include_norms=False)), two_layer_bert())
    assert adapter_count(model, head_ids) == LAYERS * (5 * HIDDEN + INTERMEDIATE)


def test_bitfit_trains_only_block_biases() -> None:
    model, head_ids = adapt(BitFit(), two_layer_bert())
    model(input_ids=two_layer_ids()).logits.square().sum().backward()
    for pname, p in model.named_parameters():
        if id(p) in head_ids:
            continue
        is_block_bias = pname.startswith("bert.encoder.layer.") and pname.endswith(".bias")
        assert p.requires_grad == is_block_bias, pname
        assert (p.grad is not None) == is_block_bias, pname


def test_bitfit_refuses_a_model_without_biases() -> None:
    with pytest.raises(HarnessError, match="no bias terms"):
        adapt(BitFit(), two_layer_llama(), head=())
