"""Gradient accumulation at epoch ends: ``--grad-accum`` larger than an epoch's batches still steps (it
used to loop for ever with 0 optimizer steps), a partial accumulation is stepped at the end of its epoch
with its gradients scaled to the mean of the micro-batches it holds, and nothing leaks into the next
epoch. Gradients are read in ``on_step_end`` (before ``zero_grad``) and compared with gradients computed
afresh from a snapshot of the model taken in ``on_step_begin``."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from harness.adapter import Adapter
from harness.pipeline.runner import ExecutionOptions, execute_run
from harness.registry import ADAPTERS, SUITES
from harness.spec import RunSpec, TrainConfig
from suites.toy import MODEL, Toy, points

SUITE, ADAPTER = "test-accum-suite", "test-accum-probe"
BATCHES = 3  # per epoch, 4 samples each


def _loss(model: nn.Module, batch: dict) -> torch.Tensor:
    return nn.functional.cross_entropy(model(batch["x"]), batch["y"])


class AccumSuite(Toy):
    """The toy suite with a settable number of batches per epoch, in order, recording which batches
    each optimizer step was fed."""

    batches_per_epoch = BATCHES
    seen: list[list[int]] = []  # batch indices fed during each optimizer step

    def num_train_batches(self, data, train):
        return self.batches_per_epoch

    def train_batches(self, data, train, epoch, ctx):
        x, y = data.train
        for i in range(self.batches_per_epoch):
            yield {"x": x[4 * i:4 * i + 4], "y": y[4 * i:4 * i + 4], "index": i, "num_samples": 4}

    def training_loss(self, model, batch):
        AccumSuite.seen[-1].append(batch.pop("index"))
        return _loss(model, batch)


class GradProbe(Adapter):
    """Trains everything; keeps the model before each step and the gradients the optimizer used."""

    snapshots: list[nn.Module] = []
    grads: list[dict[str, torch.Tensor]] = []

    def apply(self, model, ctx):
        for p in model.parameters():
            p.requires_grad_(True)
        return model

    def on_step_begin(self, model, step):
        AccumSuite.seen.append([])
        GradProbe.snapshots.append(copy.deepcopy(model))

    def on_step_end(self, model, step):
        GradProbe.grads.append({n: p.grad.clone() for n, p in model.named_parameters()})


@pytest.fixture
def probe():
    SUITES.register(SUITE)(AccumSuite)
    ADAPTERS.register(ADAPTER)(GradProbe)
    AccumSuite.seen, GradProbe.snapshots, GradProbe.grads = [], [], []
    AccumSuite.batches_per_epoch = BATCHES
    yield
    SUITES.unregister(SUITE)
    ADAPTERS.unregister(ADAPTER)


def _run(grad_accum: int, epochs: float = 2, eval_each_epoch: bool = True) -> dict:
    train = TrainConfig(epochs=epochs, lr=0.01, batch_size=4, eval_batch_size=4, warmup_ratio=0.0, grad_clip=None,
                        grad_accum=grad_accum, eval_each_epoch=eval_each_epoch)
    spec = RunSpec(suite=SUITE, task="sign", adapter=ADAPTER, model=MODEL, preset="cpu", seed=0, train=train)
    return execute_run(spec, ExecutionOptions(device="cpu", progress=False, cache=False))


def _expected_grads(step: int) -> tuple[dict[str, torch.Tensor], float]:
    """The mean over the step's micro-batches of each one's gradient, at the model before that step."""
    model = GradProbe.snapshots[step]
    data = points("sign", "train", 32)  # the toy suite's training points (its default 32 per split)
    indices = AccumSuite.seen[step]
    model.zero_grad(set_to_none=True)
    total = 0.0
    for i in indices:
        loss = _loss(model, {"x": data[0][4 * i:4 * i + 4], "y": data[1][4 * i:4 * i + 4]}) / len(indices)
        loss.backward()
        total += float(loss.detach())
    return {n: p.grad.clone() for n, p in model.named_parameters()}, total


def _check_every_step(record: dict) -> None:
    assert len(GradProbe.grads) == record["timing"]["steps"]
    for step, got in enumerate(GradProbe.grads):
        want, loss = _expected_grads(step)
        for name in want:
            torch.testing.assert_close(got[name], want[name], rtol=1e-5, atol=1e-7, msg=f"step {step}, {name}")
        assert record["loss_curve"][step][1] == pytest.approx(loss, rel=1e-5)


def test_grad_accum_larger_than_an_epoch_steps_once_per_epoch(probe):
    record = _run(grad_accum=8, epochs=2)
    assert record["status"] == "success", record.get("error")
    assert record["timing"]["steps"] == 2 and record["timing"]["epochs"] == 2
    assert AccumSuite.seen == [[0, 1, 2], [0, 1, 2]]
    assert len(record["metrics"]["per_epoch"]) == 2  # evaluated once per epoch, not for ever
    _check_every_step(record)  # the 3 micro-batches averaged (scaled by 8/3), not divided by 8


def test_leftover_micro_batches_step_at_the_epoch_end_and_never_leak(probe):
    record = _run(grad_accum=2, epochs=2)
    assert record["status"] == "success", record.get("error")
    assert AccumSuite.seen == [[0, 1], [2], [0, 1], [2]]  # the partial step closes each epoch
    assert record["timing"]["steps"] == 4
    _check_every_step(record)  # step 2 holds epoch 2's batches only: nothing of batch 2 leaked into it


def test_exact_accumulation_is_unchanged(probe):
    AccumSuite.batches_per_epoch = 4  # grad_accum 2 divides it: the ordinary path
    record = _run(grad_accum=2, epochs=1)
    assert record["status"] == "success", record.get("error")
    assert AccumSuite.seen == [[0, 1], [2, 3]]
    _check_every_step(record)


def test_fractional_epochs_stop_mid_epoch_without_a_partial_step(probe):
    record = _run(grad_accum=2, epochs=1.5, eval_each_epoch=False)  # ceil(1.5 * 2) = 3 steps
    assert record["status"] == "success", record.get("error")
    assert AccumSuite.seen == [[0, 1], [2], [0, 1]]
    _check_every_step(record)


def test_an_epoch_without_batches_fails_instead_of_looping(probe):
    AccumSuite.batches_per_epoch = 0
    record = _run(grad_accum=1)
    assert record["status"] == "failed"
    assert "gave no training batch in epoch 0" in record["error"]["message"]
