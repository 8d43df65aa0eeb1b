"""Lily (adapters/lily.py): A shared by neighbouring layers, B's by all, mixed by a router, through peft.

The checks every peft-backed method runs come from ``PeftChecks`` (tests/adapter_testkit.py) at the
method's small size; the tests below are Lily's own."""

from __future__ import annotations

import copy
import math

import pytest

from adapters._toolkit.peft_tuner import ADAPTER_NAME
from adapters.lily import LilyOptions, kinds_by_specificity
from harness.adapter import TargetSite
from harness.config import build
from harness.errors import HarnessError
from tests.adapter_testkit import (
    HIDDEN,
    INTERMEDIATE,
    PEFT_LAYERS,
    D,
    PeftChecks,
    PeftZeroInitCheck,
    adapted,
    adapter_count,
    adapter_params,
    apply_adapter,
    logits,
    make,
    meta_roberta_count,
    randomise,
    tuner_layers,
)
from tests.tiny_models import tiny_bert, token_batch


class TestLily(PeftChecks, PeftZeroInitCheck):  # no merge: the update depends on the input
    name = "lily"
    tiny_bert_count = 2 * (PEFT_LAYERS // 2 * 4 * HIDDEN + 2 * 4 * HIDDEN + PEFT_LAYERS * 4 * 2)


def test_counts_on_roberta_base_meta_match_the_formulas():
    lily = make("lily", rank=16, stride_a=4, num_b=3)
    per_kind = math.ceil(12 / 4) * 16 * D + 3 * 16 * D + 12 * 16 * 3
    assert meta_roberta_count(lily) == 2 * per_kind


def test_lily_refuses_to_merge():
    adapter, model, _, _ = adapted("lily")
    with pytest.raises(HarnessError, match="merging"):
        adapter.merge(model)
    assert adapter.delta_components(model) == []  # input-dependent update: no fixed dW


def test_lily_shares_tensors_as_one_parameter_and_saves_them_once():
    adapter, model, _, head_ids = adapted("lily", rank=4, stride_a=2, num_b=2)
    layers = dict(tuner_layers(model))
    q = [layers[f"bert.encoder.layer.{i}.attention.self.query"] for i in range(PEFT_LAYERS)]
    v = [layers[f"bert.encoder.layer.{i}.attention.self.value"] for i in range(PEFT_LAYERS)]
    a_ids = [id(layer.lily_A[ADAPTER_NAME].weight) for layer in q]
    assert a_ids[0] == a_ids[1] != a_ids[2] == a_ids[3]  # stride_a = 2
    assert len({id(layer.lily_B[ADAPTER_NAME].weight) for layer in q}) == 1  # B shared by all layers
    assert len({id(layer.lily_router[ADAPTER_NAME].weight) for layer in q}) == PEFT_LAYERS  # router per layer
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
    for i in range(1, PEFT_LAYERS):  # detach the other layers' use: the gradient must change
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
