"""The ranked wide table of a suite: one row per configuration, one column per task, the average."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd

from harness import metrics as metric_units
from harness.aggregate import stats
from harness.aggregate._values import (
    estimate_only,
    first_valid,
    max_or_nan,
    ours_only,
    split_joined,
    sum_or_nan,
)
from harness.aggregate.ranking import n_failed_runs
from harness.aggregate.signal import task_signal

SUITE_ORDER = ("glue",)


def ordered_suites(suites: Iterable[str]) -> list[str]:
    names = sorted({str(s) for s in suites})
    return [s for s in SUITE_ORDER if s in names] + [s for s in names if s not in SUITE_ORDER]


def task_units(rows: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Per task: metric, unit, label, family, display scale, direction (the first row that has them)."""
    out: dict[str, dict[str, Any]] = {}
    for task, group in rows.groupby("task", sort=True):
        out[str(task)] = {
            "metric": first_valid(group["primary"]) or "score",
            "unit": first_valid(group["unit"]) or metric_units.UNKNOWN_UNIT.name,
            "label": first_valid(group["unit_label"]) or metric_units.UNKNOWN_UNIT.label,
            "family": first_valid(group["unit_family"]) or metric_units.UNKNOWN_UNIT.family,
            "scale": float(first_valid(group["scale"]) or 1.0),
            "higher_is_better": bool(first_valid(group["higher_is_better"]) is not False),
        }
    return out


# a task no run of the suite has scored: its metric and unit are unknown
_NO_UNIT = {"metric": "score", "unit": metric_units.UNKNOWN_UNIT.name, "label": metric_units.UNKNOWN_UNIT.label,
            "family": metric_units.UNKNOWN_UNIT.family, "scale": 1.0, "higher_is_better": True}


def units_text(units: Mapping[str, Mapping[str, Any]]) -> str:
    """``rte: accuracy (%); cola: mcc (x100)``: what every task column is in."""
    return "; ".join(f"{t}: {u['metric']} ({u['label']})" for t, u in units.items())


def average_unit(units: Mapping[str, Mapping[str, Any]]) -> str | None:
    """The unit family of the average, or None when the tasks' units cannot be averaged together."""
    families = {u["family"] for u in units.values()}
    if len(families) != 1 or metric_units.UNKNOWN_UNIT.family in families:
        return None
    return families.pop()


def family_label(family: str | None) -> str:
    """How an average's unit is printed: "points" for %-like units averaged together, else the unit's label."""
    if not family:
        return "units differ: none"
    unit = metric_units.UNITS.get(family)
    return unit.label if unit is not None and family != "points" else str(family)


def scaled_seeds(row: Mapping[str, Any], scale: float) -> dict[int, float]:
    seeds = row.get("seed_scores") if isinstance(row.get("seed_scores"), Mapping) else {}
    return {int(s): float(v) * scale for s, v in seeds.items()}


def tuning_columns(conf: pd.DataFrame) -> dict[str, Any]:
    """A tuned row's chosen rate per task, the trial budget and the search's compute hours (all tasks)."""
    if "tuned_lr" not in conf or conf["tuned_lr"].isna().all():
        return {"tuned_lrs": "", "tuning_trials": math.nan, "tuning_hours": math.nan}
    lrs = ", ".join(f"{r['task']} {float(r['tuned_lr']):.2g}" for _, r in conf.sort_values("task").iterrows()
                    if pd.notna(r["tuned_lr"]))
    budgets = conf["tuning_budget"].dropna()
    seconds = conf["tuning_seconds"].dropna()
    return {"tuned_lrs": lrs, "tuning_trials": float(budgets.max()) if len(budgets) else math.nan,
            "tuning_hours": float(seconds.sum()) / 3600 if len(seconds) else math.nan}


def wide_table(table: pd.DataFrame, suite: str, *, limited: bool = False,
               p_adjust: str = stats.DEFAULT_P_ADJUST) -> pd.DataFrame:
    """One row per configuration of ``suite`` (full runs, or with ``limited`` the limited ones), one
    column per task (display-scaled seed mean, its 95% CI and n), the average over tasks with its CI,
    adapter parameters, peak memory and train time; complete rows ranked first.

    Complete: a score on every task this suite has for the same model and preset, with the requested
    number of seeds on each, where requested is the largest number of seeds any row of that model and
    preset has on a task. Incomplete rows follow, ranked among themselves, with ``missing`` saying what
    is missing. The average (mean of the task means, as the papers' Avg.) is given for rows with
    every task (complete, or short of seeds: shown, never ranked or bolded), and only when every task's
    unit may be averaged with the others (harness.metrics).

    Signal (harness.aggregate.signal): per task whether any configuration is distinguishable from the
    trivial reference (``attrs["signal"]``: task -> signal | no signal | unknown); ``average_signal`` is
    the average over the row's tasks with signal (``signal_tasks``), beside the all-task ``average``.
    """
    ours = ours_only(table[(table["suite"] == suite) & (table["limited"] == limited)] if len(table) else table)
    units = task_units(ours) if len(ours) else {}
    # a task this subset lacks takes its unit from the suite's other runs (limited or full)
    suite_units = task_units(table[table["suite"] == suite]) if len(table) else {}
    groups = list(ours.groupby(["model", "preset"], sort=True, dropna=False)) if len(ours) else []
    # the suite's tasks for a model and preset: those of its full runs (a smoke run on another task must
    # not make full rows incomplete); a limited row needs the full runs' tasks and its own
    basis = table[table["suite"] == suite] if limited and len(table) else ours
    suite_tasks = {(m, p): tasks_of_group(g) for (m, p), g in basis.groupby(["model", "preset"], dropna=False)}
    for (model, preset), _group in groups:
        for task in suite_tasks[(model, preset)]:  # a preset task no run of this subset has scored
            if task not in units:
                units[task] = suite_units.get(task) or dict(_NO_UNIT)
    units = {t: units[t] for t in sorted(units)}
    tasks = list(units)
    average_family = average_unit({t: u for t, u in units.items() if u["unit"] != metric_units.UNKNOWN_UNIT.name})
    signal = task_signal(table, suite, p_adjust) if not limited else task_signal(None, suite)
    signal_of = {(r["model"], r["preset"], r["task"]): r["status"] for _, r in signal.iterrows()}
    rows = []
    # (row key, task or "average") -> seeds that diverged: the cells say so (wide_display); in attrs, so
    # that the CSV's columns stay as they are
    diverged_cells: dict[tuple[str, str], int] = {}
    for (model, preset), group in groups:
        group_tasks = suite_tasks[(model, preset)]
        requested = int(group["n_seeds"].max()) if len(group) else 0
        for row_key, conf in group.groupby("row_key", sort=True):
            by_task = {str(r["task"]): r for _, r in conf.iterrows()}
            first = conf.iloc[0]
            row: dict[str, Any] = {"method": first["label"], "config_hash": row_key, "adapter": first["adapter"],
                                   "model": model, "preset": preset, "regime": first.get("regime", "")}
            per_task_values, missing_tasks, short_seeds, ns, signal_values = [], [], [], [], []
            for task in tasks:
                r = by_task.get(task)
                scale = units[task]["scale"]
                values = scaled_seeds(r, scale) if r is not None else {}
                n = len(values)
                row[task] = float(r["score_mean"]) * scale if r is not None and n else math.nan
                row[f"{task}_ci_low"] = float(r["score_ci_low"]) * scale if n > 1 else math.nan
                row[f"{task}_ci_high"] = float(r["score_ci_high"]) * scale if n > 1 else math.nan
                row[f"{task}_n"] = n
                # seeds of this task that diverged: the cell says so, not merely a missing seed
                diverged = int(r["n_diverged"]) if r is not None and pd.notna(r.get("n_diverged")) else 0
                if diverged:
                    diverged_cells[(row_key, task)] = diverged
                if task in group_tasks:
                    if n == 0:
                        missing_tasks.append(task)
                    else:
                        ns.append(n)
                        per_task_values.append(list(values.values()))
                        if signal_of.get((model, preset, task)) == "signal":
                            signal_values.append(list(values.values()))
                        if n < requested:
                            short_seeds.append(f"{task} {n}/{requested}" + (f" ({diverged} diverged)" if diverged else ""))
            complete = not missing_tasks and not short_seeds and bool(group_tasks)
            missing = []
            if missing_tasks:
                missing.append("tasks " + ",".join(missing_tasks))
            if short_seeds:
                missing.append("seeds " + ", ".join(short_seeds))
            # every task present (complete, or short of seeds): the average over all tasks is meaningful,
            # though only complete rows are ranked and bolded by it
            has_all = not missing_tasks and bool(group_tasks)
            interval = stats.average_ci(per_task_values) if has_all and average_family else None
            with_signal = stats.average_ci(signal_values) if has_all and average_family and signal_values else None
            row.update(
                average_signal=with_signal.mean if with_signal else math.nan,
                average_signal_ci_low=with_signal.low if with_signal else math.nan,
                average_signal_ci_high=with_signal.high if with_signal else math.nan,
                signal_tasks=",".join(t for t in group_tasks if signal_of.get((model, preset, t)) == "signal"),
                complete=complete, missing="; ".join(missing), n_seeds=min(ns) if ns else 0,
                requested_seeds=requested, n_tasks=len(ns),
                average=interval.mean if interval else math.nan,
                average_ci_low=interval.low if interval else math.nan,
                average_ci_high=interval.high if interval else math.nan,
                adapter_params=first_valid(conf["params_adapter"]),
                # the largest over tasks, measured and estimated apart
                peak_memory_mib=max_or_nan(conf["peak_memory_bytes"]) / 2**20,
                cpu_estimate_mib=max_or_nan(conf["estimate_memory_bytes"]) / 2**20,
                memory_estimated=estimate_only(conf["peak_memory_bytes"], conf["estimate_memory_bytes"]),
                # seed-independent part of the CPU estimate (parameters, gradients, optimizer state)
                cpu_fixed_mib=max_or_nan(conf["memory_fixed_bytes"]) / 2**20,
                # the whole suite's training time: the seed-mean train time of each task, summed; raw wall
                # time, and normalised to a quiet reference machine (harness.aggregate.reference_timing)
                train_seconds=sum_or_nan(conf["train_seconds"]),
                train_seconds_quiet=sum_or_nan(conf["train_seconds_quiet"]),
                train_time_normalised=",".join(sorted(split_joined(conf["train_time_normalised"]))),
                n_failed_runs=n_failed_runs(conf),
                limited_by=",".join(sorted(split_joined(conf["limited_by"]))),
                task_config_hashes=",".join(f"{r['task']}:{r['config_hash']}" for _, r in conf.iterrows()),
                **tuning_columns(conf),
                unit=units_text(units),
            )
            rows.append(row)
            if any(k[0] == row_key for k in diverged_cells):
                diverged_cells[(row_key, "average")] = sum(v for k, v in diverged_cells.items() if k[0] == row_key)
    task_columns = [c for t in tasks for c in (t, f"{t}_ci_low", f"{t}_ci_high", f"{t}_n")]
    columns = ["rank", "method", "config_hash", "adapter", "model", "preset", "regime", "complete", "missing", "n_seeds",
               "requested_seeds", "n_tasks", *task_columns, "average", "average_ci_low", "average_ci_high", "average_signal",
               "average_signal_ci_low", "average_signal_ci_high", "signal_tasks", "adapter_params",
               "peak_memory_mib", "cpu_estimate_mib", "cpu_fixed_mib", "memory_estimated", "train_seconds",
               "train_seconds_quiet", "train_time_normalised", "n_failed_runs", "limited_by",
               "task_config_hashes", "tuned_lrs", "tuning_trials", "tuning_hours", "unit"]
    out = pd.DataFrame(rows, columns=columns)
    statuses = {}
    for task in tasks:  # over the table's (model, preset) groups: signal anywhere, else no signal, else unknown
        found = set(signal.loc[signal["task"] == task, "status"])
        statuses[task] = next((s for s in ("signal", "no signal") if s in found), "unknown")
    if out.empty:
        out.attrs.update(units=units, tasks=tasks, diverged=diverged_cells, signal=statuses)
        return out
    higher = all(u["higher_is_better"] for u in units.values())
    # a row's own mean over the tasks it has only orders incomplete rows among themselves
    partial = out[tasks].mean(axis=1, skipna=True) if tasks else pd.Series(math.nan, index=out.index)
    out["_order"] = out["average"].where(out["complete"], partial)
    # incomplete rows: those with more tasks first, then more seeds, then their own mean
    out = out.sort_values(["complete", "n_tasks", "n_seeds", "_order", "method"],
                          ascending=[False, False, False, not higher, True],
                          na_position="last", kind="stable").drop(columns="_order").reset_index(drop=True)
    out["rank"] = [i + 1 if c else None for i, c in enumerate(out["complete"])]
    out["rank"] = out["rank"].astype("Int64")
    out.attrs.update(units=units, tasks=tasks, average_family=average_family, diverged=diverged_cells, signal=statuses)
    return out


def tasks_of_group(group: pd.DataFrame) -> list[str]:
    """The tasks a row of this (model, preset) must have to be complete: every task some run of the
    group scored, and every task of the preset that new records name (``preset_defaults.suite_tasks``)."""
    scored = set(group.loc[group["n_seeds"] > 0, "task"].astype(str))
    recorded = split_joined(group["suite_tasks"])
    return sorted(scored | recorded)
