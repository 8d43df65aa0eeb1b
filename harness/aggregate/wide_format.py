"""The wide table as printed (Markdown, LaTeX, the app): units in headers, CIs, verdict marks, bold bests."""

from __future__ import annotations

from typing import Any

import pandas as pd

from harness.aggregate import stats
from harness.aggregate.comparison import verdicts
from harness.aggregate.formatting import format_cell, format_count
from harness.aggregate.paper_format import paper_latex, paper_markdown, paper_rows, rankable, tie_ranks
from harness.aggregate.signal import NO_SIGNAL, signal_sentence
from harness.aggregate.wide import family_label, units_text

FIXED_MEMORY_HEADER = "memory (MiB, CPU est. without activations)"
TRAIN_TIME_HEADER = "train time (s, quiet reference machine)"
VERDICT_MARKS = {"better": "▲", "worse": "▼", "tied": "≈", "n/a": ""}


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
    diverged = wide.attrs.get("diverged", {})  # (row key, task or "average") -> seeds that diverged
    out = pd.DataFrame(index=wide.index)
    out["#"] = tie_ranks(wide)  # tied averages share a rank (=2); one-seed rows are never ranked
    out["method"] = wide["method"] + wide["preset"].map(lambda p: "" if len(set(wide["preset"])) == 1 else f" ({p})")
    bold: set[tuple[int, str]] = set()
    complete = wide[rankable(wide)]  # the bold best among the ranked rows only
    for task in tasks:
        u = units[task]
        header = f"{task} {u['metric']} ({u['label']})"
        if wide.attrs.get("signal", {}).get(task) == "no signal":
            header += f" [{NO_SIGNAL}]"
        out[header] = [
            (format_cell(r[task], r[f"{task}_ci_low"], r[f"{task}_ci_high"], r[f"{task}_n"],
                         diverged=diverged.get((r["config_hash"], task), 0))
             + (f" {VERDICT_MARKS.get(marks.get((r['config_hash'], task), 'n/a'), '')}".rstrip()))
            for _, r in wide.iterrows()]
        bold |= {(i, header) for i in _best_index(complete[task], u["higher_is_better"])}
    family = wide.attrs.get("average_family")
    avg_header = f"average ({family_label(family)})"
    out[avg_header] = [
        (format_cell(r["average"], r["average_ci_low"], r["average_ci_high"], r["n_seeds"],
                     diverged=diverged.get((r["config_hash"], "average"), 0))
         + f" {VERDICT_MARKS.get(marks.get((r['config_hash'], 'average'), 'n/a'), '')}".rstrip())
        for _, r in wide.iterrows()]
    higher = all(u["higher_is_better"] for u in units.values()) if units else True
    bold |= {(i, avg_header) for i in _best_index(complete["average"], higher)}
    statuses = wide.attrs.get("signal", {})
    if "no signal" in statuses.values() and "signal" in statuses.values():
        signal_header = f"average, tasks with signal ({family_label(family)}; {sum(v == 'signal' for v in statuses.values())} of {len(tasks)})"
        out[signal_header] = [format_cell(r["average_signal"], r["average_signal_ci_low"], r["average_signal_ci_high"],
                                          r["n_seeds"]) for _, r in wide.iterrows()]
        bold |= {(i, signal_header) for i in _best_index(complete["average_signal"], higher)}
    out["adapter params"] = wide["adapter_params"].map(format_count)
    bold |= {(i, "adapter params") for i in _best_index(complete["adapter_params"], False)}
    # a measured peak and the CPU estimate in columns of their own, each only when some row has it
    # CPU: the seed-independent part of the estimate (the saved activations depend on the seed's first batch);
    # records without the estimate's breakdown (older ones) only have the whole estimate
    cpu = ("cpu_fixed_mib", FIXED_MEMORY_HEADER) if wide["cpu_fixed_mib"].notna().any() else (
        "cpu_estimate_mib", "peak memory (MiB, CPU est.)")
    for column, header in (("peak_memory_mib", "peak memory (MiB)"), cpu):
        if wide[column].notna().any():
            out[header] = wide[column].map(lambda v: "–" if pd.isna(v) else f"{v:.0f}")
            bold |= {(i, header) for i in _best_index(complete[column], False)}
    # normalised to a quiet reference machine (the raw wall time stays in the records and the CSV)
    out[TRAIN_TIME_HEADER] = wide["train_seconds_quiet"].map(lambda v: "–" if pd.isna(v) else f"{v:.0f}")
    bold |= {(i, TRAIN_TIME_HEADER) for i in _best_index(complete["train_seconds_quiet"], False)}
    out["missing"] = wide["missing"].map(lambda v: v or "")
    if wide["limited_by"].astype(str).str.len().gt(0).any():
        out["limited by"] = wide["limited_by"]
    return out.reset_index(drop=True), {(list(wide.index).index(i), c) for i, c in bold}


def wide_markdown(wide: pd.DataFrame, comparison: pd.DataFrame | None = None, **context: Any) -> str:
    """The paper-ready Markdown table (harness.aggregate.paper_format); ``context``: ``table``,
    ``frame``, ``display_names``, ``suite`` for the seed spreads, sub-metrics and method names."""
    if wide is None or wide.empty:
        return "_no runs_"
    headers, rows, _ = paper_rows(wide, comparison, **context)
    return paper_markdown(headers, rows)


def wide_latex(wide: pd.DataFrame, comparison: pd.DataFrame | None, caption: str, **context: Any) -> str:
    """The paper-ready booktabs table (needs booktabs, amssymb and array; no ``\\resizebox``)."""
    if wide is None or wide.empty:
        return "% no runs"
    headers, rows, ranked = paper_rows(wide, comparison, extra=False, **context)
    return paper_latex(headers, rows, ranked, caption)


def wide_caption(suite: str, wide: pd.DataFrame, baseline: str | None, p_adjust: str = stats.DEFAULT_P_ADJUST) -> str:
    units = wide.attrs.get("units", {})
    text = (f"{suite}: mean over seeds with its {stats.INTERVAL_METHOD} and n (seeds). Units: {units_text(units)}."
            " Average: the mean of the task columns, for rows with every task; rows with every task and every"
            " requested seed are ranked (#), the others follow with what they miss. "
            + signal_sentence(wide.attrs.get("signal", {}))
            + " Train time: normalised to a quiet reference machine (records' CPU time and speed probe); CPU memory:"
            " the seed-independent part of the estimate (parameters, gradients, optimizer state).")
    if baseline:
        text += f" Against {baseline} (paired over shared seeds): " + stats.verdict_rule(p_adjust)
    return text
