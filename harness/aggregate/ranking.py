"""The leaderboard (seeds aggregated per configuration and task), the suite average and the Pareto front."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from harness.aggregate import stats
from harness.aggregate._values import (
    any_true,
    estimate_only,
    first_valid,
    mean_or_nan,
    ours_only,
    split_joined,
    sum_or_nan,
)
from harness.status import UNSUCCESSFUL_STATUSES, Status

GROUP_KEYS = ("suite", "task", "model", "preset", "adapter", "configuration", "config_hash", "limited",
              "row_key", "label", "regime")
# The same adapter configuration has a different config_hash per task (the task is part of the spec),
# so the suite average groups by the row key (identify()), which leaves the task and its preset values out.
AVERAGE_KEYS = ("suite", "model", "preset", "adapter", "row_key", "label", "limited", "regime")
LEADERBOARD_COLUMNS = (
    *GROUP_KEYS, "primary", "score_mean", "score_std", "score_ci_low", "score_ci_high", "seed_scores",
    "unit", "unit_label", "unit_family", "scale", "higher_is_better", "limited_by", "suite_tasks", "n_seeds",
    "n_runs",
    *(f"n_{s}" for s in UNSUCCESSFUL_STATUSES), "statuses", "params_adapter", "params_head",
    "peak_memory_bytes", "estimate_memory_bytes", "memory_estimated", "memory_fixed_bytes", "train_seconds",
    "train_seconds_quiet", "train_time_normalised", "mean_step_seconds", "git_dirty", "source",
)
AVERAGE_COLUMNS = (
    *AVERAGE_KEYS, "score_avg", "n_tasks", "n_suite_tasks", "complete", "tasks", "params_adapter",
    "peak_memory_bytes", "estimate_memory_bytes", "memory_estimated", "train_seconds", "n_failed_runs", "source",
)


def n_failed_runs(rows: pd.DataFrame) -> int:
    """Runs of these leaderboard rows that ended without a score, every unsuccessful status together."""
    return int(sum(rows[f"n_{s}"].sum() for s in UNSUCCESSFUL_STATUSES))


def _status_summary(statuses: pd.Series) -> str:
    counts = statuses.value_counts()
    return ", ".join(f"{status}×{int(counts[status])}" for status in sorted(counts.index))


def _summarise_group(group: pd.DataFrame) -> dict[str, Any]:
    ok = group[group["status"] == Status.SUCCESS.value]
    scored = ok[ok["score"].notna()]
    scores = scored["score"]
    interval = stats.mean_ci(scores.to_numpy())
    row: dict[str, Any] = {
        "primary": first_valid(group["primary"]),
        "score_mean": float(scores.mean()) if len(scores) else math.nan,
        # Sample standard deviation over seeds, as the papers report; undefined for one seed.
        "score_std": float(scores.std(ddof=1)) if len(scores) > 1 else math.nan,
        "score_ci_low": interval.low,
        "score_ci_high": interval.high,
        "seed_scores": {int(s): float(v) for s, v in zip(scored["seed"], scored["score"])},
        "unit": first_valid(group["unit"]),
        "unit_label": first_valid(group["unit_label"]),
        "unit_family": first_valid(group["unit_family"]),
        "scale": first_valid(group["scale"]),
        "higher_is_better": first_valid(group["higher_is_better"]),
        "limited_by": first_valid(group["limited_by"]),
        "suite_tasks": ",".join(sorted(split_joined(group["suite_tasks"]))),
        "n_seeds": int(len(scores)),
        "n_runs": int(len(group)),
        # a tuned cell: the rate `tune` chose for this task, its budget and the search's compute
        "tuned_lr": first_valid(group["tuned_lr"]) if "tuned_lr" in group else None,
        "tuning_budget": first_valid(group["tuning_budget"]) if "tuning_budget" in group else None,
        "tuning_seconds": first_valid(group["tuning_seconds"]) if "tuning_seconds" in group else None,
    }
    for status in UNSUCCESSFUL_STATUSES:
        row[f"n_{status}"] = int((group["status"] == status).sum())
    source = ok if len(ok) else group
    row.update(
        statuses=_status_summary(group["status"]),
        params_adapter=first_valid(source["params_adapter"]),
        params_head=first_valid(source["params_head"]),
        peak_memory_bytes=mean_or_nan(source["peak_bytes"]),
        estimate_memory_bytes=mean_or_nan(source["estimate_bytes"]),
        # the cell's memory is an estimate only: no run of it was measured
        memory_estimated=estimate_only(source["peak_bytes"], source["estimate_bytes"]),
        memory_fixed_bytes=mean_or_nan(source["memory_fixed_bytes"]),
        train_seconds=mean_or_nan(source["train_seconds"]),
        **_quiet_time(source),
        mean_step_seconds=mean_or_nan(source["mean_step_seconds"]),
        git_dirty=any_true(group["git_dirty"]),
        source="ours",
    )
    return row


# how completely a record's train time could be normalised (harness.aggregate.reference_timing), best first
NORMALISATION_ORDER = ("cpu time + probe", "gpu", "probe", "cpu time", "raw")


def _quiet_time(source: pd.DataFrame) -> dict[str, Any]:
    """The cell's train time on the quiet reference machine: the mean over the seeds normalised best
    (CPU time and probe where any seed has both; seeds without them are left out, since a time is the
    configuration's, not the seed's), and which normalisation that was."""
    how = source["train_time_normalised"].fillna("raw").astype(str)
    times = source["train_seconds_quiet"]
    for level in NORMALISATION_ORDER:
        chosen = times[(how == level) & times.notna()]
        if len(chosen):
            return {"train_seconds_quiet": float(chosen.mean()), "train_time_normalised": level}
    return {"train_seconds_quiet": math.nan, "train_time_normalised": ""}


def leaderboard(frame: pd.DataFrame) -> pd.DataFrame:
    """Seeds aggregated per (suite, task, model, preset, adapter, configuration, limited)."""
    if frame is None or frame.empty:
        return pd.DataFrame(columns=list(LEADERBOARD_COLUMNS))
    rows = []
    for keys, group in frame.groupby(list(GROUP_KEYS), dropna=False, sort=True):
        rows.append({**dict(zip(GROUP_KEYS, keys)), **_summarise_group(group)})
    table = pd.DataFrame(rows, columns=list(LEADERBOARD_COLUMNS))
    table = table.sort_values(["suite", "task", "limited", "score_mean"], ascending=[True, True, True, False],
                              na_position="last", kind="stable")
    return table.reset_index(drop=True)


def suite_average(table: pd.DataFrame) -> pd.DataFrame:
    """Mean over tasks of the per-task seed means, per adapter configuration (the papers' 'Avg.').

    ``complete`` says whether every task that this suite has for the same model, preset and limited
    flag has a score: an average over fewer tasks is shown but marked.
    """
    if table is None or table.empty:
        return pd.DataFrame(columns=list(AVERAGE_COLUMNS))
    ours = ours_only(table)
    suite_tasks = ours.groupby(["suite", "model", "preset", "limited"], dropna=False)["task"].nunique()
    rows = []
    for keys, group in ours.groupby(list(AVERAGE_KEYS), dropna=False, sort=True):
        scored = group[group["score_mean"].notna()]
        n_suite = int(suite_tasks.loc[(keys[0], keys[1], keys[2], keys[6])])
        rows.append({
            **dict(zip(AVERAGE_KEYS, keys)),
            "score_avg": float(scored["score_mean"].mean()) if len(scored) else math.nan,
            "n_tasks": int(scored["task"].nunique()),
            "n_suite_tasks": n_suite,
            "complete": int(scored["task"].nunique()) == n_suite,
            "tasks": ",".join(sorted(scored["task"].unique())),
            "params_adapter": first_valid(group["params_adapter"]),
            "peak_memory_bytes": mean_or_nan(group["peak_memory_bytes"]),
            "estimate_memory_bytes": mean_or_nan(group["estimate_memory_bytes"]),
            "memory_estimated": estimate_only(group["peak_memory_bytes"], group["estimate_memory_bytes"]),
            "train_seconds": sum_or_nan(group["train_seconds"]),
            "n_failed_runs": n_failed_runs(group),
            "source": "ours",
        })
    out = pd.DataFrame(rows, columns=list(AVERAGE_COLUMNS))
    return out.sort_values(["suite", "limited", "score_avg"], ascending=[True, True, False],
                           na_position="last", kind="stable").reset_index(drop=True)


def pareto_front(frame: pd.DataFrame, cost: str, score: str) -> pd.Series:
    """True for rows no other row dominates (lower or equal cost and higher or equal score, one strictly).

    Rows missing either value are never on the front.
    """
    x = pd.to_numeric(frame[cost], errors="coerce").to_numpy(dtype=float)
    y = pd.to_numeric(frame[score], errors="coerce").to_numpy(dtype=float)
    valid = ~(pd.isna(x) | pd.isna(y))
    on_front = []
    for i in range(len(frame)):
        if not valid[i]:
            on_front.append(False)
            continue
        others = valid & (x <= x[i]) & (y >= y[i]) & ((x < x[i]) | (y > y[i]))
        on_front.append(not others.any())
    return pd.Series(on_front, index=frame.index, dtype=bool)
