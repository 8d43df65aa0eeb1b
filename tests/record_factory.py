"""Run records shaped like the runner's (harness/pipeline/runner.py), for tests of the data layer and the app; they
conform to the record schema (harness/records/record.py, checked by tests/test_record_schema.py)."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any, cast

from harness.aggregate.paper_units import PAPER_METRIC_UNITS
from harness.metrics import UNITS
from harness.records.record import SCHEMA_VERSION, RunRecord
from harness.records.store import ResultStore


def make_record(
    *,
    suite: str = "glue",
    task: str = "rte",
    adapter: str = "lora",
    seed: int = 1,
    score: float | None = 0.6,
    status: str = "success",
    model: str = "minilm-l6",
    preset: str = "cpu",
    adapter_options: dict[str, Any] | None = None,
    limit: int | None = None,
    params_adapter: int = 73_728,
    params_head: int = 148_610,
    peak_bytes: int = 1_000_000_000,
    device: str = "cpu",
    train_seconds: float = 12.0,
    step_seconds: float = 0.5,
    git_dirty: bool = False,
    primary: str = "accuracy",
    analysis: dict[str, Any] | None = None,
    train: dict[str, Any] | None = None,
    annotations: dict[str, Any] | None = None,
    annotated: bool = True,
) -> RunRecord:
    """``train`` adds training settings to the spec (``{"max_steps": 2}``); ``annotations`` adds the
    sections the runner writes (``preset_defaults``, ``caps``) and ``metrics.unit`` keys, over the
    defaults of ``annotated`` (the preset's: epochs 1, lr 1e-3, rank 8, alpha 16; the built-in suites'
    units); ``annotated=False``: none, as a version 1 record before the runner wrote them."""
    options = {"rank": 8, "alpha": 16.0} if adapter_options is None else adapter_options
    spec = {"suite": suite, "task": task, "adapter": adapter, "model": model, "preset": preset, "seed": seed,
            "adapter_options": options, "train": {"epochs": 1.0, "lr": 1e-3, "limit": limit, **(train or {})},
            "suite_options": {}}
    identity = {k: v for k, v in spec.items() if k != "seed"}
    config_hash = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:12]
    record: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "run_id": f"{suite}/{task}/{adapter}/{config_hash}/seed{seed}",
        "key": {"suite": suite, "task": task, "adapter": adapter, "config_hash": config_hash, "seed": seed},
        "spec": spec,
        "status": status,
        "error": None,
        "started_at": "2026-01-01T00:00:00+00:00",
        "finished_at": "2026-01-01T00:01:00+00:00",
        "environment": {"python": "3.11", "git_commit": "abc123", "git_dirty": git_dirty, "device_name": "x86_64"},
        "timing": {"total_seconds": train_seconds + 1.0},
    }
    annotations = {**(default_annotations(suite, primary) if annotated else {}), **(annotations or {})}
    metric_fields = annotations.pop("metrics", {})
    record.update(copy.deepcopy(annotations))
    if status != "success":
        record["error"] = {"type": "DivergedError" if status == "diverged" else "RuntimeError",
                           "message": f"{status} at step 3", "traceback": None, "step": 3}
        return cast(RunRecord, record)
    record.update({
        "metrics": {"primary": primary, "score": score, "selection": "best-dev-epoch", "best": {primary: score},
                    "best_epoch": 1, "final": {primary: score}, "per_epoch": [{"epoch": 1, "step": 4, primary: score}],
                    "variants": {}, **metric_fields},
        "params": {"adapter_trainable": params_adapter, "head": params_head, "total": 22_000_000 + params_adapter,
                   "trainable_total": params_adapter + params_head},
        "memory": {"device": device, "peak_bytes": peak_bytes,
                   "peak_label": "CUDA max_memory_allocated" if device == "cuda" else "CPU estimate"},
        "timing": {"train_seconds": train_seconds, "mean_step_seconds": step_seconds, "samples_per_second": 30.0,
                   "eval_seconds": 1.0, "steps": 4, "total_seconds": train_seconds + 2.0},
        "loss_curve": [[1, 0.70], [2, 0.66], [3, 0.61], [4, 0.55]],
        "analysis": copy.deepcopy(analysis) if analysis is not None else sample_analysis(),
    })
    return cast(RunRecord, record)


def default_annotations(suite: str, primary: str) -> dict[str, Any]:
    """What the runner writes for a factory record: the preset's defaults (those ``make_record`` starts
    from) and, for a built-in suite, its primary metric's unit."""
    out: dict[str, Any] = {"preset_defaults": {"train": {"epochs": 1.0, "lr": 1e-3, "limit": None},
                                               "adapter_options": {"rank": 8, "alpha": 16.0}}}
    units = PAPER_METRIC_UNITS.get(suite, {})
    if primary in units:
        out["metrics"] = {"unit": units[primary], "display_scale": UNITS[units[primary]].display_scale,
                          "higher_is_better": True, "units": dict(units)}
    return out


def sample_analysis() -> dict[str, Any]:
    """The layout of harness/pipeline/analysis.py plus two matrices (inter-layer KL, LoRA² ranks)."""
    components = [
        {"module": f"encoder.layer.{layer}.attention.self.{kind}", "kind": kind, "layer": layer,
         "component": "lora", "singular_values": [0.5 / (i + 1) for i in range(8)],
         "m_eff": {"1": 0.37, "2": 0.55, "4": 0.76, "8": 1.0}}
        for layer in range(2) for kind in ("query", "value")
    ]
    return {
        "components": components,
        "inter_layer_kl": {"query": {"layers": [0, 1], "matrix": [[0.0, 0.12], [0.12, 0.0]]}},
        "lora2_ranks": {"rows": [0, 1], "cols": ["query", "value"], "matrix": [[3, 2], [4, 1]]},
    }


def write_store(root: Path, records: list[RunRecord]) -> ResultStore:
    store = ResultStore(root)
    for record in records:
        store.write(record)
    return store


def grid_records() -> list[RunRecord]:
    """Two tasks x three adapters x two seeds, one failed and one diverged run, a limited and a dirty run."""
    records = []
    scores = {"lora": (0.62, 0.66), "head": (0.55, 0.57), "full": (0.70, 0.68)}
    sizes = {"lora": 73_728, "head": 0, "full": 22_000_000}
    memory = {"lora": 900_000_000, "head": 600_000_000, "full": 1_500_000_000}
    for task in ("rte", "stsb"):
        for adapter, (a, b) in scores.items():
            for seed, score in ((1, a), (2, b)):
                primary = "pearson" if task == "stsb" else "accuracy"
                records.append(make_record(task=task, adapter=adapter, seed=seed, score=score, primary=primary,
                                           params_adapter=sizes[adapter], peak_bytes=memory[adapter],
                                           adapter_options={} if adapter != "lora" else None))
    records.append(make_record(task="rte", adapter="lora", seed=3, status="failed"))
    records.append(make_record(task="stsb", adapter="full", seed=3, status="diverged", adapter_options={}))
    records.append(make_record(task="rte", adapter="lora", seed=1, score=0.50, limit=8))
    records.append(make_record(task="rte", adapter="lora", seed=4, score=0.64, git_dirty=True))
    return records
