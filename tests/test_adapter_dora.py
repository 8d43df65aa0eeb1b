"""DoRA (adapters/dora.py): LoRA direction plus a trained magnitude, through peft.

The checks every peft-backed method runs come from ``PeftChecks`` (tests/adapter_testkit.py) at the
method's small size; the tests below are DoRA's own."""

from __future__ import annotations

import copy

import torch

from adapters.dora import DoRA, DoraOptions
from harness.targets import ATTENTION_QV, resolve_targets
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
    apply_adapter,
    make,
    meta_roberta_count,
    randomise,
    tuner_layers,
)
from tests.tiny_models import tiny_llama


class TestDoRA(PeftChecks, PeftZeroInitCheck):
    name = "dora"
    tiny_bert_count = 2 * PEFT_LAYERS * (4 * 2 * HIDDEN + HIDDEN)


def test_paper_configs_match_the_seeds_baselines():
    # adapters name the role; the model's architecture turns it into module names (harness.targets)
    assert DoRA.preset_options("paper", "glue", "roberta-base") == {"rank": 8, "alpha": 8, "targets": ATTENTION_QV}
    assert resolve_targets(ATTENTION_QV, "roberta-base") == ("query", "value")
    assert resolve_targets(ATTENTION_QV, "deberta-v3-base") == ("query_proj", "value_proj")


def test_counts_on_roberta_base_meta_match_the_formulas():
    r = 8
    assert meta_roberta_count(make("dora", rank=r)) == N_QV * (r * 2 * D + D)


def test_counts_on_tiny_llama_all_linear():
    model = tiny_llama()
    adapter = make("dora", rank=2, targets="all-linear")
    model, sites, head_ids = apply_adapter(adapter, model, head=("lm_head",), family="causal_lm")
    assert len(sites) == 3 * 7
    expected = sum(2 * (s.in_features + s.out_features) + s.out_features for s in sites)
    assert adapter_count(model, head_ids) == expected


def test_dora_delta_components_are_the_merged_update():
    adapter, model, _, head_ids = adapted("dora")
    randomise(adapter_params(model, head_ids), std=0.1)
    layers = dict(tuner_layers(model))
    before = {n: layer.get_base_layer().weight.detach().clone() for n, layer in layers.items()}
    comps = adapter.delta_components(model)
    assert len(comps) == 2 * PEFT_LAYERS and {c.kind for c in comps} == {"query", "value"}
    for comp in comps:
        torch.testing.assert_close(
            layers[comp.module].get_base_layer().weight, before[comp.module], rtol=0, atol=0
        )
        layer = copy.deepcopy(layers[comp.module])
        layer.merge()
        torch.testing.assert_close(
            comp.delta, layer.get_base_layer().weight - before[comp.module], rtol=0, atol=1e-6
        )


def test_dora_options_class():
    assert isinstance(DoRA(DoraOptions(rank=2)).config, DoraOptions)
