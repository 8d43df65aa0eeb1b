"""`harness run` exits 1 when any run of the grid did not end done (failed, cancelled, lost) and says so in
its last line; diverged and oom are results about the method (done statuses) and exit 0, as does a grid
whose runs all succeeded or were already done. In-process through ``harness.cli.main``."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from harness import models
from harness.cli import main
from harness.grid import GridOutcome
from harness.models import ModelEntry, register_model
from harness.registry import SUITES
from harness.spec import TrainConfig
from harness.suite import LoadedModel, Suite, TaskData

SUITE, MODEL = "test-exit-code", "exit-code-tiny"


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Linear(4, 4)
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        return self.head(self.body(x))


class ExitSuite(Suite):
    family = "encoder"
    tasks = ("ok", "boom", "nan")

    def default_model(self, preset):
        raise AssertionError("the tests pass --model")

    def train_config(self, preset, task, model):
        return TrainConfig(epochs=1, lr=0.01, batch_size=4, eval_batch_size=4, warmup_ratio=0.0)

    def load_model(self, model_name, task, ctx):
        return LoadedModel(model=Tiny(), family="encoder", head_modules=("head",), info={"task": task})

    def load_data(self, task, loaded, train, ctx):
        x = torch.randn(8, 4, generator=torch.Generator().manual_seed(0))
        return TaskData(train=(x, (x[:, 0] > 0).long()), eval=None, info={})

    def num_train_batches(self, data, train):
        return 2

    def train_batches(self, data, train, epoch, ctx):
        x, y = data.train
        for i in (0, 4):
            yield {"x": x[i:i + 4], "y": y[i:i + 4], "num_samples": 4}

    def training_loss(self, model, batch):
        task = model.task
        if task == "boom":
            raise ValueError("fake failure")
        loss = nn.functional.cross_entropy(model(batch["x"]), batch["y"])
        return loss * float("nan") if task == "nan" else loss

    def evaluate(self, model, data, loaded, train, ctx):
        return {"score": 1.0}

    def primary_metric(self, task):
        return "score"


@pytest.fixture
def exit_suite(monkeypatch):
    original = ExitSuite.load_model

    def load_model(self, model_name, task, ctx):  # the task reaches training_loss through the model
        loaded = original(self, model_name, task, ctx)
        loaded.model.task = task
        return loaded

    monkeypatch.setattr(ExitSuite, "load_model", load_model)
    SUITES.register(SUITE)(ExitSuite)
    register_model(ModelEntry(name=MODEL, family="encoder", description="a 4-4-2 MLP for the exit-code tests"))
    yield
    SUITES.unregister(SUITE)
    models._CATALOGUE.pop(MODEL, None)


def _run(tmp_path: Path, tasks: str) -> list[str]:
    return ["run", "--suite", SUITE, "--tasks", tasks, "--adapters", "head", "--model", MODEL,
            "--preset", "cpu", "--seeds", "1", "--device", "cpu", "--no-progress", "--results-dir",
            str(tmp_path / "results")]


def test_a_grid_with_a_failed_run_exits_1_and_says_so(exit_suite, tmp_path: Path, capsys):
    assert main(_run(tmp_path, "ok,boom")) == 1
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert "ran 2 (failed=1, success=1); 1 of them not done: exit code 1 (the same command reruns them)" in last
    assert main(_run(tmp_path, "ok,boom")) == 1  # the failed run is rerun, and fails again
    assert "already done 1, ran 1 (failed=1)" in capsys.readouterr().out


def test_a_grid_where_every_run_failed_exits_1(exit_suite, tmp_path: Path, capsys):
    assert main(_run(tmp_path, "boom")) == 1
    assert "1 of them not done" in capsys.readouterr().out


def test_success_and_diverged_exit_0(exit_suite, tmp_path: Path, capsys):
    assert main(_run(tmp_path, "ok,nan")) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert "ran 2 (diverged=1, success=1)" in last and "not done" not in last
    assert main(_run(tmp_path, "ok,nan")) == 0  # all done: nothing ran
    assert "already done 2, ran 0" in capsys.readouterr().out


@pytest.mark.parametrize(("statuses", "lost", "unfinished"), [
    ({"success": 3}, 0, 0), ({"diverged": 1, "oom": 1}, 0, 0), ({"failed": 2, "success": 1}, 0, 2),
    ({"cancelled": 1}, 0, 1), ({"success": 1}, 2, 2),
])
def test_unfinished_counts_failed_cancelled_and_lost(statuses: dict[str, int], lost: int, unfinished: int):
    outcome = GridOutcome(planned=5, by_status=dict(statuses), lost=lost)
    assert outcome.unfinished == unfinished
    assert ("not done: exit code 1" in outcome.totals_line()) == bool(unfinished)
