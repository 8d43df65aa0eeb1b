"""A tuning study's choice file (harness/tuning/study.py): written when a study ends, read by `run --tuned`."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.records.tuning_paths import choice_path, public_url
from harness.search_space import split_params
from harness.spec import RunSpec


def write_choice(study: Any, base: RunSpec, space: Mapping[str, Any], cfg: Any, results: Path,
                 storage: str) -> dict[str, Any] | None:
    import optuna

    TrialState = optuna.trial.TrialState
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    rows = [{"number": t.number, "state": t.state.name.lower(), "params": dict(t.params), "validation_score": t.value,
             "test_score": t.user_attrs.get("test_score"), "status": t.user_attrs.get("status"),
             "run_id": t.user_attrs.get("run_id"), "compute_seconds": t.user_attrs.get("compute_seconds"),
             "intermediate": {str(k): v for k, v in sorted(t.intermediate_values.items())}}
            for t in trials]
    if not complete:  # every trial failed, diverged or was pruned: nothing to choose
        return None
    best = max(complete, key=lambda t: (t.value, -t.number))  # ties: the earlier trial
    train_over, option_over = split_params(best.params)
    choice = {
        "kind": "tuning-choice", "version": 1,
        "suite": base.suite, "task": base.task, "adapter": base.adapter, "model": base.model, "preset": base.preset,
        "study": study.study_name, "storage": public_url(storage),
        "base_config_hash": base.config_hash, "tuning_seed": base.seed,
        "budget": cfg.trials, "sampler": cfg.sampler, "pruner": cfg.pruner,
        "space": {k: d.describe() for k, d in space.items()},
        "chosen": dict(best.params), "train": train_over, "adapter_options": option_over,
        "validation_score": best.value, "chosen_trial": best.number,
        "trials_run": len(rows),
        "compute_seconds": sum(r["compute_seconds"] or 0.0 for r in rows),
        "trials": rows,
        "written_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    path = choice_path(results, base.suite, base.task, base.adapter, base.model, base.preset)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    tmp.write_text(json.dumps(choice, indent=1, sort_keys=True, default=str) + "\n")
    os.replace(tmp, path)
    return choice


def read_choice(results: Path, suite: str, task: str, adapter: str, model: str, preset: str) -> dict[str, Any]:
    path = choice_path(results, suite, task, adapter, model, preset)
    if not path.is_file():
        raise HarnessError(
            f"no tuned choice for {suite}/{task}/{adapter} ({model}, preset {preset}): {path} is missing; "
            f"run `python -m harness tune --suite {suite} --tasks {task} --adapters {adapter} --preset {preset}` first")
    try:
        choice = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise HarnessError(f"{path}: not a readable tuning choice ({exc})") from None
    if not isinstance(choice, dict) or choice.get("kind") != "tuning-choice" or not isinstance(choice.get("chosen"), dict):
        raise HarnessError(f"{path}: not a tuning choice (no 'kind': 'tuning-choice' with 'chosen' values)")
    return choice


def tuned_section(choice: Mapping[str, Any], path: Path, results: Path) -> dict[str, Any]:
    """The record's ``tuning`` section of a run at tuned values (a leaderboard row, labelled tuned)."""
    try:
        rel = str(path.relative_to(results))
    except ValueError:
        rel = str(path)
    return {"role": "tuned", "chosen": dict(choice["chosen"]), "budget": choice.get("budget"),
            "trials_run": choice.get("trials_run"), "compute_seconds": choice.get("compute_seconds"),
            "validation_score": choice.get("validation_score"), "sampler": choice.get("sampler"),
            "choice": rel}
