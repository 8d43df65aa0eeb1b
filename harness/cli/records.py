"""``python -m harness records migrate DIR``: a store's records brought to the current layout.

The migration itself is harness/records/migrate.py (pure Python); the annotations it adds come from the
suite and preset definitions, rebuilt here as the runner builds them (harness.pipeline.run_record), so
this command imports the suites (and torch) where the tables and the app never do.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.records.record import SCHEMA_VERSION

EXIT_REFUSED = 1


def annotations_of(record: Mapping[str, Any]) -> dict[str, Any]:
    """What the runner of today writes into a record of this spec: its preset annotations and, with a
    primary metric, the metrics' units (raises when the suite or adapter is unknown)."""
    from harness.pipeline.plan import preset_annotations
    from harness.pipeline.run_record import metric_annotations
    from harness.registry import SUITES
    from harness.spec import RunSpec

    spec = RunSpec.from_dict(dict(record["spec"]))
    suite = SUITES.get(spec.suite)()
    out: dict[str, Any] = dict(preset_annotations(spec, suite))
    metrics = record.get("metrics")
    if isinstance(metrics, Mapping) and isinstance(metrics.get("primary"), str):
        out["metrics"] = metric_annotations(spec, metrics["primary"], suite)
    return out


def cmd_records(args: argparse.Namespace) -> int:
    from harness.records.migrate import migrate_dir
    from harness.untrusted import terminal_text

    root = Path(args.dir)
    if not root.is_dir():
        raise HarnessError(f"{root} is not a folder (records migrate DIR: a results folder)")
    result = migrate_dir(root, annotations_of)
    for path, why in result.refused:
        print(f"refused {path}: {terminal_text(why, keep_newlines=False)} (left as it is)", file=sys.stderr)
    if result.changed:
        print(f"migrated {len(result.changed)} records in {root} to schema version {SCHEMA_VERSION} "
              f"({result.current} were current already)")
    else:
        print(f"nothing to migrate: the {result.current} records in {root} are at schema version {SCHEMA_VERSION}")
    return EXIT_REFUSED if result.refused else 0
