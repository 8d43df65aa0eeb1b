"""What `harness tune` did, as tidy frames for plots and tables (pure pandas: no torch, no Streamlit,
no Optuna; the app and ``harness report`` both build on these).

Sources, all under one results folder:

- trial records, ``<results>/tuning/trials`` (read with ``ResultStore`` on that folder): one per trial,
  ``spec.train.lr`` its rate, ``metrics.validation.score`` the validation score that selected it,
  ``metrics.score`` the test score read once at the selected epoch, ``metrics.stopped_early`` true
  when the study pruned it, ``timing.total_seconds`` its compute;
- choice files, ``<results>/tuning/choices/<suite>/<task>/<adapter>/<model>--<preset>.json``: the
  chosen values and budget of each study (``harness.tuning.study.write_choice``);
- leaderboard records with ``tuning.role == "tuned"``: the seeds run at the chosen values.

Frames (scores raw, on the metric's own scale; ``scale`` multiplies them for display):

- ``sensitivity_frame``: one row per trial (suite, task, method, adapter, lr, validation, test, state, ...);
- ``tuned_seeds_frame``: one row per tuned seed (suite, task, method, adapter, lr, seed, test, ...);
- ``expected_max_frame``: the expected best validation score after n trials (Dodge et al. 2019);
- ``budget_frame``: one row per study (trials, states, compute hours, chosen values);
  ``budget_table``: one row per method of a suite (its studies summed, the chosen lr per task).

Trial states: ``complete`` (trained to the end, validation score read), ``pruned`` (stopped early by the
study's pruner; its validation score is the best it reached before stopping), ``diverged`` and ``oom``
(a result about the configuration, no score), ``failed`` and ``cancelled`` (not about the configuration:
``tune`` reruns them).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness import metrics as metric_units
from harness.records.record import RunRecord
from harness.search_space import TRAIN_KEYS

TUNING_DIR = "tuning"  # harness.tuning.study.TUNING_DIR (not imported: that module needs Optuna for its work)
STUDY_KEYS = ["suite", "task", "adapter", "model", "preset"]
SENSITIVITY_COLUMNS = [*STUDY_KEYS, "method", "study", "trial", "lr", "params", "validation", "test", "state",
                       "status", "compute_seconds", "primary", "unit_label", "scale", "higher_is_better", "run_id"]
TUNED_COLUMNS = [*STUDY_KEYS, "method", "lr", "seed", "test", "status", "primary", "unit_label", "scale", "run_id"]
EXPECTED_MAX_COLUMNS = ["suite", "task", "method", "adapter", "n", "expected_max", "expected_max_std", "draws",
                        "pruned_draws", "left_out", "draw_min", "draw_max", "scale", "unit_label"]
BUDGET_COLUMNS = [*STUDY_KEYS, "method", "budget", "trials", "complete", "pruned", "diverged", "failed",
                  "compute_hours", "chosen_lr", "chosen", "validation_score", "test_score", "sampler", "pruner"]
# trial states whose validation score is a draw of the expected-max curve (pruned: the best it reached)
DRAW_STATES = ("complete", "pruned")


def _get(mapping: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(mapping, Mapping):
            return None
        mapping = mapping.get(key)
    return mapping


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return math.nan
    return float(value)


def trial_state(record: Mapping[str, Any]) -> str:
    """How a trial's run ended, in the study's terms (see the module's docstring)."""
    status = str(record.get("status"))
    if status == "success":
        if _get(record, "metrics", "stopped_early"):
            return "pruned"
        return "complete" if math.isfinite(_number(_get(record, "metrics", "validation", "score"))) else "failed"
    return status if status in ("diverged", "oom", "cancelled") else "failed"


def _unit(record: Mapping[str, Any]) -> dict[str, Any]:
    unit = metric_units.unit_of_record(record)
    return {"primary": _get(record, "metrics", "primary"), "unit_label": unit.label, "scale": unit.display_scale,
            "higher_is_better": metric_units.higher_is_better_of_record(record)}


def _spec_fields(record: Mapping[str, Any]) -> dict[str, Any]:
    spec = record.get("spec") if isinstance(record.get("spec"), Mapping) else {}
    return {k: (str(spec.get(k)) if spec.get(k) is not None else None) for k in STUDY_KEYS}


def _add_method(frame: pd.DataFrame) -> pd.DataFrame:
    """``method``: the adapter, with its model and preset where one task holds several of them."""
    if frame.empty:
        frame["method"] = pd.Series(dtype="object")
        return frame
    keys = frame[["suite", "task", "adapter", "model", "preset"]].astype(str)
    several = keys.groupby(["suite", "task", "adapter"])[["model", "preset"]].transform(
        lambda s: s.nunique() > 1).any(axis=1)
    frame["method"] = np.where(several, keys["adapter"] + " (" + keys["model"] + ", " + keys["preset"] + ")",
                               keys["adapter"])
    return frame


def sensitivity_frame(trial_records: Iterable[RunRecord]) -> pd.DataFrame:
    """One row per trial record (a record that is not a trial is skipped), sorted by study and rate."""
    rows = []
    for record in trial_records:
        tuning = record.get("tuning")
        if not isinstance(tuning, Mapping) or tuning.get("role") != "trial":
            continue
        train = _get(record, "spec", "train") or {}
        state = trial_state(record)
        rows.append({
            **_spec_fields(record), "study": tuning.get("study"), "trial": tuning.get("trial"),
            "lr": _number(train.get("lr")),
            "params": json.dumps({k: train[k] for k in sorted(train) if k in TRAIN_KEYS and train[k] is not None}),
            "validation": _number(_get(record, "metrics", "validation", "score")),
            "test": _number(_get(record, "metrics", "score")) if state == "complete" else math.nan,
            "state": state, "status": record.get("status"),
            "compute_seconds": _number(_get(record, "timing", "total_seconds")),
            **_unit(record), "run_id": record.get("run_id"),
        })
    frame = _add_method(pd.DataFrame(rows, columns=[c for c in SENSITIVITY_COLUMNS if c != "method"]))
    if len(frame):  # a diverged trial has no metrics: its study's unit is that of its scored trials
        scored = frame["primary"].notna()
        for column in ("primary", "unit_label", "scale", "higher_is_better"):
            known = frame[column].where(scored)
            frame[column] = known.groupby([frame[k] for k in STUDY_KEYS], dropna=False).transform("first") \
                .fillna(frame[column])
    return frame[SENSITIVITY_COLUMNS].sort_values(["suite", "task", "method", "lr", "trial"], kind="stable",
                                                  ignore_index=True)


def tuned_seeds_frame(records: Iterable[RunRecord]) -> pd.DataFrame:
    """One row per leaderboard record run at tuned values (``tuning.role == "tuned"``): its rate (the
    chosen one) and its test score (missing for a run that did not succeed)."""
    rows = []
    for record in records:
        tuning = record.get("tuning")
        if not isinstance(tuning, Mapping) or tuning.get("role") != "tuned":
            continue
        lr = _number(_get(tuning, "chosen", "lr"))
        if math.isnan(lr):
            lr = _number(_get(record, "spec", "train", "lr"))
        unit = _unit(record)
        rows.append({**_spec_fields(record), "lr": lr, "seed": _get(record, "spec", "seed"),
                     "test": _number(_get(record, "metrics", "score")) if record.get("status") == "success"
                     else math.nan, "status": record.get("status"), "primary": unit["primary"],
                     "unit_label": unit["unit_label"], "scale": unit["scale"], "run_id": record.get("run_id")})
    frame = _add_method(pd.DataFrame(rows, columns=[c for c in TUNED_COLUMNS if c != "method"]))
    return frame[TUNED_COLUMNS].sort_values(["suite", "task", "method", "seed"], kind="stable", ignore_index=True)


def expected_max(values: Sequence[float], n_max: int | None = None) -> pd.DataFrame:
    """E[max of n i.i.d. draws] from the empirical distribution of ``values`` for n = 1 .. ``n_max``
    (default len(values)), with its standard deviation (Dodge et al. 2019, "Show your work"): with
    v_1 <= ... <= v_N sorted, E[max_n] = sum_i v_i ((i/N)^n - ((i-1)/N)^n). The draws are with
    replacement: n = N is not the sample maximum, only n -> infinity is."""
    v = np.sort(np.asarray([float(x) for x in values if math.isfinite(float(x))], dtype="float64"))
    count = len(v)
    n_max = count if n_max is None else int(n_max)
    if count == 0 or n_max < 1:
        return pd.DataFrame({"n": pd.Series(dtype="int64"), "expected_max": pd.Series(dtype="float64"),
                             "expected_max_std": pd.Series(dtype="float64")})
    i = np.arange(1, count + 1, dtype="float64")
    ns = np.arange(1, n_max + 1)
    weights = (i[None, :] / count) ** ns[:, None] - ((i[None, :] - 1) / count) ** ns[:, None]
    mean = weights @ v
    second = weights @ (v ** 2)
    std = np.sqrt(np.clip(second - mean ** 2, 0.0, None))
    return pd.DataFrame({"n": ns.astype("int64"), "expected_max": mean, "expected_max_std": std})


def expected_max_frame(sensitivity: pd.DataFrame) -> pd.DataFrame:
    """The expected best validation score against the number of trials, per (suite, task, method).

    Draws: the validation scores of complete trials and of pruned ones (the best a pruned trial reached
    before it was stopped: a lower bound of what it would have reached, so the curve is conservative,
    never inflated by leaving the weak trials out). Left out (counted in ``left_out``): diverged and
    oom trials (no score) and failed or cancelled ones (not about the configuration). For a metric
    where lower is better the curve is the expected minimum."""
    parts = []
    for (suite, task, method), group in sensitivity.groupby(["suite", "task", "method"], sort=True):
        draws = group[group["state"].isin(DRAW_STATES) & group["validation"].notna()]
        higher = bool(group["higher_is_better"].iloc[0]) if len(group) else True
        sign = 1.0 if higher else -1.0
        curve = expected_max(list(sign * draws["validation"]))
        if curve.empty:
            continue
        curve["expected_max"] *= sign
        curve.insert(0, "suite", suite)
        curve.insert(1, "task", task)
        curve.insert(2, "method", method)
        curve.insert(3, "adapter", group["adapter"].iloc[0])
        curve["draws"] = len(draws)
        curve["pruned_draws"] = int((draws["state"] == "pruned").sum())
        curve["left_out"] = len(group) - len(draws)
        curve["draw_min"], curve["draw_max"] = draws["validation"].min(), draws["validation"].max()
        curve["scale"] = group["scale"].iloc[0]
        curve["unit_label"] = group["unit_label"].iloc[0]
        parts.append(curve)
    if not parts:
        return pd.DataFrame(columns=EXPECTED_MAX_COLUMNS)
    return pd.concat(parts, ignore_index=True)[EXPECTED_MAX_COLUMNS]


def load_choices(results: Path) -> tuple[list[dict[str, Any]], list[tuple[str, str]]]:
    """Every readable choice file under ``<results>/tuning/choices``, and (path, why) for the others."""
    root = Path(results) / TUNING_DIR / "choices"
    choices, skipped = [], []
    if not root.is_dir():
        return choices, skipped
    for path in sorted(root.rglob("*.json")):
        if any(part.startswith(".") for part in path.relative_to(root).parts):  # .tmp-* of a writer
            continue
        try:
            choice = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError) as exc:
            skipped.append((str(path), f"not readable JSON ({type(exc).__name__})"))
            continue
        if not isinstance(choice, dict) or choice.get("kind") != "tuning-choice" or \
                not isinstance(choice.get("chosen"), dict):
            skipped.append((str(path), "not a tuning choice"))
            continue
        choices.append(choice)
    return choices, skipped


def budget_frame(sensitivity: pd.DataFrame, choices: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """One row per study (suite, task, adapter, model, preset): the trials recorded and their states,
    their compute (the trial records' total seconds, else the choice's), and the chosen values."""
    by_study: dict[tuple, dict[str, Any]] = {}
    for choice in choices:
        key = tuple(str(choice.get(k)) for k in STUDY_KEYS)
        chosen = choice.get("chosen") or {}
        rows = [r for r in choice.get("trials") or [] if isinstance(r, Mapping)]
        best = [r for r in rows if r.get("number") == choice.get("chosen_trial")]
        by_study[key] = {
            "budget": choice.get("budget"), "chosen_lr": _number(chosen.get("lr")),
            "chosen": json.dumps(chosen, sort_keys=True), "validation_score": _number(choice.get("validation_score")),
            "test_score": _number(best[0].get("test_score")) if best else math.nan,
            "sampler": choice.get("sampler"), "pruner": choice.get("pruner"),
            "choice_trials": len(rows), "choice_seconds": _number(choice.get("compute_seconds")),
        }
    counted: dict[tuple, dict[str, Any]] = {}
    for key, group in sensitivity.groupby(STUDY_KEYS, sort=False):
        states = group["state"].value_counts()
        counted[tuple(str(k) for k in key)] = {
            "trials": len(group), "complete": int(states.get("complete", 0)), "pruned": int(states.get("pruned", 0)),
            "diverged": int(states.get("diverged", 0) + states.get("oom", 0)),
            "failed": int(states.get("failed", 0) + states.get("cancelled", 0)),
            "seconds": float(group["compute_seconds"].fillna(0.0).sum())}
    rows = []
    for key in sorted(set(by_study) | set(counted)):
        choice, seen = by_study.get(key, {}), counted.get(key)
        seconds = seen["seconds"] if seen else choice.get("choice_seconds", math.nan)
        rows.append({
            **dict(zip(STUDY_KEYS, key)), "budget": choice.get("budget"),
            "trials": seen["trials"] if seen else choice.get("choice_trials", 0),
            **{k: (seen[k] if seen else math.nan) for k in ("complete", "pruned", "diverged", "failed")},
            "compute_hours": seconds / 3600.0,
            **{k: choice.get(k, math.nan if k != "chosen" else None)
               for k in ("chosen_lr", "chosen", "validation_score", "test_score", "sampler", "pruner")},
        })
    frame = _add_method(pd.DataFrame(rows, columns=[c for c in BUDGET_COLUMNS if c != "method"]))
    return frame[BUDGET_COLUMNS].reset_index(drop=True)


def budget_table(budget: pd.DataFrame, suite: str) -> pd.DataFrame:
    """One row per method of a suite (its model and preset apart): studies, trials, pruned, diverged,
    failed and compute hours summed over its tasks, then the chosen rate of each task (``lr <task>``;
    empty where the study chose nothing or was not run)."""
    part = budget[budget["suite"] == suite]
    if part.empty:
        return pd.DataFrame(columns=["suite", "adapter", "model", "preset", "studies", "trials", "pruned",
                                     "diverged", "failed", "compute_hours"])
    keys = ["suite", "adapter", "model", "preset"]
    totals = part.groupby(keys, sort=True).agg(
        studies=("task", "nunique"), trials=("trials", "sum"), pruned=("pruned", "sum"),
        diverged=("diverged", "sum"), failed=("failed", "sum"), compute_hours=("compute_hours", "sum"))
    lrs = part.pivot_table(index=keys, columns="task", values="chosen_lr", aggfunc="first", dropna=False)
    lrs = lrs.reindex(columns=sorted(part["task"].unique()))
    lrs.columns = [f"lr {task}" for task in lrs.columns]
    return totals.join(lrs).reset_index()


def load_tuning(results: Path, leaderboard_records: Iterable[RunRecord] | None = None) -> dict[str, Any]:
    """Every tuning frame of a results folder: ``sensitivity``, ``tuned``, ``expected_max``, ``budget``,
    and ``skipped`` ((path, why) of files that are neither records nor choices). ``leaderboard_records``:
    the folder's records when the caller has loaded them already (else they are read here)."""
    from harness.records.store import ResultStore

    results = Path(results)
    trials = ResultStore(results / TUNING_DIR / "trials").load(warn=False)
    if leaderboard_records is None:
        leaderboard_records = ResultStore(results).load(warn=False).records
    choices, skipped = load_choices(results)
    sensitivity = sensitivity_frame(trials.records)
    return {"sensitivity": sensitivity, "tuned": tuned_seeds_frame(leaderboard_records),
            "expected_max": expected_max_frame(sensitivity), "budget": budget_frame(sensitivity, choices),
            "skipped": list(trials.skipped) + skipped}


def has_tuning(results: Path) -> bool:
    """Whether a results folder holds any trial record or choice file."""
    root = Path(results) / TUNING_DIR
    return any(next((root / sub).rglob("*.json"), None) is not None for sub in ("trials", "choices"))
