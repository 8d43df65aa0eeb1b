"""PiSSA (adapters/pissa.py): LoRA from the principal singular vectors, W frozen as residual, through peft.

The checks every peft-backed method runs come from ``PeftChecks`` (tests/adapter_testkit.py) at the
method's small size; the tests below are PiSSA's own."""

from __future__ import annotations

import pytest
import torch

from adapters._toolkit.peft_tuner import ADAPTER_NAME
from adapters.pissa import PiSSA, PissaOptions
from harness.errors import HarnessError
from harness.targets import ATTENTION_QV
from tests.adapter_testkit import (
    HIDDEN,
    INTERMEDIATE,
    N_QV,
    PEFT_LAYERS,
    D,
    PeftChecks,
    adapted,
    adapter_params,
    logits,
    make,
    meta_roberta_count,
    tuner_layers,
)
from tests.tiny_models import tiny_bert, token_batch


class TestPiSSA(PeftChecks):  # not zero-init: the adapter holds W's principal part
    name = "pissa"
    tiny_bert_count = 2 * PEFT_LAYERS * 4 * 2 * HIDDEN


def test_paper_configs_match_the_seeds_baselines():
    assert PiSSA.preset_options("paper", "glue", "roberta-base") == {"rank": 8, "alpha": 8, "targets": ATTENTION_QV}


def test_counts_on_roberta_base_meta_match_the_formulas():
    r = 8
    assert meta_roberta_count(make("pissa", rank=r)) == N_QV * r * 2 * D


def test_pissa_residual_plus_adapter_reproduces_the_weight():
    ids = token_batch()
    base = tiny_bert(PEFT_LAYERS, HIDDEN, INTERMEDIATE, seed=0)
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
    assert len(comps) == 2 * PEFT_LAYERS and all(c.delta.abs().max() < 1e-6 for c in comps)


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


def test_pissa_options_class():
    with pytest.raises(HarnessError, match="init"):
        PissaOptions(init="qr")
    assert PissaOptions(init="niter_4").peft_init == "pissa_niter_4"
