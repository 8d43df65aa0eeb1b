"""Which tasks carry signal at the budget the runs had: each task compared with its trivial reference.

A task's trivial reference is the run of a configuration that learns nothing task-specific beyond a
classifier: the head-only run (GLUE, COCO) or the zero-shot base model (the instruction suites), at the
same model and preset and at the preset's settings. Every other full-run configuration with at least two
seeds shared with it is compared with it (paired t-test over seeds, ``harness.aggregate.stats``); the comparisons
of one suite form a family, adjusted as the table's (Holm by default). A task where no configuration is
distinguishable from the reference (in either direction) is "no signal at this budget": its scores
are seed noise around what the trivial reference gets, and an average over it dilutes the others.

Status per (model, preset, task): ``signal``, ``no signal`` or ``unknown`` (no reference run, or no
configuration with two seeds shared with it: nothing to test).
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from harness.aggregate import stats
from harness.aggregate._values import ours_only

TRIVIAL_REFERENCES = ("head", "zero-shot")  # in order of preference
NO_SIGNAL = "no signal at this budget"
SIGNAL_STATUSES = ("signal", "no signal", "unknown")


def _reference_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """The trivial reference's row per (model, preset, task): the first adapter of TRIVIAL_REFERENCES
    present, at the preset's settings (fewest changed settings, then most seeds)."""
    refs = rows[rows["adapter"].isin(TRIVIAL_REFERENCES)].copy()
    if refs.empty:
        return refs
    refs["_pref"] = refs["adapter"].map(TRIVIAL_REFERENCES.index)
    refs["_changed"] = refs["label"].astype(str).str.count("·")
    refs = refs.sort_values(["_pref", "_changed", "n_seeds"], ascending=[True, True, False], kind="stable")
    return refs.groupby(["model", "preset", "task"], sort=True).head(1).drop(columns=["_pref", "_changed"])


def task_signal(table: pd.DataFrame, suite: str, p_adjust: str = stats.DEFAULT_P_ADJUST) -> pd.DataFrame:
    """Per (model, preset, task) of ``suite``'s full runs: the reference, the number of configurations
    tested against it, how many differ from it (adjusted p < alpha) and the status."""
    columns = ["model", "preset", "task", "reference", "n_tested", "n_distinguishable", "status"]
    if table is None or table.empty:
        return pd.DataFrame(columns=columns)
    ours = ours_only(table[(table["suite"] == suite) & (~table["limited"].astype(bool))])
    if ours.empty:
        return pd.DataFrame(columns=columns)
    refs = _reference_rows(ours)
    tests: list[tuple[tuple[Any, Any, str], stats.Comparison]] = []
    keys = []
    for (model, preset, task), group in ours.groupby(["model", "preset", "task"], sort=True):
        key = (model, preset, str(task))
        keys.append(key)
        ref = refs[(refs["model"] == model) & (refs["preset"] == preset) & (refs["task"] == task)]
        if ref.empty:
            continue
        ref_row = ref.iloc[0]
        y = _seeds(ref_row)
        for _, row in group.iterrows():
            if row["row_key"] == ref_row["row_key"]:
                continue
            x = _seeds(row)
            shared = sorted(set(x) & set(y))
            if len(shared) < 2:
                continue
            higher = row.get("higher_is_better") is not False
            tests.append((key, stats.paired_comparison([x[s] for s in shared], [y[s] for s in shared], higher)))
    adjusted = stats.adjust_comparisons([c for _, c in tests], p_adjust)
    out = []
    for key in keys:
        mine = [c for (k, _), c in zip(tests, adjusted) if k == key]
        ref = refs[(refs["model"] == key[0]) & (refs["preset"] == key[1]) & (refs["task"] == key[2])]
        distinguishable = sum(c.verdict in ("better", "worse") for c in mine)
        status = "unknown" if ref.empty or not mine else ("signal" if distinguishable else "no signal")
        out.append({"model": key[0], "preset": key[1], "task": key[2],
                    "reference": str(ref.iloc[0]["label"]) if len(ref) else "", "n_tested": len(mine),
                    "n_distinguishable": distinguishable, "status": status})
    return pd.DataFrame(out, columns=columns)


def _seeds(row: pd.Series) -> dict[int, float]:
    seeds = row.get("seed_scores")
    return {int(s): float(v) for s, v in seeds.items()} if isinstance(seeds, dict) else {}


def signal_sentence(statuses: dict[str, str]) -> str:
    """The caption's sentence: which tasks have no signal and what the averages cover."""
    none = [t for t, s in statuses.items() if s == "no signal"]
    unknown = [t for t, s in statuses.items() if s == "unknown"]
    text = (f"Each task is compared with its trivial reference ({' or '.join(TRIVIAL_REFERENCES)} run, paired t "
            "over seeds, adjusted as the verdicts); a task where no configuration is distinguishable from it is "
            f"marked \"{NO_SIGNAL}\"")
    text += f": {', '.join(none)}." if none else " (none here)."
    if unknown:
        text += f" Not testable (no reference or fewer than two shared seeds): {', '.join(unknown)}."
    text += (" \"average\" is over all tasks; \"average, tasks with signal\" (shown when some tasks have none) "
             "only over the tasks with signal, with its own interval.")
    return text
