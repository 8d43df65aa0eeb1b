"""The test-only adapters (tests/fixtures_rslora.py): registered for the contract tests only, and what
they add is really there (rsLoRA's alpha / sqrt(r) scaling, through peft)."""

from __future__ import annotations

import math

from adapters._toolkit.peft_tuner import ADAPTER_NAME, tuner_layers
from harness.adapter import LowRankConfig
from harness.registry import ADAPTERS
from tests.adapter_testkit import apply_adapter
from tests.fixture_adapters import FIXTURE_ADAPTERS, fixture_adapters_registered
from tests.fixtures_rslora import RsLoRA
from tests.tiny_models import tiny_bert


def test_fixture_adapters_are_in_no_shipped_list():
    for name in FIXTURE_ADAPTERS:
        assert name not in ADAPTERS.names() and name not in ADAPTERS.resolve_list("all")
    with fixture_adapters_registered():
        assert ADAPTERS.get("test-rslora") is RsLoRA
    assert "test-rslora" not in ADAPTERS.names()


def test_rslora_scales_by_alpha_over_the_square_root_of_the_rank():
    adapter = RsLoRA(LowRankConfig(rank=4, alpha=8, targets=("query", "value")))
    model, _, _ = apply_adapter(adapter, tiny_bert())
    layers = tuner_layers(model)
    assert len(layers) == 8  # 4 layers x (query, value)
    for _, layer in layers:
        assert math.isclose(layer.scaling[ADAPTER_NAME], 8 / math.sqrt(4))
