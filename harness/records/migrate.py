"""Bringing a store's records to the current layout (``python -m harness records migrate DIR``). Pure
Python, no torch.

Version 1 records written before the runner annotated them lack the preset annotations
(``preset_defaults``, ``caps``) and the metrics' units (``metrics.unit`` ...): harness/records/record.py.
Migrating a record adds what it lacks, as the runner of today would have written it, and sets
``schema_version`` to the current one; nothing it holds is changed (its run id, key, spec and metrics
stay as they are, so its config hash too). The annotations come from the suite and preset definitions,
which the records stage does not import (suites import torch): the caller passes ``annotate``
(harness/cli/records.py builds it from harness.pipeline.run_record).

Every file is written atomically, and only when it changes: a second migration changes nothing. A file
that cannot be migrated (not a record, a newer schema, a suite or preset that cannot be rebuilt) is
left as it is and named with the reason.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.records.check import check_record, parse_json_text
from harness.records.record import OLDEST_SCHEMA_VERSION, SCHEMA_VERSION, RecordError, dumps
from harness.records.store import TUNING_DIR, ResultStore, write_text_atomically

# record -> the annotations it would be written with today: {"preset_defaults", "caps"} or
# {"preset_defaults_error"}, plus "metrics": {unit, display_scale, higher_is_better, units} when it has a
# primary metric. Raises (any exception) when they cannot be rebuilt.
Annotate = Callable[[Mapping[str, Any]], Mapping[str, Any]]
# the metrics fields the runner adds (harness.pipeline.run_record.metric_annotations)
UNIT_FIELDS = ("unit", "unit_error", "display_scale", "higher_is_better", "units")
PRESET_FIELDS = ("preset_defaults", "caps")


class MigrationError(RecordError):
    """A record that cannot be brought to the current layout (it is left as it is)."""


@dataclass(frozen=True)
class MigrationResult:
    changed: tuple[Path, ...]
    current: int  # records already of the current layout
    refused: tuple[tuple[Path, str], ...]  # (file, why)


def record_paths(root: Path) -> Iterator[Path]:
    """The record files of a results folder: its store and its tuning trials (another store)."""
    yield from ResultStore(root).iter_paths()
    yield from ResultStore(Path(root) / TUNING_DIR / "trials").iter_paths()


def migrate_dir(root: str | Path, annotate: Annotate) -> MigrationResult:
    """Every record under ``root`` brought to the current layout, each file written once, atomically."""
    changed: list[Path] = []
    refused: list[tuple[Path, str]] = []
    current = 0
    for path in record_paths(Path(root)):
        try:
            migrated = migrate_record(_read(path), annotate)
        except RecordError as exc:
            refused.append((path, str(exc)))
            continue
        if migrated is None:
            current += 1
            continue
        write_text_atomically(path, dumps(migrated))
        changed.append(path)
    return MigrationResult(tuple(changed), current, tuple(refused))


def _read(path: Path) -> dict[str, Any]:
    """The file's record as it is (not the checked copy, whose bad values are None): checked only to
    know it is a record of a version we read."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise MigrationError(f"unreadable: {exc}") from None
    data = parse_json_text(text)
    check_record(data)  # RecordError: not a record, or a newer schema
    return dict(data)


def migrate_record(record: Mapping[str, Any], annotate: Annotate) -> dict[str, Any] | None:
    """The record in the current layout, or None when it is in it already. MigrationError (a
    RecordError) when it cannot be migrated."""
    version = record["schema_version"]
    if version == SCHEMA_VERSION:
        return None
    if not OLDEST_SCHEMA_VERSION <= version < SCHEMA_VERSION:
        raise MigrationError(f"schema_version {version}: no migration to {SCHEMA_VERSION} from it")
    metrics = record.get("metrics")
    needs_preset = "preset_defaults" not in record and "preset_defaults_error" not in record
    needs_units = isinstance(metrics, Mapping) and "primary" in metrics and "unit" not in metrics
    added: Mapping[str, Any] = {}
    if needs_preset or needs_units:
        try:
            added = annotate(record)
        except Exception as exc:  # a suite, preset or adapter that cannot be rebuilt: say which and why
            raise MigrationError(f"cannot rebuild its annotations: {type(exc).__name__}: {exc}") from None
    if needs_preset and "preset_defaults_error" in added:
        raise MigrationError(f"cannot rebuild its preset's defaults: {added['preset_defaults_error']}")
    preset = {k: added[k] for k in PRESET_FIELDS if needs_preset and k in added and k not in record}
    if needs_preset and "preset_defaults" not in preset:
        raise MigrationError("cannot rebuild its preset's defaults")
    out: dict[str, Any] = {}
    for name, value in record.items():
        out[name] = value
        if name == "started_at":  # where the runner writes them
            out.update(preset)
    out.update({k: v for k, v in preset.items() if k not in out})
    if needs_units:
        units = added.get("metrics")
        if not isinstance(units, Mapping):
            raise MigrationError("cannot rebuild its metrics' units")
        out["metrics"] = {**{k: units[k] for k in UNIT_FIELDS if k in units}, **metrics}
    out["schema_version"] = SCHEMA_VERSION
    return out
