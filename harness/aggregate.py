"""From run records to tables: flat frame, leaderboard, suite average, Pareto front, paper-style export.

Pure pandas (no torch, no Streamlit): the leaderboard app and ``python -m harness report`` both build
on these functions, and they are unit-tested without either.

Rules the tables keep:
- One row of the flat frame per record, whatever its status: failed, diverged, oom and cancelled runs
  are counted in the leaderboard (``n_failed`` ...), never dropped.
- Seeds are aggregated within a group (suite, task, model, preset, adapter, config_hash, limited);
  limited smoke runs (``spec.train.limit``) never share a group with full runs.
- Reported numbers from the papers (``results/reference/*.csv``) live in their own frame, marked
  ``source == "reported"``, and are never mixed into our means or suite averages.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

FRAME_COLUMNS = (
    "run_id", "suite", "task", "adapter", "config_hash", "seed", "model", "preset", "configuration",
    "limited", "limit", "status", "error", "primary", "score", "selection", "best_epoch",
    "params_adapter", "params_head", "params_total", "peak_bytes", "memory_device", "memory_label",
    "memory_estimated", "train_seconds", "mean_step_seconds", "samples_per_second", "git_commit",
    "git_dirty", "device_name", "started_at", "finished_at",
)
GROUP_KEYS = ("suite", "task", "model", "preset", "adapter", "configuration", "config_hash", "limited")
# The same adapter configuration has a different config_hash per task (the task is part of the spec),
# so the suite average groups by the configuration text instead.
AVERAGE_KEYS = ("suite", "model", "preset", "adapter", "configuration", "limited")
FAILURE_STATUSES = ("failed", "diverged", "oom", "cancelled")
LEADERBOARD_COLUMNS = (
    *GROUP_KEYS, "primary", "score_mean", "score_std", "n_seeds", "n_runs",
    *(f"n_{s}" for s in FAILURE_STATUSES), "statuses", "params_adapter", "params_head",
    "peak_memory_bytes", "memory_estimated", "train_seconds", "mean_step_seconds", "git_dirty", "source",
)
AVERAGE_COLUMNS = (
    *AVERAGE_KEYS, "score_avg", "n_tasks", "n_suite_tasks", "complete", "tasks", "params_adapter",
    "peak_memory_bytes", "memory_estimated", "train_seconds", "n_failed_runs", "source",
)
REFERENCE_COLUMNS = (
    "paper", "table", "model", "suite", "task", "adapter", "method", "metric", "value", "scale",
    "params", "source", "note",
)
# "score": a number on the metric's own scale (MT-Bench's 1-10 rating), kept as printed
REFERENCE_SCALES = {"percent": 100.0, "fraction": 1.0, "score": 1.0}
# Scores are shown in percent like the papers' tables, except metrics that suites already report on their
# own scale: COCO's recall sum (a sum of six percentages, 0-600) and MT-Bench's 1-10 rating. Named here
# because this module reads only records (it never imports the suites).
UNSCALED_METRICS = frozenset({"rsum", "overall"})


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
        "limited": limit is not None,
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
        "peak_bytes": _number(memory.get("peak_bytes")),
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
    }


def load_frame(records: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """The flat frame: one row per record, the columns of FRAME_COLUMNS even when empty."""
    frame = pd.DataFrame([flatten_record(r) for r in records], columns=list(FRAME_COLUMNS))
    numeric = ("score", "params_adapter", "params_head", "params_total", "peak_bytes", "train_seconds",
               "mean_step_seconds", "samples_per_second")
    for column in numeric:
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype("float64")
    frame["limited"] = frame["limited"].astype(bool)
    return frame


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
    scores = ok["score"].dropna()
    row: dict[str, Any] = {
        "primary": _first_valid(group["primary"]),
        "score_mean": float(scores.mean()) if len(scores) else math.nan,
        # Sample standard deviation over seeds, as the papers report; undefined for one seed.
        "score_std": float(scores.std(ddof=1)) if len(scores) > 1 else math.nan,
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
        peak_memory_bytes=float(source["peak_bytes"].mean()) if source["peak_bytes"].notna().any() else math.nan,
        memory_estimated=_any_true(source["memory_estimated"]),
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
        n_suite = int(suite_tasks.loc[(keys[0], keys[1], keys[2], keys[5])])
        rows.append({
            **dict(zip(AVERAGE_KEYS, keys)),
            "score_avg": float(scored["score_mean"].mean()) if len(scored) else math.nan,
            "n_tasks": int(scored["task"].nunique()),
            "n_suite_tasks": n_suite,
            "complete": int(scored["task"].nunique()) == n_suite,
            "tasks": ",".join(sorted(scored["task"].unique())),
            "params_adapter": _first_valid(group["params_adapter"]),
            "peak_memory_bytes": float(group["peak_memory_bytes"].mean()) if group["peak_memory_bytes"].notna().any() else math.nan,
            "memory_estimated": _any_true(group["memory_estimated"]),
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
    frame["score"] = frame["value"] / frame["scale"].map(REFERENCE_SCALES).astype("float64")
    # metrics our tables show on their own scale (COCO rsum 0-600, MT-Bench 1-10) stay as printed
    unscaled = frame["metric"].isin(UNSCALED_METRICS)
    frame.loc[unscaled, "score"] = frame.loc[unscaled, "value"]
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


def _matrix_long(matrix: list[list[Any]], rows: Sequence[Any] | None, cols: Sequence[Any] | None) -> pd.DataFrame:
    n_rows, n_cols = len(matrix), len(matrix[0])
    row_labels = list(rows) if rows is not None and len(rows) == n_rows else list(range(n_rows))
    col_labels = list(cols) if cols is not None and len(cols) == n_cols else list(range(n_cols))
    data = [{"row": str(row_labels[i]), "col": str(col_labels[j]), "value": matrix[i][j]}
            for i in range(n_rows) for j in range(n_cols)]
    return pd.DataFrame(data, columns=["row", "col", "value"])


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
                rows = next((value[k] for k in ("rows", "layers", "row_labels") if isinstance(value.get(k), list)), None)
                cols = next((value[k] for k in ("cols", "columns", "modules", "col_labels")
                             if isinstance(value.get(k), list)), rows)
                found.append((path, _matrix_long(body, rows, cols)))
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
    return pd.DataFrame(rows).groupby(["row", "col"], as_index=False, sort=False)["value"].max()


# ---------------------------------------------------------------------------------------------------
# display and export
# ---------------------------------------------------------------------------------------------------


def format_score(mean: float, std: float, scale: float = 100.0, digits: int = 2) -> str:
    """``85.20±0.41`` (scaled to percent like the papers), ``85.20`` for one seed, ``–`` when none."""
    if mean is None or pd.isna(mean):
        return "–"
    text = f"{mean * scale:.{digits}f}"
    return text if std is None or pd.isna(std) else f"{text}±{std * scale:.{digits}f}"


def display_scale(metric: Any, scale: float = 100.0) -> float:
    """The factor a score of ``metric`` is multiplied by for display: ``scale`` for fractions, 1 otherwise."""
    return 1.0 if metric in UNSCALED_METRICS else scale


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
        return pd.DataFrame(columns=["suite", "task", "adapter", "configuration", "score", "seeds", "params",
                                     "head", "peak memory", "train s", "step ms", "status", "notes"])
    out = pd.DataFrame({
        "suite": table["suite"],
        "task": table["task"],
        "adapter": table["adapter"],
        "configuration": table["configuration"],
        "metric": table["primary"].fillna("–"),
        "score": [format_score(m, s, display_scale(p))
                  for m, s, p in zip(table["score_mean"], table["score_std"], table["primary"])],
        "seeds": table["n_seeds"].astype(int),
        "params": table["params_adapter"].map(format_count),
        "head": table["params_head"].map(format_count),
        "peak memory": [format_bytes(v, e) for v, e in zip(table["peak_memory_bytes"], table["memory_estimated"])],
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
    row_keys = ["adapter", "configuration", "model", "preset", "limited"]
    rows = []
    for keys, group in ours.groupby(row_keys, dropna=False, sort=True):
        adapter, configuration, _model, _preset, limited = keys
        by_task = {r["task"]: r for _, r in group.iterrows()}
        label = adapter if configuration == "default" else f"{adapter} ({configuration})"
        row = {"Method": label + (" [limited]" if limited else ""),
               "Params": format_count(_first_valid(group["params_adapter"]))}
        means = []
        for task in tasks:
            r = by_task.get(task)
            cell_scale = display_scale(None if r is None else r["primary"], scale)
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
    return text.replace("±", r"$\pm$").replace("–", "--").replace("×", r"$\times$")


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
