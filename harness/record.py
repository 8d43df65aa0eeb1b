"""The run record: one JSON object per (suite, task, adapter, config, seed). Pure Python, no torch.

Layout (schema version 1)::

    schema_version, run_id, key{suite, task, adapter, config_hash, seed}, spec{...RunSpec...},
    status (success|failed|diverged|oom|cancelled), error{type, message, traceback, step} | null,
    metrics{primary, score, selection, best{...}, best_epoch, final{...}, per_epoch[...], variants{...}},
    params{adapter_trainable, head, total, trainable_total, adapter_file_bytes, ...},
    memory{device, peak_bytes, peak_label, estimate_bytes, estimate_breakdown, peak_rss_bytes,
           cuda_max_allocated_bytes?, cuda_max_reserved_bytes?},
    timing{train_seconds, mean_step_seconds, samples_per_second, eval_seconds, steps, total_seconds},
    loss_curve[[step, loss], ...], adapter_info{...}, analysis{...}, model_info{...}, data_info{...},
    environment{python, packages{}, device_name, git_commit, git_dirty, hostname, ...},
    started_at, finished_at (ISO 8601, UTC)

Written by newer runners (additive; readers must not require them, records without them are read as
described in harness/aggregate.py ``identify``)::

    preset_defaults{train{...TrainConfig of the preset for this task and adapter...}, adapter_options{...},
                    suite_tasks[...]} | preset_defaults_error,
    caps{applied{max_train_samples, max_eval_samples, max_steps, limit}, preset{...}, below_preset[...]},
    metrics.unit, metrics.display_scale, metrics.higher_is_better, metrics.units{name: unit}
    (units: harness/metrics.py)
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from harness.status import ALL_STATUSES

SCHEMA_VERSION = 1
STATUSES = ALL_STATUSES
REQUIRED_KEYS = ("schema_version", "run_id", "key", "spec", "status")
KEY_FIELDS = ("suite", "task", "adapter", "config_hash", "seed")


class RecordError(ValueError):
    """A JSON file in the store that is not a run record of a schema we read."""


def record_problems(data: Any) -> list[str]:
    """Why ``data`` is not a valid record (empty list when it is)."""
    if not isinstance(data, Mapping):
        return ["not a JSON object"]
    problems = [f"missing '{k}'" for k in REQUIRED_KEYS if k not in data]
    if problems:
        return problems
    if data["schema_version"] != SCHEMA_VERSION:
        problems.append(f"schema_version {data['schema_version']!r} is not {SCHEMA_VERSION}")
    key = data["key"]
    if not isinstance(key, Mapping) or any(k not in key for k in KEY_FIELDS):
        problems.append(f"'key' must have {', '.join(KEY_FIELDS)}")
    if data["status"] not in STATUSES:
        problems.append(f"status {data['status']!r} is not one of {', '.join(STATUSES)}")
    if data["status"] == "success":
        metrics = data.get("metrics")
        if not isinstance(metrics, Mapping) or "score" not in metrics:
            problems.append("a successful record needs metrics.score")
    return problems


def validate_record(data: Any) -> dict[str, Any]:
    problems = record_problems(data)
    if problems:
        raise RecordError("; ".join(problems))
    return dict(data)


def load_record(path: str | Path) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RecordError(f"unreadable JSON: {exc}") from None
    return validate_record(data)


def record_filename(key: Mapping[str, Any]) -> str:
    return f"{key['adapter']}-{key['config_hash']}-seed{key['seed']}.json"


def record_relpath(key: Mapping[str, Any]) -> Path:
    """results/<suite>/<task>/<adapter>-<hash>-seed<seed>.json"""
    return Path(str(key["suite"])) / str(key["task"]) / record_filename(key)


def dumps(record: Mapping[str, Any]) -> str:
    return json.dumps(record, indent=1, sort_keys=False, allow_nan=False, default=_default) + "\n"


def _default(obj: Any) -> Any:
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def sanitize(value: Any) -> Any:
    """Replace NaN/inf by None (JSON has no NaN) recursively."""
    if isinstance(value, float):
        return value if value == value and value not in (float("inf"), float("-inf")) else None
    if isinstance(value, Mapping):
        return {k: sanitize(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [sanitize(v) for v in value]
    return value
