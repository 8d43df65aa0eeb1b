"""MoSLoRA (adapters/moslora.py): LoRA with a trainable r x r mixer between A and B.

The checks the methods written here share come from tests/adapter_testkit.py (WrapperChecks, LowRankChecks, StartsUnchangedCheck) on the
two-layer BERT/LLaMA of tests/tiny_models.py; the tests below are MoSLoRA's own."""

from __future__ import annotations

import copy

import pytest

from adapters.moslora import MoSLoRA, MosloraOptions
from harness.errors import HarnessError
from tests.adapter_testkit import LowRankChecks, StartsUnchangedCheck, WrapperChecks, adapt
from tests.tiny_models import two_layer_bert


class TestMoSLoRA(WrapperChecks, LowRankChecks, StartsUnchangedCheck):
    name = "moslora"
    paper_count = 12 * 2 * (8 * (768 + 768) + 8 * 8)  # RoBERTa-base query and value

    def make_adapter(self):
        return MoSLoRA(MosloraOptions(rank=4, alpha=8, targets=("query", "value")))

    def count_adapter(self, targets):
        return MoSLoRA(MosloraOptions(rank=4, targets=targets))

    def count_formula(self, shapes):
        return sum(4 * (i + o) + 4 * 4 for i, o in shapes)


def test_apply_is_not_repeated_silently() -> None:
    adapter = MoSLoRA(MosloraOptions(rank=2, targets=("query",)))
    model, _ = adapt(adapter, two_layer_bert())
    copy.deepcopy(model)  # wrapped models stay deep-copyable (the runner and peft copy models)
    with pytest.raises(HarnessError):
        adapt(MoSLoRA(MosloraOptions(rank=2, targets=("query",))), model)
