"""VeRA (adapters/vera.py): frozen shared random projections and trained vectors, through peft.

The checks every peft-backed method runs come from ``PeftChecks`` (tests/adapter_testkit.py) at the
method's small size; the tests below are VeRA's own."""

from __future__ import annotations

import pytest
import torch

from adapters._toolkit.peft_tuner import ADAPTER_NAME
from adapters.lily import LilyOptions
from adapters.vera import VeRA, VeraOptions
from harness.config import build, field_types
from harness.errors import HarnessError
from harness.parameters import unique_named_buffers
from harness.pipeline.measure import MemoryMeter
from harness.targets import resolve_targets
from tests.adapter_testkit import (
    HIDDEN,
    INTERMEDIATE,
    N_QV,
    PEFT_LAYERS,
    D,
    PeftChecks,
    PeftZeroInitCheck,
    adapted,
    adapter_count,
    apply_adapter,
    logits,
    make,
    meta_roberta_count,
    small,
    tuner_layers,
)
from tests.tiny_models import tiny_bert, token_batch


class TestVeRA(PeftChecks, PeftZeroInitCheck):
    name = "vera"
    tiny_bert_count = 2 * PEFT_LAYERS * (HIDDEN + 16)


def test_paper_configs_match_the_seeds_baselines():
    # adapters name the role; the model's architecture turns it into module names (harness.targets)
    vera = VeRA.preset_options("paper", "glue", "roberta-large")
    assert vera["rank"] == 256 and resolve_targets(vera["targets"], "roberta-large") == ("query", "value")
    assert VeRA.preset_options("paper", "coco-retrieval", "clip-base")["rank"] == 1024


def test_counts_on_roberta_base_meta_match_the_formulas():
    assert meta_roberta_count(make("vera", rank=1024)) == N_QV * (D + 1024)  # VeRA's paper: 43K


def test_vera_roberta_large_count_matches_the_paper():
    # VeRA r=256 on RoBERTa-large query,value: 48 modules x (1024 + 256) = 61,440 (the paper's 61K)
    assert meta_roberta_count(make("vera", rank=256), "roberta-large.json") == 48 * (1024 + 256)


def test_vera_projections_are_shared_frozen_buffers_in_the_memory_estimate():
    base = tiny_bert(PEFT_LAYERS, HIDDEN, INTERMEDIATE, seed=0)
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


def test_a_saved_vera_state_carries_its_projections(tmp_path):
    # the contract's round trip (tests/test_contract.py) reloads into an adapter of the same prng_key; here
    # the fresh adapter draws other projections, so the outputs can only match if the file holds them
    from safetensors.torch import load_file, save_file

    from tests.adapter_testkit import adapter_params, randomise, small

    ids = token_batch()
    adapter, model, _, head_ids = adapted("vera", seed=0, prng_key=11)
    randomise(adapter_params(model, head_ids), std=0.1)
    expected = logits(model, ids)
    state = adapter.adapter_state_dict(model, head_ids)
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "a.safetensors"))
    fresh = small("vera", prng_key=12)
    other, _, _ = apply_adapter(fresh, tiny_bert(PEFT_LAYERS, HIDDEN, INTERMEDIATE, seed=0))
    assert not torch.allclose(logits(other, ids), expected)
    fresh.load_adapter_state_dict(other, load_file(str(tmp_path / "a.safetensors")))
    torch.testing.assert_close(logits(other, ids), expected, rtol=0, atol=1e-6)
