"""Every file of ``python -m harness report``, built in memory."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import pandas as pd

from harness.aggregate.comparison import compare_to_baseline, comparison_caption, comparison_display
from harness.aggregate.formatting import to_markdown
from harness.aggregate.ranking import leaderboard
from harness.aggregate.wide import ordered_suites, wide_table
from harness.aggregate.wide_format import wide_caption, wide_latex, wide_markdown
from harness.untrusted import csv_text, markdown_paragraph, markdown_text, safe_filename

REPORT_FORMATS = ("csv", "md", "latex")


def _csv_text(frame: pd.DataFrame) -> str:
    return csv_text(frame)  # every string cell neutralised against spreadsheet formulas


def suite_file_names(suites: Sequence[str], baseline: str) -> dict[str, dict[str, str]]:
    """Per suite (in the given order), the names of its files: ``{"csv": "glue.csv", "limited":
    "glue-limited.csv", "vs": "glue-vs-lora.csv", "md": "glue.md", "tex": "glue.tex"}``. Suites come from
    records, so the stem is ``harness.untrusted.safe_filename(suite)``, with a hash of the suite added
    when its files would replace another suite's, ``leaderboard.*`` or a ``reproduce-*`` table (a suite
    named ``glue-limited`` must not overwrite GLUE's limited table)."""
    base_name = safe_filename(baseline)

    def names_of(stem: str) -> dict[str, str]:
        return {"csv": f"{stem}.csv", "limited": f"{stem}-limited.csv", "vs": f"{stem}-vs-{base_name}.csv",
                "md": f"{stem}.md", "tex": f"{stem}.tex"}

    taken: set[str] = {"leaderboard.md", "leaderboard.csv"}
    out: dict[str, dict[str, str]] = {}
    for suite in suites:
        stem = safe_filename(suite)
        names = names_of(stem)
        if stem.startswith("reproduce-") or set(names.values()) & taken:
            names = names_of(f"{stem}-{hashlib.sha256(str(suite).encode('utf-8', 'surrogatepass')).hexdigest()[:8]}")
        taken |= set(names.values())
        out[suite] = names
    return out


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
            f"Marks against {markdown_text(baseline)} at the same preset (paired over shared seeds): ▲ better, ▼ worse, "
            "≈ tied (the interval of the difference includes 0). Limited runs (a cap below the preset's) are "
            "in their own tables. Method in README.md (Statistics).", ""]
    file_names = suite_file_names(names, baseline)
    for suite in names:
        # the suite comes from a record: its file names are built from an allow-list (harness.untrusted)
        fname = file_names[suite]
        wide = wide_table(table, suite)
        limited = wide_table(table, suite, limited=True)
        comparison = compare_to_baseline(table, suite, baseline)
        caption = wide_caption(suite, wide, baseline)
        s_md, b_md = markdown_text(suite), markdown_text(baseline)
        md = [f"## {s_md}", "", markdown_paragraph(caption), "", wide_markdown(wide, comparison), ""]
        if len(comparison):
            md += [f"### {s_md}: against {b_md}", "", markdown_paragraph(comparison_caption(baseline)), "",
                   to_markdown(comparison_display(comparison)), ""]
        else:
            md += [f"_no {b_md} row at the same model and preset: no paired comparison_", ""]
        if len(limited):
            md += [f"### {s_md}: limited runs (never ranked with full runs)", "", wide_markdown(limited), ""]
        if "csv" in formats:
            files[fname["csv"]] = _csv_text(wide)
            files[fname["limited"]] = _csv_text(limited)
            files[fname["vs"]] = _csv_text(comparison)
        if "md" in formats:
            files[fname["md"]] = "\n".join(md)
        if "latex" in formats:
            tex = [wide_latex(wide, comparison, caption)]
            if len(limited):
                tex.append(wide_latex(limited, None, f"{suite}, limited runs: " + wide_caption(suite, limited, None)))
            files[fname["tex"]] = "\n\n".join(tex) + "\n"
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
