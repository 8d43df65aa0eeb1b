"""The leaderboard app's pages: each renders one tab from already loaded, filtered frames.

Reads only; nothing here writes to the result store. Every string that comes from a record (adapter and
task names, labels, options, error messages, paths) is shown as plain text: in a table, in ``st.code``,
or escaped with :func:`plain` where Streamlit would read Markdown, so a record cannot make a viewer's
browser fetch anything (an adapter named ``![x](http://host/p.png)`` prints as those characters).
"""

from __future__ import annotations

import re
from typing import Any

import pandas as pd
import streamlit as st

from app import charts
from harness import aggregate
from harness.aggregate import stats
from harness.untrusted import csv_text, safe_filename

RUN_COMMAND = "python -m harness run --suite glue --preset cpu"
_PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")


def plain(text: Any) -> str:
    """``text`` with every ASCII punctuation character backslash-escaped (CommonMark allows it for all
    of them), so Streamlit's Markdown shows it literally: no link, image, emphasis, HTML or directive."""
    return _PUNCTUATION.sub(r"\\\1", str(text)).replace("\n", " ")


def leaderboard_columns(table: pd.DataFrame) -> pd.DataFrame:
    """One row per configuration and task, numbers kept numeric (the app's table sorts them)."""
    scale = table["scale"].fillna(1.0)
    return pd.DataFrame({
        "task": table["task"],
        "method": table["label"],
        "config hash": table["config_hash"],
        "limited by": table["limited_by"].fillna(""),
        "dirty tree": table["git_dirty"].fillna(False).astype(bool),
        "model": table["model"],
        "preset": table["preset"],
        "metric": table["primary"],
        "unit": table["unit_label"],
        "score": table["score_mean"] * scale,
        "95% CI low": table["score_ci_low"] * scale,
        "95% CI high": table["score_ci_high"] * scale,
        "seeds": table["n_seeds"],
        "failed": table["n_failed"],
        "diverged": table["n_diverged"],
        "oom": table["n_oom"],
        "status": table["statuses"],
        "adapter params": table["params_adapter"],
        "head params": table["params_head"],
        "peak memory MiB (GPU measured)": table["peak_memory_bytes"] / 2**20,
        "memory MiB (CPU estimate)": table["estimate_memory_bytes"] / 2**20,
        "train s": table["train_seconds"],
        "train s (quiet reference machine)": table["train_seconds_quiet"],
        "memory MiB (CPU est. without activations)": table["memory_fixed_bytes"] / 2**20,
        "step ms": table["mean_step_seconds"] * 1000,
    }).reset_index(drop=True)


NUMBER_FORMATS = {
    "score": "%.2f", "95% CI low": "%.2f", "95% CI high": "%.2f", "adapter params": "localized",
    "head params": "localized", "peak memory MiB (GPU measured)": "%.0f", "memory MiB (CPU estimate)": "%.0f", "train s": "%.1f",
    "train s (quiet reference machine)": "%.1f", "memory MiB (CPU est. without activations)": "%.0f", "step ms": "%.0f",
}


def _column_config() -> dict[str, Any]:
    return {name: st.column_config.NumberColumn(name, format=fmt) for name, fmt in NUMBER_FORMATS.items()}


def reported_columns(reference: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({
        "source": "reported",
        "paper": reference["paper"],
        "table": reference["table"],
        "task": reference["task"],
        "method": reference["method"],
        "adapter": reference["adapter"],
        "model": reference["model"],
        "metric": reference["metric"],
        "value as printed": reference["value"],
        "scale": reference["scale"],
        "params": reference["params"],
        "cited from": reference["source"],
    }).reset_index(drop=True)


def render_skipped(skipped: list[tuple[str, str]], what: str) -> None:
    if skipped:
        st.warning(f"Skipped {len(skipped)} {what} that could not be read:")
        st.dataframe(pd.DataFrame(skipped, columns=["file", "why"]), hide_index=True, width="stretch")


def render_duplicates(duplicates: list[str]) -> None:
    if duplicates:
        st.warning(f"{len(duplicates)} runs are recorded more than once in the store (a copied file or a "
                   "backup folder); each is counted once:")
        st.code("\n".join(duplicates), language=None)


def render_empty(results_dir: str) -> None:
    st.info("No run records in this results folder yet. Produce some with")
    st.code(f"{RUN_COMMAND} --results-dir {results_dir}", language="bash")


MARK_STYLES = {"better": "color: #1a7f37; font-weight: 600", "worse": "color: #cf222e; font-weight: 600"}
MARK_TEXT = {"better": "▲", "worse": "▼", "tied": "≈"}


def wide_numeric(wide: pd.DataFrame, comparison: pd.DataFrame | None, baseline: str
                 ) -> tuple[pd.DataFrame, dict[tuple[int, str], str]]:
    """The ranked wide table with numbers kept numeric (the app sorts them as numbers), the ranking key
    and the costs first so they stay on screen, then the tasks; and the (row, column) cells whose
    difference from the baseline is a verdict (better / worse), for colouring."""
    units = wide.attrs.get("units", {})
    tasks = wide.attrs.get("tasks", [])
    marks = aggregate.verdicts(comparison) if comparison is not None and len(comparison) else {}
    family = aggregate.family_label(wide.attrs.get("average_family"))
    out = pd.DataFrame({"rank": wide["rank"].astype("Float64").astype("Int64"), "method": wide["method"]})
    out[f"average ({family})"] = wide["average"].astype(float)
    out[f"vs {baseline}"] = [MARK_TEXT.get(marks.get((str(h), "average"), ""), "") for h in wide["config_hash"]]
    out["adapter params"] = wide["adapter_params"].astype(float)
    if wide["peak_memory_mib"].notna().any():
        out["peak memory MiB"] = wide["peak_memory_mib"].astype(float)
    if wide["cpu_estimate_mib"].notna().any():
        out["memory MiB (CPU est.)"] = wide["cpu_estimate_mib"].astype(float)
    out["train s"] = wide["train_seconds"].astype(float)
    cells: dict[tuple[int, str], str] = {}
    for i, h in enumerate(wide["config_hash"]):
        verdict = marks.get((str(h), "average"))
        if verdict in MARK_STYLES:
            cells[(i, f"average ({family})")] = verdict
            cells[(i, f"vs {baseline}")] = verdict
    for task in tasks:
        header = f"{task} {units[task]['metric']} ({units[task]['label']})" if task in units else task
        out[header] = wide[task].astype(float)
        for i, h in enumerate(wide["config_hash"]):
            verdict = marks.get((str(h), task))
            if verdict in MARK_STYLES:
                cells[(i, header)] = verdict
    out["seeds"] = wide["n_seeds"]
    out["missing"] = wide["missing"].map(lambda v: v or "")
    if "store" in wide.columns:
        out["store"] = wide["store"]
    return out.reset_index(drop=True), cells


def _styled(frame: pd.DataFrame, cells: dict[tuple[int, str], str]) -> Any:
    """Verdict cells coloured (green better, red worse); the values stay numbers."""
    def style(data: pd.DataFrame) -> pd.DataFrame:
        css = pd.DataFrame("", index=data.index, columns=data.columns)
        for (i, column), verdict in cells.items():
            css.iloc[i, data.columns.get_loc(column)] = MARK_STYLES[verdict]
        return css

    return frame.style.apply(style, axis=None)


def _wide_config(frame: pd.DataFrame) -> dict[str, Any]:
    config: dict[str, Any] = {"rank": st.column_config.NumberColumn("rank", format="%d", width="small"),
                              "method": st.column_config.TextColumn("method", width="medium", pinned=True)}
    for column in frame.columns:
        if column in ("rank", "method", "seeds", "missing", "store") or column.startswith("vs "):
            continue
        fmt = "localized" if column == "adapter params" else ("%.0f" if "MiB" in column or column == "train s" else "%.2f")
        key_column = column.startswith("average") or column in ("adapter params", "train s") or "MiB" in column
        config[column] = st.column_config.NumberColumn(column, format=fmt, width=None if key_column else "small")
    return config


def render_leaderboard(table: pd.DataFrame, baseline: str,
                       sources: dict[tuple[str, str], str] | None = None, store_root: str | None = None) -> None:
    """Per suite, GLUE first: the ranked wide table with CIs and the marks against the baseline, then
    the paired comparison, the limited runs and the per-task rows."""
    for suite in aggregate.ordered_suites(table["suite"].unique()):
        st.subheader("Suite: " + plain(suite))
        wide = aggregate.wide_table(table, suite)
        comparison = aggregate.compare_to_baseline(table, suite, baseline, store_root=store_root)
        limited = aggregate.wide_table(table, suite, limited=True)
        if len(wide):
            st.caption(plain(aggregate.wide_caption(suite, wide, baseline if len(comparison) else None)))
            if sources and len({v for (s_, _), v in sources.items() if s_ == suite}) > 1:
                wide = wide.assign(store=[sources.get((suite, str(h)), "") for h in wide["config_hash"]])
            numeric, cells = wide_numeric(wide, comparison, baseline)
            st.dataframe(_styled(numeric, cells), hide_index=True, width="stretch", column_config=_wide_config(numeric),
                         key=f"ranked-{suite}")
            st.caption(f"Sortable numbers; green / red: better / worse than {plain(baseline)} (paired interval "
                       "excludes 0 and p < 0.05). Intervals and seeds per cell: below.")
            with st.expander("Cells with 95% CI, seeds and marks (as in the report)"):
                shown, _ = aggregate.wide_display(wide, comparison)
                st.dataframe(shown, hide_index=True, width="stretch", key=f"wide-{suite}")
        else:
            st.info("Only limited runs in this suite (below).")
        if len(comparison):
            with st.expander(f"Paired comparison against {plain(baseline)} (per task and the average)"):
                st.caption(plain(aggregate.comparison_caption(baseline)))
                st.dataframe(aggregate.comparison_display(comparison), hide_index=True, width="stretch",
                             key=f"vs-{suite}")
        if len(limited):
            with st.expander(f"Limited runs ({len(limited)}): a cap below the preset's, never ranked with full runs"):
                st.dataframe(aggregate.wide_display(limited)[0], hide_index=True, width="stretch",
                             key=f"limited-{suite}")
        with st.expander("Per task (every configuration and task, numbers sortable)"):
            shown = leaderboard_columns(table[table["suite"] == suite])
            st.dataframe(shown, hide_index=True, width="stretch", column_config=_column_config(),
                         key=f"board-{suite}")
            st.download_button("Download (CSV)", csv_text(shown).encode(),  # formulas neutralised
                               file_name=f"leaderboard-{safe_filename(suite)}.csv", mime="text/csv", key=f"csv-{suite}")
    if table["estimate_memory_bytes"].notna().any():
        st.caption("Memory (CPU estimate) is the harness's estimate (parameters, gradients, optimizer state "
                   "and saved activations), not a measurement; peak memory (GPU measured) is CUDA's "
                   "max_memory_allocated. The two are never in one column.")


def pareto_frame(table: pd.DataFrame, suite: str, target: str, limited: bool) -> tuple[pd.DataFrame, str]:
    """The points of one suite's average (``target == "average"``) or one task, and the y axis title."""
    if target == "average":
        wide = aggregate.wide_table(table, suite, limited=limited)
        wide = wide[wide["complete"]] if len(wide) else wide
        units = wide.attrs.get("units", {})
        points = pd.DataFrame({
            "label": wide["method"], "score": wide["average"], "ci_low": wide["average_ci_low"],
            "ci_high": wide["average_ci_high"], "n": wide["n_seeds"], "params": wide["adapter_params"],
            "memory_mib": wide["peak_memory_mib"], "estimate_mib": wide["cpu_fixed_mib"],
            "train_seconds": wide["train_seconds_quiet"],
            "higher_is_better": all(u["higher_is_better"] for u in units.values()) if units else True,
        })
        none = [t for t, v in wide.attrs.get("signal", {}).items() if v == "no signal"]
        note = f"; includes {', '.join(none)}: {aggregate.NO_SIGNAL}" if none else ""
        return points, f"average over tasks ({aggregate.family_label(wide.attrs.get('average_family'))}{note})"
    rows = table[(table["suite"] == suite) & (table["task"] == target) & (table["limited"] == limited)]
    scale = rows["scale"].fillna(1.0)
    points = pd.DataFrame({
        "label": rows["label"], "score": rows["score_mean"] * scale, "ci_low": rows["score_ci_low"] * scale,
        "ci_high": rows["score_ci_high"] * scale, "n": rows["n_seeds"], "params": rows["params_adapter"],
        "memory_mib": rows["peak_memory_bytes"] / 2**20, "estimate_mib": rows["memory_fixed_bytes"] / 2**20,
        "train_seconds": rows["train_seconds_quiet"], "higher_is_better": rows["higher_is_better"].fillna(True),
    })
    metric = aggregate.first_valid(rows["primary"]) or "score"
    unit = aggregate.first_valid(rows["unit_label"]) or aggregate.UNKNOWN_UNIT.label
    signal = aggregate.task_signal(table, suite) if not limited else None
    statuses = set(signal.loc[signal["task"] == target, "status"]) if signal is not None else set()
    quiet = "no signal" in statuses and "signal" not in statuses
    return points, f"{target} {metric} ({unit})" + (f" [{aggregate.NO_SIGNAL}]" if quiet else "")


def render_pareto(table: pd.DataFrame, reference: pd.DataFrame) -> None:
    scored = table[table["score_mean"].notna()]
    if scored.empty:
        st.info("No successful runs to plot.")
        return
    suites = aggregate.ordered_suites(scored["suite"].unique())
    suite = st.selectbox("Suite", suites, key="pareto-suite")
    tasks = sorted(scored.loc[scored["suite"] == suite, "task"].astype(str).unique())
    # a store of your own with some tasks only has no complete row to average: open on its first task
    wide = aggregate.wide_table(table, suite)
    has_average = bool(len(wide)) and bool(wide["complete"].any())
    target = st.selectbox("Score", ["average", *tasks], key="pareto-target", index=0 if has_average or not tasks else 1,
                          format_func=lambda t: "suite average (complete rows)" if t == "average" else f"task {t}")
    axis = st.radio("x axis", list(charts.PARETO_AXES), horizontal=True, key="pareto-axis")
    y_axis = st.radio("y axis", ["score", *charts.PARETO_AXES], horizontal=True, key="pareto-y-axis")
    label_all = st.toggle("Label every point (default: the front's)", value=False, key="pareto-label-all")
    limited = False
    in_suite = scored[scored["suite"] == suite]
    if in_suite["limited"].any():
        # a smoke run's score says nothing next to a full run's: never on one front
        limited = st.toggle("Limited (smoke) runs instead of full runs", value=not (~in_suite["limited"]).any(),
                            key="pareto-limited")
    points, y_title = pareto_frame(table, suite, target, limited)
    if points["score"].notna().sum() == 0:
        st.info("No configuration has a score here (the suite average needs every task and seed).")
        return
    reported = pd.DataFrame()
    if target != "average" and len(reference) and not limited:
        reported = reference[(reference["suite"] == suite) & (reference["task"] == target)].copy()
        scale = float(aggregate.first_valid(scored.loc[(scored["suite"] == suite) & (scored["task"] == target),
                                                          "scale"]) or 1.0)
        reported["score"] = reported["score"] * scale
    if y_axis == axis:
        st.info("Pick two different axes.")
        return
    st.altair_chart(charts.pareto_chart(points, axis, y_title, reported, y_axis=y_axis, label_all=label_all),
                    width="stretch")
    front = charts.pareto_points(points, axis, y_axis)
    st.caption(f"Error bars: {stats.INTERVAL_METHOD} (none for one seed). Train time: normalised to a quiet "
               "reference machine (CPU time and speed probe of each record); CPU memory: the seed-independent "
               "part of the estimate (parameters, gradients, optimizer state; activations left out). Head-only runs (no adapter "
               "parameters) sit at 1 on the log axis." + (" Hollow diamonds: numbers reported by the papers "
                                                          "(other models and budgets)." if len(reported) else ""))
    st.text("On the front: " + ", ".join(sorted(front.loc[front["on_front"], "label"].astype(str))))


def render_reported(reference: pd.DataFrame, skipped: list[tuple[str, str]]) -> None:
    render_skipped(skipped, "reference rows")
    if reference.empty:
        st.info("No reported numbers in the reference folder (its README says the format and what is missing).")
        return
    st.dataframe(reported_columns(reference), hide_index=True, width="stretch", key="reported-all")


def render_export(frame: pd.DataFrame, baseline: str) -> None:
    """The files ``python -m harness report`` writes, per suite, to view and download."""
    files = aggregate.build_report(frame, baseline=baseline)
    suites = aggregate.ordered_suites(frame["suite"].unique())
    file_names = aggregate.suite_file_names(suites, baseline)  # record strings made safe file names
    for suite in suites:
        names = file_names[suite]
        st.subheader("Suite: " + plain(suite))
        tab_md, tab_tex = st.tabs(["Markdown", "LaTeX"])
        with tab_md:
            st.code(files.get(names["md"], ""), language="markdown")
        with tab_tex:
            st.code(files.get(names["tex"], ""), language="latex")
        cols = st.columns(4)
        for col, name, mime in ((cols[0], names["csv"], "text/csv"),
                                (cols[1], names["vs"], "text/csv"),
                                (cols[2], names["md"], "text/markdown"),
                                (cols[3], names["tex"], "application/x-tex")):
            col.download_button(plain(name), files.get(name, "").encode(), name, mime, key=f"export-{name}")
