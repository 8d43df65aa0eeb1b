"""Every file of ``python -m harness report``, built in memory."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from harness.aggregate.comparison import compare_to_baseline, comparison_caption, comparison_display
from harness.aggregate.formatting import to_markdown
from harness.aggregate.ranking import leaderboard
from harness.aggregate.wide import ordered_suites, wide_table
from harness.aggregate.wide_format import wide_caption, wide_latex, wide_markdown

REPORT_FORMATS = ("csv", "md", "latex")


def _csv_text(frame: pd.DataFrame) -> str:
    return frame.to_csv(index=False)


def _with_source(table: pd.DataFrame, sources: dict[tuple[str, str], str], key: str) -> pd.DataFrame:
    """A ``store`` column (the stores a row's records come from) when the frame had one (harness.stores)."""
    if not sources or table.empty:
        return table
    out = table.copy()
    suite = out["suite"].astype(str) if "suite" in out.columns else pd.Series("", index=out.index)
    values = [sources.get((s, str(k)), "") for s, k in zip(suite, out[key])]
    out.insert(min(3, len(out.columns)), "store", values)
    return out


def build_report(frame: pd.DataFrame, *, baseline: str = "lora", formats: Sequence[str] = REPORT_FORMATS,
                 suites: Sequence[str] | None = None) -> dict[str, str]:
    """Every file of ``python -m harness report``, name -> text, built in memory (so that nothing is
    written unless all of it could be built). Per suite: ``<suite>.csv`` (the ranked wide table of
    full runs), ``<suite>-limited.csv``, ``<suite>-vs-<baseline>.csv``, ``<suite>.md``, ``<suite>.tex``;
    and ``leaderboard.md`` (every suite, GLUE first) and ``leaderboard.csv`` (one row per configuration
    and task, full and limited, with CIs and units)."""
    from harness.stores import row_sources

    table = leaderboard(frame)
    sources = row_sources(frame)
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
            wide_csv = wide
            if sources and not wide.empty:
                wide_csv = _with_source(wide.assign(suite=suite), sources, "config_hash").drop(columns="suite")
            files[f"{suite}.csv"] = _csv_text(wide_csv)
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
        files["leaderboard.csv"] = _csv_text(_with_source(long, sources, "row_key"))
    return files
