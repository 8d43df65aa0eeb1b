"""The run record: one JSON object per (suite, task, adapter, config, seed). Pure Python, no torch.

The layout (schema version 2) is the types below: ``RunRecord`` and its sections as TypedDicts, which
the readers (harness.aggregate, harness.records.store, harness.records.check, the app) annotate with.
``harness/records/schema.py`` generates the JSON Schema shipped as ``docs/record.schema.json`` from
them, for tools outside the harness. In short::

    schema_version, run_id, key{suite, task, adapter, config_hash, seed}, spec{...RunSpec...},
    status (harness.status.Status), error{type, message, traceback, step} | null,
    metrics{primary, score, selection, best{...}, best_epoch, final{...}, per_epoch[...], variants{...}},
    params{...}, memory{...}, timing{...}, loss_curve[[step, loss], ...], adapter_info{...},
    analysis{components[...], ...}, model_info{...}, data_info{...}, environment{...},
    started_at, finished_at (ISO 8601, UTC)

The preset annotations (what the tables read instead of importing the suites): ``preset_defaults`` (or
``preset_defaults_error`` for a plug-in whose preset could not be rebuilt), ``caps``, and with a
primary metric ``metrics.unit``/``display_scale``/``higher_is_better``/``units`` (units:
harness/metrics.py). Schema version 2 records carry them all; version 1 records written before the
runner added them do not: ``python -m harness records migrate DIR`` (harness/records/migrate.py) fills
them in from the suite and preset definitions, and the store warns once per read while any is left.
``precision`` is written by newer runners only. Every object is open (a reader must accept keys it
does not know); a field is required only where every runner wrote it. Reading and checking a file is
harness/records/check.py.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypedDict

from harness.spec import RunSpec, TrainConfig
from harness.status import ALL_STATUSES


@dataclass(frozen=True)
class OneOf:
    """``Annotated[str, OneOf(values)]``: a text that is one of ``values`` (an enum in the JSON Schema)."""

    values: tuple[str, ...]


class CapValues(TypedDict):
    """The caps a run can be limited by: any of them below the preset's value makes the run "limited"."""

    max_train_samples: int | None
    max_eval_samples: int | None
    max_steps: int | None
    limit: int | None


CAP_FIELDS: tuple[str, ...] = tuple(CapValues.__annotations__)
StatusText = Annotated[str, OneOf(ALL_STATUSES)]  # a Status value as the JSON holds it
# RunSpec.to_dict() and TrainConfig as JSON: their schema is generated from the dataclasses themselves
SpecDict = Annotated[dict[str, Any], RunSpec]
TrainDict = Annotated[dict[str, Any], TrainConfig]
MetricValues = dict[str, float | None]


class RecordKey(TypedDict):
    """What the store files a run under (``RunSpec.key``)."""

    suite: str
    task: str
    adapter: str
    config_hash: str
    seed: int


class _ErrorCore(TypedDict):
    type: str
    message: str


class ErrorInfo(_ErrorCore, total=False):
    """Why a run did not succeed (null for a successful one)."""

    traceback: str | None
    step: int | None  # diverged: the step whose loss was not finite (or exploded); None for an undefined metric
    reason: str  # diverged: non-finite loss, loss exploded or undefined metric (harness.pipeline.loss_log)
    signal: str  # cancelled: SIGINT, SIGTERM or SIGHUP


class Metrics(TypedDict, total=False):
    """The suite's metrics: ``score`` is ``primary`` at the selected epoch (``selection``)."""

    primary: str
    score: float | None
    selection: str
    best: MetricValues
    best_epoch: int | None
    final: MetricValues
    per_epoch: list[MetricValues]
    variants: dict[str, MetricValues]
    unit: str | None  # harness/metrics.py; version 1 records may lack these four
    unit_error: str
    display_scale: float
    higher_is_better: bool
    units: dict[str, str]


class Params(TypedDict, total=False):
    adapter_trainable: int  # shared tensors counted once
    head: int
    total: int
    trainable_total: int
    frozen_adapter_buffers: int
    adapter_file_bytes: int
    adapter_tensors_saved: int


class Memory(TypedDict, total=False):
    """``peak_bytes`` is measured on CUDA only; on the CPU it is the estimate (``estimate_bytes``)."""

    device: str
    peak_bytes: int | None
    peak_label: str
    estimate_bytes: int | None
    estimate_label: str
    estimate_breakdown: dict[str, int]
    peak_rss_bytes: int | None
    peak_rss_label: str
    cuda_max_allocated_bytes: int
    cuda_max_reserved_bytes: int
    cuda_train_steps: dict[str, Any]


class Timing(TypedDict, total=False):
    train_seconds: float | None
    mean_step_seconds: float | None
    samples_per_second: float | None
    eval_seconds: float | None
    eval_seconds_per_epoch: list[float | None]
    eval_merged: bool
    load_seconds: float | None
    load_cached: dict[str, bool]
    steps: int
    epochs: float
    samples: int
    total_seconds: float | None
    cpu_seconds: float | None  # process CPU time over the run (all threads); absent in older records
    phases: dict[str, float | None]
    startup: dict[str, float | None]  # only the first run of a process: what its start-up cost
    # in-run checkpoints: {"saved": n, "resumed_from": None or {"step", "epoch", "batches", "resumes"}}
    checkpoints: dict[str, Any]


class SpeedProbe(TypedDict, total=False):
    """``harness.speed_probe``: the fastest of a few forward+backward steps of a MiniLM-shaped encoder."""

    workload: str
    threads: int
    seconds_per_step: float


class Environment(TypedDict, total=False):
    python: str
    platform: str
    hostname: str
    cpu_count: int | None
    cpu_model: str | None
    cpu_capability: str
    packages: dict[str, str | None]
    device: str
    device_name: str
    cuda_available: bool
    torch_threads: int
    git_commit: str | None
    git_dirty: bool | None
    speed_probe: SpeedProbe  # CPU runs


class AnalysisComponent(TypedDict, total=False):
    """One adapted weight's update (``Adapter.delta_components``) and its spectrum."""

    module: str
    kind: str | None
    layer: int | None
    component: str | None
    shape: list[int]
    singular_values: list[float | None]
    numerical_rank: int
    approximate: bool
    m_eff: dict[str, float | None]  # MSPLoRA eq. 8, per k


class Analysis(TypedDict, total=False):
    """SVD analyses of the weight updates; the method-specific keys (inter-layer KL, ranks ...) grow
    with the methods and are walked, not named, by the readers."""

    components: list[AnalysisComponent] | None


class PresetDefaults(TypedDict, total=False):
    """The preset's settings for this run (outside the config hash): what a row's label compares with."""

    train: TrainDict
    adapter_options: dict[str, Any]
    suite_tasks: list[str]


class Caps(TypedDict):
    applied: CapValues
    preset: CapValues
    below_preset: list[Annotated[str, OneOf(CAP_FIELDS)]]


class Precision(TypedDict, total=False):
    requested: str
    used: str
    autocast: bool
    compile: dict[str, Any]


class _RecordCore(TypedDict):
    schema_version: int
    run_id: str
    key: RecordKey
    spec: SpecDict
    status: StatusText


class RunRecord(_RecordCore, total=False):
    """One run record, as ``harness.records.store`` reads it and the runner writes it."""

    error: ErrorInfo | None
    started_at: str  # ISO 8601, UTC
    finished_at: str
    metrics: Metrics
    params: Params
    memory: Memory
    timing: Timing
    loss_curve: list[list[float | None]]  # [[step, loss], ...]; a non-finite loss is null
    adapter_info: dict[str, Any]
    analysis: Analysis
    model_info: dict[str, Any]
    data_info: dict[str, Any]
    environment: Environment
    precision: Precision
    preset_defaults: PresetDefaults
    # a plug-in whose preset could not be rebuilt: its row is labelled "preset defaults unknown"
    preset_defaults_error: str
    caps: Caps


# 2: every record carries its preset annotations (preset_defaults or preset_defaults_error, caps) and,
# with a primary metric, its units; version 1 records may lack them (python -m harness records migrate)
SCHEMA_VERSION = 2
OLDEST_SCHEMA_VERSION = 1  # the oldest a reader accepts (read as far as it goes, with a warning)
REQUIRED_KEYS: tuple[str, ...] = tuple(_RecordCore.__annotations__)
KEY_FIELDS: tuple[str, ...] = tuple(RecordKey.__annotations__)


class RecordError(ValueError):
    """A JSON file in the store that is not a run record of a schema we read."""


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
