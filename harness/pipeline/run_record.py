"""The parts of a run's record that do not come from training: its identity (schema version, run id,
key, spec), its start and status, and the annotations the tables read without importing torch or
the suites (the preset's defaults, the caps applied, the primary metric's unit).
"""

from __future__ import annotations

import datetime as _dt
from typing import Any

from harness.errors import HarnessError
from harness.records.record import SCHEMA_VERSION
from harness.registry import SUITES
from harness.spec import RunSpec
from harness.status import Status
from harness.suite import Suite


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def base_record(spec: RunSpec, suite: Suite | None = None) -> dict[str, Any]:
    """A run's record before it runs (status failed until it succeeds); ``suite``: the run's suite
    instance, when there is one already."""
    return {
        "schema_version": SCHEMA_VERSION,
        "run_id": spec.run_id,
        "key": spec.key,
        "spec": spec.to_dict(),
        "status": Status.FAILED.value,
        "error": None,
        "started_at": _now(),
        **(spec.annotations if spec.annotations is not None else _annotations_of_unplanned(spec, suite)),
    }


def _annotations_of_unplanned(spec: RunSpec, suite: Suite | None) -> dict[str, Any]:
    """A spec made by hand (a test, a notebook) rather than by ``plan_grid`` carries no annotations:
    they are computed here the way the plan computes them."""
    from harness.pipeline.plan import preset_annotations

    return preset_annotations(spec, suite)


def metric_annotations(spec: RunSpec, primary: str, suite: Suite | None = None) -> dict[str, Any]:
    """The unit, display scale and direction of the primary metric and the units of every declared
    metric (harness/metrics.py), for the record's ``metrics`` section."""
    from harness.metrics import record_fields

    suite = suite if suite is not None else SUITES.get(spec.suite)()
    try:
        return record_fields(suite.metrics, primary, suite.name) if suite.metrics else {"unit": None}
    except HarnessError as exc:  # plan_grid refuses this; a run started another way keeps its score
        return {"unit": None, "unit_error": str(exc)}
