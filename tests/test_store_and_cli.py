from __future__ import annotations

import json

import pytest

from harness.cli.main import main
from harness.records.check import validate_record
from harness.records.record import SCHEMA_VERSION, RecordError
from harness.records.store import ResultStore
from harness.spec import RunSpec, TrainConfig


def _record(seed=1, status="success"):
    spec = RunSpec(suite="glue", task="rte", adapter="lora", model="minilm-l6", preset="cpu", seed=seed,
                   adapter_options={"rank": 8}, train=TrainConfig())
    return {
        "schema_version": SCHEMA_VERSION, "run_id": spec.run_id,
        "key": {"suite": "glue", "task": "rte", "adapter": "lora", "config_hash": spec.config_hash, "seed": seed},
        "spec": spec.to_dict(), "status": status, "metrics": {"score": 0.5, "primary": "accuracy"},
    }


def test_config_hash_ignores_seed_but_not_options():
    a = RunSpec("glue", "rte", "lora", "m", "cpu", 1, {"rank": 8})
    assert a.config_hash == RunSpec("glue", "rte", "lora", "m", "cpu", 2, {"rank": 8}).config_hash
    assert a.config_hash != RunSpec("glue", "rte", "lora", "m", "cpu", 1, {"rank": 4}).config_hash
    assert RunSpec.from_dict(a.to_dict()) == a


def test_record_round_trip_and_resume_key(tmp_path):
    store = ResultStore(tmp_path)
    rec = _record()
    path = store.write(rec)
    assert path.name.endswith("-seed1.json")
    assert store.is_complete(rec["key"])
    assert store.records(warn=False) == [json.loads(path.read_text())]
    assert not list(tmp_path.rglob(".tmp-*"))


def test_nan_is_stored_as_null(tmp_path):
    rec = _record()
    rec["metrics"]["final"] = {"accuracy": float("nan")}
    path = ResultStore(tmp_path).write(rec)
    assert json.loads(path.read_text())["metrics"]["final"]["accuracy"] is None


def test_corrupt_and_foreign_files_are_skipped_with_a_warning(tmp_path):
    store = ResultStore(tmp_path)
    store.write(_record())
    (tmp_path / "broken.json").write_text("{not json")
    (tmp_path / "foreign.json").write_text('{"hello": 1}')
    with pytest.warns(UserWarning, match="skipped"):
        report = store.load()
    assert len(report.records) == 1 and len(report.skipped) == 2


def test_invalid_status_rejected():
    with pytest.raises(RecordError, match="status"):
        validate_record(_record(status="weird"))


# bad input (one line, exit code 2, no model load): tests/test_bad_inputs.py


def test_params_matches_the_lora_paper_count(capsys):
    assert main(["params", "--model", "roberta-base", "--adapters", "lora", "--targets", "query,value",
                 "--rank", "8", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows == [{"adapter": "lora", "trainable_params": 294912, "model": "roberta-base",
                     "options": rows[0]["options"]}]


def test_params_builds_vision_models_through_their_suite(capsys):
    # CLIP and timm ViTs have no architecture JSON: the suite assembles the skeleton on the meta device.
    # LoRA r=8 on q,v of CLIP ViT-B/32: image tower 12 x 2 x 8 x (768 + 768), text tower 12 x 2 x 8 x (512 + 512).
    assert main(["params", "--model", "clip-vit-b32", "--adapters", "lora", "--rank", "8", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[0]["trainable_params"] == 12 * 2 * 8 * 1536 + 12 * 2 * 8 * 1024
    # ViT-L/16 (24 blocks, width 1024), RSCD's backbone, named through --suite
    assert main(["params", "--model", "vit-large-in21k", "--suite", "rscd", "--adapters", "lora", "--rank", "8",
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["trainable_params"] == 24 * 2 * 8 * 2048


def test_params_rejects_a_suite_of_another_family(capsys):
    assert main(["params", "--model", "roberta-base", "--suite", "rscd", "--adapters", "lora"]) == 2
    assert "runs vision models" in capsys.readouterr().err


def test_dry_run_lists_plan_with_counts(capsys, shared_data, tmp_path):
    assert main(["run", "--suite", "glue", "--adapters", "lora,head", "--preset", "cpu", "--data-dir", str(shared_data),
                 "--results-dir", str(tmp_path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "12 runs planned" in out and "pending" in out
    assert "73,728" in out  # MiniLM-L6 q,v rank 8: 6 layers x 2 x 8 x (384 + 384)
