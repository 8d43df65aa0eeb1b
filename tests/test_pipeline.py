"""One run through the pipeline: its suite is instantiated once and its adapter built once (the record's
preset annotations, the training and the metric units share them), and a run that fails part way
keeps what it had established (the explicit ``TrainingRun.sections_so_far``, not an out-parameter)."""

from __future__ import annotations

import pytest

from harness.pipeline.runner import ExecutionOptions, execute_run
from harness.registry import ADAPTERS, SUITES
from harness.spec import RunSpec, TrainConfig
from tests.test_zero_shot import FakeDualSuite

SUITE = "test-pipeline-counting"


class CountingSuite(FakeDualSuite):
    instances = 0

    def __init__(self) -> None:
        type(self).instances += 1
        super().__init__()


class FailingEvalSuite(CountingSuite):
    def evaluate(self, model, data, loaded, train, ctx):
        raise RuntimeError("evaluation broke")


def _spec(adapter: str, suite: str = SUITE) -> RunSpec:
    return RunSpec(suite=suite, task="t", adapter=adapter, model="tiny", preset="cpu", seed=0,
                   train=TrainConfig(epochs=1, lr=0.1, batch_size=4, eval_batch_size=8, warmup_ratio=0.0))


@pytest.fixture
def counting():
    SUITES.register(SUITE)(CountingSuite)
    SUITES.register(SUITE + "-failing")(FailingEvalSuite)
    CountingSuite.instances = 0
    yield
    SUITES.unregister(SUITE)
    SUITES.unregister(SUITE + "-failing")


def test_a_run_instantiates_its_suite_once_and_builds_its_adapter_once(counting, monkeypatch):
    cls = ADAPTERS.get("full")
    built: list[object] = []
    real_init = cls.__init__

    def counting_init(self, *args, **kwargs):
        built.append(self)
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(cls, "__init__", counting_init)
    record = execute_run(_spec("full"), ExecutionOptions(device="cpu", progress=False, cache=False))
    assert record["status"] == "success", record.get("error")
    assert CountingSuite.instances == 1
    assert len(built) == 1
    assert record["key"] == _spec("full").key
    assert record["preset_defaults"]["adapter_options"] == record["spec"]["adapter_options"]


def test_a_run_that_fails_part_way_keeps_what_it_had_established(counting):
    options = ExecutionOptions(device="cpu", progress=False, cache=False)
    record = execute_run(_spec("full", SUITE + "-failing"), options)
    assert record["status"] == "failed" and "evaluation broke" in record["error"]["message"]
    assert record["model_info"] == {"family": "dual_encoder", "head_modules": [], "model": "tiny"}
    assert record["data_info"] == {}
    assert record["params"]["trainable_total"] > 0
    assert len(record["loss_curve"]) == 1  # one step ran before the evaluation failed
    assert "metrics" not in record
