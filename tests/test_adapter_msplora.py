from __future__ import annotations

import copy

import pytest
import torch

from adapters.msplora import MSPLoRA, MSPLoraOptions, mid_group
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


def msplora(**options) -> MSPLoRA:
    return MSPLoRA(build(MSPLoraOptions, options, "adapter 'msplora'"))


def expected_count(sites, ranks, groups) -> int:
    """Sum over module types of 2 pairs' worth: r_g (one pair), r_m (one per group), r_l (one per layer)."""
    kinds = {}
    for s in sites:
        kinds.setdefault(s.name.split(f".{s.layer}.", 1)[1], (s.in_features + s.out_features, s.num_layers))
    r_g, r_m, r_l = ranks
    return sum(width * (r_g + groups * r_m + layers * r_l) for width, layers in kinds.values())


def test_paper_count_on_roberta_base_meta():
    # (10 + N)·r·d for q and v with N = 12, d = 768, r = 8
    assert meta_roberta_count(msplora(rank=8, targets="query,value")) == (10 + 12) * 8 * 768 == 135_168
    assert meta_roberta_count(msplora(rank=16, targets="query,value")) == (10 + 12) * 16 * 768


@pytest.mark.parametrize(
    "targets,rank,groups,layers",
    [("query,value", 8, 3, 4), ("intermediate.dense,output.dense", 8, 2, 4), ("query", 4, 4, 4), ("key,value", 8, 1, 5)],
)
def test_count_equals_formula_on_several_shapes(targets, rank, groups, layers):
    model = tiny_bert(layers=layers)
    model, sites, head_ids = apply_adapter(msplora(rank=rank, targets=targets, groups=groups), model)
    assert adapter_count(model, head_ids) == expected_count(sites, (rank, rank // 2, rank // 4), groups)


def test_zero_init_leaves_output_unchanged_and_only_adapter_gets_gradients():
    model = tiny_bert()
    ids = token_batch()
    before = logits(model, ids).detach()
    model, _, head_ids = apply_adapter(msplora(rank=8), model)
    assert torch.equal(logits(model, ids), before)
    randomise(adapter_params(model, head_ids))
    assert_only_adapter_gets_gradients(model, head_ids, ids)


def test_levels_are_shared_by_type_group_and_layer():
    model, _, _ = apply_adapter(msplora(rank=8, groups=3), tiny_bert(layers=4))
    layer = model.bert.encoder.layer
    q = [layer[i].attention.self.query.levels for i in range(4)]
    v = [layer[i].attention.self.value.levels for i in range(4)]
    # global: one tensor for all layers of one type, never across types
    assert all(q[i]["global"].A is q[0]["global"].A for i in range(4))
    assert q[0]["global"].A.data_ptr() == q[3]["global"].A.data_ptr()
    assert q[0]["global"].A is not v[0]["global"].A
    # mid: layers 0,1 | 2 | 3 for N = 4, G = 3 (floor(l·G/N))
    assert [mid_group(i, 4, 3) for i in range(4)] == [0, 0, 1, 2]
    assert q[0]["mid"] is q[1]["mid"] and q[1]["mid"] is not q[2]["mid"] and q[2]["mid"] is not q[3]["mid"]
    # layer: own pair per layer
    assert len({id(q[i]["layer"]) for i in range(4)}) == 4
    assert [q[0][lv].rank for lv in ("global", "mid", "layer")] == [8, 4, 2]


def test_groups_follow_the_authors_depth_split():
    assert [mid_group(i, 12, 3) for i in range(12)] == [0] * 4 + [1] * 4 + [2] * 4
    assert [mid_group(i, 30, 3) for i in (0, 9, 10, 19, 20, 29)] == [0, 0, 1, 1, 2, 2]


def test_shared_gradient_is_the_sum_over_layers():
    """The shared global B gets one gradient: the sum of what per-layer copies would get."""
    ids = token_batch()
    model, _, head_ids = apply_adapter(msplora(rank=8), tiny_bert())
    randomise(adapter_params(model, head_ids))
    unshared = copy.deepcopy(model)  # deepcopy keeps sharing; now split the global pairs per layer
    for i, layer in enumerate(unshared.bert.encoder.layer):
        for name in ("query", "value"):
            levels = getattr(layer.attention.self, name).levels
            levels["global"] = copy.deepcopy(levels["global"])
            assert i == 0 or levels["global"] is not getattr(unshared.bert.encoder.layer[0].attention.self, name).levels["global"]
    for m in (model, unshared):
        m.zero_grad(set_to_none=True)
        logits(m, ids).pow(2).mean().backward()
    shared_grad = model.bert.encoder.layer[0].attention.self.query.levels["global"].B.grad
    per_layer = sum(layer.attention.self.query.levels["global"].B.grad for layer in unshared.bert.encoder.layer)
    torch.testing.assert_close(shared_grad, per_layer, rtol=1e-5, atol=1e-7)
    assert shared_grad.abs().sum() > 0


def test_only_the_layer_level_is_lora():
    from peft import LoraConfig, inject_adapter_in_model

    ids = token_batch()
    ours, _, head_ids = apply_adapter(msplora(rank=4, alpha=8, levels="layer", targets="query,value"), tiny_bert())
    randomise(adapter_params(ours, head_ids))
    reference = inject_adapter_in_model(
        LoraConfig(r=4, lora_alpha=8, target_modules=["query", "value"]), tiny_bert(), adapter_name="default"
    )
    with torch.no_grad():
        for ours_layer, ref_layer in zip(ours.bert.encoder.layer, reference.bert.encoder.layer):
            for name in ("query", "value"):
                pair = getattr(ours_layer.attention.self, name).levels["layer"]
                ref = getattr(ref_layer.attention.self, name)
                ref.lora_A["default"].weight.copy_(pair.A)
                ref.lora_B["default"].weight.copy_(pair.B)
    torch.testing.assert_close(logits(ours, ids), logits(reference, ids), rtol=1e-5, atol=1e-6)


def test_merge_and_unmerge_agree_with_the_unmerged_model():
    ids = token_batch()
    adapter = msplora(rank=8)
    model, _, head_ids = apply_adapter(adapter, tiny_bert())
    randomise(adapter_params(model, head_ids), std=0.05)
    base_weight = model.bert.encoder.layer[1].attention.self.query.base.weight.detach().clone()
    unmerged = logits(model, ids).detach()
    adapter.merge(model)
    assert not torch.equal(model.bert.encoder.layer[1].attention.self.query.base.weight, base_weight)
    torch.testing.assert_close(logits(model, ids), unmerged, rtol=1e-4, atol=1e-5)
    adapter.unmerge(model)
    torch.testing.assert_close(model.bert.encoder.layer[1].attention.self.query.base.weight, base_weight, rtol=0, atol=1e-6)
    torch.testing.assert_close(logits(model, ids), unmerged, rtol=1e-5, atol=1e-6)


def test_save_load_round_trip_stores_shared_tensors_once(tmp_path):
    from safetensors.torch import load_file, save_file

    ids = token_batch()
    adapter = msplora(rank=8)
    model, sites, head_ids = apply_adapter(adapter, tiny_bert())
    randomise(adapter_params(model, head_ids))
    state = adapter.adapter_state_dict(model, head_ids)
    # 2 types x (1 global + 3 mid + 4 layer) pairs x (A, B)
    assert len(state) == 2 * (1 + 3 + 4) * 2
    assert sum(t.numel() for t in state.values()) == adapter_count(model, head_ids)
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "a.safetensors"))

    fresh_adapter = msplora(rank=8)
    torch.manual_seed(123)
    fresh, _, fresh_head = apply_adapter(fresh_adapter, tiny_bert())
    fresh_adapter.load_adapter_state_dict(fresh, load_file(str(tmp_path / "a.safetensors")))
    torch.testing.assert_close(logits(fresh, ids), logits(model, ids))
    layer = fresh.bert.encoder.layer
    assert layer[0].attention.self.query.levels["global"].B is layer[3].attention.self.query.levels["global"].B


def test_causal_lm_and_delta_components_per_level():
    adapter = msplora(rank=8, targets="q_proj,v_proj", groups=3)
    model, _, head_ids = apply_adapter(adapter, tiny_llama(layers=3), head=("lm_head",), family="causal_lm")
    randomise(adapter_params(model, head_ids))
    components = adapter.delta_components(model)
    assert len(components) == 2 * 3 * 3  # types x layers x levels
    assert {c.component for c in components} == {"global", "mid", "layer"}
    q_globals = [c.delta for c in components if c.kind == "q_proj" and c.component == "global"]
    assert all(d is q_globals[0] for d in q_globals)  # one tensor for a shared level
    c = components[0]
    linear = model.get_submodule(c.module)
    torch.testing.assert_close(sum(x.delta for x in components if x.module == c.module), linear.delta_weight().float())
    assert adapter.summary(model)["pairs_per_level"] == {"global": 2, "mid": 6, "layer": 6}


@pytest.mark.parametrize(
    "options,message",
    [
        ({"ranks": "8,0,2"}, "positive"),
        ({"ranks": "8,4"}, "2 value"),
        ({"rank": 2}, "too small"),
        ({"levels": "layer,global"}, "order"),
        ({"levels": "global,pyramid"}, "unknown MSPLoRA level"),
        ({"groups": 0}, "groups"),
        ({"alphas": "16,16"}, "alphas"),
    ],
)
def test_bad_options_are_one_line_errors(options, message):
    with pytest.raises(HarnessError, match=message):
        msplora(**options)


def test_check_sites_rejects_more_groups_than_layers_before_training():
    from harness.sites import find_sites

    model = tiny_bert(layers=4)
    sites = tuple(find_sites(model, ("query", "value"), exclude=("classifier",)))
    with pytest.raises(HarnessError, match="groups=5 is more than the 4 layers"):
        msplora(groups=5).check_sites(sites)
    with pytest.raises(HarnessError, match="exceeds"):
        msplora(rank=64, ranks="64,32,16").check_sites(sites)
    msplora(groups=4).check_sites(sites)
    msplora(groups=5, levels="global,layer", ranks="8,2").check_sites(sites)  # no mid level: groups unused
