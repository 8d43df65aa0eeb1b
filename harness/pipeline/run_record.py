"""The parts of a run's record that do not come from training: its identity (schema version, run id,
key, spec), its start and status, and the annotations the tables read without importing torch or
the suites (the preset's defaults, the caps applied, the primary metric's unit).
"""

from __future__ import annotations

import datetime as _dt
from typing import Any

from harness.config import build, to_jsonable
from harness.errors import HarnessError
from harness.pipeline.attach import build_adapter_config
from harness.pipeline.plan import GridRequest, adapter_options_for
from harness.records.record import CAP_FIELDS, SCHEMA_VERSION
from harness.registry import ADAPTERS, SUITES
from harness.spec import RunSpec, TrainConfig
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
        **preset_annotations(spec, suite),
    }


def preset_annotations(spec: RunSpec, suite: Suite | None = None) -> dict[str, Any]:
    """What the tables need without importing torch or the suites (harness/aggregate/): the preset's
    training settings and adapter options for this run, so that a row shows what differs from them;
    the caps applied and those below the preset's (a "limited" run); the suite's default tasks. Never
    part of the config hash. A plug-in whose defaults cannot be rebuilt gets ``preset_defaults_error``
    and the tables label its row "preset defaults unknown" (harness/aggregate/identity.py)."""
    try:
        suite = suite if suite is not None else SUITES.get(spec.suite)()
        adapter_cls = ADAPTERS.get(spec.adapter)
        preset_train = build(TrainConfig, {**to_jsonable(suite.train_config(spec.preset, spec.task, spec.model)),
                                           **adapter_cls.train_overrides_for(spec.preset, spec.suite, spec.model)},
                             "training")
        options = adapter_options_for(adapter_cls, suite, spec.preset, spec.model, GridRequest(suite=spec.suite))
        preset_options = build_adapter_config(spec.adapter, options).to_dict()
        tasks = suite.default_tasks(spec.preset)
    except Exception as exc:  # an annotation must never cost a run
        return {"preset_defaults_error": f"{type(exc).__name__}: {exc}"}
    applied = {name: getattr(spec.train, name) for name in CAP_FIELDS}
    preset = {name: getattr(preset_train, name) for name in CAP_FIELDS}
    below = [n for n in CAP_FIELDS if applied[n] is not None and (preset[n] is None or applied[n] < preset[n])]
    return {
        "preset_defaults": {"train": to_jsonable(preset_train), "adapter_options": preset_options,
                            "suite_tasks": list(tasks)},
        "caps": {"applied": applied, "preset": preset, "below_preset": below},
    }


def metric_annotations(spec: RunSpec, primary: str, suite: Suite | None = None) -> dict[str, Any]:
    """The unit, display scale and direction of the primary metric and the units of every declared
    metric (harness/metrics.py), for the record's ``metrics`` section."""
    from harness.metrics import record_fields

    suite = suite if suite is not None else SUITES.get(spec.suite)()
    try:
        return record_fields(suite.metrics, primary, suite.name) if suite.metrics else {"unit": None}
    except HarnessError as exc:  # plan_grid refuses this; a run started another way keeps its score
        return {"unit": None, "unit_error": str(exc)}
