"""Every configuration against a baseline adapter: paired statistics per task and for the average."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from harness import stats
from harness.aggregate._values import ours_only
from harness.aggregate.wide import (
    average_unit,
    family_label,
    scaled_seeds,
    task_units,
    tasks_of_group,
    wide_table,
)

COMPARISON_COLUMNS = ("method", "config_hash", "baseline", "model", "preset", "task", "unit", "n_pairs", "delta",
                      "ci_low", "ci_high", "p_value", "p_improvement", "verdict")


def baseline_rows(table: pd.DataFrame, suite: str, baseline: str) -> pd.DataFrame:
    """Per (model, preset), the row of adapter ``baseline`` to compare against: the one at the preset's
    settings (no training setting changed; ties: the most seeds, then the shortest label)."""
    wide = wide_table(table, suite)
    if wide.empty:
        return wide
    mine = wide[wide["adapter"] == baseline].copy()
    if mine.empty:
        return mine
    mine["_changed"] = mine["method"].str.count("·")
    mine["_seeds"] = mine[[c for c in mine.columns if c.endswith("_n")]].sum(axis=1)
    mine["_len"] = mine["method"].str.len()
    mine = mine.sort_values(["_changed", "_seeds", "_len"], ascending=[True, False, True], kind="stable")
    # one baseline row per regime: tuned rows are compared with the tuned baseline, fixed-rate rows with
    # the fixed-rate one (harness/aggregate/regime.py)
    return mine.groupby(["model", "preset", "regime"], sort=True).head(1).drop(columns=["_changed", "_seeds", "_len"])


def compare_to_baseline(table: pd.DataFrame, suite: str, baseline: str = "lora") -> pd.DataFrame:
    """Every full-run configuration of ``suite`` against the baseline adapter at the same model and
    preset: per task (and for the average, when both rows have every task) the paired statistics of
    harness.stats over the seeds both have, on the display scale of the task's unit."""
    ours = ours_only(table[(table["suite"] == suite) & (~table["limited"])] if len(table) else table)
    base = baseline_rows(table, suite, baseline)
    units = task_units(ours) if len(ours) else {}
    average_family = average_unit(units)
    rows = []
    for _, b in base.iterrows():
        group = ours[(ours["model"] == b["model"]) & (ours["preset"] == b["preset"])
                     & (ours["regime"] == b["regime"])]
        group_tasks = tasks_of_group(group)
        base_cells = {str(r["task"]): r for _, r in group[group["row_key"] == b["config_hash"]].iterrows()}
        for row_key, conf in group.groupby("row_key", sort=True):
            if row_key == b["config_hash"]:
                continue
            cells = {str(r["task"]): r for _, r in conf.iterrows()}
            label = conf.iloc[0]["label"]
            xs_all, ys_all, seeds_all = [], [], []
            for task in group_tasks:
                if task not in cells or task not in base_cells:
                    continue
                scale, higher = units[task]["scale"], units[task]["higher_is_better"]
                x, y = scaled_seeds(cells[task], scale), scaled_seeds(base_cells[task], scale)
                shared = sorted(set(x) & set(y))
                result = stats.paired_comparison([x[s] for s in shared], [y[s] for s in shared], higher)
                xs_all.append([x[s] for s in shared])
                ys_all.append([y[s] for s in shared])
                seeds_all.append(shared)
                rows.append(_comparison_row(label, row_key, b, task, f"{units[task]['metric']} ({units[task]['label']})",
                                            result))
            if average_family and len(xs_all) == len(group_tasks) and group_tasks:
                higher = all(u["higher_is_better"] for u in units.values())
                result = stats.paired_average_comparison(xs_all, ys_all, higher, seeds=seeds_all)
                rows.append(_comparison_row(label, row_key, b, "average", f"mean over tasks ({family_label(average_family)})",
                                            result))
    out = pd.DataFrame(rows, columns=list(COMPARISON_COLUMNS))
    if out.empty:
        return out
    # in the order of the ranked table, tasks as its columns
    order = {h: i for i, h in enumerate(wide_table(table, suite)["config_hash"])}
    task_order = {t: i for i, t in enumerate([*units, "average"])}
    out["_r"], out["_t"] = out["config_hash"].map(order), out["task"].map(task_order)
    return out.sort_values(["_r", "_t"], kind="stable").drop(columns=["_r", "_t"]).reset_index(drop=True)


def _comparison_row(label: str, row_key: str, base: Mapping[str, Any], task: str, unit: str,
                    result: stats.Comparison) -> dict[str, Any]:
    return {"method": label, "config_hash": row_key, "baseline": base["method"], "model": base["model"],
            "preset": base["preset"], "task": task, "unit": unit, "n_pairs": result.n_pairs,
            "delta": result.delta, "ci_low": result.ci_low, "ci_high": result.ci_high, "p_value": result.p_value,
            "p_improvement": result.p_improvement, "verdict": result.verdict}


def verdicts(comparison: pd.DataFrame) -> dict[tuple[str, str], str]:
    """(config_hash, task) -> better | worse | tied | n/a, for the tie marks of the tables."""
    return {(str(r["config_hash"]), str(r["task"])): str(r["verdict"]) for _, r in comparison.iterrows()}


def comparison_display(comparison: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({
        "method": comparison["method"], "task": comparison["task"], "unit": comparison["unit"],
        "pairs": comparison["n_pairs"].astype(int),
        "delta": comparison["delta"].map(lambda v: "–" if pd.isna(v) else f"{v:+.2f}"),
        "95% CI": [("–" if pd.isna(lo) else f"[{lo:+.2f}, {hi:+.2f}]")
                   for lo, hi in zip(comparison["ci_low"], comparison["ci_high"])],
        "p (paired t)": comparison["p_value"].map(lambda v: "–" if pd.isna(v) else f"{v:.3f}"),
        "P(better)": comparison["p_improvement"].map(lambda v: "–" if pd.isna(v) else f"{v:.2f}"),
        "verdict": comparison["verdict"],
    }).reset_index(drop=True)


def comparison_caption(baseline: str) -> str:
    return (f"Per task, in the task's unit: the mean difference (configuration - {baseline}) over the seeds both "
            "have, its paired bootstrap 95% CI, the paired t-test p-value and P(better), the share of seed pairs "
            "in which the configuration scores higher (ties count half; not given for one pair). Tied: the CI "
            "includes 0. The average row resamples seeds within tasks.")
