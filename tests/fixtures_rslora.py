"""A TEST FIXTURE: rsLoRA (Kalajdzievski 2023) through peft, LoRA scaled by alpha / sqrt(r) instead of
alpha / r: a LoRA variant peft already has is a config and a few lines. Registered only while the
contract tests run (tests/fixture_adapters.py), so it is in no shipped list."""

from __future__ import annotations

from adapters._toolkit.peft_tuner import PeftLoraAdapter
from harness.adapter import LowRankConfig


class RsLoRA(PeftLoraAdapter[LowRankConfig]):
    description = "rsLoRA via peft: LoRA with the rank-stabilised scaling alpha / sqrt(r)"
    lora_options = {"use_rslora": True}
