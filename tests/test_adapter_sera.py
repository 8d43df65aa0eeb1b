from __future__ import annotations

import pytest
import torch

from adapters.sera import SeRA, SeraOptions, sera_parameter_count
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
from tests.tiny_models import tiny_bert, tiny_llama, token_batch


def sera(**options) -> SeRA:
    return SeRA(build(SeraOptions, options, "adapter 'sera'"))


def test_count_on_roberta_base_meta():
    # 24 square 768 modules: (768 + 768)·8/8 + 8² each
    assert meta_roberta_count(sera(rank=8, targets="query,value")) == 24 * (2 * 768 + 64) == 38_400
    assert meta_roberta_count(sera(rank=16, split=4, targets="query,value")) == 24 * (2 * 768 * 16 // 4 + 256)
    assert meta_roberta_count(sera(rank=8), "roberta-large.json") == 48 * (2 * 1024 + 64)


@pytest.mark.parametrize(
    "targets,rank,split",
    [("query,value", 8, None), ("query,value", 8, 2), ("intermediate.dense,output.dense", 8, 4), ("key", 4, 1)],
)
def test_count_equals_formula_on_several_shapes(targets, rank, split):
    model, sites, head_ids = apply_adapter(sera(rank=rank, split=split, targets=targets), tiny_bert())
    s = split or rank
    assert adapter_count(model, head_ids) == sum(sera_parameter_count(x.in_features, x.out_features, rank, s) for x in sites)
    module = model.bert.encoder.layer[0].get_submodule(sites[0].name.split(".0.", 1)[1])
    assert module.A.shape == (s, sites[0].in_features // s, rank // s)
    assert module.B.shape == (s, rank // s, sites[0].out_features // s)
    assert module.C.shape == (rank, rank)


def test_zero_init_leaves_output_unchanged_and_only_adapter_gets_gradients():
    model = tiny_bert()
    ids = token_batch()
    before = logits(model, ids).detach()
    model, _, head_ids = apply_adapter(sera(rank=8), model)
    assert torch.equal(logits(model, ids), before)
    randomise(adapter_params(model, head_ids))
    assert_only_adapter_gets_gradients(model, head_ids, ids)


def test_update_equals_the_dense_block_diagonal_formula():
    model, _, head_ids = apply_adapter(sera(rank=8, split=4, alpha=4, targets="intermediate.dense"), tiny_bert())
    randomise(adapter_params(model, head_ids))
    module = model.bert.encoder.layer[2].intermediate.dense
    x = torch.randn(2, 5, 32)
    a = torch.block_diag(*module.A)  # 32 x 8
    b = torch.block_diag(*module.B)  # 8 x 64
    dense = x @ a @ module.C @ b * (4 / 8)
    torch.testing.assert_close(module.update(x), dense, rtol=1e-5, atol=1e-6)
    # each output segment depends on every input segment only through C
    assert module.update(x).shape == (2, 5, 64)


def test_training_never_builds_dense_block_matrices(monkeypatch):
    model, _, head_ids = apply_adapter(sera(rank=8, split=8), tiny_bert())
    randomise(adapter_params(model, head_ids))

    def forbidden(*args, **kwargs):
        raise AssertionError("a dense block-diagonal matrix was built during training")

    monkeypatch.setattr(torch, "block_diag", forbidden)
    logits(model, token_batch()).sum().backward()
    module = model.bert.encoder.layer[0].attention.self.query
    assert module.A.grad is not None and module.B.grad is not None
    # the stored blocks hold d_in·r/split values, not the d_in·r of a dense block-diagonal A
    assert module.A.numel() == 32 * 8 // 8 and module.B.numel() == 8 * 32 // 8


def test_split_one_with_identity_c_is_lora():
    from peft import LoraConfig, inject_adapter_in_model

    ids = token_batch()
    ours, _, head_ids = apply_adapter(sera(rank=4, split=1, alpha=8), tiny_bert())
    randomise(adapter_params(ours, head_ids))
    reference = inject_adapter_in_model(
        LoraConfig(r=4, lora_alpha=8, target_modules=["query", "value"]), tiny_bert(), adapter_name="default"
    )
    with torch.no_grad():
        for ours_layer, ref_layer in zip(ours.bert.encoder.layer, reference.bert.encoder.layer):
            for name in ("query", "value"):
                module = getattr(ours_layer.attention.self, name)
                module.C.copy_(torch.eye(4))
                ref = getattr(ref_layer.attention.self, name)
                ref.lora_A["default"].weight.copy_(module.A[0].T)
                ref.lora_B["default"].weight.copy_(module.B[0].T)
    torch.testing.assert_close(logits(ours, ids), logits(reference, ids), rtol=1e-5, atol=1e-6)


def test_merge_and_unmerge_agree_with_the_unmerged_model():
    ids = token_batch()
    adapter = sera(rank=8, split=4, targets="query,value,intermediate.dense")
    model, _, head_ids = apply_adapter(adapter, tiny_bert())
    randomise(adapter_params(model, head_ids), std=0.1)
    base_weight = model.bert.encoder.layer[0].intermediate.dense.base.weight.detach().clone()
    unmerged = logits(model, ids).detach()
    adapter.merge(model)
    torch.testing.assert_close(logits(model, ids), unmerged, rtol=1e-4, atol=1e-5)
    adapter.unmerge(model)
    torch.testing.assert_close(model.bert.encoder.layer[0].intermediate.dense.base.weight, base_weight, rtol=0, atol=1e-6)
    torch.testing.assert_close(logits(model, ids), unmerged, rtol=1e-5, atol=1e-6)


def test_save_load_round_trip(tmp_path):
    from safetensors.torch import load_file, save_file

    ids = token_batch()
    adapter = sera(rank=8)
    model, _, head_ids = apply_adapter(adapter, tiny_bert())
    randomise(adapter_params(model, head_ids))
    state = adapter.adapter_state_dict(model, head_ids)
    assert len(state) == 4 * 2 * 3  # layers x types x (A, C, B)
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "a.safetensors"))
    fresh_adapter = sera(rank=8)
    fresh, _, _ = apply_adapter(fresh_adapter, tiny_bert())
    assert not torch.allclose(logits(fresh, ids), logits(model, ids))
    fresh_adapter.load_adapter_state_dict(fresh, load_file(str(tmp_path / "a.safetensors")))
    torch.testing.assert_close(logits(fresh, ids), logits(model, ids))


def test_causal_lm_all_linear_and_components():
    adapter = sera(rank=8, split=4, targets="all-linear")
    model, sites, head_ids = apply_adapter(adapter, tiny_llama(), head=("lm_head",), family="causal_lm")
    randomise(adapter_params(model, head_ids))
    assert {s.kind for s in sites} >= {"self_attn.q_proj", "mlp.down_proj"}
    components = adapter.delta_components(model)
    assert len(components) == len(sites) and {c.component for c in components} == {"sera"}
    c = components[0]
    assert c.delta.shape == (sites[0].out_features, sites[0].in_features)
    assert torch.linalg.matrix_rank(c.delta) <= 8


@pytest.mark.parametrize("options,message", [({"split": 3}, "must divide the rank"), ({"split": 0}, "positive")])
def test_bad_split_is_a_config_error(options, message):
    with pytest.raises(HarnessError, match=message):
        sera(rank=8, **options)


def test_split_must_divide_the_module_dimensions_before_training():
    from harness.sites import find_sites

    model = tiny_bert(hidden=36, intermediate=72)  # 36 is not divisible by 8
    sites = tuple(find_sites(model, ("query", "value"), exclude=("classifier",)))
    with pytest.raises(HarnessError, match="split=8 must divide d_in=36"):
        sera(rank=8).check_sites(sites)
    sera(rank=8, split=4).check_sites(sites)
