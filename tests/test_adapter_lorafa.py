"""LoRA-FA (adapters/lorafa.py): LoRA with a frozen A and peft's LoRA-FA optimiser.

The checks every peft-backed method runs come from ``PeftChecks`` (tests/adapter_testkit.py) at the
method's small size; the tests below are LoRA-FA's own."""

from __future__ import annotations

import torch

from adapters._toolkit.peft_tuner import ADAPTER_NAME
from adapters.lorafa import LoraFA, LoraFaOptions
from harness.targets import ATTENTION_QV
from tests.adapter_testkit import (
    HIDDEN,
    N_QV,
    PEFT_LAYERS,
    D,
    PeftChecks,
    PeftZeroInitCheck,
    adapted,
    adapter_count,
    logits,
    make,
    meta_roberta_count,
    tuner_layers,
)
from tests.tiny_models import token_batch


class TestLoraFA(PeftChecks, PeftZeroInitCheck):
    name = "lorafa"
    tiny_bert_count = 2 * PEFT_LAYERS * 4 * HIDDEN


def test_paper_configs_match_the_seeds_baselines():
    assert LoraFA.preset_options("paper", "glue", "roberta-base") == {"rank": 8, "alpha": 8, "targets": ATTENTION_QV}


def test_counts_on_roberta_base_meta_match_the_formulas():
    r = 8
    assert meta_roberta_count(make("lorafa", rank=r)) == N_QV * r * D  # B only


def test_lorafa_checkpoint_holds_the_frozen_a():
    adapter, model, _, head_ids = adapted("lorafa")
    state = adapter.adapter_state_dict(model, head_ids)
    assert sum(".lora_A." in k for k in state) == sum(".lora_B." in k for k in state) == 2 * PEFT_LAYERS
    assert sum(t.numel() for t in state.values()) == 2 * adapter_count(model, head_ids)


def test_lorafa_uses_peft_optimizer_trains_b_only_and_keeps_the_head_group():
    from peft.optimizers.lorafa import LoraFAOptimizer

    adapter, model, _, head_ids = adapted("lorafa", alpha=8)
    head = [p for p in model.parameters() if id(p) in head_ids]
    for p in head:
        p.requires_grad_(True)
    lora = [p for p in model.parameters() if p.requires_grad and id(p) not in head_ids]
    groups = [{"params": lora, "lr": 1e-2, "name": "adapter"}, {"params": head, "lr": 3e-3, "name": "head"}]
    optimizer = adapter.build_optimizer(model, groups, 1e-2, 0.0)
    assert isinstance(optimizer, LoraFAOptimizer)
    assert [g["lr"] for g in optimizer.param_groups] == [1e-2, 3e-3]
    # the A/B pairs use the layer's own scaling (alpha / r = 2)
    assert {s for s in optimizer.param_groups[0]["scaling_factors"]} == {2.0}
    a_before = {n: p.detach().clone() for n, p in model.named_parameters() if ".lora_A." in n}
    b_before = {n: p.detach().clone() for n, p in model.named_parameters() if ".lora_B." in n}
    head_before = [p.detach().clone() for p in head]
    assert all(not p.requires_grad for n, p in model.named_parameters() if ".lora_A." in n)
    ids, labels = token_batch(batch=4), torch.tensor([0, 1, 1, 0])
    for _ in range(2):
        torch.nn.functional.cross_entropy(logits(model, ids), labels).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    params = dict(model.named_parameters())
    assert all(torch.equal(params[n], t) for n, t in a_before.items())
    assert all(not torch.equal(params[n], t) for n, t in b_before.items())
    assert all(not torch.equal(p, t) for p, t in zip(head, head_before, strict=True))


def test_lorafa_b_step_is_the_projected_gradient():
    """LoRA-FA's first step on B (Adam from zero state, bias-corrected) moves B by -lr * sign-like
    normalised (1/s^2) grad_B (A A^T)^-1, which differs from plain Adam only through that projection:
    check the direction against the formula."""
    adapter, model, _, head_ids = adapted("lorafa")
    optimizer = adapter.build_optimizer(model, [], 1e-3, 0.0)
    layer = dict(tuner_layers(model))["bert.encoder.layer.0.attention.self.query"]
    a = layer.lora_A[ADAPTER_NAME].weight.detach().clone()
    b = layer.lora_B[ADAPTER_NAME].weight
    logits(model, token_batch()).pow(2).mean().backward()
    scaling = layer.scaling[ADAPTER_NAME]
    projected = (1 / scaling**2) * b.grad @ torch.linalg.pinv(a @ a.T + 1e-8 * torch.eye(a.shape[0]))
    before = b.detach().clone()
    optimizer.step()
    step = b.detach() - before
    # Adam's first step is -lr * g / (|g| + eps): the sign pattern of the projected gradient
    mask = projected.abs() > 0.05 * projected.abs().max()
    assert torch.equal(torch.sign(step[mask]), -torch.sign(projected[mask]))


def test_lorafa_options_class():
    assert isinstance(LoraFA(LoraFaOptions(rank=2)).config, LoraFaOptions)
