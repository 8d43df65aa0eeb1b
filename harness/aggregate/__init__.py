"""From run records to tables: flat frame, leaderboard, suite average, Pareto front, paper-style export.

Pure pandas (no torch, no Streamlit): the leaderboard app and ``python -m harness report`` both build
on these functions, and they are unit-tested without either. Readers import this package
(``from harness import aggregate``); the modules, in the order data flows through them:

- ``frame``: records -> the flat frame (``flatten_record``, ``load_frame``, ``filter_frame``);
- ``identity``: duplicated records, the preset's defaults, row keys, labels, limited runs (``identify``);
- ``ranking``: the leaderboard per (configuration, task), the suite average, the Pareto front;
- ``signal``: which tasks carry signal (any configuration distinguishable from the trivial reference);
- ``wide``: the ranked wide table of a suite; ``comparison``: every row against a baseline adapter;
- ``formatting`` and ``wide_format``: text, Markdown, LaTeX and the app's display of those tables;
- ``report``: every file of ``harness report``; ``reference``: the papers' reported numbers;
- ``run_detail``: per-record frames of the app's run detail (loss curve, spectra, M_eff, matrices);
- ``tuning_views`` (imported as a module, not re-exported): what `harness tune` did, per trial, tuned
  seed, study and method (learning-rate sensitivity, expected max vs trials, budget; docs/tuning.md).

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

from harness.aggregate._values import first_valid
from harness.aggregate.comparison import (
    COMPARISON_COLUMNS,
    baseline_rows,
    compare_to_baseline,
    comparison_caption,
    comparison_display,
    verdicts,
)
from harness.aggregate.formatting import (
    display_scale,
    display_table,
    format_bytes,
    format_cell,
    format_count,
    format_score,
    paper_table,
    to_latex,
    to_markdown,
)
from harness.aggregate.frame import (
    FRAME_COLUMNS,
    configuration_label,
    filter_frame,
    flatten_record,
    load_frame,
)
from harness.aggregate.identity import dedupe_records, identify
from harness.aggregate.ranking import (
    AVERAGE_COLUMNS,
    AVERAGE_KEYS,
    GROUP_KEYS,
    LEADERBOARD_COLUMNS,
    leaderboard,
    n_failed_runs,
    pareto_front,
    suite_average,
)
from harness.aggregate.reference import REFERENCE_COLUMNS, REFERENCE_SCALES, load_reference
from harness.aggregate.report import REPORT_FORMATS, build_report, suite_file_names
from harness.aggregate.run_detail import (
    analysis_matrices,
    loss_curve_frame,
    m_eff_frame,
    singular_values_frame,
)
from harness.aggregate.signal import NO_SIGNAL, task_signal
from harness.aggregate.wide import SUITE_ORDER, family_label, ordered_suites, units_text, wide_table
from harness.aggregate.wide_format import VERDICT_MARKS, wide_caption, wide_display, wide_latex, wide_markdown
from harness.metrics import UNKNOWN_UNIT
from harness.records.record import CAP_FIELDS

__all__ = [
    "NO_SIGNAL", "task_signal", "AVERAGE_COLUMNS", "AVERAGE_KEYS", "CAP_FIELDS", "COMPARISON_COLUMNS",
    "FRAME_COLUMNS", "GROUP_KEYS", "LEADERBOARD_COLUMNS", "REFERENCE_COLUMNS", "REFERENCE_SCALES",
    "REPORT_FORMATS", "SUITE_ORDER", "UNKNOWN_UNIT", "VERDICT_MARKS", "analysis_matrices", "baseline_rows",
    "build_report", "compare_to_baseline", "comparison_caption", "comparison_display",
    "configuration_label", "dedupe_records", "display_scale", "display_table", "family_label",
    "filter_frame", "first_valid", "flatten_record", "format_bytes", "format_cell", "format_count",
    "format_score", "identify", "leaderboard", "load_frame", "load_reference", "loss_curve_frame",
    "m_eff_frame", "n_failed_runs", "ordered_suites", "paper_table", "pareto_front",
    "singular_values_frame", "suite_average", "suite_file_names", "to_latex", "to_markdown", "units_text", "verdicts",
    "wide_caption", "wide_display", "wide_latex", "wide_markdown", "wide_table",
]
