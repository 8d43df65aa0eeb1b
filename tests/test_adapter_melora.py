"""MELoRA (adapters/melora.py): ``split`` mini-LoRAs on slices of the input and output.

The checks the methods written here share come from tests/adapter_testkit.py (WrapperChecks, LowRankChecks, ...) on the
two-layer BERT/LLaMA of tests/tiny_models.py; the tests below are MELoRA's own."""

from __future__ import annotations

import pytest
import torch

from adapters.melora import MELoRA, MeloraOptions
from harness.config import build
from harness.errors import HarnessError
from harness.sites import find_sites
from tests.adapter_testkit import (
    HEAD,
    HIDDEN,
    CausalLMCheck,
    HalfPrecisionCheck,
    LowRankChecks,
    StartsUnchangedCheck,
    WrapperChecks,
    adapt,
    adapter_params,
    randomise,
)
from tests.tiny_models import two_layer_bert


def melora_formula(shapes: list[tuple[int, int]], rank: int, split: int) -> int:
    return sum(rank * (i + o) // split for i, o in shapes)


class TestMELoRA(WrapperChecks, LowRankChecks, StartsUnchangedCheck, CausalLMCheck, HalfPrecisionCheck):
    name = "melora"
    paper_count = 12 * 2 * 8 * (768 + 768) // 8  # RoBERTa-base: 12 layers, query and value 768 -> 768

    def make_adapter(self):
        return MELoRA(MeloraOptions(rank=8, split=4, alpha=16, targets=("query", "value")))

    def count_adapter(self, targets):
        return MELoRA(MeloraOptions(rank=8, split=4, targets=targets))

    def count_formula(self, shapes):
        return melora_formula(shapes, 8, 4)

    def causal_lm_adapter(self):
        return MELoRA(MeloraOptions(rank=4, split=4, targets=("q_proj", "v_proj")))


def test_melora_update_is_block_diagonal_with_the_total_rank() -> None:
    adapter = MELoRA(MeloraOptions(rank=8, split=4, targets=("query",)))
    model, head_ids = adapt(adapter, two_layer_bert())
    randomise(adapter_params(model, head_ids), seed=7, std=0.3)
    delta = adapter.delta_components(model)[0].delta
    block = HIDDEN // 4
    mask = torch.block_diag(*[torch.ones(block, block)] * 4).bool()
    assert delta[~mask].abs().max() == 0 and delta[mask].abs().max() > 0
    assert torch.linalg.matrix_rank(delta) == 8  # 4 blocks of rank 2


def test_melora_split_must_divide_rank_and_module_sizes() -> None:
    with pytest.raises(HarnessError, match="split=3 must divide rank=8"):
        build(MeloraOptions, {"rank": "8", "split": "3"}, "adapter 'melora'")
    # hidden 36 is not a multiple of split 8: caught by check_sites, before apply
    adapter = MELoRA(MeloraOptions(rank=8, split=8, targets=("query",)))
    model = two_layer_bert(hidden=36)
    sites = tuple(find_sites(model, ("query",), exclude=HEAD))
    expected = r"split=8 must divide .*layer\.0\.attention\.self\.query \(36 -> 36\)"
    with pytest.raises(HarnessError, match=expected):
        adapter.check_sites(sites)
