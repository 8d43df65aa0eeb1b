"""Display and export of the leaderboard: scores, counts and bytes as text, Markdown and LaTeX tables."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pandas as pd

from harness import metrics as metric_units
from harness.aggregate._values import finite_number, first_valid, ours_only
from harness.untrusted import latex_text, markdown_text


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
    return float(value) if finite_number(value) is not None else 1.0


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
    ours = ours_only(table)
    tasks = sorted(ours["task"].unique())
    row_keys = ["label", "row_key", "model", "preset", "limited"]
    rows = []
    for keys, group in ours.groupby(row_keys, dropna=False, sort=True):
        label, _row_key, _model, _preset, limited = keys
        by_task = {r["task"]: r for _, r in group.iterrows()}
        row = {"Method": label + (" [limited]" if limited else ""),
               "Params": format_count(first_valid(group["params_adapter"]))}
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


def markdown_cell(value: Any) -> str:
    """A Markdown table cell: ``–`` for none, else the text escaped (harness.untrusted.markdown_text)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return markdown_text(value)


def to_markdown(table: pd.DataFrame) -> str:
    """A GitHub Markdown table; a leaderboard is first turned into its display columns."""
    if table is not None and "score_mean" in table.columns:
        table = display_table(table)
    if table is None or table.empty:
        return "_no results_"
    header = [markdown_cell(c) for c in table.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for _, row in table.iterrows():
        lines.append("| " + " | ".join(markdown_cell(v) for v in row) + " |")
    return "\n".join(lines)


def latex_cell(value: Any) -> str:
    """A LaTeX table cell: ``--`` for none, else the text escaped (harness.untrusted.latex_text)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "--"
    return latex_text(value)


def to_latex(table: pd.DataFrame, caption: str | None = None) -> str:
    """A booktabs ``tabular`` like the papers' tables (needs ``\\usepackage{booktabs}``)."""
    if table is not None and "score_mean" in table.columns:
        table = paper_table(table)
    if table is None or table.empty:
        return "% no results"
    spec = "l" + "c" * (len(table.columns) - 1)
    lines = []
    if caption:
        lines += [r"\begin{table}[t]", r"\centering", rf"\caption{{{latex_cell(caption)}}}"]
    lines += [rf"\begin{{tabular}}{{{spec}}}", r"\toprule",
              " & ".join(latex_cell(c) for c in table.columns) + r" \\", r"\midrule"]
    lines += [" & ".join(latex_cell(v) for v in row) + r" \\" for _, row in table.iterrows()]
    lines += [r"\bottomrule", r"\end{tabular}"]
    if caption:
        lines.append(r"\end{table}")
    return "\n".join(lines)


def format_cell(mean: Any, low: Any, high: Any, n: Any, digits: int = 2, diverged: Any = 0) -> str:
    """``81.20 [79.10, 83.00] n=3``; ``81.20 (1 seed)``; ``–`` without a score. Never "± None".
    Seeds that diverged are said: ``n=2 (1 diverged)``, ``81.20 (1 seed, 1 diverged)``, ``– (2 diverged)``."""
    gone = int(diverged) if diverged is not None and not pd.isna(diverged) else 0
    if mean is None or pd.isna(mean):
        return f"– ({gone} diverged)" if gone else "–"
    text = f"{float(mean):.{digits}f}"
    if n is not None and not pd.isna(n) and int(n) == 1:
        return f"{text} (1 seed, {gone} diverged)" if gone else f"{text} (1 seed)"
    more = f" ({gone} diverged)" if gone else ""
    if low is None or pd.isna(low) or high is None or pd.isna(high):
        return f"{text} (n={int(n)}{more})" if n is not None and not pd.isna(n) else text + more
    return f"{text} [{float(low):.{digits}f}, {float(high):.{digits}f}] n={int(n)}{more}"
