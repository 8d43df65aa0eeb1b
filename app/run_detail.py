"""The run-detail view of the leaderboard app: a picked run's sections, its loss and per-epoch eval curves
overlaid with other runs', and the SVD analyses of its updates."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app import charts
from app.views import plain
from harness import aggregate
from harness.records.record import RunRecord


def _json_section(record: RunRecord, name: str) -> None:
    value = record.get(name)
    if value:
        with st.expander(name.replace("_", " ")):
            st.json(value, expanded=False)


def eval_curve_frame(record: RunRecord) -> pd.DataFrame:
    """Per-epoch dev scores of a run: step, metric, value (display scale)."""
    metrics = record.get("metrics") or {}
    scale = float(metrics.get("display_scale") or 1.0) if isinstance(metrics, dict) else 1.0
    rows = []
    for row in (metrics.get("per_epoch") or []) if isinstance(metrics, dict) else []:
        if not isinstance(row, dict):
            continue
        for key, value in row.items():
            if key not in ("epoch", "step") and isinstance(value, (int, float)) and not isinstance(value, bool):
                rows.append({"step": row.get("step"), "metric": key, "value": value * scale})
    return pd.DataFrame(rows, columns=["step", "metric", "value"])


def _run_label(record: RunRecord) -> str:
    key = record.get("key") or {}
    return f"{key.get('task')} {key.get('adapter')} seed {key.get('seed')} ({key.get('config_hash')})"


def render_curves(records: list[RunRecord]) -> None:
    """Loss and per-epoch dev curves of several runs overlaid."""
    losses, evals = [], []
    for record in records:
        label = _run_label(record)
        loss = aggregate.loss_curve_frame(record)
        if not loss.empty:
            losses.append(loss.assign(run=label))
        ev = eval_curve_frame(record)
        if not ev.empty:
            evals.append(ev.assign(run=label + " " + ev["metric"]))
    if losses:
        st.altair_chart(charts.curves_chart(pd.concat(losses), "loss", "training loss"), width="stretch")
    if evals:
        st.altair_chart(charts.curves_chart(pd.concat(evals), "value", "dev score per epoch"), width="stretch")
    if not losses and not evals:
        st.caption("no curves in these records")


def render_run_detail(records: list[RunRecord]) -> None:
    if not records:
        st.info("No runs match the filters.")
        return
    cols = st.columns(3)
    narrowed = records
    for col, field, label in zip(cols, ("suite", "task", "adapter"), ("Suite", "Task", "Adapter")):
        values = sorted({str((r.get("key") or {}).get(field)) for r in narrowed})
        picked = col.selectbox(label, ["all", *values], key=f"detail-{field}")
        if picked != "all":
            narrowed = [r for r in narrowed if str((r.get("key") or {}).get(field)) == picked]
    by_id = {str(r["run_id"]): r for r in narrowed}
    compare = st.multiselect(f"Overlay the curves of several runs ({len(by_id)} match)", sorted(by_id),
                             default=[], key="detail-compare", placeholder="choose runs to compare")
    if compare:
        render_curves([by_id[i] for i in compare])
    run_id = st.selectbox(f"Run ({len(by_id)} of {len(records)})", sorted(by_id), key="detail-run")
    record = by_id[run_id]
    flat = aggregate.flatten_record(record)
    cols = st.columns(4)
    cols[0].metric("status", str(flat["status"]))
    scale = float(flat["scale"] or 1.0)
    cols[1].metric("score", "–" if flat["score"] is None else f"{flat['score'] * scale:.2f}")
    cols[2].metric("adapter params", aggregate.format_count(flat["params_adapter"]))
    if flat["peak_bytes"] is not None:
        cols[3].metric("peak memory (GPU measured)", aggregate.format_bytes(flat["peak_bytes"]))
    else:
        cols[3].metric("memory (CPU estimate)", aggregate.format_bytes(flat["estimate_bytes"]))
    st.text(f"metric: {flat['primary'] or '–'} ({flat['unit_label']})")
    if flat["error"]:
        st.error("This run did not succeed; its error:")
        st.code(flat["error"], language=None)
    if flat["git_dirty"]:
        st.warning("Run from a dirty tree: the code that ran is not exactly any commit. Commit: "
                   + plain(flat["git_commit"] or "none yet"))
    st.markdown("**Configuration**")
    st.json(record.get("spec", {}), expanded=True)
    for name in ("environment", "metrics", "params", "memory", "timing", "adapter_info", "model_info", "data_info",
                 "preset_defaults", "caps"):
        _json_section(record, name)
    loss = aggregate.loss_curve_frame(record)
    st.markdown("**Loss curve**")
    if loss.empty:
        st.caption("no loss curve in this record")
    else:
        st.altair_chart(charts.loss_chart(loss), width="stretch")
    render_analysis(record)


def render_analysis(record: RunRecord) -> None:
    st.markdown("**SVD analyses of the weight updates**")
    singular = aggregate.singular_values_frame(record)
    if singular.empty:
        st.caption("no SVD analysis in this record (not a low-rank adapter, or the run failed)")
        return
    st.altair_chart(charts.singular_values_chart(singular), width="stretch")
    m_eff = aggregate.m_eff_frame(record)
    if not m_eff.empty:
        st.markdown("M_eff-k: share of the top-k singular values in the sum (MSPLoRA eq. 8)")
        st.altair_chart(charts.m_eff_chart(m_eff), width="content")
    for name, frame in aggregate.analysis_matrices(record):
        st.altair_chart(charts.heatmap(frame, name), width="content")
