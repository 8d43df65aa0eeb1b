"""``python -m harness reproduce``: plan a paper table's rows (harness.paper_tables) through the normal
runner, count their parameters on the meta device, run them, and write reported beside reproduced.

A row's runs are ordinary ``plan_grid`` specs (one GridRequest per suite, model and task), so they share
records, resumption and executors with ``harness run``; the report finds a row's records by the config
hashes of its planned specs.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from typing import Any

from harness.errors import HarnessError
from harness.paper_tables import (
    TABLES,
    PaperTable,
    TableRow,
    as_printed,
    reported_rows,
    rounds_to,
    row_key,
)
from harness.record import RunRecord
from harness.spec import RunSpec
from harness.status import Status
from harness.untrusted import csv_rows

PRESETS = ("paper", "cpu")
REPORT_COLUMNS = (
    "table", "preset", "row", "adapter", "model", "paper_model", "task", "metric", "reported", "scale",
    "reproduced_mean", "ci_low", "ci_high", "n", "difference", "reported_in_ci", "note",
)


@dataclass(frozen=True)
class PlannedRow:
    table: PaperTable
    row: TableRow
    model: str  # the model the runs use (the suite's embedded one under --preset cpu)
    paper_model: str  # the table's catalogue model
    specs: tuple[RunSpec, ...]


def select_rows(table: PaperTable, rows: list[str] | None) -> PaperTable:
    """``table`` with only the rows named (labels or row keys as ``--dry-run`` prints them; a label shared
    by one row per model selects them all)."""
    if not rows:
        return table
    from dataclasses import replace

    for name in rows:
        table.row(name)  # an unknown name: the list and the closest match
    return replace(table, rows=tuple(r for r in table.rows if r.label in rows or row_key(r) in rows))


def plan_table(table: PaperTable, preset: str = "paper", *, cuda_available: bool = False) -> list[PlannedRow]:
    """Every runnable row's runs. ``cpu``: the same rows and options on each suite's embedded model with
    the cpu budget and seeds (the table's training protocol is the paper model's, so it is left out)."""
    from harness.plan import GridRequest, plan_grid
    from harness.registry import SUITES

    if preset not in PRESETS:
        raise HarnessError(f"reproduce --preset must be one of {', '.join(PRESETS)}, got '{preset}'")
    planned: list[PlannedRow] = []
    for row in table.rows:
        if not row.runnable:
            continue
        for paper_model in table.row_models(row):
            specs: list[RunSpec] = []
            model = paper_model
            for suite_name in table.suites:
                if preset == "cpu":
                    model = SUITES.get(suite_name)().default_model("cpu")
                for task in table.tasks:
                    train = {} if preset == "cpu" else {**table.train, **table.train_by_task.get(task, {})}
                    request = GridRequest(
                        suite=suite_name, adapters=[row.adapter], tasks=task,
                        seeds=(row.seeds or table.seeds) if preset == "paper" else None,
                        preset=preset, model=model, targets=row.targets or table.targets,
                        adapter_options=dict(row.options), train_overrides=train,
                        suite_options=dict(table.suite_options),
                        # the papers' tables select on their dev split: reproduced as they did
                        papers_protocol=True,
                    )
                    specs.extend(plan_grid(request, cuda_available=cuda_available))
            planned.append(PlannedRow(table, row, model, paper_model, tuple(specs)))
    return planned


def count_row(planned: PlannedRow) -> int | None:
    """Trainable adapter parameters of the row's first run, on the meta device (the head apart)."""
    from harness.plan import check_against_shapes

    spec = planned.specs[0]
    if spec.adapter == "full":  # full fine-tuning: the papers count the whole model, head included
        from harness.measure import unique_named_parameters
        from harness.registry import SUITES

        skeleton = SUITES.get(spec.suite)().meta_model(spec.model, spec.task)
        return sum(p.numel() for _, p in unique_named_parameters(skeleton[0])) if skeleton else None
    return check_against_shapes([spec]).get((spec.adapter, spec.config_hash))


def check_reachable(planned: list[PlannedRow]) -> None:
    """Before anything trains: each hub model must be in the local cache when the hub is off, and not
    gated for us when it is on. One line naming the model and how to get it."""
    from harness.models import find_model_entry, hub_offline

    seen: set[str] = set()
    for p in planned:
        entry = find_model_entry(p.model)
        if entry is None or entry.name in seen or entry.local_path() is not None or not entry.hub_id:
            continue
        seen.add(entry.name)
        how = (f"accept its licence at https://huggingface.co/{entry.hub_id} if it is gated, log in "
               f"(huggingface-cli login) and download it (huggingface-cli download {entry.hub_id})")
        if hub_offline():
            from huggingface_hub import try_to_load_from_cache

            cached = try_to_load_from_cache(entry.hub_id, "config.json")
            if not isinstance(cached, str):
                cached = try_to_load_from_cache(entry.hub_id, "open_clip_config.json")
            if not isinstance(cached, str):
                raise HarnessError(f"table {p.table.name} needs model '{entry.name}' ({entry.hub_id}), which is not "
                                   f"in the local cache and the hub is off (HF_HUB_OFFLINE=1): {how}")
        else:
            from huggingface_hub import auth_check
            from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

            try:
                auth_check(entry.hub_id)
            except (GatedRepoError, RepositoryNotFoundError) as exc:
                raise HarnessError(f"table {p.table.name} needs model '{entry.name}' ({entry.hub_id}), which this "
                                   f"account cannot read ({type(exc).__name__}): {how}") from None
            except Exception:  # network trouble: the download itself reports it
                pass


def _done_runs(specs: tuple[RunSpec, ...], store: Any) -> int:
    from harness.store import DONE_STATUSES

    return sum(store.status(s.key) in DONE_STATUSES for s in specs)


def dry_run_rows(table: PaperTable, preset: str = "paper", store: Any = None,
                 planned_rows: list[PlannedRow] | None = None) -> list[dict[str, Any]]:
    """One object per table row (reported-only rows too), with its planned runs and parameter counts;
    ``done``: how many of its runs already have a record in ``store`` (None without a store).
    ``planned_rows``: the table's ``plan_table`` when the caller has it already."""
    if planned_rows is None:
        planned_rows = plan_table(table, preset)
    planned = {(id(p.row), p.paper_model): p for p in planned_rows}
    out: list[dict[str, Any]] = []
    for row in table.rows:
        for paper_model in table.row_models(row):
            p = planned.get((id(row), paper_model))
            ours = count_row(p) if p is not None else None
            entry: dict[str, Any] = {
                "table": table.name, "row": row.label, "key": row_key(row), "adapter": row.adapter,
                "model": p.model if p else paper_model, "paper_model": paper_model,
                "suites": list(table.suites), "tasks": list(table.tasks),
                "seeds": sorted({s.seed for s in p.specs}) if p else [],
                "runs": len(p.specs) if p else 0, "options": dict(row.options),
                "done": (_done_runs(p.specs, store) if p else 0) if store is not None else None,
                "targets": row.targets or table.targets,
                "trainable_params": ours, "reported_params": row.params,
                "params_match": (rounds_to(ours, row.params) if ours is not None and row.params and preset == "paper"
                                 else None),
                "params_mismatch": row.params_mismatch or None,
                "status": "planned" if p else "reported only",
                "config_hashes": sorted({s.config_hash for s in p.specs}) if p else [],
                "flagged": list(row.flagged), "note": row.note,
            }
            out.append(entry)
    return out


def format_dry_run(table: PaperTable, rows: list[dict[str, Any]], preset: str) -> str:
    lines = [f"{table.name}: {table.paper}, {table.where}: {table.title}"]
    if preset == "cpu":
        models = sorted({r["model"] for r in rows if r["status"] == "planned"})
        lines.append(f"PRESET CPU: the runs use {', '.join(models)} with the cpu budget, NOT the paper's model "
                     f"({', '.join(table.models)}); the numbers are not comparable to the paper's")
    lines.append(f"protocol: {table.protocol}")
    for flag in table.flagged:
        lines.append(f"  our choice (flagged): {flag}")
    lines.append(f"{'row':<44} {'adapter':<10} {'model':<16} {'runs':>4} {'ours':>14} {'as printed':>10} "
                 f"{'paper':>8}  status")
    for r in rows:
        ours, printed = r["trainable_params"], r["reported_params"]
        shown = as_printed(ours, printed) if ours is not None and printed and preset == "paper" else ""
        mark = {True: "=", False: "≠", None: ""}[r["params_match"]]
        lines.append(f"{r['key'][:44]:<44} {(r['adapter'] or '-'):<10} {r['model']:<16} {r['runs']:>4} "
                     f"{(f'{ours:,}' if ours is not None else '-'):>14} {shown:>10} {(printed or '-'):>8}{mark:>2} "
                     f"{r['status']}")
        for flag in r["flagged"]:
            lines.append(f"    our choice (flagged): {flag}")
        if r["params_mismatch"]:
            lines.append(f"    count differs: {r['params_mismatch']}")
    total = sum(r["runs"] for r in rows)
    lines.append(f"{total} runs in {sum(r['status'] == 'planned' for r in rows)} rows "
                 f"({sum(r['status'] != 'planned' for r in rows)} reported only); tasks {', '.join(table.tasks)}")
    if rows and rows[0].get("done") is not None:
        lines.append(f"{sum(r['done'] for r in rows)} of them already have a record (skipped by the run)")
    return "\n".join(lines)


def all_specs(planned: list[PlannedRow]) -> list[RunSpec]:
    seen: dict[str, RunSpec] = {}
    for p in planned:
        for spec in p.specs:
            seen.setdefault(spec.run_id, spec)  # rows that are the same run (VeRA and VeRA*) run once
    return list(seen.values())


# ---------------------------------------------------------------------------------------------------
# reported beside reproduced
# ---------------------------------------------------------------------------------------------------


def _record_metrics(record: dict[str, Any]) -> dict[str, float]:
    metrics = record.get("metrics")
    if not isinstance(metrics, dict):
        return {}
    # the values at the suite's selection (best dev epoch or final), as the leaderboard's score
    chosen = metrics.get("best") if isinstance(metrics.get("best"), dict) else metrics.get("final")
    chosen = chosen if isinstance(chosen, dict) else {}
    return {k: float(v) for k, v in chosen.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
            and math.isfinite(v)}


def reproduction_rows(table: PaperTable, records: list[RunRecord], preset: str,
                      planned: list[PlannedRow] | None = None) -> list[dict[str, Any]]:
    """Per (row, model, task, metric) with a reported value: the reported value beside our mean and CI."""
    from harness.metrics import unit_of_metric
    from harness.stats import mean_ci

    by_hash: dict[str, list[RunRecord]] = {}
    for record in records:
        spec = record.get("spec") if isinstance(record.get("spec"), dict) else {}
        if record.get("status") == Status.SUCCESS and spec.get("preset") == preset:
            key = record.get("key") if isinstance(record.get("key"), dict) else {}
            by_hash.setdefault(str(key.get("config_hash") or _spec_hash(spec)), []).append(record)
    planned = planned if planned is not None else plan_table(table, preset)
    out: list[dict[str, Any]] = []
    for p in planned:
        mine = {s.config_hash for s in p.specs}
        for ref in reported_rows(table, p.row, p.paper_model):
            task, metric = ref["task"], ref["metric"]
            suite_runs = [r for h in mine for r in by_hash.get(h, []) if r["spec"]["suite"] == ref["suite"]]
            if task == "average":
                continue  # the paper's own average: shown beside the suite average, never computed here
            values = []
            for r in suite_runs:
                if r["spec"]["task"] != task:
                    continue
                m = _record_metrics(r).get(metric)
                if m is not None:  # on the paper's printed scale: the metric's declared unit says how
                    values.append(m * unit_of_metric(r, metric).display_scale)
            if not values:
                if any(r["spec"]["task"] == task for r in suite_runs):  # we ran it but do not measure this metric
                    out.append({
                        "table": table.name, "preset": preset, "row": row_key(p.row), "adapter": p.row.adapter,
                        "model": p.model, "paper_model": p.paper_model, "task": task, "metric": metric,
                        "reported": float(ref["value"]), "scale": ref["scale"], "reproduced_mean": None,
                        "ci_low": None, "ci_high": None, "n": 0, "difference": None, "reported_in_ci": None,
                        "note": f"our {ref['suite']} records have no '{metric}'",
                    })
                continue
            reported = float(ref["value"])
            interval = mean_ci(values)
            mean, low, high = interval.mean, interval.low, interval.high
            out.append({
                "table": table.name, "preset": preset, "row": row_key(p.row), "adapter": p.row.adapter,
                "model": p.model, "paper_model": p.paper_model, "task": task, "metric": metric,
                "reported": reported, "scale": ref["scale"], "reproduced_mean": round(mean, 4),
                "ci_low": round(low, 4) if interval.has_ci else None,
                "ci_high": round(high, 4) if interval.has_ci else None, "n": len(values),
                "difference": round(mean - reported, 4),
                # one seed has no interval: whether the paper's value lies inside it is unknown, not False
                "reported_in_ci": bool(low <= reported <= high) if interval.has_ci else None,
                "note": ("cpu preset: model differs from the paper's" if preset == "cpu" else ""),
            })
    return out


def _spec_hash(spec: dict[str, Any]) -> str:
    try:
        return RunSpec.from_dict(spec).config_hash
    except Exception:
        return ""


def reproduction_files(records: list[RunRecord]) -> dict[str, str]:
    """``reproduce-<table>.csv`` (name -> CSV text) for every table with records (paper and cpu preset
    rows); ``report`` writes them atomically beside its other tables."""
    files: dict[str, str] = {}
    for table in TABLES:
        rows: list[dict[str, Any]] = []
        for preset in PRESETS:
            try:
                rows.extend(reproduction_rows(table, records, preset))
            except HarnessError:
                continue  # a table that cannot be planned here (e.g. a suite's models missing) has no rows
        if not rows:
            continue
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(REPORT_COLUMNS), lineterminator="\n")
        writer.writeheader()
        writer.writerows(csv_rows(rows))  # strings neutralised against spreadsheet formulas
        files[f"reproduce-{table.name}.csv"] = buffer.getvalue()
    return files
