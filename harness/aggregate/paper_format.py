"""The paper-ready tables of ``harness report`` (issue 33): Markdown and LaTeX a paper can print.

- Methods by the names the adapters declare (``Adapter.display_name``: LoRA², Adapterᴴ), their
  settings after them (``LoRA² (r=8)``); a name the report cannot resolve stays the CLI id.
- Compact cells: mean ± sample sd over seeds (LaTeX: the sd as a subscript) and the verdict mark
  against the baseline; the 95% intervals stay in the CSV (and the app).
- Tie-aware ranks: rows whose averages print the same share a rank (``=2``); only rows with every
  task and every requested seed, and at least two seeds, are ranked; one-seed rows never are, in any
  suite, and are never bold.
- Sub-metric columns where the records have them (MMLU / BBH / DROP / HumanEval, R@1/5/10 both ways,
  MT-Bench per turn), before the task's primary score.
- LaTeX through pandas ``Styler.to_latex`` with booktabs (``\\usepackage{booktabs,amssymb,array}``), no
  ``\\resizebox``: \\footnotesize, the sd as a subscript and a fixed-width method column keep the widest
  shipped table (GLUE) at 443 pt, inside an A4 page with one-inch margins (452 pt); tests/test_paper_tables.py
  compiles them with pdflatex where it is installed and fails on an overfull box.

Every string from a record goes through ``harness.untrusted`` (markdown_text, latex_text).
"""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from harness import metrics as metric_units
from harness.aggregate import stats
from harness.aggregate.comparison import verdicts
from harness.aggregate.formatting import format_count
from harness.aggregate.paper_units import paper_unit
from harness.aggregate.wide import family_label
from harness.untrusted import latex_text, markdown_text

TASK_NAMES = {"cola": "CoLA", "mrpc": "MRPC", "qnli": "QNLI", "rte": "RTE", "sst2": "SST-2", "stsb": "STS-B",
              "mnli": "MNLI", "qqp": "QQP", "coco": "COCO", "alpaca": "Alpaca"}
# per suite, the sub-metrics shown beside the primary score (when some record has them), with headers
# a header is a text, or (group, text): LaTeX prints the group once above its columns
Header = str | tuple[str, str]
SUB_METRICS: dict[str, tuple[tuple[str, Header], ...]] = {
    "instructeval": (("mmlu", "MMLU"), ("bbh", "BBH"), ("drop", "DROP"), ("humaneval", "HumanEval")),
    "coco-retrieval": tuple((f"{d}_r{k}", (label, f"R@{k}")) for d, label in (("i2t", "I→T"), ("t2i", "T→I"))
                            for k in (1, 5, 10)),
    "mt-bench": (("turn1", "Turn 1"), ("turn2", "Turn 2")),
}
MARKS = {"better": "▲", "worse": "▼", "tied": "≈"}
_LATEX_MARKS = {"▲": r"\blacktriangle", "▼": r"\blacktriangledown", "≈": r"\approx"}
DIGITS = 2
METHOD_WIDTH = "2.9cm"


@dataclass
class Cell:
    """One cell: a number (mean, sd, verdict mark) or a text; ``bold`` for the best of its column."""

    mean: float | None = None
    sd: float | None = None
    mark: str = ""
    text: str | None = None
    bold: bool = False
    note: str = ""  # after the text in brackets, smaller in LaTeX (a method's settings)

    def markdown(self) -> str:
        if self.text is not None:
            body = markdown_text(self.text + (f" ({self.note})" if self.note else "")) if self.text else ""
        elif self.mean is None:
            body = "–"
        else:
            body = f"{self.mean:.{DIGITS}f}" + (f" ± {self.sd:.{DIGITS}f}" if self.sd is not None else "")
        body = f"**{body}**" if self.bold and body not in ("", "–") else body
        return body + (f" {self.mark}" if self.mark else "")

    def latex(self) -> str:
        if self.text is not None:
            return latex_text(self.text) + (rf" {{\scriptsize ({latex_text(self.note)})}}" if self.note else "")
        if self.mean is None:
            return "--"
        body = f"{self.mean:.{DIGITS}f}"
        body = rf"\textbf{{{body}}}" if self.bold else body
        # the sd as a subscript (as NLP papers print it: 27.70 with 2.43 below) and the mark as a
        # superscript above it: one narrow column
        sub = rf"_{{{self.sd:.{DIGITS}f}}}" if self.sd is not None else ""
        sup = rf"^{{{_LATEX_MARKS[self.mark]}}}" if self.mark else ""
        return body + (f"${sub}{sup}$" if sub or sup else "")


_SHORT_SETTINGS = {"bottleneck": "b", "alpha": "α", "init rank": "init r"}


def method_name(label: str, adapter: str, display_names: Mapping[str, str] | None) -> str:
    name, settings = method_parts(label, adapter, display_names)
    return f"{name} ({settings})" if settings else name


def method_parts(label: str, adapter: str, display_names: Mapping[str, str] | None) -> tuple[str, str]:
    """``lora2 r8`` -> ``LoRA² (r=8)``; ``adapter-h · bottleneck 64`` -> ``Adapterᴴ (b=64)``;
    the label as it is when the adapter has no display name or the label does not start with its id."""
    name = (display_names or {}).get(adapter)
    parts = str(label).split(" · ")
    if not name or not parts[0].startswith(adapter):
        return str(label), ""
    rank = parts[0][len(adapter):].strip()
    settings = [re.sub(r"^r(\S+)$", r"r=\1", rank)] if rank else []
    settings += [_SHORT_SETTINGS.get(p.rsplit(" ", 1)[0], p.rsplit(" ", 1)[0]) + "=" + p.rsplit(" ", 1)[1]
                 if " " in p and not p.startswith("#") else p for p in parts[1:]]
    return name, ", ".join(settings)


def _rank_key(value: float) -> float:
    return round(float(value), DIGITS)


def tie_ranks(wide: pd.DataFrame) -> list[str]:
    """Per row of the wide table (in its order): ``1``, ``=2``, ``=2``, ``4``... by the average as
    printed (rows whose averages print the same are tied); ``""`` for a row that is not ranked: one
    that misses a task or a requested seed, or has a single seed (no seed-to-seed spread: one-seed rows
    are never ranked, whatever the suite)."""
    if wide is None or wide.empty:
        return []
    eligible = rankable(wide)
    units = wide.attrs.get("units", {})
    higher = all(u.get("higher_is_better", True) for u in units.values()) if units else True
    values = [(_rank_key(v), i) for i, (v, ok) in enumerate(zip(wide["average"], eligible)) if ok]
    values.sort(key=lambda t: -t[0] if higher else t[0])
    out = [""] * len(wide)
    position = 0
    while position < len(values):
        same = [i for v, i in values if v == values[position][0]]
        for i in same:
            out[i] = f"={position + 1}" if len(same) > 1 else str(position + 1)
        position += len(same)
    return out


def rank_numbers(wide: pd.DataFrame) -> pd.Series:
    """``tie_ranks`` as numbers (tied rows share the better rank; NA when not ranked), for the CSV."""
    ranks = [int(r.lstrip("=")) if r else None for r in tie_ranks(wide)]
    return pd.Series(ranks, index=wide.index, dtype="Int64")


def rankable(wide: pd.DataFrame) -> list[bool]:
    return [bool(c) and int(n or 0) >= 2 and not pd.isna(a)
            for c, n, a in zip(wide["complete"], wide["n_seeds"], wide["average"])]


def seed_spreads(table: pd.DataFrame | None, suite: str, limited: bool) -> dict[tuple[str, str], float]:
    """(row key, task) -> sample sd over seeds of the display-scaled scores, and (row key, "average")
    -> the sd over the seeds every task has of the per-seed average of the tasks."""
    if table is None or table.empty:
        return {}
    rows = table[(table["suite"] == suite) & (table["limited"] == limited)]
    if "source" in rows:
        rows = rows[rows["source"] == "ours"]
    out: dict[tuple[str, str], float] = {}
    per_row: dict[str, list[dict[int, float]]] = {}
    for _, r in rows.iterrows():
        seeds = r["seed_scores"] if isinstance(r["seed_scores"], Mapping) else {}
        scale = float(r["scale"]) if r["scale"] is not None and not pd.isna(r["scale"]) else 1.0
        scaled = {int(s): float(v) * scale for s, v in seeds.items()}
        if len(scaled) > 1:
            out[(str(r["row_key"]), str(r["task"]))] = statistics.stdev(scaled.values())
        per_row.setdefault(str(r["row_key"]), []).append(scaled)
    for key, tasks in per_row.items():
        shared = set.intersection(*(set(t) for t in tasks)) if tasks else set()
        if len(shared) > 1:
            out[(key, "average")] = statistics.stdev([statistics.fmean(t[s] for t in tasks) for s in shared])
    return out


def sub_metric_cells(frame: pd.DataFrame | None, suite: str, limited: bool
                     ) -> tuple[list[tuple[str, str, str]], dict[tuple[str, str, str], tuple[float, float | None]]]:
    """The sub-metric columns of a suite the records have, as (task, metric, header), and per (row key,
    task, metric) the mean and sample sd over the successful seeds (display-scaled by the frame)."""
    declared = SUB_METRICS.get(str(suite), ())
    if frame is None or frame.empty or not declared or "sub_scores" not in frame:
        return [], {}
    rows = frame[(frame["suite"] == suite) & (frame["limited"] == limited) & frame["score"].notna()]
    values: dict[tuple[str, str, str], list[float]] = {}
    for _, r in rows.iterrows():
        subs = r["sub_scores"] if isinstance(r["sub_scores"], Mapping) else {}
        for metric, _header in declared:
            if metric in subs:
                values.setdefault((str(r["row_key"]), str(r["task"]), metric), []).append(float(subs[metric]))
    columns = [(task, metric, header) for task in sorted({k[1] for k in values})
               for metric, header in declared if any(k[1] == task and k[2] == metric for k in values)]
    cells = {k: (statistics.fmean(v), statistics.stdev(v) if len(v) > 1 else None) for k, v in values.items()}
    return columns, cells


def _finite(value: Any) -> float | None:
    return None if value is None or pd.isna(value) or not math.isfinite(float(value)) else float(value)


def task_header(task: str) -> str:
    return TASK_NAMES.get(task, task)


def paper_rows(wide: pd.DataFrame, comparison: pd.DataFrame | None = None, *, table: pd.DataFrame | None = None,
               frame: pd.DataFrame | None = None, display_names: Mapping[str, str] | None = None,
               suite: str | None = None, limited: bool = False, extra: bool = True
               ) -> tuple[list[str], list[list[Cell]], int]:
    """The headers, the rows of cells and the number of ranked rows (they come first) of a suite's
    paper table. ``extra``: memory, train time and what a row misses (Markdown); LaTeX leaves them out."""
    suite = suite or ""
    units = wide.attrs.get("units", {})
    tasks = wide.attrs.get("tasks", [])
    marks = verdicts(comparison) if comparison is not None and len(comparison) else {}
    spreads = seed_spreads(table, suite, limited)
    sub_columns, sub_cells = sub_metric_cells(frame, suite, limited)
    ranks = tie_ranks(wide)
    order = sorted(range(len(wide)), key=lambda i: (ranks[i] == "", int(ranks[i].lstrip("=") or 0)))
    ranks = [ranks[i] for i in order]
    wide = wide.iloc[order].reset_index(drop=True)
    n_ranked = sum(1 for r in ranks if r)
    presets = set(wide["preset"])
    headers: list[Header] = ["#", "Method", "Params"]
    rows: list[list[Cell]] = []
    for i, r in wide.iterrows():
        name, settings = method_parts(r["method"], str(r["adapter"]), display_names)
        if len(presets) > 1:
            settings = ", ".join(p for p in (settings, f"preset {r['preset']}") if p)
        rows.append([Cell(text=ranks[i]), Cell(text=name, note=settings), Cell(text=format_count(r["adapter_params"]))])
    def add_column(header: Header, cells: list[Cell], higher: bool) -> None:
        headers.append(header)
        best = [c.mean for c, rank in zip(cells, ranks) if rank and c.mean is not None]
        target = (max(best) if higher else min(best)) if best else None
        for row, cell, rank in zip(rows, cells, ranks):
            cell.bold = bool(rank) and target is not None and cell.mean is not None and \
                _rank_key(cell.mean) == _rank_key(target)
            row.append(cell)

    for task in tasks:
        u = units.get(task, {})
        higher = bool(u.get("higher_is_better", True))
        for t, metric, header in sub_columns:
            if t != task:
                continue
            if extra:  # Markdown: every header names its unit (LaTeX: the caption does)
                header = f"{header_text(header)} ({_unit_label(suite, metric)})"
            add_column(header, [Cell(*(sub_cells.get((str(r["config_hash"]), task, metric)) or (None, None)))
                                for _, r in wide.iterrows()], True)
        label = task_header(task)
        header = label if not sub_columns else f"{label} {u.get('metric', 'score')}"
        if extra:
            header = f"{label} {u.get('metric', 'score')} ({u.get('label', 'unit unknown')})"
        if extra and wide.attrs.get("signal", {}).get(task) == "no signal":  # harness/aggregate/signal.py
            header = f"{header} [no signal at this budget]"  # LaTeX: the caption names them (page width)
        add_column(header, [Cell(_finite(r[task]), spreads.get((str(r["config_hash"]), task)) if r[f"{task}_n"] > 1
                                 else None, MARKS.get(marks.get((str(r["config_hash"]), task), ""), ""))
                            for _, r in wide.iterrows()], higher)
    if len(tasks) > 1:
        higher = all(u.get("higher_is_better", True) for u in units.values()) if units else True
        add_column(f"Avg. ({family_label(wide.attrs.get('average_family'))})" if extra else "Avg.", [Cell(_finite(r["average"]), spreads.get((str(r["config_hash"]), "average"))
                                 if r["n_seeds"] > 1 else None,
                                 MARKS.get(marks.get((str(r["config_hash"]), "average"), ""), ""))
                            for _, r in wide.iterrows()], higher)
    headers.append("n")
    diverged = wide.attrs.get("diverged", {})
    for row, (_, r) in zip(rows, wide.iterrows()):
        gone = sum(v for (key, task), v in diverged.items() if key == r["config_hash"] and task != "average")
        # a seed that diverged is a result: said in the n column, never shown as merely missing
        row.append(Cell(text=f"{int(r['n_seeds'])} ({gone} diverged)" if gone else str(int(r["n_seeds"]))))
    if extra:
        for column, header in (("peak_memory_mib", "peak memory (MiB)"),
                               ("cpu_estimate_mib", "peak memory (MiB, CPU est.)")):
            if wide[column].notna().any():
                headers.append(header)
                for row, v in zip(rows, wide[column]):
                    row.append(Cell(text="–" if pd.isna(v) else f"{v:.0f}"))
        headers.append("train time (s)")
        for row, v in zip(rows, wide["train_seconds"]):
            row.append(Cell(text="–" if pd.isna(v) else f"{v:.0f}"))
        headers.append("not ranked: why")
        for row, (_, r), rank in zip(rows, wide.iterrows(), ranks):
            why = "" if rank else _why_unranked(r)
            row.append(Cell(text=why))
        if wide["limited_by"].astype(str).str.len().gt(0).any():
            headers.append("limited by")
            for row, v in zip(rows, wide["limited_by"]):
                row.append(Cell(text=str(v)))
    return headers, rows, n_ranked


def _unit_label(suite: str, metric: str) -> str:
    unit = paper_unit(suite, metric)
    return (unit or metric_units.UNKNOWN_UNIT).label


def _why_unranked(row: Mapping[str, Any]) -> str:
    """``one seed``; ``tasks stsb``; ``seeds rte 2/3``: what keeps a row out of the ranking."""
    missing = [m for m in str(row.get("missing") or "").split("; ") if m]
    if int(row.get("n_seeds") or 0) < 2:
        missing = ["one seed", *(m for m in missing if m.startswith("tasks"))]
    return "; ".join(missing) or "no average"


PROTOCOL_SENTENCE = ("Protocol: rows labelled tuned ran at the rate `harness tune` chose per task on a validation split "
                     "held out of the training data, val-selected rows at the preset's shared rate; both report the "
                     "test split at the epoch selected on validation. Rows without either label are the papers' "
                     "protocol (the epoch selected on the test split itself: optimistic).")


def paper_caption(suite: str, wide: pd.DataFrame, baseline: str | None, *, limited: bool = False,
                  latex: bool = False, p_adjust: str = "holm") -> str:
    """What the cells are, in words (plain text: each renderer escapes it); ``latex``: the sd is the
    subscript and the mark the superscript."""
    units = wide.attrs.get("units", {})
    unit_text = "; ".join(f"{task_header(t)}: {u['metric']} ({u['label']})" for t, u in units.items())
    cells = ("mean over n seeds, subscript: the sample standard deviation, superscript: the mark"
             if latex else "mean ± sample standard deviation over n seeds")
    text = (f"{suite}{', limited runs' if limited else ''}: {cells} "
            f"({stats.INTERVAL_METHOD} in the CSV). Units: {unit_text}. {PROTOCOL_SENTENCE}")
    if len(units) > 1:
        text += f" Avg.: the mean of the task columns ({family_label(wide.attrs.get('average_family'))})."
    text += (" Ranked (#) by the average as printed, ties sharing a rank (=2): only rows with every task and "
             "every requested seed, and at least two seeds; the others follow, unranked, never bold.")
    from harness.aggregate.signal import signal_sentence

    no_signal = signal_sentence(wide.attrs.get("signal", {}))
    if no_signal:
        text += f" {no_signal}"
    if baseline:
        text += f" Against {baseline} (paired over shared seeds): {stats.verdict_rule(p_adjust)}"
    return text


def header_text(header: Header) -> str:
    return " ".join(header) if isinstance(header, tuple) else header


def paper_markdown(headers: list[Header], rows: list[list[Cell]]) -> str:
    if not rows:
        return "_no runs_"
    lines = ["| " + " | ".join(markdown_text(header_text(h)) for h in headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(c.markdown() for c in row) + " |" for row in rows]
    return "\n".join(lines)


def paper_latex(headers: list[Header], rows: list[list[Cell]], n_ranked: int, caption: str) -> str:
    """A booktabs table through ``Styler.to_latex`` (needs booktabs, amssymb and array), ranked rows first and a
    rule before the unranked ones; no ``\\resizebox``: ``\\small`` and narrow cells fit a page."""
    if not rows:
        return "% no runs"
    grouped = any(isinstance(h, tuple) for h in headers)
    columns: list[Any] = []
    for h in headers:  # Styler needs unique column names; LaTeX ignores the trailing spaces
        group, text = (latex_text(h[0]), latex_text(h[1])) if isinstance(h, tuple) else ("", latex_text(h))
        while (group, text) in columns:
            text += " "
        columns.append((group, text))
    index = pd.MultiIndex.from_tuples(columns) if grouped else pd.Index([t for _, t in columns])
    body = pd.DataFrame([[c.latex() for c in row] for row in rows], columns=index)
    # the method column has a fixed width (a long configuration wraps), the numbers are narrow: the
    # table's width does not grow with labels
    spec = "r" + rf">{{\raggedright\arraybackslash}}p{{{METHOD_WIDTH}}}" + "r" + "c" * (len(headers) - 4) + "r"
    tabular = body.style.hide(axis="index").to_latex(column_format=spec, hrules=True, multicol_align="c")
    lines = tabular.rstrip("\n").split("\n")
    if 0 < n_ranked < len(rows):
        first_body = lines.index(r"\midrule") + 1
        lines.insert(first_body + n_ranked, r"\midrule")
    title = latex_text(caption)
    return "\n".join([r"\begin{table}[t]", r"\centering", r"\footnotesize", r"\setlength{\tabcolsep}{3pt}",
                      rf"\caption{{{title}}}", *lines, r"\end{table}"])
