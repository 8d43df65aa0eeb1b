"""Golden files: the record layout a real run writes and the tables `report` builds from a fixed record
set. A change to either fails here until the golden files are regenerated on purpose:
``HARNESS_UPDATE_GOLDEN=1 python -m pytest tests/test_golden.py`` (then review the diff under tests/golden)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from harness import aggregate
from harness.cli.main import main
from harness.records import schema as record_schema
from harness.records.store import ResultStore

GOLDEN = Path(__file__).resolve().parent / "golden"
UPDATE = os.environ.get("HARNESS_UPDATE_GOLDEN") == "1"
# present only in the first record a process writes (the start-up it paid): depends on test order
VARIABLE_PATHS = ("timing.startup",)


def layout(value: Any, prefix: str = "") -> list[str]:
    """Every key path of a record (lists: ``[]`` and the layout of their first element)."""
    if prefix.startswith(VARIABLE_PATHS):
        return []
    if isinstance(value, dict):
        out = [prefix] if prefix else []
        for key in sorted(value):
            out += layout(value[key], f"{prefix}.{key}" if prefix else str(key))
        return out
    if isinstance(value, list):
        return [f"{prefix}[]", *(layout(value[0], f"{prefix}[]")[1:] if value and isinstance(value[0], dict) else [])]
    return [prefix]


def check(name: str, text: str) -> None:
    path = GOLDEN / name
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return
    assert path.is_file(), f"no golden file {path}: run with HARNESS_UPDATE_GOLDEN=1 once"
    assert text == path.read_text(), f"{name} changed: if on purpose, regenerate with HARNESS_UPDATE_GOLDEN=1"


def test_the_record_layout_is_golden(shared_data, tmp_path):
    argv = ["run", "--suite", "glue", "--tasks", "rte", "--adapters", "lora", "--preset", "cpu", "--data-dir",
            str(shared_data), "--results-dir", str(tmp_path), "--max-train-samples", "16", "--max-eval-samples",
            "16", "--max-steps", "2", "--no-progress", "--threads", "1", "--device", "cpu"]  # CUDA adds its own keys
    assert main(argv) == 0
    (record,) = ResultStore(tmp_path).records(warn=False)
    check("record_layout.txt", "\n".join(layout(record)) + "\n")
    # and the record a real run writes conforms to the exported schema (docs/record.schema.json)
    schema = json.loads(record_schema.SCHEMA_PATH.read_text(encoding="utf-8"))
    assert [e.message for e in Draft202012Validator(schema).iter_errors(record)] == []


@pytest.mark.parametrize("fmt", ["csv", "md", "latex"])
def test_the_report_of_a_fixed_store_is_golden(fmt: str):
    from tests.record_factory import grid_records

    files = aggregate.build_report(aggregate.load_frame(grid_records()), baseline="lora", formats=[fmt])
    assert files
    for name, text in sorted(files.items()):
        check(f"report/{name}", text)
    if not UPDATE:  # a new or renamed table is not pinned: it fails too
        assert set(files) <= {p.name for p in (GOLDEN / "report").iterdir()}
