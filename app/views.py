"""The leaderboard app's pages: each renders one tab from already loaded, filtered frames.

Reads only; nothing here writes to the result store.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd
import streamlit as st

from app import charts
from harness import aggregate

RUN_COMMAND = "python -m harness run --suite glue --preset cpu"


def leaderboard_columns(table: pd.DataFrame) -> pd.DataFrame:
    """The leaderboard with numeric columns kept numeric, so the app's table sorts them as numbers."""
    return pd.DataFrame({
        "source": table["source"],
        "task": table["task"],
        "adapter": table["adapter"],
        "configuration": table["configuration"],
        "limited": table["limited"],
        "dirty tree": table["git_dirty"].fillna(False).astype(bool),
        "model": table["model"],
        "preset": table["preset"],
        "metric": table["primary"],
        "score %": table["score_mean"] * _scales(table),
        "± std": table["score_std"] * _scales(table),
        "seeds": table["n_seeds"],
        "failed": table["n_failed"],
        "diverged": table["n_diverged"],
        "oom": table["n_oom"],
        "status": table["statuses"],
        "adapter params": table["params_adapter"],
        "head params": table["params_head"],
        "peak memory MiB": table["peak_memory_bytes"] / 2**20,
        "memory": table["memory_estimated"].map({True: "CPU estimate", False: "GPU measured"}).fillna("–"),
        "train s": table["train_seconds"],
        "step ms": table["mean_step_seconds"] * 1000,
    }).reset_index(drop=True)


def _scales(table: pd.DataFrame) -> pd.Series:
    # fractions are shown in percent; COCO's rsum and MT-Bench's rating are shown as the suites report them
    return table["primary"].map(aggregate.display_scale)


NUMBER_FORMATS = {
    "score %": "%.2f", "± std": "%.2f", "adapter params": "localized", "head params": "localized",
    "peak memory MiB": "%.0f", "train s": "%.1f", "step ms": "%.0f",
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
        "score %": reference["score"] * 100,
        "params": reference["params"],
        "cited from": reference["source"],
    }).reset_index(drop=True)


def render_skipped(skipped: list[tuple[str, str]], what: str) -> None:
    if skipped:
        lines = "\n".join(f"- `{path}`: {why}" for path, why in skipped)
        st.warning(f"Skipped {len(skipped)} {what} that could not be read:\n\n{lines}")


def render_empty(results_dir: str) -> None:
    st.info(
        f"No run records in `{results_dir}` yet. Produce some with\n\n`{RUN_COMMAND} --results-dir {results_dir}`\n\n"
        "or point the sidebar's results folder at an existing store."
    )


def render_leaderboard(table: pd.DataFrame, reference: pd.DataFrame) -> None:
    for suite in sorted(table["suite"].unique()):
        st.subheader(f"Suite: {suite}")
        suite_table = table[table["suite"] == suite]
        averages = aggregate.suite_average(suite_table)
        st.markdown("**Suite average** (mean over tasks of the seed means; our runs only)")
        st.dataframe(
            pd.DataFrame({
                "adapter": averages["adapter"], "configuration": averages["configuration"],
                "model": averages["model"], "preset": averages["preset"], "limited": averages["limited"],
                "average %": averages["score_avg"] * aggregate.display_scale(suite_table["primary"].iloc[0]),
                "tasks": averages["n_tasks"].astype(str) + " / " + averages["n_suite_tasks"].astype(str),
                "complete": averages["complete"], "adapter params": averages["params_adapter"],
                "failed runs": averages["n_failed_runs"],
            }),
            hide_index=True, width="stretch",
            column_config={"average %": st.column_config.NumberColumn(format="%.2f"),
                           "adapter params": st.column_config.NumberColumn(format="localized")},
            key=f"average-{suite}",
        )
        st.markdown("**Per task** (click a column header to sort)")
        shown = leaderboard_columns(suite_table)
        st.dataframe(shown, hide_index=True, width="stretch", column_config=_column_config(), key=f"board-{suite}")
        st.download_button(
            "Download this table (CSV)", shown.to_csv(index=False).encode(), file_name=f"leaderboard-{suite}.csv",
            mime="text/csv", key=f"csv-{suite}",
        )
        reported = reference[reference["suite"] == suite] if len(reference) else reference
        if len(reported):
            st.markdown("**Reported in the papers** (marked *reported*; other models and budgets than ours, "
                        "never part of our averages)")
            st.dataframe(reported_columns(reported), hide_index=True, width="stretch",
                         column_config={"score %": st.column_config.NumberColumn(format="%.2f"),
                                        "params": st.column_config.NumberColumn(format="localized")},
                         key=f"reported-{suite}")
    st.caption("Scores are in percent, except COCO's rsum (the sum of six recalls, 0-600) and MT-Bench's "
               "1-10 rating, shown as the suites report them.")
    if table["memory_estimated"].fillna(False).astype(bool).any():
        st.caption("Peak memory marked *CPU estimate* is the harness's estimate (parameters, gradients, "
                   "optimizer state and saved activations), not a measurement; *GPU measured* is CUDA's "
                   "max_memory_allocated.")


def render_pareto(table: pd.DataFrame) -> None:
    scored = table[table["score_mean"].notna()]
    if scored.empty:
        st.info("No successful runs to plot.")
        return
    tasks = sorted(f"{s} / {t}" for s, t in scored[["suite", "task"]].drop_duplicates().itertuples(index=False))
    choice = st.selectbox("Task", tasks, key="pareto-task")
    suite, task = choice.split(" / ", 1)
    points = scored[(scored["suite"] == suite) & (scored["task"] == task)]
    if points["limited"].any() and not points["limited"].all():
        # a smoke run's score says nothing next to a full run's: never on one front
        show_limited = st.toggle("Limited (smoke) runs instead of full runs", value=False, key="pareto-limited")
        points = points[points["limited"] == show_limited]
    estimated = bool(points["memory_estimated"].fillna(False).astype(bool).any())
    left, right = st.columns(2)
    with left:
        st.markdown("**Score vs trainable parameters**")
        st.altair_chart(charts.pareto_chart(points, "params"), width="stretch")
    with right:
        st.markdown("**Score vs peak memory**" + (" (CPU estimate)" if estimated else ""))
        st.altair_chart(charts.pareto_chart(points, "memory", estimated=estimated), width="stretch")
    front = charts.pareto_points(points, "params")
    st.caption("On the parameter front: " + ", ".join(sorted(front[front["on_front"]]["label"]))
               + ". Runs with no adapter parameters (head only) are drawn at 1 on the log axis.")


def _json_section(record: Mapping[str, Any], name: str) -> None:
    value = record.get(name)
    if value:
        with st.expander(name.replace("_", " ")):
            st.json(value, expanded=False)


def render_run_detail(records: list[dict[str, Any]]) -> None:
    if not records:
        st.info("No runs match the filters.")
        return
    by_id = {r["run_id"]: r for r in records}
    run_id = st.selectbox("Run", sorted(by_id), key="detail-run")
    record = by_id[run_id]
    flat = aggregate.flatten_record(record)
    cols = st.columns(4)
    cols[0].metric("status", flat["status"])
    cols[1].metric(flat["primary"] or "score", "–" if flat["score"] is None else f"{flat['score'] * aggregate.display_scale(flat['primary']):.2f}")
    cols[2].metric("adapter params", aggregate.format_count(flat["params_adapter"]))
    cols[3].metric("peak memory" + (" (CPU estimate)" if flat["memory_estimated"] else ""),
                   aggregate.format_bytes(flat["peak_bytes"]))
    if flat["error"]:
        st.error(flat["error"])
    if flat["git_dirty"]:
        commit = flat["git_commit"] or "none yet"
        st.warning(f"Run from a dirty tree (commit {commit}): the code that ran is not exactly any commit.")
    st.markdown("**Configuration**")
    st.json(record.get("spec", {}), expanded=True)
    for name in ("environment", "metrics", "params", "memory", "timing", "adapter_info", "model_info", "data_info"):
        _json_section(record, name)
    loss = aggregate.loss_curve_frame(record)
    st.markdown("**Loss curve**")
    if loss.empty:
        st.caption("no loss curve in this record")
    else:
        st.altair_chart(charts.loss_chart(loss), width="stretch")
    render_analysis(record)


def render_analysis(record: Mapping[str, Any]) -> None:
    st.markdown("**SVD analyses of the weight updates**")
    singular = aggregate.singular_values_frame(record)
    if singular.empty:
        st.caption("no SVD analysis in this record (not a low-rank adapter, or the run failed)")
        return
    st.altair_chart(charts.singular_values_chart(singular), width="stretch")
    m_eff = aggregate.m_eff_frame(record)
    if not m_eff.empty:
        st.markdown("M_eff-k: share of the top-k singular values in the sum (MSPLoRA eq. 8)")
        st.altair_chart(charts.m_eff_chart(m_eff), width="stretch")
    for name, frame in aggregate.analysis_matrices(record):
        st.altair_chart(charts.heatmap(frame, name), width="stretch")


def render_reported(reference: pd.DataFrame, skipped: list[tuple[str, str]], folder: str) -> None:
    render_skipped(skipped, "reference rows")
    if reference.empty:
        st.info(f"No reported numbers in `{folder}` (see its README for the format and what is missing).")
        return
    st.dataframe(reported_columns(reference), hide_index=True, width="stretch",
                 column_config={"score %": st.column_config.NumberColumn(format="%.2f")}, key="reported-all")


def render_export(table: pd.DataFrame) -> None:
    for suite in sorted(table["suite"].unique()):
        suite_table = table[table["suite"] == suite]
        st.subheader(f"Suite: {suite}")
        paper = aggregate.paper_table(suite_table)
        st.dataframe(paper, hide_index=True, width="stretch", key=f"paper-{suite}")
        markdown = aggregate.to_markdown(paper)
        latex = aggregate.to_latex(paper, caption=f"{suite}: score (%) mean±std over seeds")
        tab_md, tab_tex = st.tabs(["Markdown", "LaTeX"])
        with tab_md:
            st.code(markdown, language="markdown")
        with tab_tex:
            st.code(latex, language="latex")
        cols = st.columns(3)
        cols[0].download_button("CSV", paper.to_csv(index=False).encode(), f"{suite}.csv", "text/csv",
                                key=f"export-csv-{suite}")
        cols[1].download_button("Markdown", markdown.encode(), f"{suite}.md", "text/markdown",
                                key=f"export-md-{suite}")
        cols[2].download_button("LaTeX", latex.encode(), f"{suite}.tex", "application/x-tex",
                                key=f"export-tex-{suite}")
