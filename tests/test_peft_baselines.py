"""Method-specific tests of the baselines that come from peft: DoRA, PiSSA, AdaLoRA, VeRA, Lily, LoRA-FA.

Tiny random BERT/LLaMA models keep the file fast; the RoBERTa counts are built on the meta device from
the catalogue's architecture config and checked against each method's formula."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from adapter_testkit import (
    adapter_count,
    adapter_params,
    apply_adapter,
    assert_only_adapter_gets_gradients,
    logits,
    meta_roberta_count,
    randomise,
    tiny_bert,
    tiny_llama,
    token_batch,
)

from adapters._toolkit.peft_tuner import ADAPTER_NAME, tuner_layers
from adapters.adalora import AdaLoRA, AdaLoraOptions, schedule_steps
from adapters.dora import DoRA, DoraOptions
from adapters.lily import LilyOptions, kinds_by_specificity
from adapters.lorafa import LoraFA, LoraFaOptions
from adapters.pissa import PiSSA, PissaOptions
from adapters.vera import VeRA, VeraOptions
from harness.adapter import Adapter, TargetSite
from harness.config import build, field_types
from harness.errors import HarnessError
from harness.measure import MemoryMeter, unique_named_buffers
from harness.registry import ADAPTERS
from harness.targets import ATTENTION_QV, resolve_targets

NAMES = ("dora", "pissa", "adalora", "vera", "lily", "lorafa")
HIDDEN, INTERMEDIATE, LAYERS = 32, 64, 4
D = 768  # RoBERTa-base hidden size
N_QV = 24  # RoBERTa-base: 12 layers x (query, value)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models run faster on one thread, and far faster when the cores are shared (OpenMP workers
    spin-wait for each other: 70x measured with 8 jobs on 2 cores)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make(name: str, **options) -> Adapter:
    cls = ADAPTERS.get(name)
    return cls(build(cls.config_cls, options, name))


def small(name: str, **options) -> Adapter:
    """Each method at a size that fits the tiny BERT (hidden 32, 4 layers, query+value)."""
    defaults = {"vera": {"rank": 16}, "lily": {"rank": 4, "stride_a": 2, "num_b": 2}}.get(name, {"rank": 4})
    return make(name, **{**defaults, **options})


def adapted(name: str, seed: int = 0, total_steps: int = 100, **options):
    adapter = small(name, **options)
    model, sites, head_ids = apply_adapter(
        adapter, tiny_bert(LAYERS, HIDDEN, INTERMEDIATE, seed=seed), total_steps
    )
    return adapter, model, sites, head_ids


# ---- registry and presets ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_registered_and_every_preset_option_set_builds(name):
    cls = ADAPTERS.get(name)
    assert cls.name == name and cls.description
    tables = list(cls.paper_options.items()) + list(cls.cpu_options.items())
    assert "glue" in cls.paper_options
    for key, options in tables:
        config = build(cls.config_cls, options, f"{name} preset {key}")
        assert isinstance(config, cls.config_cls)


def test_paper_configs_match_the_seeds_baselines():
    # adapters name the role; the model's architecture turns it into module names (harness.targets)
    vera = VeRA.preset_options("paper", "glue", "roberta-large")
    assert vera["rank"] == 256 and resolve_targets(vera["targets"], "roberta-large") == ("query", "value")
    assert VeRA.preset_options("paper", "coco-retrieval", "clip-base")["rank"] == 1024
    for cls in (DoRA, PiSSA, LoraFA):
        assert cls.preset_options("paper", "glue", "roberta-base") == {
            "rank": 8,
            "alpha": 8,
            "targets": ATTENTION_QV,
        }
        assert resolve_targets(ATTENTION_QV, "roberta-base") == ("query", "value")
        assert resolve_targets(ATTENTION_QV, "deberta-v3-base") == ("query_proj", "value_proj")
    ada = AdaLoRA.preset_options("paper", "glue", "roberta-base")
    assert ada["rank"] == 8 and ada["init_rank"] == 12


# ---- parameter counts against the formulas -------------------------------------------------------------


def test_counts_on_roberta_base_meta_match_the_formulas():
    r = 8
    assert meta_roberta_count(make("dora", rank=r)) == N_QV * (r * 2 * D + D)
    assert meta_roberta_count(make("pissa", rank=r)) == N_QV * r * 2 * D
    assert meta_roberta_count(make("lorafa", rank=r)) == N_QV * r * D  # B only
    assert meta_roberta_count(make("adalora", rank=8, init_rank=12)) == N_QV * 12 * (2 * D + 1)
    assert meta_roberta_count(make("vera", rank=1024)) == N_QV * (D + 1024)  # VeRA's paper: 43K
    lily = make("lily", rank=16, stride_a=4, num_b=3)
    per_kind = math.ceil(12 / 4) * 16 * D + 3 * 16 * D + 12 * 16 * 3
    assert meta_roberta_count(lily) == 2 * per_kind


def test_vera_roberta_large_count_matches_the_paper():
    # VeRA r=256 on RoBERTa-large query,value: 48 modules x (1024 + 256) = 61,440 (the paper's 61K)
    assert meta_roberta_count(make("vera", rank=256), "roberta-large.json") == 48 * (1024 + 256)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("dora", 2 * LAYERS * (4 * 2 * HIDDEN + HIDDEN)),
        ("pissa", 2 * LAYERS * 4 * 2 * HIDDEN),
        ("lorafa", 2 * LAYERS * 4 * HIDDEN),
        ("adalora", 2 * LAYERS * 6 * (2 * HIDDEN + 1)),  # init rank ceil(1.5 * 4) = 6
        ("vera", 2 * LAYERS * (HIDDEN + 16)),
        ("lily", 2 * (LAYERS // 2 * 4 * HIDDEN + 2 * 4 * HIDDEN + LAYERS * 4 * 2)),
    ],
)
def test_counts_on_tiny_bert_match_the_formulas(name, expected):
    _, model, _, head_ids = adapted(name)
    assert adapter_count(model, head_ids) == expected


def test_counts_on_tiny_llama_all_linear():
    model = tiny_llama()
    adapter = make("dora", rank=2, targets="all-linear")
    model, sites, head_ids = apply_adapter(adapter, model, head=("lm_head",), family="causal_lm")
    assert len(sites) == 3 * 7
    expected = sum(2 * (s.in_features + s.out_features) + s.out_features for s in sites)
    assert adapter_count(model, head_ids) == expected


@pytest.mark.parametrize("name", NAMES)
def test_applies_to_a_causal_lm_without_changing_its_output(name):
    ids = token_batch()
    before = logits(tiny_llama(seed=0), ids)
    adapter = make(name, rank=2 if name != "vera" else 8, targets="q_proj,v_proj")
    model, sites, head_ids = apply_adapter(adapter, tiny_llama(seed=0), head=("lm_head",), family="causal_lm")
    assert {n for n, _ in tuner_layers(model)} == {s.name for s in sites} and len(sites) == 6
    assert adapter_count(model, head_ids) > 0
    torch.testing.assert_close(logits(model, ids), before, rtol=0, atol=1e-5)


# ---- init ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["dora", "adalora", "vera", "lily", "lorafa"])
def test_zero_init_identity(name):
    ids = token_batch()
    base = tiny_bert(LAYERS, HIDDEN, INTERMEDIATE, seed=0)
    before = logits(base, ids)
    _, model, _, _ = adapted(name, seed=0)
    torch.testing.assert_close(logits(model, ids), before, rtol=0, atol=1e-6)


def test_pissa_residual_plus_adapter_reproduces_the_weight():
    ids = token_batch()
    base = tiny_bert(LAYERS, HIDDEN, INTERMEDIATE, seed=0)
    originals = {
        n: m.weight.detach().clone() for n, m in base.named_modules() if n.endswith(("query", "value"))
    }
    before = logits(base, ids)
    adapter, model, _, _ = adapted("pissa", seed=0)
    for name, layer in tuner_layers(model):
        residual = layer.get_base_layer().weight.detach()
        adapter_part = layer.get_delta_weight(ADAPTER_NAME).detach()
        assert not torch.allclose(residual, originals[name])  # the principal part moved into the adapter
        assert adapter_part.norm() > 0.1 * originals[name].norm()  # not zero-init by design
        torch.testing.assert_close(residual + adapter_part, originals[name], rtol=0, atol=1e-5)
    torch.testing.assert_close(logits(model, ids), before, rtol=0, atol=1e-5)
    # the recorded update starts at zero (change from the pretrained weight, not s B A)
    comps = adapter.delta_components(model)
    assert len(comps) == 2 * LAYERS and all(c.delta.abs().max() < 1e-6 for c in comps)


def test_pissa_delta_is_the_change_from_the_pretrained_weight():
    adapter, model, _, head_ids = adapted("pissa", seed=0)
    originals = {
        n: layer.get_base_layer().weight.detach() + layer.get_delta_weight(ADAPTER_NAME).detach()
        for n, layer in tuner_layers(model)
    }
    with torch.no_grad():
        for p in adapter_params(model, head_ids):
            p.add_(0.05 * torch.randn_like(p))
    for comp in adapter.delta_components(model):
        layer = dict(tuner_layers(model))[comp.module]
        now = layer.get_base_layer().weight.detach() + layer.get_delta_weight(ADAPTER_NAME).detach()
        torch.testing.assert_close(comp.delta, now - originals[comp.module], rtol=0, atol=1e-5)


# ---- gradients, merge, save/load -------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_only_adapter_tensors_get_gradients(name):
    _, model, _, head_ids = adapted(name)
    randomise(adapter_params(model, head_ids), std=0.1)
    assert_only_adapter_gets_gradients(model, head_ids, token_batch())


@pytest.mark.parametrize("name", ["dora", "pissa", "adalora", "vera", "lorafa"])
def test_merge_unmerge_agree(name):
    ids = token_batch()
    adapter, model, _, head_ids = adapted(name)
    randomise(adapter_params(model, head_ids), std=0.1)
    expected = logits(model, ids)
    adapter.merge(model)
    assert all(layer.merged for _, layer in tuner_layers(model))
    torch.testing.assert_close(logits(model, ids), expected, rtol=1e-4, atol=1e-5)
    adapter.unmerge(model)
    assert not any(layer.merged for _, layer in tuner_layers(model))
    torch.testing.assert_close(logits(model, ids), expected, rtol=1e-4, atol=1e-5)


def test_lily_refuses_to_merge():
    adapter, model, _, _ = adapted("lily")
    with pytest.raises(HarnessError, match="merging"):
        adapter.merge(model)
    assert adapter.delta_components(model) == []  # input-dependent update: no fixed dW


@pytest.mark.parametrize("name", NAMES)
def test_save_load_round_trip(name, tmp_path):
    from safetensors.torch import load_file, save_file

    ids = token_batch()
    options = {"prng_key": 11} if name == "vera" else {}
    adapter, model, _, head_ids = adapted(name, seed=0, **options)
    randomise(adapter_params(model, head_ids), std=0.1)
    expected = logits(model, ids)
    state = adapter.adapter_state_dict(model, head_ids)
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "a.safetensors"))
    # the same pretrained model with the adapter initialised from another random state (VeRA: other
    # projections, LoRA-FA: another frozen A): whatever the result depends on must come from the file
    fresh = small(name, **({"prng_key": 12} if name == "vera" else {}))
    base = tiny_bert(LAYERS, HIDDEN, INTERMEDIATE, seed=0)
    torch.manual_seed(1234)
    other, _, _ = apply_adapter(fresh, base)
    assert not torch.allclose(logits(other, ids), expected)
    fresh.load_adapter_state_dict(other, load_file(str(tmp_path / "a.safetensors")))
    torch.testing.assert_close(logits(other, ids), expected, rtol=0, atol=1e-6)


def test_lorafa_checkpoint_holds_the_frozen_a():
    adapter, model, _, head_ids = adapted("lorafa")
    state = adapter.adapter_state_dict(model, head_ids)
    assert sum(".lora_A." in k for k in state) == sum(".lora_B." in k for k in state) == 2 * LAYERS
    assert sum(t.numel() for t in state.values()) == 2 * adapter_count(model, head_ids)


def test_dora_delta_components_are_the_merged_update():
    adapter, model, _, head_ids = adapted("dora")
    randomise(adapter_params(model, head_ids), std=0.1)
    layers = dict(tuner_layers(model))
    before = {n: layer.get_base_layer().weight.detach().clone() for n, layer in layers.items()}
    comps = adapter.delta_components(model)
    assert len(comps) == 2 * LAYERS and {c.kind for c in comps} == {"query", "value"}
    for comp in comps:
        torch.testing.assert_close(
            layers[comp.module].get_base_layer().weight, before[comp.module], rtol=0, atol=0
        )
        layer = copy.deepcopy(layers[comp.module])
        layer.merge()
        torch.testing.assert_close(
            comp.delta, layer.get_base_layer().weight - before[comp.module], rtol=0, atol=1e-6
        )


# ---- AdaLoRA ------------------------------------------------------------------------------------------


def _train(adapter, model, head_ids, steps, lr=5e-2):
    ids = token_batch(batch=4)
    labels = torch.tensor([0, 1, 1, 0])
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr)
    for step in range(steps):
        loss = torch.nn.functional.cross_entropy(logits(model, ids), labels)
        extra = adapter.extra_loss(model)
        if extra is not None:
            loss = loss + extra
        loss.backward()
        optimizer.step()
        adapter.on_step_end(model, step)
        optimizer.zero_grad(set_to_none=True)


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
    assert summary["final_rank_total"] == summary["target_rank_total"] == 4 * 2 * LAYERS
    per_triplet = 2 * HIDDEN + 1
    assert summary["params_at_init"] == 6 * 2 * LAYERS * per_triplet == adapter_count(model, head_ids)
    assert summary["params_effective"] == sum(ranks.values()) * per_triplet < summary["params_at_init"]
    # pruned triplets are zero in E, so the kept count is what the model really uses
    for name, layer in tuner_layers(model):
        assert int((layer.lora_E[ADAPTER_NAME] != 0).sum()) <= ranks[name]
    finals = {c.module: c.final_rank for c in adapter.delta_components(model)}
    assert finals == ranks


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


# ---- VeRA ---------------------------------------------------------------------------------------------


def test_vera_projections_are_shared_frozen_buffers_in_the_memory_estimate():
    base = tiny_bert(LAYERS, HIDDEN, INTERMEDIATE, seed=0)
    buffers_before = sum(b.numel() * b.element_size() for _, b in unique_named_buffers(base))
    adapter = small("vera")
    model, _, head_ids = apply_adapter(adapter, base)
    layers = [layer for _, layer in tuner_layers(model)]
    assert len({id(layer.vera_A[ADAPTER_NAME]) for layer in layers}) == 1
    assert len({id(layer.vera_B[ADAPTER_NAME]) for layer in layers}) == 1
    assert not any(b.requires_grad for b in adapter.projections(model).values())
    summary = adapter.summary(model)
    assert summary["frozen_adapter_buffers"] == 16 * HIDDEN + HIDDEN * 16
    assert summary["frozen_adapter_buffer_bytes"] == 4 * summary["frozen_adapter_buffers"]
    report = MemoryMeter(torch.device("cpu")).report(model, None)
    assert report["estimate_breakdown"]["buffers"] - buffers_before == summary["frozen_adapter_buffer_bytes"]
    # saved once each, next to the trainable vectors
    state = adapter.adapter_state_dict(model, head_ids)
    assert sum(1 for k in state if ".vera_A." in k or ".vera_B." in k) == 2
    assert (
        sum(t.numel() for t in state.values())
        == adapter_count(model, head_ids) + summary["frozen_adapter_buffers"]
    )


def test_vera_projections_follow_the_seed_and_alpha_is_refused():
    _, m1, _, _ = adapted("vera", seed=0, prng_key=1)
    _, m2, _, _ = adapted("vera", seed=0, prng_key=2)
    a1 = next(layer for _, layer in tuner_layers(m1)).vera_A[ADAPTER_NAME]
    a2 = next(layer for _, layer in tuner_layers(m2)).vera_A[ADAPTER_NAME]
    assert not torch.equal(a1, a2)
    with pytest.raises(HarnessError, match="unknown option 'alpha'"):
        build(VeraOptions, {"alpha": 16}, "vera")
    assert "alpha" not in field_types(VeraOptions) and "alpha" not in field_types(LilyOptions)


def test_vera_does_not_hide_a_nan():
    adapter, model, _, head_ids = adapted("vera")
    layer = dict(tuner_layers(model))["bert.encoder.layer.3.attention.self.value"]
    with torch.no_grad():
        layer.vera_lambda_b[ADAPTER_NAME].fill_(float("nan"))
    assert torch.isnan(logits(model, token_batch())).all()


# ---- Lily ---------------------------------------------------------------------------------------------


def test_lily_shares_tensors_as_one_parameter_and_saves_them_once():
    adapter, model, _, head_ids = adapted("lily", rank=4, stride_a=2, num_b=2)
    layers = dict(tuner_layers(model))
    q = [layers[f"bert.encoder.layer.{i}.attention.self.query"] for i in range(LAYERS)]
    v = [layers[f"bert.encoder.layer.{i}.attention.self.value"] for i in range(LAYERS)]
    a_ids = [id(layer.lily_A[ADAPTER_NAME].weight) for layer in q]
    assert a_ids[0] == a_ids[1] != a_ids[2] == a_ids[3]  # stride_a = 2
    assert len({id(layer.lily_B[ADAPTER_NAME].weight) for layer in q}) == 1  # B shared by all layers
    assert len({id(layer.lily_router[ADAPTER_NAME].weight) for layer in q}) == LAYERS  # router per layer
    # query and value never share
    assert not {id(layer.lily_B[ADAPTER_NAME].weight) for layer in q} & {
        id(layer.lily_B[ADAPTER_NAME].weight) for layer in v
    }
    assert not set(a_ids) & {id(layer.lily_A[ADAPTER_NAME].weight) for layer in v}
    state = adapter.adapter_state_dict(model, head_ids)
    assert sum(t.numel() for t in state.values()) == adapter_count(model, head_ids)
    assert sum(1 for k in state if ".lily_B." in k) == 2
    # peft's own checkpoint stores a shared tensor once per layer: ours is smaller
    from peft import get_peft_model_state_dict

    peft_state = get_peft_model_state_dict(model, adapter_name=ADAPTER_NAME)
    assert sum(t.numel() for t in peft_state.values()) > sum(t.numel() for t in state.values())


def test_lily_shared_tensor_gets_the_gradient_of_every_layer():
    _, model, _, head_ids = adapted("lily", rank=4, stride_a=2, num_b=2)
    randomise(adapter_params(model, head_ids), std=0.1)
    layers = dict(tuner_layers(model))
    shared_b = layers["bert.encoder.layer.0.attention.self.query"].lily_B[ADAPTER_NAME].weight
    logits(model, token_batch()).pow(2).mean().backward()
    full = shared_b.grad.clone()
    model.zero_grad(set_to_none=True)
    for i in range(1, LAYERS):  # detach the other layers' use: the gradient must change
        layers[f"bert.encoder.layer.{i}.attention.self.query"].lily_B[ADAPTER_NAME] = copy.deepcopy(
            layers[f"bert.encoder.layer.{i}.attention.self.query"].lily_B[ADAPTER_NAME]
        )
    logits(model, token_batch()).pow(2).mean().backward()
    assert (shared_b.grad - full).norm() > 1e-3 * full.norm() > 0


def test_lily_most_specific_kind_comes_last_and_options_validate():
    def site(kind):
        return TargetSite(
            name=f"x.0.{kind}", stack="x", layer=0, num_layers=1, kind=kind, in_features=1, out_features=1
        )

    kinds = kinds_by_specificity(
        (site("attention.output.dense"), site("output.dense"), site("attention.self.query"))
    )
    assert kinds.index("output.dense") < kinds.index("attention.output.dense")
    with pytest.raises(HarnessError, match="num_b"):
        LilyOptions(num_b=1)
    with pytest.raises(HarnessError, match="unknown option 'alpha'"):
        build(LilyOptions, {"alpha": 8}, "lily")


def test_lily_all_linear_keeps_types_apart():
    adapter = make("lily", rank=2, stride_a=1, num_b=2, targets="all-linear")
    model, sites, head_ids = apply_adapter(adapter, tiny_bert(2, HIDDEN, INTERMEDIATE))
    assert {name for name, _ in tuner_layers(model)} == {s.name for s in sites}
    layers = dict(tuner_layers(model))
    attn_out = layers["bert.encoder.layer.0.attention.output.dense"].lily_B[ADAPTER_NAME].weight
    key = layers["bert.encoder.layer.1.attention.self.key"].lily_B[ADAPTER_NAME].weight
    query = layers["bert.encoder.layer.1.attention.self.query"].lily_B[ADAPTER_NAME].weight
    assert attn_out is not key and key is not query  # same shape, different types: not shared


# ---- LoRA-FA ------------------------------------------------------------------------------------------


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
    assert isinstance(DoRA(DoraOptions(rank=2)).config, DoraOptions)
    with pytest.raises(HarnessError, match="init"):
        PissaOptions(init="qr")
    assert PissaOptions(init="niter_4").peft_init == "pissa_niter_4"
