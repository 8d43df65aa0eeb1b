"""DyLoRA (adapters/dylora.py): one LoRA trained for every rank up to ``rank`` (nested truncation).

The checks the methods written here share come from tests/adapter_testkit.py (WrapperChecks, LowRankChecks, ...) on the
two-layer BERT/LLaMA of tests/tiny_models.py; the tests below are DyLoRA's own."""

from __future__ import annotations

import pytest
import torch

from adapters.dylora import DyLoRA, DyloraLinear, DyloraOptions
from harness.config import build
from harness.errors import HarnessError
from tests.adapter_testkit import (
    CausalLMCheck,
    HalfPrecisionCheck,
    LowRankChecks,
    StartsUnchangedCheck,
    WrapperChecks,
    adapt,
    adapter_params,
    randomise,
)
from tests.tiny_models import two_layer_bert, two_layer_ids


class TestDyLoRA(WrapperChecks, LowRankChecks, StartsUnchangedCheck, CausalLMCheck, HalfPrecisionCheck):
    name = "dylora"
    paper_count = 12 * 2 * 8 * (768 + 768)  # RoBERTa-base query and value

    def make_adapter(self):
        return DyLoRA(DyloraOptions(rank=8, alpha=8, targets=("query", "value")))

    def count_adapter(self, targets):
        return DyLoRA(DyloraOptions(rank=4, targets=targets))

    def count_formula(self, shapes):
        return sum(4 * (i + o) for i, o in shapes)

    def causal_lm_adapter(self):
        return DyLoRA(DyloraOptions(rank=4, targets=("q_proj", "v_proj")))


def test_dylora_truncation_equals_a_lora_of_the_first_b_rows_and_columns() -> None:
    """At rank b, DyLoRA's forward pass equals peft's LoRA of rank b (scaling alpha/b) whose A and B
    are the first b rows of A and the first b columns of B."""
    from peft import LoraConfig, inject_adapter_in_model

    x = two_layer_ids()
    adapter = DyLoRA(DyloraOptions(rank=8, alpha=8, targets=("query", "value")))
    model, head_ids = adapt(adapter, two_layer_bert())
    randomise(adapter_params(model, head_ids), seed=7, std=0.3)
    for b in (1, 3, 8):
        lora = inject_adapter_in_model(
            LoraConfig(r=b, lora_alpha=8, target_modules=["query", "value"]), two_layer_bert(), adapter_name="default"
        ).eval()
        with torch.no_grad():
            for name, module in model.named_modules():
                if isinstance(module, DyloraLinear):
                    peft_layer = lora.get_submodule(name)
                    peft_layer.lora_A["default"].weight.copy_(module.lora_A[:b])
                    peft_layer.lora_B["default"].weight.copy_(module.lora_B[:, :b])
        expected = lora(input_ids=x).logits
        with adapter.at_rank(model, b):  # evaluation at rank b
            torch.testing.assert_close(model(input_ids=x).logits, expected)
        model.train()  # training at a sampled rank b
        for _, module in adapter.wrappers(model):
            module.train_rank = b
        torch.testing.assert_close(model(input_ids=x).logits, expected)
        model.eval()


def test_dylora_samples_ranks_per_step_and_evaluates_at_chosen_ranks() -> None:
    x = two_layer_ids()
    adapter = DyLoRA(DyloraOptions(rank=8, min_rank=2, targets=("query", "value")))
    model, head_ids = adapt(adapter, two_layer_bert(), seed=5)
    randomise(adapter_params(model, head_ids), seed=7, std=0.3)
    sampled = []
    for step in range(40):
        adapter.on_step_begin(model, step)
        ranks = {m.train_rank for _, m in adapter.wrappers(model)}
        assert len(ranks) == 1  # one rank for every module at a step
        sampled.append(ranks.pop())
    assert set(sampled) <= set(range(2, 9)) and len(set(sampled)) >= 4
    again = DyLoRA(DyloraOptions(rank=8, min_rank=2, targets=("query", "value")))
    twin, _ = adapt(again, two_layer_bert(), seed=5)
    twin_sampled = []
    for step in range(40):
        again.on_step_begin(twin, step)
        twin_sampled.append(again.wrappers(twin)[0][1].train_rank)
    assert twin_sampled == sampled  # seeded: reruns sample the same ranks
    assert adapter.summary(model)["sampled_rank_counts"] == {
        str(b): sampled.count(b) for b in sorted(set(sampled))
    }

    full = model(input_ids=x).logits
    variants = dict(adapter.evaluation_variants(model))
    assert list(variants) == ["rank4", "rank2", "rank1"]
    with variants["rank2"]:
        at_two = model(input_ids=x).logits
    assert not torch.allclose(at_two, full, atol=1e-4)
    torch.testing.assert_close(model(input_ids=x).logits, full)  # back at full rank afterwards
    chosen = DyLoRA(DyloraOptions(rank=8, eval_ranks=(8, 6, 3), targets=("query",)))
    assert [n for n, _ in chosen.evaluation_variants(adapt(chosen, two_layer_bert())[0])] == ["rank6", "rank3"]


def test_dylora_update_only_sampled_trains_the_sampled_row_and_column() -> None:
    adapter = DyLoRA(DyloraOptions(rank=8, update_only_sampled=True, targets=("query",)))
    model, head_ids = adapt(adapter, two_layer_bert())
    randomise(adapter_params(model, head_ids), seed=7, std=0.3)
    model.train()
    for _, module in adapter.wrappers(model):
        module.train_rank = 5
    model(input_ids=two_layer_ids()).logits.square().sum().backward()
    module = adapter.wrappers(model)[0][1]
    row_grads = module.lora_A.grad.abs().sum(dim=1)
    assert row_grads[4] > 0 and row_grads[:4].sum() == 0 and row_grads[5:].sum() == 0
    col_grads = module.lora_B.grad.abs().sum(dim=0)
    assert col_grads[4] > 0 and col_grads[:4].sum() == 0 and col_grads[5:].sum() == 0


def test_dylora_rank_cannot_change_while_merged() -> None:
    adapter = DyLoRA(DyloraOptions(rank=4, targets=("query",)))
    model, _ = adapt(adapter, two_layer_bert())
    adapter.merge(model)
    with pytest.raises(HarnessError, match="unmerge"):
        adapter.set_eval_rank(model, 2)


@pytest.mark.parametrize(
    ("options", "message"),
    [({"rank": "4", "min_rank": "5"}, "min_rank"), ({"rank": "4", "eval_ranks": "2,9"}, "eval_ranks")],
)
def test_bad_options_are_one_line_errors(options, message) -> None:
    with pytest.raises(HarnessError, match=message):
        build(DyloraOptions, options, "adapter")
