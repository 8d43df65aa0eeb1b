"""The JSON Schema of a run record, generated from the types in harness/records/record.py. Pure Python, no torch.

For people reading the store with other tools: ``docs/record.schema.json`` is this module's output
(``python -m harness.records.schema --out docs/record.schema.json`` writes it, ``--check`` says whether
the file is current; tests/test_record_schema.py fails when it is not, and validates every shipped
record against it). The schema follows the types one to one:

- a TypedDict is an object with its keys as properties, required where the TypedDict requires them;
- a dataclass (``RunSpec``, ``TrainConfig``, through ``Annotated[dict[str, Any], RunSpec]``) is an
  object with its fields, required where the field has no default (a field with a default may be
  missing in records written before it existed);
- ``Annotated[str, OneOf(values)]`` is an enum (the statuses, the cap names);
- every object is open (``additionalProperties: true``): the layout is additive, so readers must accept
  keys they do not know.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import sys
import types
import typing
from pathlib import Path
from typing import Any

from harness.records.record import SCHEMA_VERSION, OneOf, RunRecord
from harness.status import Status

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "docs" / "record.schema.json"
DIALECT = "https://json-schema.org/draft/2020-12/schema"
_SIMPLE = {type(None): "null", bool: "boolean", int: "integer", float: "number", str: "string"}


def record_schema() -> dict[str, Any]:
    """The schema of ``RunRecord`` (schema version ``SCHEMA_VERSION``), its sections under ``$defs``."""
    defs: dict[str, Any] = {}
    root = _object(RunRecord, defs)
    root["properties"]["schema_version"]["const"] = SCHEMA_VERSION
    # what harness.records.check.check_record asks beyond the types: a successful run has its score
    root["if"] = {"properties": {"status": {"const": Status.SUCCESS.value}}}
    root["then"] = {"required": ["metrics"], "properties": {"metrics": {"required": ["score"]}}}
    return {"$schema": DIALECT, "$id": "https://peft-harness/record.schema.json",
            "title": f"peft-harness run record, schema version {SCHEMA_VERSION}", **root,
            "$defs": dict(sorted(defs.items()))}


def schema_text() -> str:
    return json.dumps(record_schema(), indent=2, ensure_ascii=False) + "\n"


def _describe(cls: type) -> dict[str, str]:
    """A record type's docstring as its description. Not the dataclasses' (RunSpec, TrainConfig): their
    docstrings document the code, and a reworded one must not make the shipped schema out of date."""
    doc = cls.__dict__.get("__doc__")
    if not doc or dataclasses.is_dataclass(cls):
        return {}
    return {"description": " ".join(inspect.cleandoc(doc).split())}


def _object(cls: type, defs: dict[str, Any]) -> dict[str, Any]:
    """The object schema of a TypedDict or a dataclass."""
    hints = typing.get_type_hints(cls, include_extras=True)
    if dataclasses.is_dataclass(cls):
        # a field the record never holds (RunSpec.annotations: copied into the record's own sections)
        recorded = [f for f in dataclasses.fields(cls) if f.metadata.get("recorded", True)]
        names = [f.name for f in recorded]
        required = [f.name for f in recorded
                    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    else:
        names = list(cls.__annotations__)
        required = [n for n in names if n in cls.__required_keys__]
    out: dict[str, Any] = {"type": "object", **_describe(cls),
                           "properties": {n: _schema(hints[n], defs) for n in names}}
    if required:
        out["required"] = required
    out["additionalProperties"] = True
    return out


def _ref(cls: type, defs: dict[str, Any]) -> dict[str, Any]:
    name = cls.__name__
    if name not in defs:
        defs[name] = {}  # reserved first: a type that refers to itself stops here
        defs[name] = _object(cls, defs)
    return {"$ref": f"#/$defs/{name}"}


def _schema(tp: Any, defs: dict[str, Any]) -> dict[str, Any]:
    """The schema of one annotation."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Annotated:
        for meta in tp.__metadata__:
            if isinstance(meta, OneOf):
                return {"type": "string", "enum": list(meta.values)}
            if isinstance(meta, type) and dataclasses.is_dataclass(meta):
                return _ref(meta, defs)
        return _schema(args[0], defs)
    if tp is Any:
        return {}
    if tp in _SIMPLE:
        return {"type": _SIMPLE[tp]}
    if origin in (typing.Union, types.UnionType):
        if all(a in _SIMPLE for a in args):
            return {"type": [_SIMPLE[a] for a in args]}
        return {"anyOf": [_schema(a, defs) for a in args]}
    if origin is list:
        return {"type": "array", **({"items": _schema(args[0], defs)} if args and args[0] is not Any else {})}
    if origin is dict:
        values = _schema(args[1], defs) if args else {}
        return {"type": "object", **({"additionalProperties": values} if values else {})}
    if isinstance(tp, type) and (typing.is_typeddict(tp) or dataclasses.is_dataclass(tp)):
        return _ref(tp, defs)
    raise TypeError(f"no JSON Schema for the annotation {tp!r} (harness/records/schema.py)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.records.schema",
                                     description="Write the JSON Schema of a run record (harness/records/record.py).")
    parser.add_argument("--out", type=Path, default=SCHEMA_PATH, help=f"where (default {SCHEMA_PATH})")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 when --out is not current")
    args = parser.parse_args(argv)
    text = schema_text()
    if args.check:
        current = args.out.is_file() and args.out.read_text(encoding="utf-8") == text
        print(f"{args.out}: {'current' if current else 'out of date: rerun without --check'}")
        return 0 if current else 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
