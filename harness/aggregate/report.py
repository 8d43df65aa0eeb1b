"""Every file of ``python -m harness report``, built in memory."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from harness.aggregate import stats
from harness.aggregate.comparison import compare_to_baseline, comparison_caption, comparison_display
from harness.aggregate.formatting import to_markdown
from harness.aggregate.paper_format import (
    method_name,
    paper_caption,
    paper_latex,
    paper_markdown,
    paper_rows,
    rank_numbers,
    tie_ranks,
)
from harness.aggregate.ranking import leaderboard
from harness.aggregate.wide import ordered_suites, wide_table
from harness.untrusted import csv_text, markdown_paragraph, markdown_text, safe_filename

REPORT_FORMATS = ("csv", "md", "latex")


def _csv_text(frame: pd.DataFrame) -> str:
    return csv_text(frame)  # every string cell neutralised against spreadsheet formulas


def _ranked_csv(wide: pd.DataFrame) -> pd.DataFrame:
    """The wide table with tie-aware ranks (tied rows share the better rank, ``rank_tied`` says so; rows
    with one seed are not ranked), as the Markdown and LaTeX tables print them."""
    if wide.empty:
        return wide
    out = wide.copy()
    out["rank"] = rank_numbers(wide)
    out.insert(1, "rank_tied", [r.startswith("=") for r in tie_ranks(wide)])
    return out


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
        # compared case-blind: GLUE and glue would be one file on macOS and Windows
        if stem.lower().startswith("reproduce-") or {n.lower() for n in names.values()} & taken:
            names = names_of(f"{stem}-{hashlib.sha256(str(suite).encode('utf-8', 'surrogatepass')).hexdigest()[:8]}")
        taken |= {n.lower() for n in names.values()}
        out[suite] = names
    return out


def _with_source(table: pd.DataFrame, sources: dict[tuple[str, str], str], key: str) -> pd.DataFrame:
    """A ``store`` column (the stores a row's records come from) when the frame had one (harness.records.stores)."""
    if not sources or table.empty:
        return table
    out = table.copy()
    suite = out["suite"].astype(str) if "suite" in out.columns else pd.Series("", index=out.index)
    values = [sources.get((s, str(k)), "") for s, k in zip(suite, out[key])]
    out.insert(min(3, len(out.columns)), "store", values)
    return out


def build_report(frame: pd.DataFrame, *, baseline: str = "lora", formats: Sequence[str] = REPORT_FORMATS,
                 suites: Sequence[str] | None = None,
                 display_names: Mapping[str, str] | None = None, p_adjust: str = stats.DEFAULT_P_ADJUST,
                 store_root: Any = None) -> dict[str, str]:
    """Every file of ``python -m harness report``, name -> text, built in memory (so that nothing is
    written unless all of it could be built). Per suite: ``<suite>.csv`` (the ranked wide table of
    full runs), ``<suite>-limited.csv``, ``<suite>-vs-<baseline>.csv``, ``<suite>.md``, ``<suite>.tex``;
    and ``leaderboard.md`` (every suite, GLUE first) and ``leaderboard.csv`` (one row per configuration
    and task, full and limited, with CIs and units). ``display_names``: adapter id -> the name the
    Markdown and LaTeX tables print (``Adapter.display_name``; ids without one are printed as they are)."""
    from harness.records.stores import row_sources

    table = leaderboard(frame)
    sources = row_sources(frame)
    names = ordered_suites(suites if suites is not None else table["suite"].unique())
    files: dict[str, str] = {}
    shown_baseline = (display_names or {}).get(baseline, baseline)
    page = ["# Leaderboard", "",
            f"Mean ± sample standard deviation over seeds (the CSVs hold each mean's {stats.INTERVAL_METHOD}); rows "
            "with every task and every requested seed, and at least two seeds, are ranked by their average as "
            "printed (ties share a rank: =2); the others follow, unranked, with why. "
            f"Marks against {markdown_text(shown_baseline)} at the same preset (paired over shared seeds): "
            f"{stats.verdict_rule(p_adjust)} Limited runs (a cap below the preset's) are in their own tables. "
            "Method in docs/statistics.md.", ""]
    file_names = suite_file_names(names, baseline)
    for suite in names:
        # the suite comes from a record: its file names are built from an allow-list (harness.untrusted)
        fname = file_names[suite]
        wide = wide_table(table, suite)
        limited = wide_table(table, suite, limited=True)
        comparison = compare_to_baseline(table, suite, baseline, p_adjust, store_root)
        common = {"table": table, "frame": frame, "display_names": display_names, "suite": suite}
        caption = paper_caption(suite, wide, shown_baseline if len(comparison) else None, p_adjust=p_adjust)
        s_md, b_md = markdown_text(suite), markdown_text(shown_baseline)
        headers, rows, _ranked = paper_rows(wide, comparison, **common)
        md = [f"## {s_md}", "", markdown_paragraph(caption), "", paper_markdown(headers, rows), ""]
        if len(comparison):
            methods = {str(h): method_name(m, str(a), display_names)
                       for h, m, a in zip(wide["config_hash"], wide["method"], wide["adapter"])}
            shown = comparison.assign(method=[methods.get(str(h), m) for h, m in
                                              zip(comparison["config_hash"], comparison["method"])])
            md += [f"### {s_md}: against {b_md}", "", markdown_paragraph(comparison_caption(shown_baseline, p_adjust)), "",
                   to_markdown(comparison_display(shown)), ""]
        else:
            md += [f"_no {b_md} row at the same model and preset: no paired comparison_", ""]
        if len(limited):
            l_headers, l_rows, _ = paper_rows(limited, None, limited=True, **common)
            md += [f"### {s_md}: limited runs (never ranked with full runs)", "",
                   markdown_paragraph(paper_caption(suite, limited, None, limited=True)), "",
                   paper_markdown(l_headers, l_rows), ""]
        if "csv" in formats:  # the wide-interval form, ranks tie-aware (one-seed rows unranked)
            wide_csv = _ranked_csv(wide)
            if sources and not wide.empty:
                wide_csv = _with_source(wide_csv.assign(suite=suite), sources, "config_hash").drop(columns="suite")
            files[fname["csv"]] = _csv_text(wide_csv)
            files[fname["limited"]] = _csv_text(_ranked_csv(limited))
            files[fname["vs"]] = _csv_text(comparison)
        if "md" in formats:
            files[fname["md"]] = "\n".join(md)
        if "latex" in formats:
            headers, rows, ranked = paper_rows(wide, comparison, extra=False, **common)
            tex_caption = paper_caption(suite, wide, shown_baseline if len(comparison) else None, latex=True, p_adjust=p_adjust)
            tex = [paper_latex(headers, rows, ranked, tex_caption)]
            if len(limited):
                l_headers, l_rows, _ = paper_rows(limited, None, limited=True, extra=False, **common)
                tex.append(paper_latex(l_headers, l_rows, 0, paper_caption(suite, limited, None, limited=True,
                                                                           latex=True)))
            files[fname["tex"]] = "\n\n".join(tex) + "\n"
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
