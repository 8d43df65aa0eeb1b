from __future__ import annotations

import pytest
import torch

from adapters.lora2 import LoRA2, Lora2Options, RankAllocator, budget_schedule, lora2_parameter_count
from harness.config import build
from harness.errors import HarnessError
from tests.adapter_testkit import (
    adapter_count,
    adapter_params,
    apply_adapter,
    assert_only_adapter_gets_gradients,
    logits,
    meta_roberta_count,
    randomise,
)
from tests.tiny_models import tiny_bert, token_batch


def lora2(**options) -> LoRA2:
    return LoRA2(build(Lora2Options, options, "adapter 'lora2'"))


def test_count_on_roberta_base_meta():
    assert meta_roberta_count(lora2(rank=8, k=8)) == 24 * (8 * 1536 + 2 * 8 * 8 + 8) == 298_176
    assert meta_roberta_count(lora2(rank=8, k=1)) == 24 * (1536 + 16 + 8)


@pytest.mark.parametrize(
    "targets,rank,k", [("query,value", 8, 2), ("intermediate.dense,output.dense", 8, 1), ("key", 4, 4), ("all-linear", 6, 3)]
)
def test_count_equals_formula_on_several_shapes(targets, rank, k):
    model, sites, head_ids = apply_adapter(lora2(rank=rank, k=k, targets=targets), tiny_bert())
    assert adapter_count(model, head_ids) == sum(lora2_parameter_count(s.in_features, s.out_features, rank, k) for s in sites)


def test_zero_init_leaves_output_unchanged_and_only_adapter_gets_gradients():
    model = tiny_bert()
    ids = token_batch()
    before = logits(model, ids).detach()
    model, _, head_ids = apply_adapter(lora2(rank=8, k=4), model)
    module = model.bert.encoder.layer[0].attention.self.query
    assert torch.equal(module.lam, torch.zeros(8)) and module.u.std() > 0
    assert torch.equal(logits(model, ids), before)
    randomise(adapter_params(model, head_ids))
    assert_only_adapter_gets_gradients(model, head_ids, ids)


def test_regulariser_equals_the_dense_definition():
    adapter = lora2(rank=6, k=3, orth_reg=0.5)
    model, _, head_ids = apply_adapter(adapter, tiny_bert(layers=2))
    randomise(adapter_params(model, head_ids), std=0.3)
    terms = []
    for layer in model.bert.encoder.layer:
        for m in (layer.attention.self.query, layer.attention.self.value):
            p, q = m.u @ m.v, m.U @ m.V  # P: d_in x r, Q: r x d_out
            eye_r, eye_k = torch.eye(6), torch.eye(3)
            terms += [torch.linalg.matrix_norm(p.T @ p - eye_r) ** 2, torch.linalg.matrix_norm(q @ q.T - eye_r) ** 2,
                      torch.linalg.matrix_norm(m.u.T @ m.u - eye_k) ** 2, torch.linalg.matrix_norm(m.v @ m.v.T - eye_k) ** 2,
                      torch.linalg.matrix_norm(m.U.T @ m.U - eye_k) ** 2, torch.linalg.matrix_norm(m.V @ m.V.T - eye_k) ** 2]
    expected = 0.5 * torch.stack(terms).mean()
    loss = adapter.extra_loss(model)
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-6)
    loss.backward()
    assert model.bert.encoder.layer[0].attention.self.query.V.grad.abs().sum() > 0
    assert lora2(orth_reg=0).extra_loss(model) is None


def test_budget_schedule_is_cubic_between_the_warmups():
    args = dict(total_steps=100, init_steps=10, final_steps=30, initial=80, target=20, interval=5)
    assert budget_schedule(5, **args) == (80, False)
    assert budget_schedule(10, **args) == (80, True)
    budget, _ = budget_schedule(40, **args)  # halfway: 20 + 60 · 0.5³
    assert budget == int(20 + 60 * 0.5**3)
    assert budget_schedule(41, **args)[1] is False
    assert budget_schedule(70, **args) == (20, True) and budget_schedule(99, **args) == (20, True)


def test_importance_score_is_eq9_without_column_scores():
    adapter = lora2(rank=4, k=2, beta1=0.5, beta2=0.25)
    model, _, head_ids = apply_adapter(adapter, tiny_bert(layers=1), total_steps=50)
    randomise(adapter_params(model, head_ids))
    logits(model, token_batch()).pow(2).mean().backward()
    allocator: RankAllocator = adapter._allocator
    allocator.update_importance()
    m = model.bert.encoder.layer[0].attention.self.query

    def score(p):
        current = (p * p.grad).abs()
        smoothed = 0.5 * current
        return smoothed * (0.75 * (current - smoothed).abs())

    expected = score(m.lam) + score(m.v).mean(dim=0) + score(m.U).mean(dim=1)
    # the scores of this model are tiny (~1e-23): a relative comparison only, never the default atol
    assert float(expected.detach().abs().min()) > 0
    torch.testing.assert_close(allocator.scores(m), expected, rtol=1e-4, atol=0)
    # u and V carry no importance state at all (the paper's saving)
    assert id(m.u) not in allocator.importance and id(m.V) not in allocator.importance


def test_pruning_reaches_the_target_budget_and_keeps_the_final_pattern():
    torch.manual_seed(0)
    total = 24
    adapter = lora2(rank=4, k=2, target_rank=1, init_warmup=0.1, final_warmup=0.25, mask_interval=2, alpha=8)
    model, _, head_ids = apply_adapter(adapter, tiny_bert(layers=2), total_steps=total)
    optimizer = torch.optim.AdamW(adapter_params(model, head_ids), lr=0.05)
    ids = token_batch()
    target = torch.randn(3, 2)
    modules = [m for _, m in adapter.wrappers(model)]
    final_pattern = None
    for step in range(total):
        loss = (logits(model, ids) - target).pow(2).mean() + adapter.extra_loss(model)
        loss.backward()
        optimizer.step()
        adapter.on_step_end(model, step)
        optimizer.zero_grad(set_to_none=True)
        if step == total - 6:  # first step of the final warm-up: the pattern is fixed from here
            final_pattern = [m.rank_mask.clone() for m in modules]
    ranks = adapter.summary(model)["final_ranks"]
    assert sum(ranks.values()) == 1 * len(modules)  # target_rank x modules
    for m, pattern in zip(modules, final_pattern):
        assert torch.equal(m.rank_mask, pattern)
        assert torch.all(m.lam[~m.rank_mask] == 0) and m.final_rank() == int(pattern.sum())
    summary = adapter.summary(model)
    assert summary["params_after_pruning"] == sum(
        2 * (32 + 32) + (2 * 2 + 1) * ranks[name] for name in ranks
    )
    components = adapter.delta_components(model)
    assert [c.final_rank for c in components] == [ranks[c.module] for c in components]
    for c in components:
        assert torch.linalg.matrix_rank(c.delta) <= c.final_rank


def test_merge_and_unmerge_agree_with_the_unmerged_model():
    ids = token_batch()
    adapter = lora2(rank=8, k=4, targets="query,value,output.dense")
    model, _, head_ids = apply_adapter(adapter, tiny_bert())
    randomise(adapter_params(model, head_ids), std=0.3)
    weight = model.bert.encoder.layer[3].output.dense.base.weight.detach().clone()
    unmerged = logits(model, ids).detach()
    with adapter.merged(model):
        torch.testing.assert_close(logits(model, ids), unmerged, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(model.bert.encoder.layer[3].output.dense.base.weight, weight, rtol=0, atol=1e-6)
    torch.testing.assert_close(logits(model, ids), unmerged, rtol=1e-5, atol=1e-6)


def test_save_load_round_trip(tmp_path):
    from safetensors.torch import load_file, save_file

    ids = token_batch()
    adapter = lora2(rank=8, k=2)
    model, _, head_ids = apply_adapter(adapter, tiny_bert())
    randomise(adapter_params(model, head_ids))
    state = adapter.adapter_state_dict(model, head_ids)
    assert len(state) == 4 * 2 * 5  # layers x types x (u, v, lam, U, V)
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "a.safetensors"))
    fresh_adapter = lora2(rank=8, k=2)
    fresh, _, _ = apply_adapter(fresh_adapter, tiny_bert())
    fresh_adapter.load_adapter_state_dict(fresh, load_file(str(tmp_path / "a.safetensors")))
    torch.testing.assert_close(logits(fresh, ids), logits(model, ids))


@pytest.mark.parametrize(
    "options,message",
    [({"k": 0}, "k must be"), ({"target_rank": 9}, "target_rank"), ({"init_warmup": 0.6, "final_warmup": 0.5}, "sum < 1"),
     ({"mask_interval": 0}, "mask_interval"), ({"beta1": 1.0}, "beta1")],
)
def test_bad_options_are_one_line_errors(options, message):
    with pytest.raises(HarnessError, match=message):
        lora2(**options)


def test_k_larger_than_the_module_is_rejected_before_training():
    from harness.sites import find_sites

    sites = tuple(find_sites(tiny_bert(), ("query",), exclude=("classifier",)))
    with pytest.raises(HarnessError, match="k=64 exceeds"):
        lora2(k=64).check_sites(sites)


def test_a_real_run_records_final_ranks_and_analyses(tmp_path):
    """Through the harness's own loop: GLUE SST-2 on the offline MiniLM, a few steps."""
    import json

    from harness.cli.main import main

    code = main([
        "run", "--suite", "glue", "--tasks", "sst2", "--adapters", "lora2", "--preset", "cpu",
        "--max-steps", "4", "--max-train-samples", "32", "--max-eval-samples", "16", "--batch-size", "8",
        "--max-length", "32", "--epochs", "1", "--opt", "mask_interval=1", "--opt", "target_rank=3",
        "--results-dir", str(tmp_path), "--save-adapters", "--no-progress",
    ])
    assert code == 0
    [path] = list(tmp_path.rglob("lora2-*.json"))
    record = json.loads(path.read_text())
    assert record["status"] == "success", record.get("error")
    info = record["adapter_info"]
    assert len(info["final_ranks"]) == 12 and sum(info["final_ranks"].values()) == 3 * 12
    components = record["analysis"]["components"]
    assert {c["final_rank"] for c in components} <= set(range(9)) and len(components) == 12
    assert sum(c["final_rank"] for c in components) == 36
    assert record["analysis"]["inter_layer_kl"]  # query and value: layer x layer
    assert path.with_suffix(".adapter.safetensors").is_file()
