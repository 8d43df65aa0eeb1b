"""Every file of ``python -m harness report``, built in memory."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from harness import stats
from harness.aggregate.comparison import compare_to_baseline, comparison_caption, comparison_display
from harness.aggregate.formatting import to_markdown
from harness.aggregate.ranking import leaderboard
from harness.aggregate.wide import ordered_suites, wide_table
from harness.aggregate.wide_format import wide_caption, wide_latex, wide_markdown

REPORT_FORMATS = ("csv", "md", "latex")


def _csv_text(frame: pd.DataFrame) -> str:
    return frame.to_csv(index=False)


def build_report(frame: pd.DataFrame, *, baseline: str = "lora", formats: Sequence[str] = REPORT_FORMATS,
                 suites: Sequence[str] | None = None, p_adjust: str = stats.DEFAULT_P_ADJUST,
                 store_root: Any = None) -> dict[str, str]:
    """Every file of ``python -m harness report``, name -> text, built in memory (so that nothing is
    written unless all of it could be built). Per suite: ``<suite>.csv`` (the ranked wide table of
    full runs), ``<suite>-limited.csv``, ``<suite>-vs-<baseline>.csv``, ``<suite>.md``, ``<suite>.tex``;
    and ``leaderboard.md`` (every suite, GLUE first) and ``leaderboard.csv`` (one row per configuration
    and task, full and limited, with CIs and units)."""
    table = leaderboard(frame)
    names = ordered_suites(suites if suites is not None else table["suite"].unique())
    files: dict[str, str] = {}
    page = ["# Leaderboard", "",
            f"Mean over seeds with its {stats.INTERVAL_METHOD} and the number of seeds n; rows with "
            "every task and seed are ranked by their average, incomplete rows follow with what they miss. "
            f"Marks against {baseline} at the same preset (paired over shared seeds): {stats.verdict_rule(p_adjust)} "
            "Limited runs (a cap below the preset's) are in their own tables. Method in docs/statistics.md.", ""]
    for suite in names:
        wide = wide_table(table, suite)
        limited = wide_table(table, suite, limited=True)
        comparison = compare_to_baseline(table, suite, baseline, p_adjust, store_root)
        caption = wide_caption(suite, wide, baseline, p_adjust)
        md = [f"## {suite}", "", caption, "", wide_markdown(wide, comparison), ""]
        if len(comparison):
            md += [f"### {suite}: against {baseline}", "", comparison_caption(baseline, p_adjust), "",
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
