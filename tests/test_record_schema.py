"""The record contract: the JSON Schema generated from harness/records/record.py's types is the one shipped in
docs/, every shipped record under results/ conforms to it, and it refuses what the layout forbids."""

from __future__ import annotations

import copy
import json
import typing
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from harness.records import record
from harness.records import schema as record_schema
from harness.records.check import SECTION_FIELDS
from harness.records.store import ResultStore
from tests.record_factory import grid_records, make_record

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results"


@pytest.fixture(scope="module")
def validator() -> Draft202012Validator:
    schema = json.loads(record_schema.SCHEMA_PATH.read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def problems(validator: Draft202012Validator, data: Any) -> list[str]:
    """Each error as ``path: message`` (the path in dots, ``(record)`` for the top level)."""
    return [f"{'.'.join(str(p) for p in e.absolute_path) or '(record)'}: {e.message}"
            for e in validator.iter_errors(data)]


def test_the_exported_schema_is_what_the_types_generate_now():
    assert record_schema.SCHEMA_PATH == ROOT / "docs" / "record.schema.json"
    assert record_schema.SCHEMA_PATH.read_text(encoding="utf-8") == record_schema.schema_text(), (
        "docs/record.schema.json is out of date: python -m harness.records.schema (then review the diff)")
    assert record_schema.main(["--check"]) == 0


def test_every_shipped_record_conforms_to_the_schema(validator):
    # every record under results/ (the store's and the tuning trials'; not the tuning choice files)
    choices, tuning = RESULTS / "tuning" / "choices", RESULTS / "tuning"
    files = sorted(p for p in RESULTS.rglob("*.json") if not p.is_relative_to(choices))
    # the store reads every one outside results/tuning: none is left out of the check
    assert len([p for p in files if not p.is_relative_to(tuning)]) == len(ResultStore(RESULTS).records(warn=False)) > 0
    failures = {str(p.relative_to(ROOT)): found for p in files
                if (found := problems(validator, json.loads(p.read_text(encoding="utf-8"))))}
    assert not failures, json.dumps(failures, indent=1)[:4000]


def test_the_test_factory_records_conform_too(validator):
    annotated = make_record(annotations={
        "preset_defaults": {"train": {"epochs": 1.0, "lr": 1e-3, "max_steps": None},
                            "adapter_options": {"rank": 8}, "suite_tasks": ["rte"]},
        "caps": {"applied": dict.fromkeys(record.CAP_FIELDS), "preset": dict.fromkeys(record.CAP_FIELDS),
                 "below_preset": []},
        "metrics": {"unit": "fraction", "display_scale": 100.0, "higher_is_better": True}})
    for data in [*grid_records(), annotated, make_record(status="cancelled")]:
        assert problems(validator, data) == [], data["run_id"]


@pytest.mark.parametrize(("change", "where"), [
    (lambda r: r.update(status="finished"), "status"),
    (lambda r: r["key"].update(seed="1"), "key.seed"),
    (lambda r: r.pop("spec"), "(record)"),
    (lambda r: r.update(schema_version=record.SCHEMA_VERSION + 1), "schema_version"),
    (lambda r: r.update(schema_version=1), "schema_version"),  # a version 1 record: migrate it
    (lambda r: r["spec"]["train"].update(batch_size="16"), "spec.train.batch_size"),
    (lambda r: r["spec"].pop("model"), "spec"),
    (lambda r: r["memory"].update(peak_bytes="1 GB"), "memory.peak_bytes"),
    (lambda r: r["metrics"].pop("score"), "metrics"),
    (lambda r: r["caps"].update(below_preset=["epochs"]), "caps.below_preset.0"),
    (lambda r: r.update(error={"message": "no type"}), "error"),
    # a list that may be null (anyOf): the error is reported at the list
    (lambda r: r["analysis"]["components"][0].update(layer="first"), "analysis.components"),
])
def test_the_schema_refuses_what_the_layout_forbids(validator, change, where):
    data = copy.deepcopy(make_record(annotations={"caps": {"applied": dict.fromkeys(record.CAP_FIELDS),
                                                           "preset": dict.fromkeys(record.CAP_FIELDS),
                                                           "below_preset": []}}))
    assert problems(validator, data) == []
    change(data)
    found = problems(validator, data)
    assert found and any(p.startswith(f"{where}:") for p in found), found


_KIND_TYPES = {"number": {"number", "integer"}, "count": {"number", "integer"}, "int": {"integer"},
               "text": {"string"}, "bool": {"boolean"}}


def test_the_fields_record_check_cleans_are_declared_by_the_types():
    """record_check's field list is not a second layout: each field is one the types declare, of a JSON
    type that the check's kind accepts."""
    sections = typing.get_type_hints(record.RunRecord)
    schema = record_schema.record_schema()
    for section, fields in SECTION_FIELDS.items():
        section_type = sections[section]
        # ErrorInfo | None: the TypedDict in the union
        section_type = next((a for a in typing.get_args(section_type) if typing.is_typeddict(a)), section_type)
        declared = schema["$defs"][section_type.__name__]["properties"]
        for name, kind in fields.items():
            assert name in declared, f"record_check cleans {section}.{name}; harness/records/record.py does not declare it"
            types = declared[name].get("type")
            types = {types} if isinstance(types, str) else set(types or ())
            assert types - {"null"} <= _KIND_TYPES[kind], (section, name, types, kind)
