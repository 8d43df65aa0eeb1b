"""Checking a run record read from the store, field by field. Pure Python, no torch.

The store holds files anyone can edit or drop in: a hand-edited record, a foreign JSON file, a record
of a newer harness. ``read_record_file`` and ``check_record`` are what every reader (``report``, the
app, resume, the dry run) goes through, so that one bad file cannot crash them or skew a table:

- a file that is not a record we can read (not JSON, binary, truncated, nested deeper than
  ``MAX_DEPTH``, larger than ``MAX_RECORD_BYTES``, not an object, a required field missing or of the
  wrong type) raises ``RecordError`` and is skipped by the store with one warning;
- a record of a newer ``schema_version`` raises ``NewerSchemaError`` (a RecordError): it is skipped by
  readers and never overwritten by a grid; one of an older version the harness wrote (down to
  ``OLDEST_SCHEMA_VERSION``) is read as far as it goes (``is_older_schema``; the store warns once per
  read and ``python -m harness records migrate`` brings it to the current layout);
- a usable record with bad values in the fields the readers use (a number that is a string, a bool,
  NaN, infinity or out of range; a text field that is not text; a section that is not an object) is
  kept, with each such value replaced by None (missing, so it is never counted) and a note per value.

The checked fields are those the readers use (``harness.aggregate.flatten_record`` and the app's run
detail); ``SECTION_FIELDS`` lists them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from harness.records.record import (
    KEY_FIELDS,
    OLDEST_SCHEMA_VERSION,
    REQUIRED_KEYS,
    SCHEMA_VERSION,
    RecordError,
    RunRecord,
)
from harness.status import ALL_STATUSES, Status

# Real records are 6 levels deep; the readers (and Streamlit's st.json, pickling for its cache) recurse.
MAX_DEPTH = 64
# The largest shipped record is well under 1 MiB; a bigger file is not one of ours
MAX_RECORD_BYTES = 64 * 2**20
# Python refuses to parse longer integers (sys.get_int_max_str_digits); such a value is not a count
MAX_INT_DIGITS = 300

SECTIONS = ("error", "metrics", "params", "memory", "timing", "environment", "adapter_info", "analysis",
            "model_info", "data_info")
# (section, field) -> kind: "number" (finite), "count" (finite, >= 0), "int" (whole, >= 0), "text", "bool"
SECTION_FIELDS: dict[str, dict[str, str]] = {
    "metrics": {"score": "number", "best_epoch": "int", "primary": "text", "selection": "text"},
    "params": {"adapter_trainable": "count", "head": "count", "total": "count", "trainable_total": "count",
               "adapter_file_bytes": "count", "adapter_tensors_saved": "count"},
    "memory": {"peak_bytes": "count", "estimate_bytes": "count", "peak_rss_bytes": "count",
               "cuda_max_allocated_bytes": "count", "cuda_max_reserved_bytes": "count", "device": "text",
               "peak_label": "text"},
    "timing": {"train_seconds": "count", "mean_step_seconds": "count", "samples_per_second": "count",
               "eval_seconds": "count", "load_seconds": "count", "total_seconds": "count", "cpu_seconds": "count",
               "steps": "count", "epochs": "count", "samples": "count"},
    "environment": {"git_commit": "text", "git_dirty": "bool", "device_name": "text", "hostname": "text"},
    "error": {"type": "text", "message": "text"},
}
TOP_TEXT_FIELDS = ("started_at", "finished_at")
SPEC_TEXT_FIELDS = ("model", "preset")
MAX_NOTES_SHOWN = 5


class NewerSchemaError(RecordError):
    """A record written by a newer harness: readers skip it, grids never overwrite it."""

    def __init__(self, version: int):
        super().__init__(f"schema_version {version} is newer than this harness's {SCHEMA_VERSION}")
        self.version = version


def is_older_schema(record: Any) -> bool:
    """Whether a checked record is of an older schema version than this harness writes (migrate it)."""
    version = record.get("schema_version") if isinstance(record, Mapping) else None
    return _is_int(version) and version < SCHEMA_VERSION


def parse_json_text(text: str) -> Any:
    """JSON text -> value, RecordError for anything that is not JSON we can hold (never RecursionError
    or a digit-limit ValueError). NaN, Infinity and overlong numbers parse as non-finite floats, which
    ``check_record`` turns into None."""
    try:
        return json.loads(text, parse_int=_parse_int)
    except RecursionError:
        raise RecordError(f"nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as exc:  # JSONDecodeError is a ValueError
        raise RecordError(f"unreadable JSON: {exc}") from None


def _parse_int(text: str) -> int | float:
    return int(text) if len(text.lstrip("-")) <= MAX_INT_DIGITS else math.inf


def nesting_depth_exceeds(value: Any, limit: int = MAX_DEPTH) -> bool:
    """Whether ``value`` nests objects/arrays deeper than ``limit`` (iterative: no recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if depth > limit:
                return True
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False


def load_record(path: str | Path) -> RunRecord:
    """The checked record in the file at ``path`` (values set to None where unusable); RecordError when
    the file is not a record."""
    return read_record_file(path)[0]


def validate_record(data: Any) -> RunRecord:
    """``data`` as a checked record (``check_record`` without its notes); RecordError when it is none."""
    return check_record(data)[0]


def read_record_file(path: str | Path) -> tuple[RunRecord, list[str]]:
    """(the checked record, notes on values set to None). RecordError when the file is not a record."""
    path = Path(path)
    try:
        info = path.stat()
    except OSError as exc:
        raise RecordError(f"unreadable file: {exc.strerror or exc}") from None
    if path.is_dir():
        raise RecordError("a folder, not a record file")
    if not path.is_file():
        raise RecordError("not a regular file")  # a FIFO or device: reading it could block for ever
    if info.st_size > MAX_RECORD_BYTES:
        raise RecordError(f"{info.st_size} bytes, larger than a record can be ({MAX_RECORD_BYTES})")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise RecordError(f"unreadable file: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RecordError(f"not UTF-8 text (binary?): {exc.reason} at byte {exc.start}") from None
    return check_record(parse_json_text(text))


def check_record(data: Any) -> tuple[RunRecord, list[str]]:
    """Validate a parsed record: RecordError (NewerSchemaError) when it cannot be used, else a cleaned
    copy (bad values -> None) and a note for each value that was dropped."""
    if not isinstance(data, Mapping):
        raise RecordError(f"not a JSON object (a JSON {_kind(data)})")
    if nesting_depth_exceeds(data):
        raise RecordError(f"nested deeper than {MAX_DEPTH} levels")
    problems = [f"missing '{k}'" for k in REQUIRED_KEYS if k not in data]
    if problems:
        raise RecordError("; ".join(problems))
    version = data["schema_version"]
    if not _is_int(version):
        raise RecordError(f"schema_version {_show(version)} is not an integer")
    if version > SCHEMA_VERSION:
        raise NewerSchemaError(version)
    if version < OLDEST_SCHEMA_VERSION:
        problems.append(f"schema_version {version} is not {SCHEMA_VERSION}")
    if not _is_text(data["run_id"]):
        problems.append(f"run_id {_show(data['run_id'])} is not a non-empty string")
    key = data["key"]
    if not isinstance(key, Mapping):
        problems.append(f"'key' is a JSON {_kind(key)}, not an object")
    else:
        for name in KEY_FIELDS:
            value = key.get(name)
            ok = _is_int(value) if name == "seed" else _is_text(value)
            if not ok:
                want = "an integer" if name == "seed" else "a non-empty string"
                problems.append(f"key.{name} {_show(value)} is not {want}")
    if not isinstance(data["spec"], Mapping):
        problems.append(f"'spec' is a JSON {_kind(data['spec'])}, not an object")
    status = data["status"]
    if not isinstance(status, str) or status not in ALL_STATUSES:
        problems.append(f"status {_show(status)} is not one of {', '.join(ALL_STATUSES)}")
    elif status == Status.SUCCESS and not (isinstance(data.get("metrics"), Mapping) and "score" in data["metrics"]):
        problems.append("a successful record needs metrics.score")
    if problems:
        raise RecordError("; ".join(problems))
    return _clean(data)


def _clean(data: Mapping[str, Any]) -> tuple[RunRecord, list[str]]:
    notes: list[str] = []
    record = _finite_copy(data, "", notes)  # NaN/inf anywhere -> None: the writer never stores them
    for name in SECTIONS:
        if record.get(name) is not None and not isinstance(record[name], dict):
            notes.append(f"{name} is a JSON {_kind(record[name])}, not an object")
            record[name] = None
    for name, fields in SECTION_FIELDS.items():
        section = record.get(name)
        if isinstance(section, dict):
            for field, kind in fields.items():
                if section.get(field) is not None and not _fits(section[field], kind):
                    notes.append(f"{name}.{field} {_show(section[field])} is not {_KIND_TEXT[kind]}")
                    section[field] = None
    for field in TOP_TEXT_FIELDS:
        if record.get(field) is not None and not isinstance(record[field], str):
            notes.append(f"{field} {_show(record[field])} is not text")
            record[field] = None
    spec = record["spec"]
    for field in SPEC_TEXT_FIELDS:
        if spec.get(field) is not None and not isinstance(spec[field], str):
            notes.append(f"spec.{field} {_show(spec[field])} is not text")
            spec[field] = None
    for field in ("adapter_options", "train"):
        if spec.get(field) is not None and not isinstance(spec[field], dict):
            notes.append(f"spec.{field} is a JSON {_kind(spec[field])}, not an object")
            spec[field] = None
    train = spec.get("train")
    if isinstance(train, dict) and train.get("limit") is not None and not _fits(train["limit"], "int"):
        notes.append(f"spec.train.limit {_show(train['limit'])} is not {_KIND_TEXT['int']}")
        train["limit"] = None
    _clean_components(record.get("analysis"), notes)
    curve = record.get("loss_curve")
    if curve is not None:
        points = curve if isinstance(curve, list) else []
        good = [p for p in points if isinstance(p, list) and len(p) == 2 and all(_fits(v, "number") for v in p)]
        if not isinstance(curve, list) or len(good) != len(points):
            notes.append(f"loss_curve: {len(points) - len(good) if isinstance(curve, list) else 'all'} bad points dropped")
            record["loss_curve"] = good
    return record, notes


# analysis.components[i] fields the run detail plots, and the JSON type each must have
COMPONENT_FIELDS = {"singular_values": list, "m_eff": dict, "kind": str, "module": str, "component": str}


def _clean_components(analysis: Any, notes: list[str]) -> None:
    if not isinstance(analysis, dict) or analysis.get("components") is None:
        return
    components = analysis["components"]
    if not isinstance(components, list):
        notes.append(f"analysis.components is a JSON {_kind(components)}, not an array")
        analysis["components"] = None
        return
    for i, component in enumerate(components):
        if not isinstance(component, dict):
            continue  # the readers skip what is not an object
        for field, kind in COMPONENT_FIELDS.items():
            if component.get(field) is not None and not isinstance(component[field], kind):
                notes.append(f"analysis.components[{i}].{field} {_show(component[field])} is not a JSON "
                             f"{_kind(kind())}")
                component[field] = None
        if component.get("layer") is not None and not _fits(component["layer"], "int"):
            notes.append(f"analysis.components[{i}].layer {_show(component['layer'])} is not a whole number")
            component["layer"] = None


def _finite_copy(value: Any, path: str, notes: list[str]) -> Any:
    """A deep copy (depth already bounded) with non-finite floats replaced by None."""
    if isinstance(value, float) and not math.isfinite(value):
        notes.append(f"{path or 'value'} {value} is not a finite number")
        return None
    if isinstance(value, Mapping):
        return {k: _finite_copy(v, f"{path}.{k}" if path else str(k), notes) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite_copy(v, f"{path}[{i}]", notes) for i, v in enumerate(value)]
    return value


_KIND_TEXT = {"number": "a finite number", "count": "a finite number >= 0", "int": "a whole number >= 0",
              "text": "text", "bool": "true or false"}


def _fits(value: Any, kind: str) -> bool:
    if kind == "text":
        return isinstance(value, str)
    if kind == "bool":
        return isinstance(value, bool)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    if isinstance(value, float) and not math.isfinite(value):
        return False
    if kind == "number":
        return True
    if kind == "int":
        return (isinstance(value, int) or value.is_integer()) and value >= 0
    return value >= 0


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_text(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _kind(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number")


def _show(value: Any) -> str:
    text = repr(value) if not isinstance(value, (dict, list)) else f"(a JSON {_kind(value)})"
    return text if len(text) <= 60 else text[:57] + "..."


def notes_text(notes: list[str]) -> str:
    """Notes on one file as one line: the first few, then how many more."""
    shown = "; ".join(notes[:MAX_NOTES_SHOWN])
    more = len(notes) - MAX_NOTES_SHOWN
    return shown + (f"; and {more} more" if more > 0 else "")
