"""From run records to tables: flat frame, leaderboard, suite average, Pareto front, paper-style export.

Pure pandas (no torch, no Streamlit): the leaderboard app and ``python -m harness report`` both build
on these functions, and they are unit-tested without either.

Rules the tables keep:
- One row of the flat frame per record, whatever its status: failed, diverged, oom and cancelled runs
  are counted in the leaderboard (``n_failed`` ...), never dropped.
- A row is one configuration (``row_key``, see ``identify``); seeds are aggregated within it, a record is
  counted once per (config hash, seed) wherever its file lies in the store (``dedupe_records``), and runs
  with any cap below their preset's (``limited``) never share a row, an average or a front with full runs.
- Scores are displayed on their declared unit's scale (``harness.metrics``), never by guessing.
- Reported numbers from the papers (``results/reference/*.csv``) live in their own frame, marked
  ``source == "reported"``, and are never mixed into our means or suite averages.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from harness import metrics as metric_units
from harness import stats
from harness.status import UNSUCCESSFUL_STATUSES

FRAME_COLUMNS = (
    "run_id", "suite", "task", "adapter", "config_hash", "seed", "model", "preset", "configuration",
    "limited", "limit", "status", "error", "primary", "score", "selection", "best_epoch",
    "params_adapter", "params_head", "params_total", "peak_bytes", "estimate_bytes", "memory_device", "memory_label",
    "memory_estimated", "train_seconds", "mean_step_seconds", "samples_per_second", "git_commit",
    "git_dirty", "device_name", "started_at", "finished_at",
    "row_key", "label", "limited_by", "unit", "unit_label", "unit_family", "scale", "higher_is_better",
    "suite_tasks",
)
GROUP_KEYS = ("suite", "task", "model", "preset", "adapter", "configuration", "config_hash", "limited",
              "row_key", "label")
# The same adapter configuration has a different config_hash per task (the task is part of the spec),
# so the suite average groups by the row key (identify()), which leaves the task and its preset values out.
AVERAGE_KEYS = ("suite", "model", "preset", "adapter", "row_key", "label", "limited")
FAILURE_STATUSES = UNSUCCESSFUL_STATUSES
LEADERBOARD_COLUMNS = (
    *GROUP_KEYS, "primary", "score_mean", "score_std", "score_ci_low", "score_ci_high", "seed_scores",
    "unit", "unit_label", "unit_family", "scale", "higher_is_better", "limited_by", "suite_tasks", "n_seeds",
    "n_runs",
    *(f"n_{s}" for s in FAILURE_STATUSES), "statuses", "params_adapter", "params_head",
    "peak_memory_bytes", "estimate_memory_bytes", "memory_estimated", "train_seconds", "mean_step_seconds",
    "git_dirty", "source",
)
AVERAGE_COLUMNS = (
    *AVERAGE_KEYS, "score_avg", "n_tasks", "n_suite_tasks", "complete", "tasks", "params_adapter",
    "peak_memory_bytes", "estimate_memory_bytes", "memory_estimated", "train_seconds", "n_failed_runs", "source",
)
REFERENCE_COLUMNS = (
    "paper", "table", "model", "suite", "task", "adapter", "method", "metric", "value", "scale",
    "params", "source", "note",
)
# "score": a number on the metric's own scale (MT-Bench's 1-10 rating), kept as printed
REFERENCE_SCALES = {"percent": 100.0, "fraction": 1.0, "score": 1.0}
# The caps a run can be limited by: any of them below the preset's value makes the run "limited"
CAP_FIELDS = ("max_train_samples", "max_eval_samples", "max_steps", "limit")


# ---------------------------------------------------------------------------------------------------
# records -> flat frame
# ---------------------------------------------------------------------------------------------------


def _section(record: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    """A record section as a mapping; failed runs may lack it or hold null."""
    value = record.get(name)
    return value if isinstance(value, Mapping) else {}


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


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
            value = json.dumps(value, sort_keys=True, separators=(",", ":"))
        parts.append(f"{key}={value}")
    return ", ".join(parts)


def flatten_record(record: Mapping[str, Any]) -> dict[str, Any]:
    """One leaderboard row's worth of fields from a validated record (see harness/record.py)."""
    key, spec = _section(record, "key"), _section(record, "spec")
    train, metrics = _section(spec, "train"), _section(record, "metrics")
    params, memory = _section(record, "params"), _section(record, "memory")
    timing, env = _section(record, "timing"), _section(record, "environment")
    error = _section(record, "error")
    limit = train.get("limit")
    device = memory.get("device")
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
        "score": _number(metrics.get("score")) if record.get("status") == "success" else None,
        "selection": metrics.get("selection"),
        "best_epoch": metrics.get("best_epoch"),
        "params_adapter": _number(params.get("adapter_trainable")),
        "params_head": _number(params.get("head")),
        "params_total": _number(params.get("total")),
        # A measured peak (CUDA's allocator) and the harness's estimate are different quantities: kept in
        # two columns, never averaged or ranked together
        "peak_bytes": _number(memory.get("peak_bytes")) if device == "cuda" else None,
        "estimate_bytes": _estimate_bytes(memory, device),
        "memory_device": device,
        "memory_label": memory.get("peak_label"),
        # Only CUDA's allocator gives a measured peak; anything else is the harness's estimate.
        "memory_estimated": None if device is None else device != "cuda",
        "train_seconds": _number(timing.get("train_seconds")),
        "mean_step_seconds": _number(timing.get("mean_step_seconds")),
        "samples_per_second": _number(timing.get("samples_per_second")),
        "git_commit": env.get("git_commit"),
        "git_dirty": env.get("git_dirty"),
        "device_name": env.get("device_name"),
        "started_at": record.get("started_at"),
        "finished_at": record.get("finished_at"),
        **_unit_fields(record),
        # the preset's tasks as the runner recorded them (new records): a row lacking one is incomplete
        "suite_tasks": ",".join(str(t) for t in _section(record, "preset_defaults").get("suite_tasks") or []),
    }


def _estimate_bytes(memory: Mapping[str, Any], device: Any) -> float | None:
    """The harness's estimate (parameters, gradients, optimizer state, saved activations); records on
    the CPU before ``estimate_bytes`` existed held it as their ``peak_bytes``."""
    estimate = _number(memory.get("estimate_bytes"))
    if estimate is None and device is not None and device != "cuda":
        estimate = _number(memory.get("peak_bytes"))
    return estimate


def _mean_or_nan(values: pd.Series) -> float:
    return float(values.mean()) if values.notna().any() else math.nan


def _max_or_nan(values: pd.Series) -> float:
    return float(values.max()) if values.notna().any() else math.nan


def _unit_fields(record: Mapping[str, Any]) -> dict[str, Any]:
    unit = metric_units.unit_of_record(record)
    return {"unit": unit.name, "unit_label": unit.label, "unit_family": unit.family, "scale": unit.display_scale,
            "higher_is_better": metric_units.higher_is_better_of_record(record)}


def load_frame(records: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """The flat frame: one row per record once per (config hash, seed), the columns of FRAME_COLUMNS
    even when empty. ``frame.attrs["duplicates"]`` lists the runs recorded more than once."""
    records, duplicates = dedupe_records(list(records))
    identities = identify(records)
    rows = [{**flatten_record(r), **identity} for r, identity in zip(records, identities)]
    frame = pd.DataFrame(rows, columns=list(FRAME_COLUMNS))
    frame.attrs["duplicates"] = duplicates
    numeric = ("score", "params_adapter", "params_head", "params_total", "peak_bytes", "estimate_bytes", "train_seconds",
               "mean_step_seconds", "samples_per_second")
    for column in numeric:
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype("float64")
    frame["limited"] = frame["limited"].astype(bool)
    frame["scale"] = pd.to_numeric(frame["scale"], errors="coerce").astype("float64")
    return frame


# ---------------------------------------------------------------------------------------------------
# run identity: duplicates, preset defaults, row keys, labels, limited runs
# ---------------------------------------------------------------------------------------------------


def _run_key(record: Mapping[str, Any]) -> tuple[str, ...]:
    key = _section(record, "key")
    return tuple(str(key.get(k)) for k in ("suite", "task", "adapter", "config_hash", "seed"))


def dedupe_records(records: list[Mapping[str, Any]]) -> tuple[list[Mapping[str, Any]], list[str]]:
    """One record per (suite, task, adapter, config hash, seed), and the run ids found more than once.

    A copied file (``x (copy).json``) or a backup folder inside the store holds the same run again: it
    must not count as another seed. Of several copies the latest ``finished_at`` is kept (a rerun with
    ``--force`` rewrites its record, so the latest is the current one).
    """
    kept: dict[tuple[str, ...], Mapping[str, Any]] = {}
    counts: dict[tuple[str, ...], int] = {}
    for record in records:
        key = _run_key(record)
        counts[key] = counts.get(key, 0) + 1
        if key not in kept or str(record.get("finished_at") or "") > str(kept[key].get("finished_at") or ""):
            kept[key] = record
    duplicates = [f"{str(kept[k].get('run_id'))} ({counts[k]} records)" for k in kept if counts[k] > 1]
    return list(kept.values()), duplicates


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def _mode(values: list[Any], tie_break: Any = None) -> Any:
    """The most common value (compared as JSON); ties go to ``tie_break`` when it is among them, else
    to the least restrictive cap (None), else the first in JSON order."""
    counts: dict[str, int] = {}
    first: dict[str, Any] = {}
    for v in values:
        c = _canonical(v)
        counts[c] = counts.get(c, 0) + 1
        first.setdefault(c, v)
    best = max(counts.values())
    tied = sorted(c for c, n in counts.items() if n == best)
    for preferred in (tie_break, None):
        if _canonical(preferred) in tied:
            return first[_canonical(preferred)]
    return first[tied[0]]


def _inferred_defaults(records: list[Mapping[str, Any]], group_keys: tuple[str, ...], section: str
                       ) -> dict[tuple[str, ...], dict[str, Any]]:
    """Per group, the value of every field of ``spec[section]`` held by most records of the group."""
    sections: dict[tuple[str, ...], list[Mapping[str, Any]]] = {}
    for r in records:
        spec = _section(r, "spec")
        sections.setdefault(tuple(str(spec.get(k)) for k in group_keys), []).append(_section(spec, section))
    out: dict[tuple[str, ...], dict[str, list[Any]]] = {}
    for group, items in sections.items():
        names = sorted({n for item in items for n in item})
        # a field a record lacks counts as unset (None), so that one record's cap is not taken as the default
        out[group] = {n: [item.get(n) for item in items] for n in names}
    return out


def _below(value: Any, default: Any) -> bool:
    """Whether a cap is tighter than the preset's (None: no cap)."""
    if value is None or _number(value) is None:
        return False
    return default is None or (_number(default) is not None and float(value) < float(default))


def _short_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    if isinstance(value, Mapping):
        return _canonical(value)
    return str(value)


_SHORT_NAMES = {"rank": "r", "max_train_samples": "train cap", "max_eval_samples": "eval cap",
                "max_steps": "max steps", "limit": "limit", "batch_size": "batch", "head_lr": "head lr"}


def _label_part(name: str, value: Any) -> str:
    short = _SHORT_NAMES.get(name, name.replace("_", " "))
    return f"r{_short_value(value)}" if name == "rank" else f"{short} {_short_value(value)}"


def identify(records: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per record: its configuration's ``row_key`` and ``label``, and whether it is ``limited``.

    What a row is. A record's config hash covers the whole spec including the task, so one adapter
    configuration has a different hash on every task. A row of a suite table is therefore keyed by
    ``row_key``: the hash of (suite, adapter, model, preset, resolved adapter options, suite options,
    and the training settings that differ from the preset's for that task). Per-task preset values
    (GLUE's epochs and learning rate per task, CoLA's training-set size) are not differences, so the
    preset's runs of one adapter share a row across tasks, while ``--lr 3e-4`` or ``--max-steps 2``
    makes another row on every task. Two configurations are never averaged together: within a row and
    task every record has the same config hash.

    The preset's defaults come from the record (``preset_defaults``, written by the runner) or, for
    records written before it, from the store: per (suite, task, model, preset, adapter) the value of
    each training setting held by most records (ties: the value most records of the task hold over all
    adapters, else no cap). Adapter options are compared the same way per (suite, model, preset,
    adapter) for the label. Limited: a cap (max_train_samples, max_eval_samples, max_steps, limit)
    below the preset's; new records state it in ``caps.below_preset``.
    """
    per_adapter = _inferred_defaults(records, ("suite", "task", "model", "preset", "adapter"), "train")
    per_task = _inferred_defaults(records, ("suite", "task", "model", "preset"), "train")
    options = _inferred_defaults(records, ("suite", "model", "preset", "adapter"), "adapter_options")
    out = []
    for r in records:
        spec = _section(r, "spec")
        train = dict(_section(spec, "train"))
        recorded = _section(r, "preset_defaults")
        if isinstance(recorded.get("train"), Mapping):
            train_defaults = dict(recorded["train"])
        else:
            g_a = tuple(str(spec.get(k)) for k in ("suite", "task", "model", "preset", "adapter"))
            g_t = g_a[:4]
            train_defaults = {}
            for name, values in per_adapter.get(g_a, {}).items():
                task_mode = _mode(per_task.get(g_t, {}).get(name, values))
                train_defaults[name] = _mode(values, tie_break=task_mode)
        if isinstance(recorded.get("adapter_options"), Mapping):
            option_defaults = dict(recorded["adapter_options"])
        else:
            g_o = tuple(str(spec.get(k)) for k in ("suite", "model", "preset", "adapter"))
            option_defaults = {n: _mode(v) for n, v in options.get(g_o, {}).items()}
        train_diff = {k: v for k, v in sorted(train.items())
                      if k not in train_defaults or _canonical(v) != _canonical(train_defaults[k])}
        caps = _section(r, "caps")
        if isinstance(caps.get("below_preset"), list):
            limited_by = [str(c) for c in caps["below_preset"]]
        else:
            limited_by = [c for c in CAP_FIELDS if _below(train.get(c), train_defaults.get(c))]
        # a cap below the preset's is a difference even where the store alone could not tell
        train_diff = dict(sorted({**train_diff, **{c: train.get(c) for c in limited_by if c in train}}.items()))
        adapter_options = _section(spec, "adapter_options")
        identity = {k: spec.get(k) for k in ("suite", "adapter", "model", "preset")}
        identity.update(adapter_options=adapter_options, suite_options=_section(spec, "suite_options"),
                        train_differences=train_diff)
        row_key = hashlib.sha256(_canonical(identity).encode()).hexdigest()[:12]
        parts = [str(spec.get("adapter", _section(r, "key").get("adapter")))]
        if "rank" in adapter_options:
            parts[0] += " " + _label_part("rank", adapter_options["rank"])
        parts += [_label_part(k, v) for k, v in sorted(adapter_options.items())
                  if k != "rank" and k in option_defaults and _canonical(v) != _canonical(option_defaults[k])]
        parts += [_label_part(k, v) for k, v in train_diff.items()]
        out.append({"row_key": row_key, "label": " · ".join(parts), "limited": bool(limited_by),
                    "limited_by": ",".join(limited_by)})
    # two configurations never look alike: a label shared by different rows gets the row key
    def where(r: Mapping[str, Any], label: str) -> tuple[str, ...]:
        spec = _section(r, "spec")
        return (str(spec.get("suite")), str(spec.get("model")), str(spec.get("preset")), label)

    by_label: dict[tuple[str, ...], set[str]] = {}
    for r, identity in zip(records, out):
        by_label.setdefault(where(r, identity["label"]), set()).add(identity["row_key"])
    for r, identity in zip(records, out):
        if len(by_label[where(r, identity["label"])]) > 1:
            identity["label"] += f" · #{identity['row_key'][:6]}"
    return out


# ---------------------------------------------------------------------------------------------------
# leaderboard and suite average
# ---------------------------------------------------------------------------------------------------


def _first_valid(values: pd.Series) -> Any:
    valid = values.dropna()
    return valid.iloc[0] if len(valid) else None


def _any_true(values: pd.Series) -> bool | None:
    known = values.dropna()
    return bool(known.astype(bool).any()) if len(known) else None


def _status_summary(statuses: pd.Series) -> str:
    counts = statuses.value_counts()
    return ", ".join(f"{status}×{int(counts[status])}" for status in sorted(counts.index))


def _summarise_group(group: pd.DataFrame) -> dict[str, Any]:
    ok = group[group["status"] == "success"]
    scored = ok[ok["score"].notna()]
    scores = scored["score"]
    interval = stats.mean_ci(scores.to_numpy())
    row: dict[str, Any] = {
        "primary": _first_valid(group["primary"]),
        "score_mean": float(scores.mean()) if len(scores) else math.nan,
        # Sample standard deviation over seeds, as the papers report; undefined for one seed.
        "score_std": float(scores.std(ddof=1)) if len(scores) > 1 else math.nan,
        "score_ci_low": interval.low,
        "score_ci_high": interval.high,
        "seed_scores": {int(s): float(v) for s, v in zip(scored["seed"], scored["score"])},
        "unit": _first_valid(group["unit"]),
        "unit_label": _first_valid(group["unit_label"]),
        "unit_family": _first_valid(group["unit_family"]),
        "scale": _first_valid(group["scale"]),
        "higher_is_better": _first_valid(group["higher_is_better"]),
        "limited_by": _first_valid(group["limited_by"]),
        "suite_tasks": ",".join(sorted({t for v in group["suite_tasks"].dropna() for t in str(v).split(",") if t})),
        "n_seeds": int(len(scores)),
        "n_runs": int(len(group)),
    }
    for status in FAILURE_STATUSES:
        row[f"n_{status}"] = int((group["status"] == status).sum())
    source = ok if len(ok) else group
    row.update(
        statuses=_status_summary(group["status"]),
        params_adapter=_first_valid(source["params_adapter"]),
        params_head=_first_valid(source["params_head"]),
        peak_memory_bytes=_mean_or_nan(source["peak_bytes"]),
        estimate_memory_bytes=_mean_or_nan(source["estimate_bytes"]),
        # the cell's memory is an estimate only: no run of it was measured
        memory_estimated=bool(source["peak_bytes"].isna().all() and source["estimate_bytes"].notna().any()),
        train_seconds=float(source["train_seconds"].mean()) if source["train_seconds"].notna().any() else math.nan,
        mean_step_seconds=(
            float(source["mean_step_seconds"].mean()) if source["mean_step_seconds"].notna().any() else math.nan
        ),
        git_dirty=_any_true(group["git_dirty"]),
        source="ours",
    )
    return row


def leaderboard(frame: pd.DataFrame) -> pd.DataFrame:
    """Seeds aggregated per (suite, task, model, preset, adapter, configuration, limited)."""
    if frame is None or frame.empty:
        return pd.DataFrame(columns=list(LEADERBOARD_COLUMNS))
    rows = []
    for keys, group in frame.groupby(list(GROUP_KEYS), dropna=False, sort=True):
        rows.append({**dict(zip(GROUP_KEYS, keys)), **_summarise_group(group)})
    table = pd.DataFrame(rows, columns=list(LEADERBOARD_COLUMNS))
    table = table.sort_values(["suite", "task", "limited", "score_mean"], ascending=[True, True, True, False],
                              na_position="last", kind="stable")
    return table.reset_index(drop=True)


def suite_average(table: pd.DataFrame) -> pd.DataFrame:
    """Mean over tasks of the per-task seed means, per adapter configuration (the papers' 'Avg.').

    ``complete`` says whether every task that this suite has for the same model, preset and limited
    flag has a score: an average over fewer tasks is shown but marked.
    """
    if table is None or table.empty:
        return pd.DataFrame(columns=list(AVERAGE_COLUMNS))
    ours = table[table["source"] == "ours"] if "source" in table else table
    suite_tasks = ours.groupby(["suite", "model", "preset", "limited"], dropna=False)["task"].nunique()
    rows = []
    for keys, group in ours.groupby(list(AVERAGE_KEYS), dropna=False, sort=True):
        scored = group[group["score_mean"].notna()]
        n_suite = int(suite_tasks.loc[(keys[0], keys[1], keys[2], keys[6])])
        rows.append({
            **dict(zip(AVERAGE_KEYS, keys)),
            "score_avg": float(scored["score_mean"].mean()) if len(scored) else math.nan,
            "n_tasks": int(scored["task"].nunique()),
            "n_suite_tasks": n_suite,
            "complete": int(scored["task"].nunique()) == n_suite,
            "tasks": ",".join(sorted(scored["task"].unique())),
            "params_adapter": _first_valid(group["params_adapter"]),
            "peak_memory_bytes": _mean_or_nan(group["peak_memory_bytes"]),
            "estimate_memory_bytes": _mean_or_nan(group["estimate_memory_bytes"]),
            "memory_estimated": bool(group["peak_memory_bytes"].isna().all()
                                     and group["estimate_memory_bytes"].notna().any()),
            "train_seconds": float(group["train_seconds"].sum()) if group["train_seconds"].notna().any() else math.nan,
            "n_failed_runs": int(sum(group[f"n_{s}"].sum() for s in FAILURE_STATUSES)),
            "source": "ours",
        })
    out = pd.DataFrame(rows, columns=list(AVERAGE_COLUMNS))
    return out.sort_values(["suite", "limited", "score_avg"], ascending=[True, True, False],
                           na_position="last", kind="stable").reset_index(drop=True)


def filter_frame(frame: pd.DataFrame, **allowed: Sequence[Any] | None) -> pd.DataFrame:
    """Rows whose column value is in the allowed list, for each column given (None: no filter)."""
    mask = pd.Series(True, index=frame.index)
    for column, values in allowed.items():
        if values is not None:
            mask &= frame[column].isin(list(values))
    return frame[mask]


# ---------------------------------------------------------------------------------------------------
# Pareto front
# ---------------------------------------------------------------------------------------------------


def pareto_front(frame: pd.DataFrame, cost: str, score: str) -> pd.Series:
    """True for rows no other row dominates (lower or equal cost and higher or equal score, one strictly).

    Rows missing either value are never on the front.
    """
    x = pd.to_numeric(frame[cost], errors="coerce").to_numpy(dtype=float)
    y = pd.to_numeric(frame[score], errors="coerce").to_numpy(dtype=float)
    valid = ~(pd.isna(x) | pd.isna(y))
    on_front = []
    for i in range(len(frame)):
        if not valid[i]:
            on_front.append(False)
            continue
        others = valid & (x <= x[i]) & (y >= y[i]) & ((x < x[i]) | (y > y[i]))
        on_front.append(not others.any())
    return pd.Series(on_front, index=frame.index, dtype=bool)


# ---------------------------------------------------------------------------------------------------
# reported numbers (results/reference/*.csv)
# ---------------------------------------------------------------------------------------------------


def _reference_row_problems(row: Mapping[str, Any]) -> list[str]:
    problems = [f"empty '{c}'" for c in ("paper", "table", "task", "method", "metric", "value", "source")
                if not str(row.get(c) or "").strip()]
    if str(row.get("scale") or "").strip() not in REFERENCE_SCALES:
        problems.append(f"scale must be one of {', '.join(REFERENCE_SCALES)}")
    try:
        float(row.get("value") or "")
    except ValueError:
        problems.append(f"value {row.get('value')!r} is not a number")
    params = str(row.get("params") or "").strip()
    if params:
        try:
            float(params)
        except ValueError:
            problems.append(f"params {params!r} is not a number")
    return problems


def _reference_score(suite: str, metric: str, value: float, scale: str) -> float:
    """A printed number on the scale our records store: divided by the display scale of the metric's
    declared unit (accuracy 94.7 -> 0.947, MCC 63.4 -> 0.634, rsum and MT-Bench ratings as printed);
    a metric no suite declares (MNLI-mismatched) by the row's own ``scale``."""
    for spec in metric_units.BUILTIN_METRICS.get(suite, ()):
        if spec.name == metric:
            return value / spec.display_scale
    return value / REFERENCE_SCALES[scale]


def load_reference(folder: str | Path) -> tuple[pd.DataFrame, list[tuple[str, str]]]:
    """Every ``*.csv`` of reported numbers under ``folder``, and the (file, why) of rows skipped.

    Values are stored as the paper prints them (``scale`` percent or fraction) and returned as
    fractions in ``score`` so they sit beside our metrics.
    """
    rows: list[dict[str, Any]] = []
    skipped: list[tuple[str, str]] = []
    root = Path(folder)
    for path in sorted(root.rglob("*.csv")) if root.is_dir() else []:
        try:
            with open(path, encoding="utf-8", newline="") as fh:
                reader = csv.DictReader(fh)
                missing = [c for c in REFERENCE_COLUMNS if c not in (reader.fieldnames or [])]
                if missing:
                    skipped.append((str(path), f"missing columns {', '.join(missing)}"))
                    continue
                for line, row in enumerate(reader, start=2):
                    problems = _reference_row_problems(row)
                    if problems:
                        skipped.append((f"{path}:{line}", "; ".join(problems)))
                        continue
                    rows.append({c: (row[c] or "").strip() for c in REFERENCE_COLUMNS})
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            skipped.append((str(path), f"unreadable CSV: {exc}"))
    frame = pd.DataFrame(rows, columns=list(REFERENCE_COLUMNS))
    frame["value"] = pd.to_numeric(frame["value"], errors="coerce").astype("float64")
    frame["params"] = pd.to_numeric(frame["params"], errors="coerce").astype("float64")
    frame["score"] = [_reference_score(*row) for row in zip(frame["suite"], frame["metric"], frame["value"],
                                                             frame["scale"])]
    frame["score"] = frame["score"].astype("float64")
    frame["source_kind"] = "reported"
    return frame, skipped


# ---------------------------------------------------------------------------------------------------
# run-detail helpers (analysis section of a record)
# ---------------------------------------------------------------------------------------------------


def loss_curve_frame(record: Mapping[str, Any]) -> pd.DataFrame:
    points = [p for p in record.get("loss_curve") or [] if isinstance(p, (list, tuple)) and len(p) == 2]
    frame = pd.DataFrame(points, columns=["step", "loss"])
    return frame.apply(pd.to_numeric, errors="coerce").dropna()


def _component_label(component: Mapping[str, Any]) -> str:
    """``query L3 global``: short enough for a legend; the module path only when kind or layer is missing."""
    kind, layer, part = component.get("kind"), component.get("layer"), component.get("component")
    if kind is None or layer is None:
        return " ".join(str(v) for v in (component.get("module"), part) if v is not None) or "component"
    return " ".join(str(v) for v in (kind, f"L{layer}", part) if v is not None)


def _components(record: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    components = _section(record, "analysis").get("components")
    return [c for c in components if isinstance(c, Mapping)] if isinstance(components, list) else []


def singular_values_frame(record: Mapping[str, Any]) -> pd.DataFrame:
    """Long form: component, kind, layer, index (1-based), singular_value."""
    rows = []
    for c in _components(record):
        for i, s in enumerate(c.get("singular_values") or [], start=1):
            if _number(s) is not None:
                rows.append({"component": _component_label(c), "kind": c.get("kind"), "layer": c.get("layer"),
                             "index": i, "singular_value": float(s)})
    return pd.DataFrame(rows, columns=["component", "kind", "layer", "index", "singular_value"])


def m_eff_frame(record: Mapping[str, Any]) -> pd.DataFrame:
    """Long form: component, kind, layer, k, m_eff (MSPLoRA eq. 8)."""
    rows = []
    for c in _components(record):
        m_eff = c.get("m_eff")
        for k, value in (m_eff.items() if isinstance(m_eff, Mapping) else []):
            if _number(value) is not None:
                rows.append({"component": _component_label(c), "kind": c.get("kind"), "layer": c.get("layer"),
                             "k": int(k) if str(k).isdigit() else str(k), "m_eff": float(value)})
    return pd.DataFrame(rows, columns=["component", "kind", "layer", "k", "m_eff"])


def _is_matrix(value: Any) -> bool:
    return (isinstance(value, list) and len(value) > 0 and all(isinstance(r, list) and r for r in value)
            and len({len(r) for r in value}) == 1
            and all(v is None or _number(v) is not None for r in value for v in r))


_AXIS_TITLES = {"rows": "row", "row_labels": "row", "layers": "layer", "cols": "column", "columns": "column",
                "col_labels": "column", "modules": "module"}


def _matrix_long(matrix: list[list[Any]], rows: Sequence[Any] | None, cols: Sequence[Any] | None,
                 row_title: str = "row index", col_title: str = "column index") -> pd.DataFrame:
    """Long form (row, col, value); ``attrs`` carry the axis titles the heatmap shows."""
    n_rows, n_cols = len(matrix), len(matrix[0])
    row_labels = list(rows) if rows is not None and len(rows) == n_rows else list(range(n_rows))
    col_labels = list(cols) if cols is not None and len(cols) == n_cols else list(range(n_cols))
    data = [{"row": str(row_labels[i]), "col": str(col_labels[j]), "value": matrix[i][j]}
            for i in range(n_rows) for j in range(n_cols)]
    frame = pd.DataFrame(data, columns=["row", "col", "value"])
    frame.attrs.update(row_title=row_title, col_title=col_title)
    return frame


def analysis_matrices(record: Mapping[str, Any]) -> list[tuple[str, pd.DataFrame]]:
    """Every 2-D numeric matrix in the analysis section (inter-layer KL, LoRA² ranks ...), long form.

    The analysis layout grows with the methods, so this walks it instead of naming keys: a matrix is
    a list of equal-length numeric lists, either bare or as ``{"matrix"|"values": [[...]], "rows"|
    "layers": [...], "cols"|"modules": [...]}``. Names are the JSON path to it.
    """
    found: list[tuple[str, pd.DataFrame]] = []

    def walk(value: Any, path: str) -> None:
        if _is_matrix(value):
            found.append((path, _matrix_long(value, None, None)))
        elif isinstance(value, Mapping):
            body = next((value[k] for k in ("matrix", "values", "kl", "ranks") if _is_matrix(value.get(k))), None)
            if body is not None:
                row_key = next((k for k in ("rows", "layers", "row_labels") if isinstance(value.get(k), list)), None)
                col_key = next((k for k in ("cols", "columns", "modules", "col_labels")
                                if isinstance(value.get(k), list)), row_key)  # square: the rows' labels
                rows = value[row_key] if row_key else None
                cols = value[col_key] if col_key else None
                found.append((path, _matrix_long(body, rows, cols, _AXIS_TITLES.get(row_key or "", "row index"),
                                                 _AXIS_TITLES.get(col_key or "", "column index"))))
                return
            for key, child in value.items():
                if key != "components":
                    walk(child, f"{path}.{key}" if path else str(key))

    walk(_section(record, "analysis"), "")
    ranks = _component_rank_matrix(_components(record))
    if ranks is not None:
        found.append(("final rank per layer and module", ranks))
    return found


def _component_rank_matrix(components: list[Mapping[str, Any]]) -> pd.DataFrame | None:
    """Layer x module of the components' final ranks (LoRA² prunes them), when components carry one."""
    rows = []
    for c in components:
        rank = next((c[k] for k in ("final_rank", "rank") if _number(c.get(k)) is not None), None)
        if rank is not None and c.get("layer") is not None:
            rows.append({"row": str(c["layer"]), "col": str(c.get("kind") or c.get("module")), "value": float(rank)})
    if not rows:
        return None
    frame = pd.DataFrame(rows).groupby(["row", "col"], as_index=False, sort=False)["value"].max()
    frame.attrs.update(row_title="layer", col_title="module")
    return frame


# ---------------------------------------------------------------------------------------------------
# display and export
# ---------------------------------------------------------------------------------------------------


def format_score(mean: float, std: float, scale: float = 100.0, digits: int = 2) -> str:
    """``85.20±0.41`` (scaled to percent like the papers), ``85.20`` for one seed, ``–`` when none."""
    if mean is None or pd.isna(mean):
        return "–"
    text = f"{mean * scale:.{digits}f}"
    return text if std is None or pd.isna(std) else f"{text}±{std * scale:.{digits}f}"


def display_scale(row: Mapping[str, Any] | pd.Series | None) -> float:
    """The factor a leaderboard row's score is multiplied by for display, from its declared unit
    (``harness.metrics``): 100 for fractions and coefficients, 1 for percentages, rsum and ratings,
    1 for an undeclared unit (shown as recorded and labelled "unit unknown")."""
    if row is None:
        return 1.0
    value = row.get("scale") if hasattr(row, "get") else None
    return float(value) if _number(value) is not None else 1.0


def format_count(value: Any) -> str:
    """Parameter counts as the papers print them: 0.30M, 73.7K, 512."""
    if value is None or pd.isna(value):
        return "–"
    value = float(value)
    for bound, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if abs(value) >= bound:
            return f"{value / bound:.2f}{suffix}"
    return f"{value:.0f}"


def format_bytes(value: Any, estimated: Any = None) -> str:
    if value is None or pd.isna(value):
        return "–"
    text = f"{float(value) / 2**20:.0f} MiB"
    return f"{text} (CPU est.)" if estimated else text


def display_table(table: pd.DataFrame) -> pd.DataFrame:
    """The leaderboard with human-readable columns (what the Markdown report and the app print)."""
    if table is None or table.empty:
        return pd.DataFrame(columns=["suite", "task", "adapter", "configuration", "unit", "score", "seeds", "params",
                                     "head", "peak memory", "memory estimate", "train s", "step ms", "status", "notes"])
    out = pd.DataFrame({
        "suite": table["suite"],
        "task": table["task"],
        "adapter": table["adapter"],
        "configuration": table["configuration"],
        "metric": table["primary"].fillna("–"),
        "unit": table["unit_label"].fillna(metric_units.UNKNOWN_UNIT.label),
        "score": [format_score(m, s, display_scale(r))
                  for (_, r), m, s in zip(table.iterrows(), table["score_mean"], table["score_std"])],
        "seeds": table["n_seeds"].astype(int),
        "params": table["params_adapter"].map(format_count),
        "head": table["params_head"].map(format_count),
        "peak memory": table["peak_memory_bytes"].map(format_bytes),
        "memory estimate": [format_bytes(v, True) for v in table["estimate_memory_bytes"]],
        "train s": table["train_seconds"].map(lambda v: "–" if pd.isna(v) else f"{v:.1f}"),
        "step ms": table["mean_step_seconds"].map(lambda v: "–" if pd.isna(v) else f"{v * 1000:.0f}"),
        "status": table["statuses"],
        "notes": [_notes(row) for _, row in table.iterrows()],
    })
    return out.reset_index(drop=True)


def _notes(row: pd.Series) -> str:
    notes = [f"model {row['model']}", f"preset {row['preset']}"]
    if row.get("limited"):
        notes.append("limited")
    if row.get("git_dirty"):
        notes.append("dirty tree")
    return ", ".join(notes)


def paper_table(table: pd.DataFrame, scale: float = 100.0) -> pd.DataFrame:
    """The papers' layout for one suite: a row per method, a column per task, then Avg.

    Rows are (adapter, configuration, model, preset, limited); cells are ``mean±std`` in percent; Avg.
    is the mean over tasks and is left blank unless every task of the table has a score.
    """
    columns = ["Method", "Params"]
    if table is None or table.empty:
        return pd.DataFrame(columns=[*columns, "Avg."])
    ours = table[table["source"] == "ours"] if "source" in table else table
    tasks = sorted(ours["task"].unique())
    row_keys = ["label", "row_key", "model", "preset", "limited"]
    rows = []
    for keys, group in ours.groupby(row_keys, dropna=False, sort=True):
        label, _row_key, _model, _preset, limited = keys
        by_task = {r["task"]: r for _, r in group.iterrows()}
        row = {"Method": label + (" [limited]" if limited else ""),
               "Params": format_count(_first_valid(group["params_adapter"]))}
        means = []
        for task in tasks:
            r = by_task.get(task)
            cell_scale = display_scale(r)
            row[task] = "–" if r is None else format_score(r["score_mean"], r["score_std"], cell_scale)
            if r is not None and not pd.isna(r["score_mean"]):
                means.append(r["score_mean"] * cell_scale)
        row["Avg."] = f"{sum(means) / len(means):.2f}" if means and len(means) == len(tasks) else "–"
        rows.append(row)
    return pd.DataFrame(rows, columns=[*columns, *tasks, "Avg."])


def _markdown_cell(value: Any) -> str:
    text = "–" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def to_markdown(table: pd.DataFrame) -> str:
    """A GitHub Markdown table; a leaderboard is first turned into its display columns."""
    if table is not None and "score_mean" in table.columns:
        table = display_table(table)
    if table is None or table.empty:
        return "_no results_"
    header = [str(c) for c in table.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for _, row in table.iterrows():
        lines.append("| " + " | ".join(_markdown_cell(v) for v in row) + " |")
    return "\n".join(lines)


_LATEX_SPECIALS = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                   "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def _latex_cell(value: Any) -> str:
    text = "--" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)
    text = "".join(_LATEX_SPECIALS.get(ch, ch) for ch in text)
    return (text.replace("±", r"$\pm$").replace("–", "--").replace("×", r"$\times$").replace("·", r"$\cdot$"))


def to_latex(table: pd.DataFrame, caption: str | None = None) -> str:
    """A booktabs ``tabular`` like the papers' tables (needs ``\\usepackage{booktabs}``)."""
    if table is not None and "score_mean" in table.columns:
        table = paper_table(table)
    if table is None or table.empty:
        return "% no results"
    spec = "l" + "c" * (len(table.columns) - 1)
    lines = []
    if caption:
        lines += [r"\begin{table}[t]", r"\centering", rf"\caption{{{_latex_cell(caption)}}}"]
    lines += [rf"\begin{{tabular}}{{{spec}}}", r"\toprule",
              " & ".join(_latex_cell(c) for c in table.columns) + r" \\", r"\midrule"]
    lines += [" & ".join(_latex_cell(v) for v in row) + r" \\" for _, row in table.iterrows()]
    lines += [r"\bottomrule", r"\end{tabular}"]
    if caption:
        lines.append(r"\end{table}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------
# the ranked wide table per suite, the paired comparison against a baseline (``report`` and the app)
# ---------------------------------------------------------------------------------------------------

# GLUE first (the suite the papers share), then the others alphabetically
SUITE_ORDER = ("glue",)
VERDICT_MARKS = {"better": "▲", "worse": "▼", "tied": "≈", "n/a": ""}
COMPARISON_COLUMNS = ("method", "config_hash", "baseline", "model", "preset", "task", "unit", "n_pairs", "delta",
                      "ci_low", "ci_high", "p_value", "p_improvement", "verdict")


def ordered_suites(suites: Iterable[str]) -> list[str]:
    names = sorted({str(s) for s in suites})
    return [s for s in SUITE_ORDER if s in names] + [s for s in names if s not in SUITE_ORDER]


def _task_units(rows: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Per task: metric, unit, label, family, display scale, direction (the first row that has them)."""
    out: dict[str, dict[str, Any]] = {}
    for task, group in rows.groupby("task", sort=True):
        out[str(task)] = {
            "metric": _first_valid(group["primary"]) or "score",
            "unit": _first_valid(group["unit"]) or metric_units.UNKNOWN_UNIT.name,
            "label": _first_valid(group["unit_label"]) or metric_units.UNKNOWN_UNIT.label,
            "family": _first_valid(group["unit_family"]) or metric_units.UNKNOWN_UNIT.family,
            "scale": float(_first_valid(group["scale"]) or 1.0),
            "higher_is_better": bool(_first_valid(group["higher_is_better"]) is not False),
        }
    return out


def units_text(units: Mapping[str, Mapping[str, Any]]) -> str:
    """``rte: accuracy (%); cola: mcc (x100)``: what every task column is in."""
    return "; ".join(f"{t}: {u['metric']} ({u['label']})" for t, u in units.items())


def _average_unit(units: Mapping[str, Mapping[str, Any]]) -> str | None:
    """The unit family of the average, or None when the tasks' units cannot be averaged together."""
    families = {u["family"] for u in units.values()}
    if len(families) != 1 or metric_units.UNKNOWN_UNIT.family in families:
        return None
    return families.pop()


def family_label(family: str | None) -> str:
    """How an average's unit is printed: "points" for %-like units averaged together, else the unit's label."""
    if not family:
        return "units differ: none"
    unit = metric_units.UNITS.get(family)
    return unit.label if unit is not None and family != "points" else str(family)


def _scaled_seeds(row: Mapping[str, Any], scale: float) -> dict[int, float]:
    seeds = row.get("seed_scores") if isinstance(row.get("seed_scores"), Mapping) else {}
    return {int(s): float(v) * scale for s, v in seeds.items()}


def wide_table(table: pd.DataFrame, suite: str, *, limited: bool = False) -> pd.DataFrame:
    """One row per configuration of ``suite`` (full runs, or with ``limited`` the limited ones), one
    column per task (display-scaled seed mean, its 95% CI and n), the average over tasks with its CI,
    adapter parameters, peak memory and train time; complete rows ranked first.

    Complete: a score on every task this suite has for the same model and preset, with the requested
    number of seeds on each, where requested is the largest number of seeds any row of that model and
    preset has on a task. Incomplete rows follow, ranked among themselves, with ``missing`` saying what
    is missing. The average (mean of the task means, as the papers' Avg.) is given for rows with
    every task (complete, or short of seeds: shown, never ranked or bolded), and only when every task's
    unit may be averaged with the others (harness.metrics).
    """
    ours = table[(table["suite"] == suite) & (table["limited"] == limited)] if len(table) else table
    if "source" in ours:
        ours = ours[ours["source"] == "ours"]
    units = _task_units(ours) if len(ours) else {}
    # a task this subset lacks takes its unit from the suite's other runs (limited or full)
    suite_units = _task_units(table[table["suite"] == suite]) if len(table) else {}
    groups = list(ours.groupby(["model", "preset"], sort=True, dropna=False)) if len(ours) else []
    # the suite's tasks for a model and preset: those of its full runs (a smoke run on another task must
    # not make full rows incomplete); a limited row needs the full runs' tasks and its own
    basis = table[table["suite"] == suite] if limited and len(table) else ours
    suite_tasks = {(m, p): _group_tasks(g) for (m, p), g in basis.groupby(["model", "preset"], dropna=False)}
    for (model, preset), _group in groups:
        for task in suite_tasks[(model, preset)]:  # a preset task no run of this subset has scored
            if task not in units:
                units[task] = suite_units.get(task) or {
                    "metric": "score", "unit": "unknown", "label": metric_units.UNKNOWN_UNIT.label,
                    "family": "unknown", "scale": 1.0, "higher_is_better": True}
    units = {t: units[t] for t in sorted(units)}
    tasks = list(units)
    average_family = _average_unit({t: u for t, u in units.items() if u["unit"] != "unknown"})
    rows = []
    for (model, preset), group in groups:
        group_tasks = suite_tasks[(model, preset)]
        requested = int(group["n_seeds"].max()) if len(group) else 0
        for row_key, conf in group.groupby("row_key", sort=True):
            by_task = {str(r["task"]): r for _, r in conf.iterrows()}
            first = conf.iloc[0]
            row: dict[str, Any] = {"method": first["label"], "config_hash": row_key, "adapter": first["adapter"],
                                   "model": model, "preset": preset}
            per_task_values, missing_tasks, short_seeds, ns = [], [], [], []
            for task in tasks:
                r = by_task.get(task)
                scale = units[task]["scale"]
                values = _scaled_seeds(r, scale) if r is not None else {}
                n = len(values)
                row[task] = float(r["score_mean"]) * scale if r is not None and n else math.nan
                row[f"{task}_ci_low"] = float(r["score_ci_low"]) * scale if n > 1 else math.nan
                row[f"{task}_ci_high"] = float(r["score_ci_high"]) * scale if n > 1 else math.nan
                row[f"{task}_n"] = n
                if task in group_tasks:
                    if n == 0:
                        missing_tasks.append(task)
                    else:
                        ns.append(n)
                        per_task_values.append(list(values.values()))
                        if n < requested:
                            short_seeds.append(f"{task} {n}/{requested}")
            complete = not missing_tasks and not short_seeds and bool(group_tasks)
            missing = []
            if missing_tasks:
                missing.append("tasks " + ",".join(missing_tasks))
            if short_seeds:
                missing.append("seeds " + ", ".join(short_seeds))
            # every task present (complete, or short of seeds): the average over all tasks is meaningful,
            # though only complete rows are ranked and bolded by it
            has_all = not missing_tasks and bool(group_tasks)
            interval = stats.average_ci(per_task_values) if has_all and average_family else None
            row.update(
                complete=complete, missing="; ".join(missing), n_seeds=min(ns) if ns else 0,
                requested_seeds=requested, n_tasks=len(ns),
                average=interval.mean if interval else math.nan,
                average_ci_low=interval.low if interval else math.nan,
                average_ci_high=interval.high if interval else math.nan,
                adapter_params=_first_valid(conf["params_adapter"]),
                # the largest over tasks, measured and estimated apart
                peak_memory_mib=_max_or_nan(conf["peak_memory_bytes"]) / 2**20,
                cpu_estimate_mib=_max_or_nan(conf["estimate_memory_bytes"]) / 2**20,
                memory_estimated=bool(conf["peak_memory_bytes"].isna().all()
                                      and conf["estimate_memory_bytes"].notna().any()),
                # the whole suite's training time: the seed-mean train time of each task, summed
                train_seconds=float(conf["train_seconds"].sum()) if conf["train_seconds"].notna().any() else math.nan,
                n_failed_runs=int(sum(conf[f"n_{s}"].sum() for s in FAILURE_STATUSES)),
                limited_by=",".join(sorted({c for v in conf["limited_by"].dropna() for c in str(v).split(",") if c})),
                task_config_hashes=",".join(f"{r['task']}:{r['config_hash']}" for _, r in conf.iterrows()),
                unit=units_text(units),
            )
            rows.append(row)
    task_columns = [c for t in tasks for c in (t, f"{t}_ci_low", f"{t}_ci_high", f"{t}_n")]
    columns = ["rank", "method", "config_hash", "adapter", "model", "preset", "complete", "missing", "n_seeds",
               "requested_seeds", "n_tasks", *task_columns, "average", "average_ci_low", "average_ci_high", "adapter_params",
               "peak_memory_mib", "cpu_estimate_mib", "memory_estimated", "train_seconds", "n_failed_runs", "limited_by",
               "task_config_hashes", "unit"]
    out = pd.DataFrame(rows, columns=columns)
    if out.empty:
        out.attrs.update(units=units, tasks=tasks)
        return out
    higher = all(u["higher_is_better"] for u in units.values())
    # a row's own mean over the tasks it has only orders incomplete rows among themselves
    partial = out[tasks].mean(axis=1, skipna=True) if tasks else pd.Series(math.nan, index=out.index)
    out["_order"] = out["average"].where(out["complete"], partial)
    # incomplete rows: those with more tasks first, then more seeds, then their own mean
    out = out.sort_values(["complete", "n_tasks", "n_seeds", "_order", "method"],
                          ascending=[False, False, False, not higher, True],
                          na_position="last", kind="stable").drop(columns="_order").reset_index(drop=True)
    out["rank"] = [i + 1 if c else None for i, c in enumerate(out["complete"])]
    out["rank"] = out["rank"].astype("Int64")
    out.attrs.update(units=units, tasks=tasks, average_family=average_family)
    return out


def _group_tasks(group: pd.DataFrame) -> list[str]:
    """The tasks a row of this (model, preset) must have to be complete: every task some run of the
    group scored, and every task of the preset that new records name (``preset_defaults.suite_tasks``)."""
    scored = set(group.loc[group["n_seeds"] > 0, "task"].astype(str))
    recorded = {t for v in group["suite_tasks"].dropna() for t in str(v).split(",") if t}
    return sorted(scored | recorded)


def baseline_rows(table: pd.DataFrame, suite: str, baseline: str) -> pd.DataFrame:
    """Per (model, preset), the row of adapter ``baseline`` to compare against: the one at the preset's
    settings (no training setting changed; ties: the most seeds, then the shortest label)."""
    wide = wide_table(table, suite)
    if wide.empty:
        return wide
    mine = wide[wide["adapter"] == baseline].copy()
    if mine.empty:
        return mine
    mine["_changed"] = mine["method"].str.count("·")
    mine["_seeds"] = mine[[c for c in mine.columns if c.endswith("_n")]].sum(axis=1)
    mine["_len"] = mine["method"].str.len()
    mine = mine.sort_values(["_changed", "_seeds", "_len"], ascending=[True, False, True], kind="stable")
    return mine.groupby(["model", "preset"], sort=True).head(1).drop(columns=["_changed", "_seeds", "_len"])


def compare_to_baseline(table: pd.DataFrame, suite: str, baseline: str = "lora") -> pd.DataFrame:
    """Every full-run configuration of ``suite`` against the baseline adapter at the same model and
    preset: per task (and for the average, when both rows have every task) the paired statistics of
    harness.stats over the seeds both have, on the display scale of the task's unit."""
    ours = table[(table["suite"] == suite) & (~table["limited"])] if len(table) else table
    if "source" in ours:
        ours = ours[ours["source"] == "ours"]
    base = baseline_rows(table, suite, baseline)
    units = _task_units(ours) if len(ours) else {}
    average_family = _average_unit(units)
    rows = []
    for _, b in base.iterrows():
        group = ours[(ours["model"] == b["model"]) & (ours["preset"] == b["preset"])]
        group_tasks = _group_tasks(group)
        base_cells = {str(r["task"]): r for _, r in group[group["row_key"] == b["config_hash"]].iterrows()}
        for row_key, conf in group.groupby("row_key", sort=True):
            if row_key == b["config_hash"]:
                continue
            cells = {str(r["task"]): r for _, r in conf.iterrows()}
            label = conf.iloc[0]["label"]
            xs_all, ys_all = [], []
            for task in group_tasks:
                if task not in cells or task not in base_cells:
                    continue
                scale, higher = units[task]["scale"], units[task]["higher_is_better"]
                x, y = _scaled_seeds(cells[task], scale), _scaled_seeds(base_cells[task], scale)
                shared = sorted(set(x) & set(y))
                result = stats.paired_comparison([x[s] for s in shared], [y[s] for s in shared], higher)
                xs_all.append([x[s] for s in shared])
                ys_all.append([y[s] for s in shared])
                rows.append(_comparison_row(label, row_key, b, task, f"{units[task]['metric']} ({units[task]['label']})",
                                            result))
            if average_family and len(xs_all) == len(group_tasks) and group_tasks:
                higher = all(u["higher_is_better"] for u in units.values())
                result = stats.paired_average_comparison(xs_all, ys_all, higher)
                rows.append(_comparison_row(label, row_key, b, "average", f"mean over tasks ({family_label(average_family)})",
                                            result))
    out = pd.DataFrame(rows, columns=list(COMPARISON_COLUMNS))
    if out.empty:
        return out
    # in the order of the ranked table, tasks as its columns
    order = {h: i for i, h in enumerate(wide_table(table, suite)["config_hash"])}
    task_order = {t: i for i, t in enumerate([*units, "average"])}
    out["_r"], out["_t"] = out["config_hash"].map(order), out["task"].map(task_order)
    return out.sort_values(["_r", "_t"], kind="stable").drop(columns=["_r", "_t"]).reset_index(drop=True)


def _comparison_row(label: str, row_key: str, base: Mapping[str, Any], task: str, unit: str,
                    result: stats.Comparison) -> dict[str, Any]:
    return {"method": label, "config_hash": row_key, "baseline": base["method"], "model": base["model"],
            "preset": base["preset"], "task": task, "unit": unit, "n_pairs": result.n_pairs,
            "delta": result.delta, "ci_low": result.ci_low, "ci_high": result.ci_high, "p_value": result.p_value,
            "p_improvement": result.p_improvement, "verdict": result.verdict}


def verdicts(comparison: pd.DataFrame) -> dict[tuple[str, str], str]:
    """(config_hash, task) -> better | worse | tied | n/a, for the tie marks of the tables."""
    return {(str(r["config_hash"]), str(r["task"])): str(r["verdict"]) for _, r in comparison.iterrows()}


def format_cell(mean: Any, low: Any, high: Any, n: Any, digits: int = 2) -> str:
    """``81.20 [79.10, 83.00] n=3``; ``81.20 (1 seed)``; ``–`` without a score. Never "± None"."""
    if mean is None or pd.isna(mean):
        return "–"
    text = f"{float(mean):.{digits}f}"
    if n is not None and not pd.isna(n) and int(n) == 1:
        return f"{text} (1 seed)"
    if low is None or pd.isna(low) or high is None or pd.isna(high):
        return f"{text} (n={int(n)})" if n is not None and not pd.isna(n) else text
    return f"{text} [{float(low):.{digits}f}, {float(high):.{digits}f}] n={int(n)}"


def _best_index(values: pd.Series, higher: bool) -> set[int]:
    numeric = pd.to_numeric(values, errors="coerce")
    if numeric.notna().sum() == 0:
        return set()
    best = numeric.max() if higher else numeric.min()
    return set(numeric.index[numeric == best])


def wide_display(wide: pd.DataFrame, comparison: pd.DataFrame | None = None) -> tuple[pd.DataFrame, set[tuple[int, str]]]:
    """The wide table as printed (Markdown, LaTeX, the app): headers with units, cells with CI and n,
    the verdict mark against the baseline, and the (row, column) cells that are the best of their
    column among the complete rows (higher score; fewer parameters, less memory, less time)."""
    units = wide.attrs.get("units", {})
    tasks = wide.attrs.get("tasks", [])
    marks = verdicts(comparison) if comparison is not None and len(comparison) else {}
    out = pd.DataFrame(index=wide.index)
    out["#"] = wide["rank"].map(lambda v: "" if pd.isna(v) else str(int(v)))
    out["method"] = wide["method"] + wide["preset"].map(lambda p: "" if len(set(wide["preset"])) == 1 else f" ({p})")
    bold: set[tuple[int, str]] = set()
    complete = wide[wide["complete"]]
    for task in tasks:
        u = units[task]
        header = f"{task} {u['metric']} ({u['label']})"
        out[header] = [
            (format_cell(r[task], r[f"{task}_ci_low"], r[f"{task}_ci_high"], r[f"{task}_n"])
             + (f" {VERDICT_MARKS.get(marks.get((r['config_hash'], task), 'n/a'), '')}".rstrip()))
            for _, r in wide.iterrows()]
        bold |= {(i, header) for i in _best_index(complete[task], u["higher_is_better"])}
    family = wide.attrs.get("average_family")
    avg_header = f"average ({family_label(family)})"
    out[avg_header] = [
        (format_cell(r["average"], r["average_ci_low"], r["average_ci_high"], r["n_seeds"])
         + f" {VERDICT_MARKS.get(marks.get((r['config_hash'], 'average'), 'n/a'), '')}".rstrip())
        for _, r in wide.iterrows()]
    higher = all(u["higher_is_better"] for u in units.values()) if units else True
    bold |= {(i, avg_header) for i in _best_index(complete["average"], higher)}
    out["adapter params"] = wide["adapter_params"].map(format_count)
    bold |= {(i, "adapter params") for i in _best_index(complete["adapter_params"], False)}
    # a measured peak and the CPU estimate in columns of their own, each only when some row has it
    for column, header in (("peak_memory_mib", "peak memory (MiB)"), ("cpu_estimate_mib", "peak memory (MiB, CPU est.)")):
        if wide[column].notna().any():
            out[header] = wide[column].map(lambda v: "–" if pd.isna(v) else f"{v:.0f}")
            bold |= {(i, header) for i in _best_index(complete[column], False)}
    out["train time (s)"] = wide["train_seconds"].map(lambda v: "–" if pd.isna(v) else f"{v:.0f}")
    bold |= {(i, "train time (s)") for i in _best_index(complete["train_seconds"], False)}
    out["missing"] = wide["missing"].map(lambda v: v or "")
    if wide["limited_by"].astype(str).str.len().gt(0).any():
        out["limited by"] = wide["limited_by"]
    return out.reset_index(drop=True), {(list(wide.index).index(i), c) for i, c in bold}


def wide_markdown(wide: pd.DataFrame, comparison: pd.DataFrame | None = None) -> str:
    if wide is None or wide.empty:
        return "_no runs_"
    shown, bold = wide_display(wide, comparison)
    header = [str(c) for c in shown.columns]
    lines = ["| " + " | ".join(_markdown_cell(h) for h in header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for i, row in shown.iterrows():
        cells = []
        for column, value in row.items():
            text = _markdown_cell(value)
            cells.append(f"**{text}**" if (i, column) in bold and text not in ("", "–") else text)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


_LATEX_MARKS = {"▲": r"$\blacktriangle$", "▼": r"$\blacktriangledown$", "≈": r"$\approx$"}


def wide_latex(wide: pd.DataFrame, comparison: pd.DataFrame | None, caption: str) -> str:
    """A booktabs table (needs booktabs and amssymb) with the best of each column in bold."""
    if wide is None or wide.empty:
        return "% no runs"
    shown, bold = wide_display(wide, comparison)
    shown = shown.drop(columns=[c for c in ("missing", "limited by") if c in shown.columns and not shown[c].any()])

    def cell(value: Any, is_bold: bool) -> str:
        text = _latex_cell(value)
        for mark, tex in _LATEX_MARKS.items():
            text = text.replace(mark, tex)
        return rf"\textbf{{{text}}}" if is_bold and text not in ("", "--") else text

    title = _latex_cell(caption)
    for mark, tex in _LATEX_MARKS.items():
        title = title.replace(mark, tex)
    lines = [r"\begin{table}[t]", r"\centering", rf"\caption{{{title}}}", r"\resizebox{\textwidth}{!}{%",
             rf"\begin{{tabular}}{{{'l' * 2 + 'c' * (len(shown.columns) - 2)}}}", r"\toprule",
             " & ".join(_latex_cell(c) for c in shown.columns) + r" \\", r"\midrule"]
    lines += [" & ".join(cell(v, (i, c) in bold) for c, v in row.items()) + r" \\" for i, row in shown.iterrows()]
    lines += [r"\bottomrule", r"\end{tabular}}", r"\end{table}"]
    return "\n".join(lines)


def comparison_display(comparison: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({
        "method": comparison["method"], "task": comparison["task"], "unit": comparison["unit"],
        "pairs": comparison["n_pairs"].astype(int),
        "delta": comparison["delta"].map(lambda v: "–" if pd.isna(v) else f"{v:+.2f}"),
        "95% CI": [("–" if pd.isna(lo) else f"[{lo:+.2f}, {hi:+.2f}]")
                   for lo, hi in zip(comparison["ci_low"], comparison["ci_high"])],
        "p (paired t)": comparison["p_value"].map(lambda v: "–" if pd.isna(v) else f"{v:.3f}"),
        "P(better)": comparison["p_improvement"].map(lambda v: "–" if pd.isna(v) else f"{v:.2f}"),
        "verdict": comparison["verdict"],
    }).reset_index(drop=True)


def comparison_caption(baseline: str) -> str:
    return (f"Per task, in the task's unit: the mean difference (configuration - {baseline}) over the seeds both "
            "have, its paired bootstrap 95% CI, the paired t-test p-value and P(better), the share of seed pairs "
            "in which the configuration scores higher (ties count half; not given for one pair). Tied: the CI "
            "includes 0. The average row resamples seeds within tasks.")


def wide_caption(suite: str, wide: pd.DataFrame, baseline: str | None) -> str:
    units = wide.attrs.get("units", {})
    text = (f"{suite}: mean over seeds with a 95% bootstrap CI over seeds and n (seeds). Units: {units_text(units)}."
            " Average: the mean of the task columns, for rows with every task; rows with every task and every"
            " requested seed are ranked (#), the others follow with what they miss.")
    if baseline:
        text += (f" Against {baseline} (paired over shared seeds): ▲ better, ▼ worse, ≈ tied (the CI of the "
                 "difference includes 0).")
    return text


REPORT_FORMATS = ("csv", "md", "latex")


def _csv_text(frame: pd.DataFrame) -> str:
    return frame.to_csv(index=False)


def build_report(frame: pd.DataFrame, *, baseline: str = "lora", formats: Sequence[str] = REPORT_FORMATS,
                 suites: Sequence[str] | None = None) -> dict[str, str]:
    """Every file of ``python -m harness report``, name -> text, built in memory (so that nothing is
    written unless all of it could be built). Per suite: ``<suite>.csv`` (the ranked wide table of
    full runs), ``<suite>-limited.csv``, ``<suite>-vs-<baseline>.csv``, ``<suite>.md``, ``<suite>.tex``;
    and ``leaderboard.md`` (every suite, GLUE first) and ``leaderboard.csv`` (one row per configuration
    and task, full and limited, with CIs and units)."""
    table = leaderboard(frame)
    names = ordered_suites(suites if suites is not None else table["suite"].unique())
    files: dict[str, str] = {}
    page = ["# Leaderboard", "",
            "Mean over seeds with a 95% bootstrap confidence interval and the number of seeds n; rows with "
            "every task and seed are ranked by their average, incomplete rows follow with what they miss. "
            f"Marks against {baseline} at the same preset (paired over shared seeds): ▲ better, ▼ worse, "
            "≈ tied (the interval of the difference includes 0). Limited runs (a cap below the preset's) are "
            "in their own tables. Method in README.md (Statistics).", ""]
    for suite in names:
        wide = wide_table(table, suite)
        limited = wide_table(table, suite, limited=True)
        comparison = compare_to_baseline(table, suite, baseline)
        caption = wide_caption(suite, wide, baseline)
        md = [f"## {suite}", "", caption, "", wide_markdown(wide, comparison), ""]
        if len(comparison):
            md += [f"### {suite}: against {baseline}", "", comparison_caption(baseline), "",
                   to_markdown(comparison_display(comparison)), ""]
        else:
            md += [f"_no {baseline} row at the same model and preset: no paired comparison_", ""]
        if len(limited):
            md += [f"### {suite}: limited runs (never ranked with full runs)", "", wide_markdown(limited), ""]
        if "csv" in formats:
            files[f"{suite}.csv"] = _csv_text(wide)
            files[f"{suite}-limited.csv"] = _csv_text(limited)
            files[f"{suite}-vs-{baseline}.csv"] = _csv_text(comparison)
        if "md" in formats:
            files[f"{suite}.md"] = "\n".join(md)
        if "latex" in formats:
            tex = [wide_latex(wide, comparison, caption)]
            if len(limited):
                tex.append(wide_latex(limited, None, f"{suite}, limited runs: " + wide_caption(suite, limited, None)))
            files[f"{suite}.tex"] = "\n\n".join(tex) + "\n"
        page += md
    if "md" in formats:
        files["leaderboard.md"] = "\n".join(page)
    if "csv" in formats:
        long = table.drop(columns=["seed_scores"]).copy()
        long["score_display"] = long["score_mean"] * long["scale"]
        long["ci_low_display"] = long["score_ci_low"] * long["scale"]
        long["ci_high_display"] = long["score_ci_high"] * long["scale"]
        files["leaderboard.csv"] = _csv_text(long)
    return files
