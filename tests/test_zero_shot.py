"""The zero-shot adapter: an evaluation-only run that never trains, never builds an optimizer, and
records the pretrained model's score (SeRA's zero-shot CLIP row; the base LM on INSTRUCTEVAL)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from harness.adapter import Adapter
from harness.pipeline.runner import ExecutionOptions, execute_run
from harness.registry import ADAPTERS, SUITES
from harness.spec import RunSpec, TrainConfig
from harness.suite import LoadedModel, Suite, TaskData

SUITE = "test-zero-shot-dual"


class TinyDual(nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = nn.ModuleList([nn.Linear(4, 4) for _ in range(2)])

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return x


class FakeDualSuite(Suite):
    family = "dual_encoder"
    tasks = ("t",)
    train_calls = 0

    def train_config(self, preset, task, model):
        return TrainConfig(epochs=2, lr=0.1, batch_size=4, eval_batch_size=8, warmup_ratio=0.0)

    def load_model(self, model_name, task, ctx):
        torch.manual_seed(0)
        return LoadedModel(model=TinyDual(), family="dual_encoder", head_modules=(), info={"model": model_name})

    def load_data(self, task, loaded, train, ctx):
        x = torch.randn(8, 4, generator=torch.Generator().manual_seed(1))
        return TaskData(train=x, eval=x, info={})

    def num_train_batches(self, data, train):
        return 2

    def train_batches(self, data, train, epoch, ctx):
        FakeDualSuite.train_calls += 1
        yield {"x": data.train[:4], "num_samples": 4}

    def training_loss(self, model, batch):
        return model(batch["x"]).pow(2).mean()

    def evaluate(self, model, data, loaded, train, ctx):
        return {"score": float(model(data.eval).sum())}

    def primary_metric(self, task):
        return "score"


@pytest.fixture
def fake_suite():
    SUITES.register(SUITE)(FakeDualSuite)
    FakeDualSuite.train_calls = 0
    yield FakeDualSuite
    SUITES.unregister(SUITE)


def spec(adapter: str) -> RunSpec:
    return RunSpec(suite=SUITE, task="t", adapter=adapter, model="tiny", preset="cpu", seed=0,
                   train=TrainConfig(epochs=2, lr=0.1, batch_size=4, eval_batch_size=8, warmup_ratio=0.0))


def test_zero_shot_scores_the_untouched_model_without_training(fake_suite):
    record = execute_run(spec("zero-shot"), ExecutionOptions(device="cpu", progress=False, cache=False))
    assert record["status"] == "success", record.get("error")
    with torch.no_grad():
        expected = float(FakeDualSuite().load_model("tiny", "t", None).model(
            FakeDualSuite().load_data("t", None, None, None).eval).sum())
    assert record["metrics"]["score"] == pytest.approx(expected, rel=1e-6)
    assert record["timing"]["steps"] == 0
    assert fake_suite.train_calls == 0
    assert record["params"]["adapter_trainable"] == 0
    assert not record["loss_curve"]


def test_zero_shot_applies_only_where_no_head_is_fresh():
    families = ADAPTERS.get("zero-shot").families
    assert "encoder" not in families and "vision" not in families  # a random head would score chance
    assert {"dual_encoder", "causal_lm"} <= set(families)


def test_an_adapter_that_trains_nothing_is_still_an_error(fake_suite):
    class Frozen(Adapter):
        def apply(self, model, ctx):
            for p in model.parameters():
                p.requires_grad_(False)
            return model

    ADAPTERS.register("test-frozen")(Frozen)
    try:
        record = execute_run(spec("test-frozen"), ExecutionOptions(device="cpu", progress=False, cache=False))
    finally:
        ADAPTERS.unregister("test-frozen")
    assert record["status"] == "failed"
    assert "left nothing trainable" in record["error"]["message"]
