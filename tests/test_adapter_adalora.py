"""AdaLoRA (adapters/adalora.py): SVD-form LoRA pruned by importance to a budget, through peft.

The checks every peft-backed method runs come from ``PeftChecks`` (tests/adapter_testkit.py) at the
method's small size; the tests below are AdaLoRA's own."""

from __future__ import annotations

import pytest
import torch

from adapters._toolkit.peft_tuner import ADAPTER_NAME
from adapters.adalora import AdaLoRA, AdaLoraOptions, schedule_steps
from harness.errors import HarnessError
from tests.adapter_testkit import (
    HIDDEN,
    N_QV,
    PEFT_LAYERS,
    D,
    PeftChecks,
    PeftZeroInitCheck,
    adapted,
    adapter_count,
    adapter_params,
    logits,
    make,
    meta_roberta_count,
    randomise,
    train_steps,
    tuner_layers,
)
from tests.tiny_models import token_batch


class TestAdaLoRA(PeftChecks, PeftZeroInitCheck):
    name = "adalora"
    tiny_bert_count = 2 * PEFT_LAYERS * 6 * (2 * HIDDEN + 1)  # init rank ceil(1.5 * 4) = 6


def test_paper_configs_match_the_seeds_baselines():
    ada = AdaLoRA.preset_options("paper", "glue", "roberta-base")
    assert ada["rank"] == 8 and ada["init_rank"] == 12


def test_counts_on_roberta_base_meta_match_the_formulas():
    assert meta_roberta_count(make("adalora", rank=8, init_rank=12)) == N_QV * 12 * (2 * D + 1)


def _train(adapter, model, head_ids, steps, lr=5e-2):
    train_steps(adapter, model, steps, lr)


def test_adalora_allocator_prunes_to_the_budget():
    steps = 12
    adapter, model, _, head_ids = adapted(
        "adalora", total_steps=steps, delta_t=2, tinit_ratio=0.1, tfinal_ratio=0.2
    )
    at_init = adapter.summary(model)
    assert set(at_init["final_ranks"].values()) == {6}
    _train(adapter, model, head_ids, steps)
    summary = adapter.summary(model)
    ranks = summary["final_ranks"]
    assert summary["allocation_calls"] == steps
    assert min(ranks.values()) < 6  # the allocator really pruned
    assert summary["final_rank_total"] == summary["target_rank_total"] == 4 * 2 * PEFT_LAYERS
    per_triplet = 2 * HIDDEN + 1
    assert summary["params_at_init"] == 6 * 2 * PEFT_LAYERS * per_triplet == adapter_count(model, head_ids)
    assert summary["params_effective"] == sum(ranks.values()) * per_triplet < summary["params_at_init"]
    # pruned triplets are zero in E, so the kept count is what the model really uses
    for name, layer in tuner_layers(model):
        assert int((layer.lora_E[ADAPTER_NAME] != 0).sum()) <= ranks[name]
    finals = {c.module: c.final_rank for c in adapter.delta_components(model)}
    assert finals == ranks


def test_adalora_without_pruning_trains_every_step():
    """init_rank == rank (msplora-t1's AdaLoRA row): no triplet is outside the budget. peft's allocator
    fails on it (torch.kthvalue with k = 0) at its first budgeting step; ours skips allocation, trains
    every triplet and says so in the summary."""
    steps = 12
    adapter, model, _, head_ids = adapted(
        "adalora", rank=4, init_rank=4, total_steps=steps, delta_t=2, tinit_ratio=0.1, tfinal_ratio=0.2
    )
    before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    _train(adapter, model, head_ids, steps)
    summary = adapter.summary(model)
    assert summary["allocation_calls"] == 0
    assert set(summary["final_ranks"].values()) == {4}
    assert summary["params_effective"] == summary["params_at_init"] == adapter_count(model, head_ids)
    changed = [n for n, p in model.named_parameters() if p.requires_grad and not torch.equal(p, before[n])]
    assert any("lora_E" in n for n in changed) and any("lora_A" in n for n in changed)
    # peft's allocator itself cannot take this budget: the guard is needed, not decorative
    ids, labels = token_batch(batch=4), torch.tensor([0, 1, 1, 0])
    torch.nn.functional.cross_entropy(logits(model, ids), labels).backward()
    with pytest.raises(RuntimeError, match="kthvalue"):
        for step in range(steps):
            adapter._tuner.update_and_allocate(step)


def test_adalora_orth_regulariser_matches_peft():
    adapter, model, _, head_ids = adapted("adalora", orth_reg_weight=0.3)
    randomise(adapter_params(model, head_ids), std=0.1)
    ids = token_batch()
    labels = torch.tensor([0, 1, 0])
    plain = model(input_ids=ids, labels=labels).loss
    # peft adds the regulariser to outputs.loss inside AdaLoraModel.forward (the tuner wraps our model)
    with_reg = adapter._tuner(input_ids=ids, labels=labels).loss
    ours = adapter.extra_loss(model)
    assert ours is not None and ours > 0
    torch.testing.assert_close(plain + ours, with_reg, rtol=1e-5, atol=1e-6)


def test_adalora_schedule_and_options():
    assert schedule_steps(100, 0.1, 0.2) == (10, 20)
    tinit, tfinal = schedule_steps(3, 0.1, 0.2)
    assert tfinal >= 1 and tinit < 3 - tfinal
    with pytest.raises(HarnessError, match="at least 2"):
        schedule_steps(1, 0.1, 0.2)
    with pytest.raises(HarnessError, match="init_rank"):
        AdaLoraOptions(rank=8, init_rank=4)
    with pytest.raises(HarnessError, match="budgeting"):
        AdaLoraOptions(tinit_ratio=0.5, tfinal_ratio=0.5)
    assert AdaLoraOptions(rank=8).initial_rank == 12
