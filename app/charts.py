"""Altair charts of the leaderboard app: pure functions from DataFrames to charts (no Streamlit)."""

from __future__ import annotations

import altair as alt
import pandas as pd

from harness import aggregate

# x axis choices of the Pareto tab: (column of the points frame, axis title, log scale)
PARETO_AXES = {
    "adapter parameters": ("params", "trainable adapter parameters (head apart; log)", True),
    "peak memory (GPU measured)": ("memory_mib", "peak memory (MiB, CUDA max_memory_allocated)", False),
    "memory (CPU estimate)": ("estimate_mib", "memory (MiB, CPU estimate without activations: not a measurement)",
                              False),
    "train time": ("train_seconds", "train time (s, quiet reference machine)", False),
}
# 20 distinguishable colours; labels next to the points name them anyway
PALETTE = "tableau20"
CELL = 28  # px per heatmap cell: square cells, so a layer x layer matrix is a square


def pareto_points(points: pd.DataFrame, axis: str, y_axis: str = "score") -> pd.DataFrame:
    """Rows with a score and the chosen cost, the Pareto front marked (in the metric's direction).

    ``points`` has: label, score, ci_low, ci_high, n, params, memory_mib (measured), estimate_mib (the
    CPU estimate), train_seconds (and optional higher_is_better). A point lacking the chosen cost is
    left out: a measured peak and an estimate are never on one axis."""
    cost, _, log = PARETO_AXES[axis]
    out = points[points["score"].notna() & points[cost].notna()].copy()
    # log axes cannot show 0 (head-only runs have no adapter parameters): plot them at 1
    out["cost"] = out[cost].clip(lower=1) if log else out[cost]
    if y_axis != "score":  # two costs: the front minimises both
        y_cost, _, y_log = PARETO_AXES[y_axis]
        out = out[out[y_cost].notna()].copy()
        out["y"] = out[y_cost].clip(lower=1) if y_log else out[y_cost]
        out["_front_score"] = -out["y"]
        out["on_front"] = aggregate.pareto_front(out, "cost", "_front_score")
        out["seeds"] = out["n"].map(lambda n: "1 seed" if n == 1 else f"{int(n)} seeds")
        return out.drop(columns="_front_score")
    out["y"] = out["score"]
    higher = bool(out["higher_is_better"].all()) if "higher_is_better" in out and len(out) else True
    out["_front_score"] = out["score"] if higher else -out["score"]
    out["on_front"] = aggregate.pareto_front(out, cost, "_front_score")
    out["seeds"] = out["n"].map(lambda n: "1 seed" if n == 1 else f"{int(n)} seeds")
    return out.drop(columns="_front_score")


def pareto_chart(points: pd.DataFrame, axis: str, y_title: str, reported: pd.DataFrame | None = None,
                 y_axis: str = "score", label_all: bool = False) -> alt.LayerChart:
    """Score (or a second cost) against cost: a point per configuration with its 95% CI as an error bar,
    the front as a dashed step line, and the papers' reported numbers as hollow black diamonds. Only the
    front's points are labelled unless ``label_all`` (the legend and tooltips name every point): labels
    of a crowded cloud overlap."""
    cost, title, log = PARETO_AXES[axis]
    data = pareto_points(points, axis, y_axis)
    scale = alt.Scale(type="log") if log else alt.Scale(zero=False)
    x = alt.X("cost:Q", title=title, scale=scale)
    if y_axis != "score":
        _, y_title, y_log = PARETO_AXES[y_axis]
        y = alt.Y("y:Q", title=y_title, scale=alt.Scale(type="log") if y_log else alt.Scale(zero=False))
    else:
        y = alt.Y("y:Q", title=y_title, scale=alt.Scale(zero=False))
    # tableau10's ten hues are far apart; tableau20 (pairs of light and dark) only above ten configurations
    scheme = "tableau10" if data["label"].nunique() <= 10 else PALETTE
    color = alt.Color("label:N", title="configuration", scale=alt.Scale(scheme=scheme),
                      legend=alt.Legend(orient="right", labelLimit=260))
    tooltip = ["label:N", alt.Tooltip("score:Q", format=".2f", title=y_title),
               alt.Tooltip("ci_low:Q", format=".2f", title="95% CI low"),
               alt.Tooltip("ci_high:Q", format=".2f", title="95% CI high"), "seeds:N",
               alt.Tooltip("cost:Q", format=",.0f", title=title), "on_front:N"]
    base = alt.Chart(data)
    bars = base.transform_filter("isValid(datum.ci_low)").mark_rule(strokeWidth=2).encode(
        x=x, y=alt.Y("ci_low:Q", title=y_title), y2="ci_high:Q", color=color)
    labelled = data if label_all else data[data["on_front"]]
    dots = base.mark_point(filled=True).encode(
        x=x, y=y, color=color, shape=alt.Shape("on_front:N", title="Pareto front"),
        size=alt.condition("datum.on_front", alt.value(160), alt.value(70)), tooltip=tooltip)
    labels = alt.Chart(labelled).mark_text(align="left", dx=8, dy=-8, fontSize=12, fontWeight="bold").encode(
        x=x, y=y, text="label:N", color=color)
    front = alt.Chart(data[data["on_front"]].sort_values("cost")).mark_line(
        interpolate="step-after", color="black", strokeDash=[4, 3]).encode(x=x, y=y)
    layers = [front, bars, dots, labels] if y_axis == "score" else [front, dots, labels]
    if reported is not None and len(reported) and axis == "adapter parameters" and y_axis == "score":
        ref = reported[reported["score"].notna() & reported["params"].notna()].copy()
        if len(ref):
            ref["cost"] = ref["params"].clip(lower=1)
            ref["label"] = ref["method"] + " (reported, " + ref["paper"] + ")"
            ref["y"] = ref["score"]
            layers.append(alt.Chart(ref).mark_point(shape="diamond", filled=False, color="black", size=120).encode(
                x=x, y=y, tooltip=["label:N", "model:N", alt.Tooltip("score:Q", format=".2f"), "source:N"]))
            layers.append(alt.Chart(ref).mark_text(align="left", dx=7, dy=8, fontSize=10, color="black").encode(
                x=x, y=y, text="label:N"))
    return alt.layer(*layers).properties(height=420)


def curves_chart(frame: pd.DataFrame, y: str, y_title: str) -> alt.Chart:
    """Several runs' curves overlaid: one line per run (``run`` column) against the optimizer step."""
    return alt.Chart(frame).mark_line(point=len(frame) < 200).encode(
        x=alt.X("step:Q", title="optimizer step"), y=alt.Y(f"{y}:Q", title=y_title, scale=alt.Scale(zero=False)),
        color=alt.Color("run:N", title="run", scale=alt.Scale(scheme=PALETTE), legend=alt.Legend(orient="bottom",
                                                                                                  labelLimit=400)),
        tooltip=["run:N", "step:Q", alt.Tooltip(f"{y}:Q", format=".4g")],
    ).properties(height=320)


def loss_chart(loss: pd.DataFrame) -> alt.Chart:
    return alt.Chart(loss).mark_line().encode(
        x=alt.X("step:Q", title="optimizer step"), y=alt.Y("loss:Q", title="training loss", scale=alt.Scale(zero=False)))


def singular_values_chart(frame: pd.DataFrame) -> alt.Chart:
    """Singular values per component on a log axis. (A symlog axis squeezed values below 1, i.e. all of
    them, into a flat strip at the bottom; a legend below a fixed height squeezed it further.)"""
    positive = frame[frame["singular_value"] > 0]
    return alt.Chart(positive).mark_line(point=True).encode(
        x=alt.X("index:O", title="singular value index (largest first)"),
        y=alt.Y("singular_value:Q", title="singular value (log)", scale=alt.Scale(type="log")),
        color=alt.Color("component:N", scale=alt.Scale(scheme=PALETTE), legend=alt.Legend(orient="right")),
        tooltip=["component:N", "index:O", alt.Tooltip("singular_value:Q", format=".4g")],
    ).properties(height=380)


def m_eff_chart(frame: pd.DataFrame) -> alt.Chart:
    n_x, n_y = frame["k"].nunique(), frame["component"].nunique()
    return alt.Chart(frame).mark_rect().encode(
        x=alt.X("k:O", title="k (top-k singular values)"),
        y=alt.Y("component:N", title="component (module, layer)", sort=None),
        color=alt.Color("m_eff:Q", title="M_eff-k", scale=alt.Scale(domain=[0, 1])),
        tooltip=["component:N", "k:O", alt.Tooltip("m_eff:Q", format=".3f")],
    ).properties(width=CELL * n_x, height=CELL * n_y)


def heatmap(frame: pd.DataFrame, title: str) -> alt.Chart:
    """A matrix with square cells (a layer x layer KL matrix is square) and its axis titles."""
    n_x, n_y = frame["col"].nunique(), frame["row"].nunique()
    return alt.Chart(frame).mark_rect().encode(
        x=alt.X("col:O", title=frame.attrs.get("col_title", "column"), sort=None),
        y=alt.Y("row:O", title=frame.attrs.get("row_title", "row"), sort=None),
        color=alt.Color("value:Q", title="value"),
        tooltip=["row:O", "col:O", alt.Tooltip("value:Q", format=".4g")],
    ).properties(title=title, width=max(CELL * n_x, 120), height=max(CELL * n_y, 120))


def lr_sensitivity_chart(trials: pd.DataFrame, tuned: pd.DataFrame, y_title: str) -> alt.LayerChart:
    """Validation (solid) and test (dashed) score of each trial against its rate on a log axis, a colour
    per method; pruned trials as hollow circles at the best validation score they reached; the tuned
    runs' seeds as black-edged diamonds (test score) at their chosen rate. Scores on the display scale."""
    scale = float(aggregate.first_valid(trials["scale"]) or 1.0) if len(trials) else 1.0
    long = pd.concat([
        trials.assign(split="validation", score=trials["validation"] * scale),
        trials.assign(split="test", score=trials["test"] * scale),
    ], ignore_index=True)
    long = long[long["score"].notna() & long["lr"].notna()]
    x = alt.X("lr:Q", title="learning rate (log)", scale=alt.Scale(type="log"))
    y = alt.Y("score:Q", title=y_title, scale=alt.Scale(zero=False))
    color = alt.Color("method:N", title="method", scale=alt.Scale(scheme="tableau10"))
    dash = alt.StrokeDash("split:N", title="split", sort=["validation", "test"])
    tooltip = ["method:N", "split:N", "state:N", "trial:Q", alt.Tooltip("lr:Q", format=".3g"),
               alt.Tooltip("score:Q", format=".2f")]
    complete = long[long["state"] == "complete"].sort_values("lr")
    layers = [
        alt.Chart(complete).mark_line(point=True).encode(x=x, y=y, color=color, strokeDash=dash, detail="split:N",
                                                         tooltip=tooltip),
        alt.Chart(long[long["state"] == "pruned"]).mark_point(filled=False, size=60).encode(
            x=x, y=y, color=color, tooltip=tooltip),
    ]
    seeds = tuned[tuned["test"].notna() & tuned["lr"].notna()]
    if len(seeds):
        seeds = seeds.assign(score=seeds["test"] * scale, split="test (tuned seed)")
        layers.append(alt.Chart(seeds).mark_point(shape="diamond", filled=True, size=120, stroke="black",
                                                  strokeWidth=1).encode(
            x=x, y=y, color=color, tooltip=["method:N", "seed:Q", alt.Tooltip("lr:Q", format=".3g"),
                                            alt.Tooltip("score:Q", format=".2f")]))
    return alt.layer(*layers).properties(height=320)


def expected_max_chart(curves: pd.DataFrame, y_title: str) -> alt.LayerChart:
    """Expected best validation score against the number of trials (Dodge et al. 2019), a line per
    method and a band of one standard deviation clipped to the range of its draws."""
    scale = float(aggregate.first_valid(curves["scale"]) or 1.0) if len(curves) else 1.0
    data = curves.assign(
        mean=curves["expected_max"] * scale,
        low=(curves["expected_max"] - curves["expected_max_std"]).clip(curves["draw_min"], curves["draw_max"]) * scale,
        high=(curves["expected_max"] + curves["expected_max_std"]).clip(curves["draw_min"], curves["draw_max"]) * scale)
    x = alt.X("n:Q", title="trials (hyperparameter assignments)", axis=alt.Axis(tickMinStep=1, format="d"))
    color = alt.Color("method:N", title="method", scale=alt.Scale(scheme="tableau10"))
    band = alt.Chart(data).mark_area(opacity=0.15).encode(
        x=x, y=alt.Y("low:Q", title=y_title, scale=alt.Scale(zero=False)), y2="high:Q", color=color)
    line = alt.Chart(data).mark_line(point=True).encode(
        x=x, y=alt.Y("mean:Q", title=y_title, scale=alt.Scale(zero=False)), color=color,
        tooltip=["method:N", "n:Q", alt.Tooltip("mean:Q", format=".2f", title="expected max"),
                 alt.Tooltip("expected_max_std:Q", format=".3f", title="sd (raw scale)"), "draws:Q",
                 "pruned_draws:Q", "left_out:Q"])
    return alt.layer(band, line).properties(height=320)
