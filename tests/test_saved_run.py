"""--save-adapters writes a folder that travels: peft's PeftModel.from_pretrained loads a peft-backed
run, harness.load_saved_run loads any run, and both reproduce the run's predictions (issue 34)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.cli.main import main

DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data"


def _logits(model, tokenizer, texts):
    import torch

    batch = tokenizer(texts, padding=True, truncation=True, max_length=64, return_tensors="pt")
    with torch.no_grad():
        return model(**batch).logits


@pytest.mark.slow
def test_a_saved_glue_run_reloads_with_peft_and_with_the_harness(tmp_path, monkeypatch):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from harness import load_saved_run
    from harness.records.store import ResultStore

    monkeypatch.chdir(tmp_path)
    assert main(["run", "--suite", "glue", "--tasks", "rte", "--adapters", "lora,bitfit", "--preset", "cpu",
                 "--data-dir", str(DATA_DIR), "--seeds", "1", "--max-train-samples", "64", "--max-eval-samples",
                 "32", "--max-steps", "4", "--save-adapters", "--no-progress", "--lr", "0.01"]) == 0
    assert len(ResultStore(tmp_path / "runs").load(warn=False).records) == 2  # the folders are not records
    folders = {p.name.split("-")[0]: p for p in (tmp_path / "runs" / "glue" / "rte").glob("*.adapter")}
    assert set(folders) == {"lora", "bitfit"}
    texts = ["The cat sat on the mat.", "A dog is not a cat.", "It rained all day in Paris yesterday."]
    lora = folders["lora"]
    meta = json.loads((lora / "harness_run.json").read_text())
    assert meta["peft"] is True and (lora / "adapter_config.json").is_file()
    config = json.loads((lora / "adapter_config.json").read_text())
    tokenizer = AutoTokenizer.from_pretrained(str(lora))
    ours = load_saved_run(lora)
    base = AutoModelForSequenceClassification.from_pretrained(config["base_model_name_or_path"], num_labels=2)
    theirs = PeftModel.from_pretrained(base, str(lora)).eval()
    a, b = _logits(ours, tokenizer, texts), _logits(theirs, tokenizer, texts)
    assert torch.allclose(a, b, atol=1e-5), (a, b)
    plain = AutoModelForSequenceClassification.from_pretrained(config["base_model_name_or_path"], num_labels=2).eval()
    assert not torch.allclose(_logits(plain, tokenizer, texts), a, atol=1e-3)  # the trained head and update count
    # the record's dev accuracy is reproduced by the reloaded model (bitfit: the harness loader only)
    bitfit = folders["bitfit"]
    assert json.loads((bitfit / "harness_run.json").read_text())["peft"] is False
    assert not (bitfit / "adapter_config.json").exists()
    reloaded = load_saved_run(bitfit)
    assert reloaded.training is False
    assert not torch.allclose(_logits(reloaded, tokenizer, texts), _logits(plain, tokenizer, texts), atol=1e-4)
