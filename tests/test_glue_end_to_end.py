"""A real (tiny) GLUE run through the CLI on the real MiniLM weights and the real RTE files:
records written, resume skips them, --force reruns, the measurements are present."""

from __future__ import annotations

import json

from harness.cli.main import main
from harness.records.store import ResultStore


def test_run_records_and_resumes(shared_data, tmp_path, capsys):
    argv = ["run", "--suite", "glue", "--tasks", "sst2", "--adapters", "lora,head", "--preset", "cpu",
            "--data-dir", str(shared_data), "--results-dir", str(tmp_path), "--max-train-samples", "64",
            "--max-eval-samples", "64", "--epochs", "2", "--no-progress", "--threads", "1"]
    assert main(argv) == 0
    records = ResultStore(tmp_path).records(warn=False)
    assert len(records) == 2 and {r["status"] for r in records} == {"success"}
    lora = next(r for r in records if r["key"]["adapter"] == "lora")
    assert lora["params"]["adapter_trainable"] == 73728
    assert lora["params"]["head"] > 0 and lora["params"]["adapter_file_bytes"] > 73728 * 4
    # epochs selected on the validation split held out of train (issue 32); the dev split scored each epoch
    assert lora["metrics"]["selection"] == "best-validation-epoch" and len(lora["metrics"]["per_epoch"]) == 2
    assert len(lora["metrics"]["validation"]["per_epoch"]) == 2
    assert 0.0 <= lora["metrics"]["score"] <= 1.0
    assert lora["memory"]["estimate_breakdown"]["saved_for_backward"] > 0
    assert lora["timing"]["mean_step_seconds"] > 0 and lora["loss_curve"]
    assert lora["analysis"]["components"] and lora["environment"]["packages"]["torch"]
    head = next(r for r in records if r["key"]["adapter"] == "head")
    assert head["params"]["adapter_trainable"] == 0
    # the per-example predictions of the reported epoch, beside each record (harness/records/predictions.py)
    from harness.records.predictions import load_predictions

    path = next(p for p in ResultStore(tmp_path).iter_paths() if p.name.startswith("lora-"))
    preds = load_predictions(path)
    assert preds is not None and len(preds["predictions"]) == len(preds["labels"]) == 64
    assert preds["epoch"] == lora["metrics"]["best_epoch"]
    assert float((preds["predictions"] == preds["labels"]).mean()) == lora["metrics"]["best"]["accuracy"]
    capsys.readouterr()
    assert main(argv) == 0
    assert "already done 2, ran 0" in capsys.readouterr().out


def test_a_failing_run_is_recorded_not_raised(shared_data, tmp_path, monkeypatch):
    import suites.glue as glue

    def boom(*a, **k):
        raise RuntimeError("synthetic failure")

    monkeypatch.setattr(glue.Glue, "training_loss", boom)
    assert main(["run", "--suite", "glue", "--tasks", "rte", "--adapters", "lora", "--preset", "cpu",
                 "--data-dir", str(shared_data), "--results-dir", str(tmp_path), "--max-train-samples", "32",
                 "--max-eval-samples", "32", "--epochs", "1", "--no-progress"]) == 1  # a failed run: exit code 1
    (path,) = list(tmp_path.rglob("*.json"))
    record = json.loads(path.read_text())
    assert record["status"] == "failed" and "synthetic failure" in record["error"]["traceback"]


def test_nan_loss_is_recorded_as_diverged(shared_data, tmp_path, monkeypatch):
    import torch

    import suites.glue as glue

    monkeypatch.setattr(glue.Glue, "training_loss", lambda self, model, batch: model(**batch).loss * torch.tensor(float("nan")))
    main(["run", "--suite", "glue", "--tasks", "rte", "--adapters", "lora", "--preset", "cpu", "--data-dir",
          str(shared_data), "--results-dir", str(tmp_path), "--max-train-samples", "32", "--max-eval-samples", "32",
          "--epochs", "1", "--no-progress"])
    (path,) = list(tmp_path.rglob("*.json"))
    record = json.loads(path.read_text())
    assert record["status"] == "diverged" and record["error"]["step"] == 0
