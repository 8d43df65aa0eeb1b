"""Records -> the flat frame: one row per record (whatever its status), once per (config hash, seed)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pandas as pd

from harness import metrics as metric_units
from harness.aggregate._values import canonical, finite_number, section_of
from harness.aggregate.identity import dedupe_records, identify
from harness.aggregate.reference_timing import quiet_reference_train_seconds
from harness.aggregate.regime import is_trial, regime_of
from harness.records.record import RunRecord
from harness.status import Status

FRAME_COLUMNS = (
    "run_id", "suite", "task", "adapter", "config_hash", "seed", "model", "preset", "configuration",
    "limited", "limit", "status", "error", "primary", "score", "selection", "best_epoch",
    "params_adapter", "params_head", "params_total", "peak_bytes", "estimate_bytes", "memory_device", "memory_label",
    "memory_estimated", "memory_fixed_bytes", "train_seconds", "train_seconds_quiet", "train_time_normalised",
    "mean_step_seconds", "samples_per_second", "git_commit",
    "git_dirty", "device_name", "started_at", "finished_at",
    "row_key", "label", "limited_by", "unit", "unit_label", "unit_family", "scale", "higher_is_better",
    "suite_tasks", "sub_scores", "regime", "tuned_lr", "tuning_budget", "tuning_seconds",
)


def configuration_label(adapter_options: Any) -> str:
    """The resolved adapter options as one short stable text: ``alpha=16, r=8``."""
    if not isinstance(adapter_options, Mapping) or not adapter_options:
        return "default"
    parts = []
    for key in sorted(adapter_options):
        value = adapter_options[key]
        if isinstance(value, (list, tuple)):
            value = ",".join(str(v) for v in value)
        elif isinstance(value, Mapping):
            value = canonical(value)
        parts.append(f"{key}={value}")
    return ", ".join(parts)


def flatten_record(record: RunRecord) -> dict[str, Any]:
    """One leaderboard row's worth of fields from a validated record (see harness/records/record.py)."""
    key, spec = section_of(record, "key"), section_of(record, "spec")
    train, metrics = section_of(spec, "train"), section_of(record, "metrics")
    params, memory = section_of(record, "params"), section_of(record, "memory")
    timing, env = section_of(record, "timing"), section_of(record, "environment")
    error = section_of(record, "error")
    limit = train.get("limit")
    device = memory.get("device")
    quiet = quiet_reference_train_seconds(record)
    return {
        "run_id": record.get("run_id"),
        "suite": str(key.get("suite")),
        "task": str(key.get("task")),
        "adapter": str(key.get("adapter")),
        "config_hash": str(key.get("config_hash")),
        "seed": key.get("seed"),
        "model": str(spec.get("model", "?")),
        "preset": str(spec.get("preset", "?")),
        "configuration": configuration_label(spec.get("adapter_options")),
        "limited": False,  # set by identify(), which compares the caps with the preset's
        "limit": limit,
        "status": record.get("status"),
        "error": f"{error.get('type', '')}: {error.get('message', '')}".strip(": ") if error else "",
        "primary": metrics.get("primary"),
        "score": finite_number(metrics.get("score")) if record.get("status") == Status.SUCCESS else None,
        "selection": metrics.get("selection"),
        "best_epoch": metrics.get("best_epoch"),
        "params_adapter": finite_number(params.get("adapter_trainable")),
        "params_head": finite_number(params.get("head")),
        "params_total": finite_number(params.get("total")),
        # A measured peak (CUDA's allocator) and the harness's estimate are different quantities: kept in
        # two columns, never averaged or ranked together
        "peak_bytes": finite_number(memory.get("peak_bytes")) if device == "cuda" else None,
        "estimate_bytes": _estimate_bytes(memory, device),
        "memory_device": device,
        "memory_label": memory.get("peak_label"),
        # Only CUDA's allocator gives a measured peak; anything else is the harness's estimate.
        "memory_estimated": None if device is None else device != "cuda",
        "memory_fixed_bytes": _fixed_memory_bytes(memory, device),
        "train_seconds": finite_number(timing.get("train_seconds")),
        # normalised to a quiet reference machine (harness.aggregate.reference_timing); the raw time stays above
        "train_seconds_quiet": quiet[0],
        "train_time_normalised": quiet[1],
        "mean_step_seconds": finite_number(timing.get("mean_step_seconds")),
        "samples_per_second": finite_number(timing.get("samples_per_second")),
        "git_commit": env.get("git_commit"),
        "git_dirty": env.get("git_dirty"),
        "device_name": env.get("device_name"),
        "started_at": record.get("started_at"),
        "finished_at": record.get("finished_at"),
        **_unit_fields(record),
        **tuning_fields(record),
        # the preset's tasks as the runner recorded them (new records): a row lacking one is incomplete
        "suite_tasks": ",".join(str(t) for t in section_of(record, "preset_defaults").get("suite_tasks") or []),
        "sub_scores": _sub_scores(record, metrics) if record.get("status") == Status.SUCCESS else {},
    }


def tuning_fields(record: RunRecord) -> dict[str, Any]:
    tuning = section_of(record, "tuning")
    tuned = tuning.get("role") == "tuned"
    chosen = section_of(tuning, "chosen")
    return {"regime": regime_of(record),
            "tuned_lr": finite_number(chosen.get("lr")) if tuned else None,
            "tuning_budget": finite_number(tuning.get("budget")) if tuned else None,
            "tuning_seconds": finite_number(tuning.get("compute_seconds")) if tuned else None}


def _sub_scores(record: RunRecord, metrics: Mapping[str, Any]) -> dict[str, float]:
    """The record's other declared metrics at the suite's selection (best dev epoch or final), on their
    display scale: MMLU / BBH / DROP / HumanEval, R@k both ways, MT-Bench per turn (the report's
    sub-metric columns). A metric the record does not declare (``metrics.units``) is left out."""
    chosen = metrics.get("best") if isinstance(metrics.get("best"), Mapping) else metrics.get("final")
    chosen = chosen if isinstance(chosen, Mapping) else {}
    units = metrics.get("units") if isinstance(metrics.get("units"), Mapping) else {}
    declared = {str(k) for k in units}
    out = {}
    for name, value in chosen.items():
        number = finite_number(value)
        if name != metrics.get("primary") and name in declared and number is not None:
            out[str(name)] = number * metric_units.unit_of_metric(record, str(name)).display_scale
    return out


def _estimate_bytes(memory: Mapping[str, Any], device: Any) -> float | None:
    """The harness's estimate (parameters, gradients, optimizer state, saved activations); records on
    the CPU before ``estimate_bytes`` existed held it as their ``peak_bytes``."""
    estimate = finite_number(memory.get("estimate_bytes"))
    if estimate is None and device is not None and device != "cuda":
        estimate = finite_number(memory.get("peak_bytes"))
    return estimate


def _fixed_memory_bytes(memory: Mapping[str, Any], device: Any) -> float | None:
    """The part of the CPU estimate that does not depend on the seed: parameters, buffers, gradients
    and optimizer state (``memory.estimate_breakdown``). The tensors saved for backward are left out:
    they depend on the first batch's padded length, which the seed's shuffle picks, and records do not
    keep that length to rescale them to a fixed shape. None on CUDA and without a breakdown."""
    breakdown = memory.get("estimate_breakdown")
    if device == "cuda" or not isinstance(breakdown, Mapping):
        return None
    parts = [finite_number(breakdown.get(k)) for k in ("parameters", "buffers", "gradients", "optimizer_state")]
    return float(sum(p for p in parts if p is not None)) if any(p is not None for p in parts) else None


def _unit_fields(record: RunRecord) -> dict[str, Any]:
    unit = metric_units.unit_of_record(record)
    return {"unit": unit.name, "unit_label": unit.label, "unit_family": unit.family, "scale": unit.display_scale,
            "higher_is_better": metric_units.higher_is_better_of_record(record)}


def load_frame(records: Iterable[RunRecord]) -> pd.DataFrame:
    """The flat frame: one row per record once per (config hash, seed), the columns of FRAME_COLUMNS
    even when empty. ``frame.attrs["duplicates"]`` lists the runs recorded more than once."""
    records, duplicates = dedupe_records([r for r in records if not is_trial(r)])
    identities = identify(records)
    rows = [{**flatten_record(r), **identity} for r, identity in zip(records, identities)]
    frame = pd.DataFrame(rows, columns=list(FRAME_COLUMNS))
    frame.attrs["duplicates"] = duplicates
    numeric = ("score", "tuned_lr", "tuning_budget", "tuning_seconds", "params_adapter", "params_head",
               "params_total", "peak_bytes", "estimate_bytes", "memory_fixed_bytes", "train_seconds", "train_seconds_quiet",
               "mean_step_seconds", "samples_per_second")
    for column in numeric:
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype("float64")
    frame["limited"] = frame["limited"].astype(bool)
    frame["scale"] = pd.to_numeric(frame["scale"], errors="coerce").astype("float64")
    return frame


def filter_frame(frame: pd.DataFrame, **allowed: Sequence[Any] | None) -> pd.DataFrame:
    """Rows whose column value is in the allowed list, for each column given (None: no filter)."""
    mask = pd.Series(True, index=frame.index)
    for column, values in allowed.items():
        if values is not None:
            mask &= frame[column].isin(list(values))
    return frame[mask]
