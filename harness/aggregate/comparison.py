"""Every configuration against a baseline adapter: paired statistics per task and for the average."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from harness.aggregate import stats
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
                      "ci_low", "ci_high", "p_value", "p_adjusted", "p_adjust", "detectable", "p_improvement",
                      "verdict", "interval", "verdict_rule")


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


def compare_to_baseline(table: pd.DataFrame, suite: str, baseline: str = "lora",
                        p_adjust: str = stats.DEFAULT_P_ADJUST, store_root: Any = None) -> pd.DataFrame:
    """Every full-run configuration of ``suite`` against the baseline adapter at the same model and
    preset: per task (and for the average, when both rows have every task) the paired statistics of
    harness.aggregate.stats over the seeds both have, on the display scale of the task's unit. The table's
    comparisons are one family: ``p_adjusted`` is their p-value adjusted by ``p_adjust`` (holm, bh,
    none), and the verdict is decided by it (``stats.verdict_rule``); ``p_value`` stays the raw one.

    With ``store_root``, a task where both configurations kept the per-example predictions of every
    shared seed (at least two; harness/records/predictions.py) is compared by a bootstrap over seeds and test
    items (``stats.item_seed_bootstrap``; its ``interval`` column says so); the others over seeds."""
    stats.check_p_adjust(p_adjust)
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
                if store_root is not None and len(shared) >= 2:
                    result = _item_level(result, store_root, suite, task, cells[task], base_cells[task], shared,
                                         units[task], higher)
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
    adjusted = stats.adjust_comparisons([r.pop("_result") for r in rows], p_adjust)
    for r, result in zip(rows, adjusted):
        r.update(p_adjusted=result.p_adjusted, verdict=result.verdict, p_adjust=p_adjust,
                 verdict_rule=stats.verdict_rule(p_adjust))
    out = pd.DataFrame(rows, columns=list(COMPARISON_COLUMNS))
    if out.empty:
        return out
    # in the order of the ranked table, tasks as its columns
    order = {h: i for i, h in enumerate(wide_table(table, suite)["config_hash"])}
    task_order = {t: i for i, t in enumerate([*units, "average"])}
    out["_r"], out["_t"] = out["config_hash"].map(order), out["task"].map(task_order)
    return out.sort_values(["_r", "_t"], kind="stable").drop(columns=["_r", "_t"]).reset_index(drop=True)


def _item_level(result: stats.Comparison, root: Any, suite: str, task: str, x_row: Mapping[str, Any],
                y_row: Mapping[str, Any], seeds: list[int], unit: Mapping[str, Any], higher: bool) -> stats.Comparison:
    """The seed-and-item bootstrap of the task's metric where both sides kept their predictions, on the
    display scale; ``result`` (over seeds) otherwise."""
    from dataclasses import replace

    from harness.records.predictions import METRICS, paired_predictions

    metric = METRICS.get(str(unit.get("metric")))
    if metric is None:
        return result
    found = paired_predictions(root, suite, task, (str(x_row["adapter"]), str(x_row["config_hash"])),
                               (str(y_row["adapter"]), str(y_row["config_hash"])), seeds)
    if found is None:
        return result
    scale = float(unit.get("scale") or 1.0)
    item = stats.item_seed_bootstrap(found[0], found[1], found[2], lambda a, b: metric(a, b) * scale, higher)
    # the mean difference over seeds and P(better) stay the seed-level ones (the same runs); the interval,
    # the p-value and the detectable difference (none from a bootstrap) come from the bootstrap
    return replace(item, delta=result.delta, p_improvement=result.p_improvement)


def _comparison_row(label: str, row_key: str, base: Mapping[str, Any], task: str, unit: str,
                    result: stats.Comparison) -> dict[str, Any]:
    return {"method": label, "config_hash": row_key, "baseline": base["method"], "model": base["model"],
            "preset": base["preset"], "task": task, "unit": unit, "n_pairs": result.n_pairs,
            "delta": result.delta, "ci_low": result.ci_low, "ci_high": result.ci_high, "p_value": result.p_value,
            "detectable": result.detectable, "p_improvement": result.p_improvement, "verdict": result.verdict,
            "interval": result.interval_source, "_result": result}


def verdicts(comparison: pd.DataFrame) -> dict[tuple[str, str], str]:
    """(config_hash, task) -> better | worse | tied | n/a, for the tie marks of the tables."""
    return {(str(r["config_hash"]), str(r["task"])): str(r["verdict"]) for _, r in comparison.iterrows()}


def _verdict_text(verdict: str, detectable: float, n: int, unit: str) -> str:
    """A tie says what the seeds could have seen: "tied: no difference larger than 2.10 points
    detectable with 3 seeds"."""
    if verdict != "tied" or pd.isna(detectable):
        return verdict
    return f"tied: no difference larger than {detectable:.2f} {unit} detectable with {int(n)} seeds"


def comparison_display(comparison: pd.DataFrame) -> pd.DataFrame:
    units = comparison["unit"].map(lambda u: "points" if "points" in str(u) or "%" in str(u) or "x100" in str(u)
                                   else "units")
    return pd.DataFrame({
        "method": comparison["method"], "task": comparison["task"], "unit": comparison["unit"],
        "pairs": comparison["n_pairs"].astype(int),
        "delta": comparison["delta"].map(lambda v: "–" if pd.isna(v) else f"{v:+.2f}"),
        "95% CI (t)": [("–" if pd.isna(lo) else f"[{lo:+.2f}, {hi:+.2f}]")
                       for lo, hi in zip(comparison["ci_low"], comparison["ci_high"])],
        "p (paired t)": comparison["p_value"].map(lambda v: "–" if pd.isna(v) else f"{v:.3f}"),
        "p adjusted": comparison["p_adjusted"].map(lambda v: "–" if pd.isna(v) else f"{v:.3f}"),
        "detectable (80% power)": comparison["detectable"].map(lambda v: "–" if pd.isna(v) else f"{v:.2f}"),
        "P(better)": comparison["p_improvement"].map(lambda v: "–" if pd.isna(v) else f"{v:.2f}"),
        "verdict": [_verdict_text(v, d, n, u) for v, d, n, u in zip(comparison["verdict"], comparison["detectable"],
                                                                    comparison["n_pairs"], units)],
    }).reset_index(drop=True)


def comparison_caption(baseline: str, p_adjust: str = stats.DEFAULT_P_ADJUST) -> str:
    return (f"Per task, in the task's unit: the mean difference (configuration - {baseline}) over the seeds both "
            f"have, its {stats.INTERVAL_METHOD} (of the per-seed differences; the average row: of the mean of the "
            "task differences, Welch-Satterthwaite degrees of freedom; a task where both kept their test-set "
            f"predictions: the {stats.ITEM_INTERVAL_METHOD} and its p-value; the CSV's interval column says which), "
            "the paired t-test p-value raw and adjusted "
            "over the table, the smallest difference the seeds could detect (80% power, two-sided paired t at "
            f"{stats.ALPHA:g}, from the observed spread of the differences) and P(better), the share of seed pairs "
            "in which the configuration scores higher (ties count half; not given for one pair). "
            + stats.verdict_rule(p_adjust))
