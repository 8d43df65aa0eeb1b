"""``reproduce --dry-run``: a paper table's rows, planned runs, done runs and our parameter counts next
to the paper's (harness/papers/reproduce.py plans them)."""

from __future__ import annotations

from typing import Any

from harness.papers.reproduce import PlannedRow, count_row, plan_table
from harness.papers.table_types import as_printed, rounds_to, row_key
from harness.papers.tables import PaperTable
from harness.spec import RunSpec


def _done_runs(specs: tuple[RunSpec, ...], store: Any) -> int:
    from harness.status import DONE_STATUSES

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
