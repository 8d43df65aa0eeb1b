"""The tuning files of ``python -m harness report --out DIR``: per suite and task a learning-rate
sensitivity plot and an expected-maximum plot (PNG, matplotlib's Agg canvas, no display and no pyplot
state), and per suite the budget tables (CSV). Built from ``harness.aggregate.tuning_views`` frames.

File names come from record strings (suite and task names): ``safe_name`` keeps only
``[A-Za-z0-9._-]`` (with a short hash of the original when it had to change one, so two names never
collide), and every name starts with ``tuning-``: no path separator, no hidden file, nothing outside
``--out``.
"""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Sequence

import pandas as pd

from harness.aggregate import tuning_views as tv
from harness.metrics import UNKNOWN_UNIT

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
# one colour per method, the same in both plots of a task (matplotlib's tab10, by sorted method name)
COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
          "#17becf"]


def safe_name(text: str) -> str:
    """``text`` with every character outside [A-Za-z0-9._-] replaced by ``_``, dots collapsed (never
    ``..``) and, when anything changed, 8 hex digits of its SHA-1 appended."""
    cleaned = re.sub(r"\.{2,}", ".", _UNSAFE.sub("_", str(text))).strip(".") or "_"
    if cleaned != str(text):
        cleaned += "_" + hashlib.sha1(str(text).encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return cleaned[:80]


def _axis_label(frame: pd.DataFrame, what: str) -> str:
    primary = frame["primary"].dropna().iloc[0] if "primary" in frame and frame["primary"].notna().any() else "score"
    unit = frame["unit_label"].dropna().iloc[0] if frame["unit_label"].notna().any() else ""
    return " ".join(p for p in (what, primary) if p) + (f" ({unit})" if unit and unit != UNKNOWN_UNIT.label else "")


def _scale(frame: pd.DataFrame) -> float:
    values = pd.to_numeric(frame["scale"], errors="coerce").dropna()
    return float(values.iloc[0]) if len(values) else 1.0


def _colors(methods: Sequence[str]) -> dict[str, str]:
    return {m: COLORS[i % len(COLORS)] for i, m in enumerate(sorted(set(methods)))}


def _png(fig) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    return buf.getvalue()


def lr_figure(trials: pd.DataFrame, tuned: pd.DataFrame, title: str):
    """Two panels sharing the score axis, the rate on a log axis: the validation score of each trial
    (a line per method through its complete trials, pruned trials as hollow markers at the best score
    they reached, diverged ones as crosses on the bottom edge) and the test score of its complete
    trials, with the tuned runs' seeds as stars at their chosen rate."""
    from matplotlib.figure import Figure
    from matplotlib.transforms import blended_transform_factory

    fig = Figure(figsize=(11, 4.2))
    val_ax, test_ax = fig.subplots(1, 2, sharex=True, sharey=True)
    scale = _scale(trials)
    colors = _colors(list(trials["method"].unique()) + list(tuned["method"].unique()))
    for method, group in trials.groupby("method", sort=True):
        color = colors[method]
        group = group[group["lr"].notna()].sort_values("lr")
        complete = group[group["state"] == "complete"]
        pruned = group[(group["state"] == "pruned") & group["validation"].notna()]
        diverged = group[group["state"].isin(["diverged", "oom"])]
        if len(complete):
            val_ax.plot(complete["lr"], complete["validation"] * scale, "o-", color=color, label=method)
            test_ax.plot(complete["lr"], complete["test"] * scale, "s--", color=color, label=method)
        if len(pruned):
            val_ax.plot(pruned["lr"], pruned["validation"] * scale, "o", mfc="none", color=color,
                        label=f"{method}: pruned (best before stopping)")
        for ax in (val_ax, test_ax):
            if len(diverged):
                edge = blended_transform_factory(ax.transData, ax.transAxes)
                ax.plot(diverged["lr"], [0.02] * len(diverged), "x", color=color, transform=edge, clip_on=False,
                        label=f"{method}: diverged/oom" if ax is val_ax else None)
    for method, group in tuned[tuned["test"].notna()].groupby("method", sort=True):
        test_ax.plot(group["lr"], group["test"] * scale, "*", ms=12, color=colors[method], mec="black",
                     label=f"{method}: tuned seeds (n={len(group)})")
    if not val_ax.lines and not test_ax.lines:  # nothing scored yet (cancelled, failed, running)
        states = ", ".join(f"{n} {state}" for state, n in trials["state"].value_counts().sort_index().items())
        val_ax.text(0.5, 0.5, f"no trial with a score yet\n({states or 'no trials'})", ha="center", va="center",
                    transform=val_ax.transAxes)
        rates = trials["lr"].dropna()
        if len(rates) and rates.min() > 0:
            val_ax.set_xlim(rates.min() / 2, rates.max() * 2)
    val_ax.set_title("validation (selects the rate)")
    test_ax.set_title("test (read once, at the validation-selected epoch)")
    val_ax.set_ylabel(_axis_label(trials if len(trials) else tuned, ""))
    for ax in (val_ax, test_ax):
        ax.set_xscale("log")
        ax.set_xlabel("learning rate (log)")
        ax.grid(True, which="major", alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=7, loc="best")
    fig.suptitle(title)
    return fig


def expected_max_figure(curves: pd.DataFrame, title: str):
    """Expected best validation score against the number of trials, a line per method with a band of
    one standard deviation, clipped to the range of the draws (Dodge et al. 2019)."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(6.5, 4.2))
    ax = fig.subplots()
    scale = _scale(curves)
    colors = _colors(list(curves["method"].unique()))
    for method, group in curves.groupby("method", sort=True):
        group = group.sort_values("n")
        mean, std = group["expected_max"] * scale, group["expected_max_std"] * scale
        draws, pruned, left = (int(group[c].iloc[0]) for c in ("draws", "pruned_draws", "left_out"))
        note = f" ({draws} trials" + (f", {pruned} pruned" if pruned else "") + (f", {left} left out" if left else "") + ")"
        ax.plot(group["n"], mean, "o-", color=colors[method], ms=3, label=method + note)
        low, high = group["draw_min"].iloc[0] * scale, group["draw_max"].iloc[0] * scale  # never past the data
        ax.fill_between(group["n"], (mean - std).clip(low, high), (mean + std).clip(low, high), color=colors[method],
                        alpha=0.15, lw=0)
    ax.set_xlabel("trials (hyperparameter assignments)")
    unit = curves["unit_label"].dropna().iloc[0] if curves["unit_label"].notna().any() else ""
    ax.set_ylabel("expected max validation score" + (f" ({unit})" if unit and unit != UNKNOWN_UNIT.label else ""))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(True, alpha=0.3)
    if ax.lines:
        ax.legend(fontsize=7, loc="lower right")
    ax.set_title(title, fontsize=10)
    return fig


def tuning_files(frames: dict, suites: Sequence[str] | None = None) -> dict[str, bytes | str]:
    """name -> content of every tuning file: per suite ``tuning-<suite>.csv`` (the budget per method),
    ``tuning-<suite>-studies.csv`` (per study), ``tuning-<suite>-trials.csv`` (every trial: the plots'
    data); per suite and task ``tuning-<suite>-<task>-lr.png`` and ``tuning-<suite>-<task>-expected-max.png``."""
    sens, tuned, curves, budget = (frames[k] for k in ("sensitivity", "tuned", "expected_max", "budget"))
    names = sorted(set(sens["suite"].dropna()) | set(budget["suite"].dropna()))
    if suites is not None:
        names = [s for s in names if s in set(suites)]
    files: dict[str, bytes | str] = {}
    for suite in names:
        s = safe_name(suite)
        files[f"tuning-{s}.csv"] = tv.budget_table(budget, suite).to_csv(index=False)
        files[f"tuning-{s}-studies.csv"] = budget[budget["suite"] == suite].to_csv(index=False)
        files[f"tuning-{s}-trials.csv"] = sens[sens["suite"] == suite].to_csv(index=False)
        for task in sorted(sens.loc[sens["suite"] == suite, "task"].dropna().unique()):
            t = safe_name(task)
            trials = sens[(sens["suite"] == suite) & (sens["task"] == task)]
            seeds = tuned[(tuned["suite"] == suite) & (tuned["task"] == task)]
            files[f"tuning-{s}-{t}-lr.png"] = _png(lr_figure(trials, seeds, f"{suite} / {task}: learning-rate sensitivity"))
            curve = curves[(curves["suite"] == suite) & (curves["task"] == task)]
            if len(curve):
                files[f"tuning-{s}-{t}-expected-max.png"] = _png(expected_max_figure(
                    curve, f"{suite} / {task}: expected best validation score vs trials"))
    return files
