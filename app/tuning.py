"""The Tuning tab: what `harness tune` did per task (harness.aggregate.tuning_views), as a researcher
reads it: the learning-rate sensitivity of every method (validation and test score against the rate,
the tuned runs' seeds at their chosen rate), the expected best validation score against the number of
trials (Dodge et al. 2019), and the budget each method spent. Reads only; no torch, no Optuna.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from app import charts
from app.views import plain
from harness import aggregate
from harness.aggregate import tuning_views
from harness.records.record import RunRecord

TUNE_COMMAND = "python -m harness tune --suite glue --tasks rte --adapters lora,full --trials 20"


def tuning_signature(results_dir: str) -> tuple[tuple[str, int, int], ...]:
    """Path, size and mtime of every JSON file under ``<results>/tuning``: the cache key."""
    out = []
    root = Path(results_dir) / tuning_views.TUNING_DIR
    for path in sorted(root.rglob("*.json")) if root.is_dir() else []:
        try:
            stat = path.stat()
        except OSError:
            continue
        out.append((str(path), stat.st_size, stat.st_mtime_ns))
    return tuple(out)


def load_tuning(results_dir: str, records: list[RunRecord]) -> dict:
    tuned = tuple(sorted((str(r.get("run_id")), str(r.get("status")), str((r.get("metrics") or {}).get("score")))
                         for r in records if (r.get("tuning") or {}).get("role") == "tuned"))
    return _load_cached(results_dir, tuning_signature(results_dir), tuned, records)


@st.cache_data(show_spinner=False, max_entries=8)
def _load_cached(results_dir: str, signature: tuple, tuned: tuple, _records: list[RunRecord]) -> dict:
    del signature, tuned  # only part of the cache key (the records themselves are not hashed)
    return tuning_views.load_tuning(Path(results_dir), _records)


def _y_title(frame: pd.DataFrame, what: str) -> str:
    metric = aggregate.first_valid(frame["primary"]) if "primary" in frame else None
    unit = aggregate.first_valid(frame["unit_label"])
    return f"{what} {metric or 'score'}" + (f" ({unit})" if unit and unit != aggregate.UNKNOWN_UNIT.label else "")


def budget_display(table: pd.DataFrame) -> pd.DataFrame:
    """The budget per method with readable headers (rates as numbers: the table sorts them)."""
    return table.rename(columns={"adapter": "method", "compute_hours": "compute (h)", "studies": "tasks tuned"})


def render_tuning(results_dir: str, records: list[RunRecord]) -> None:
    if not tuning_views.has_tuning(Path(results_dir)):
        st.info("No tuning studies in this result store. `harness tune` writes them (one Optuna study per "
                "task and method, an equal trial budget each); this tab then plots them.")
        st.code(TUNE_COMMAND, language="bash")
        return
    frames = load_tuning(results_dir, records)
    if frames["skipped"]:
        with st.expander(f"Skipped {len(frames['skipped'])} tuning files (neither trial records nor choices)"):
            st.dataframe(pd.DataFrame(frames["skipped"], columns=["file", "why"]), hide_index=True)
    sens, tuned, curves, budget = (frames[k] for k in ("sensitivity", "tuned", "expected_max", "budget"))
    suites = aggregate.ordered_suites(set(sens["suite"].dropna()) | set(budget["suite"].dropna()))
    if not suites:
        st.info("The tuning folder holds no trial record or choice yet.")
        return
    suite = st.selectbox("Suite", suites, key="tuning-suite")
    st.caption("Left: every trial's validation score (solid: it selected the rate) and test score (dashed: read "
               "once, at the validation-selected epoch) against its learning rate; hollow circles: pruned trials "
               "at the best validation score they reached before the pruner stopped them; diamonds: the test "
               "scores of the seeds run at the chosen rate (`run --tuned`). Right: the expected best validation "
               "score after n trials drawn from the study's trials (Dodge et al. 2019), ±1 sd; pruned trials count "
               "at their best score so far, diverged and failed ones are left out. The sidebar's filters do not "
               "apply here. See docs/tuning.md.")
    tasks = sorted(set(sens.loc[sens["suite"] == suite, "task"].dropna()))
    for task in tasks:
        st.subheader(plain(f"{suite} / {task}"))
        trials = sens[(sens["suite"] == suite) & (sens["task"] == task)]
        seeds = tuned[(tuned["suite"] == suite) & (tuned["task"] == task)]
        curve = curves[(curves["suite"] == suite) & (curves["task"] == task)]
        left, right = st.columns(2)
        with left:
            st.altair_chart(charts.lr_sensitivity_chart(trials, seeds, _y_title(trials, "")), width="stretch")
        with right:
            if len(curve):
                st.altair_chart(charts.expected_max_chart(curve, _y_title(trials, "expected max validation")),
                                width="stretch")
            else:
                st.info("No trial with a validation score: no expected-max curve.")
    st.subheader("Budget per method")
    st.caption("Trials recorded per method over the suite's tasks, of which pruned, diverged (or out of memory) "
               "and failed; compute: the trial runs' total seconds; lr <task>: the chosen rate.")
    st.dataframe(budget_display(tuning_views.budget_table(budget, suite)), hide_index=True)
    with st.expander("Per study (task and method): budget, chosen values, validation and test score"):
        st.dataframe(budget[budget["suite"] == suite], hide_index=True)
