"""Altair charts of the leaderboard app: pure functions from DataFrames to charts (no Streamlit)."""

from __future__ import annotations

import altair as alt
import pandas as pd

from harness import aggregate

PARETO_AXES = {
    "params": ("params_adapter", "trainable parameters (adapter, head apart)"),
    "memory": ("peak_memory_bytes", "peak memory (MiB)"),
}


def pareto_points(table: pd.DataFrame, axis: str) -> pd.DataFrame:
    """Leaderboard rows with a score and the chosen cost, the front marked, ready to plot."""
    cost, _ = PARETO_AXES[axis]
    points = table[table["score_mean"].notna() & table[cost].notna()].copy()
    if axis == "params":
        # log axes cannot show 0 (head-only runs have no adapter parameters): plot them at 1
        points["cost"] = points[cost].clip(lower=1)
    else:
        points["cost"] = points[cost] / 2**20
    # percent for fractions; rsum and MT-Bench ratings as reported
    points["score_pct"] = points["score_mean"] * points["primary"].map(aggregate.display_scale)
    points["on_front"] = aggregate.pareto_front(points, cost, "score_mean")
    points["label"] = points["adapter"] + " · " + points["configuration"]
    return points


def pareto_chart(table: pd.DataFrame, axis: str, *, estimated: bool = False) -> alt.LayerChart:
    """Score against cost, one point per configuration, the Pareto front drawn as a step line."""
    _, title = PARETO_AXES[axis]
    if axis == "memory" and estimated:
        title = "peak memory (MiB, CPU estimate)"
    points = pareto_points(table, axis)
    scale = alt.Scale(type="log") if axis == "params" else alt.Scale(zero=False)
    x = alt.X("cost:Q", title=title, scale=scale)
    y = alt.Y("score_pct:Q", title="score (%)", scale=alt.Scale(zero=False))
    tooltip = ["task:N", "adapter:N", "configuration:N", "model:N", "preset:N",
               alt.Tooltip("score_pct:Q", format=".2f", title="score %"), alt.Tooltip("cost:Q", format=",.0f"),
               "n_seeds:Q", "on_front:N"]
    dots = alt.Chart(points).mark_point(filled=True).encode(
        x=x, y=y, color=alt.Color("adapter:N"), shape=alt.Shape("on_front:N", title="Pareto front"),
        size=alt.condition("datum.on_front", alt.value(140), alt.value(60)), tooltip=tooltip,
    )
    front = alt.Chart(points[points["on_front"]].sort_values("cost")).mark_line(
        interpolate="step-after", color="black", strokeDash=[4, 3]
    ).encode(x=x, y=y)
    return (front + dots).properties(height=340)


def loss_chart(loss: pd.DataFrame) -> alt.Chart:
    return alt.Chart(loss).mark_line().encode(x="step:Q", y=alt.Y("loss:Q", scale=alt.Scale(zero=False)))


def singular_values_chart(frame: pd.DataFrame) -> alt.Chart:
    return alt.Chart(frame).mark_line(point=True).encode(
        x=alt.X("index:O", title="singular value index"),
        y=alt.Y("singular_value:Q", title="singular value", scale=alt.Scale(type="symlog")),
        color=alt.Color("component:N", legend=alt.Legend(orient="bottom", columns=2)),
        tooltip=["component:N", "index:O", alt.Tooltip("singular_value:Q", format=".4g")],
    ).properties(height=320)


def m_eff_chart(frame: pd.DataFrame) -> alt.Chart:
    return alt.Chart(frame).mark_rect().encode(
        x=alt.X("k:O", title="k"), y=alt.Y("component:N", title=None, sort=None),
        color=alt.Color("m_eff:Q", title="M_eff-k", scale=alt.Scale(domain=[0, 1])),
        tooltip=["component:N", "k:O", alt.Tooltip("m_eff:Q", format=".3f")],
    ).properties(height=max(120, 18 * frame["component"].nunique()))


def heatmap(frame: pd.DataFrame, title: str) -> alt.Chart:
    return alt.Chart(frame).mark_rect().encode(
        x=alt.X("col:O", title=None, sort=None), y=alt.Y("row:O", title=None, sort=None),
        color=alt.Color("value:Q", title=None), tooltip=["row:O", "col:O", alt.Tooltip("value:Q", format=".4g")],
    ).properties(title=title, height=max(120, 24 * frame["row"].nunique()))
