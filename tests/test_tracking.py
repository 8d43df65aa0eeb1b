"""run --report-to tensorboard,wandb,mlflow, offline: an event file, a W&B offline run, an MLflow file
store, each with the loss, lr and per-epoch scores of every run (issue 34)."""

from __future__ import annotations

import importlib.util

import pytest

from harness.cli.main import main
from harness.errors import HarnessError
from harness.grid.tracking import parse_report_to, series


def test_an_unknown_or_missing_tracker_is_one_error_line(monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(tmp_path)
    assert main(["run", "--suite", "toy", "--adapters", "head", "--report-to", "tensorbored", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "valid trackers are tensorboard, wandb, mlflow" in err
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    with pytest.raises(HarnessError, match="the package 'wandb' is not installed"):
        parse_report_to("tensorboard,wandb")
    assert parse_report_to("none") == () and parse_report_to(None) == ()


@pytest.mark.parametrize("tracker", ["tensorboard", "wandb", "mlflow"])
def test_each_tracker_logs_loss_lr_and_epoch_scores_offline(tracker, tmp_path, monkeypatch):
    pytest.importorskip({"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow"}[tracker])
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert main(["run", "--suite", "toy", "--adapters", "head", "--seeds", "1", "--no-progress",
                 "--report-to", tracker]) == 0
    store = tmp_path / "runs"
    from harness.records.store import ResultStore

    loaded = ResultStore(store).load(warn=False)
    assert len(loaded.records) == 2 and not loaded.skipped  # the trackers' files are not records
    if tracker == "tensorboard":
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        folders = sorted((store / "tensorboard").iterdir())
        assert len(folders) == 2  # the toy suite's two tasks, one folder per run
        events = EventAccumulator(str(folders[0]))
        events.Reload()
        tags = set(events.Tags()["scalars"])
        assert {"train/loss", "train/lr"} <= tags and any(t.startswith("eval/") for t in tags), tags
    elif tracker == "wandb":
        runs = list((store / "wandb").glob("offline-run-*"))
        assert len(runs) == 2 and all(list(r.glob("*.wandb")) for r in runs)
    else:
        import mlflow

        monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
        mlflow.set_tracking_uri((store / "mlruns").resolve().as_uri())
        found = mlflow.search_runs(experiment_names=["peft-harness"])
        assert len(found) == 2
        assert {"metrics.train_loss", "metrics.train_lr", "metrics.score"} <= set(found.columns)
        assert any(c.startswith("metrics.eval_") for c in found.columns)


def test_the_lr_series_follows_the_records_schedule():
    record = {"loss_curve": [[1, 1.0], [5, 0.9], [10, 0.5]], "metrics": {"per_epoch": [{"epoch": 1, "step": 10,
              "accuracy": 0.7}]}, "spec": {"train": {"lr": 0.1, "warmup_ratio": 0.0, "scheduler": "linear"}}}
    s = series(record)
    assert s["train/lr"][0] == (1, pytest.approx(0.1)) and s["train/lr"][-1][1] == pytest.approx(0.01)
    assert s["eval/accuracy"] == [(10, 0.7)]
