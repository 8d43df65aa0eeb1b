"""harness.aggregate.tuning_views: tuning frames from hand-built trial records and choice files."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from harness.aggregate import tuning_views as tv
from tests.record_factory import make_record, write_store


def trial(task: str, adapter: str, number: int, lr: float, validation: float | None, test: float | None = None,
          *, status: str = "success", pruned: bool = False, seconds: float = 10.0, suite: str = "glue"):
    """A trial record as `harness tune` writes it: its own config hash per rate, a tuning section."""
    record: dict[str, Any] = make_record(suite=suite, task=task, adapter=adapter, seed=42, status=status,
                                         score=test, train={"lr": lr}, adapter_options={})
    record["tuning"] = {"role": "trial", "study": f"{suite}/{task}/{adapter}/minilm-l6/cpu/h", "trial": number}
    record["timing"]["total_seconds"] = seconds
    if status == "success":
        record["metrics"]["validation"] = {"score": validation, "best_epoch": 1}
        record["metrics"]["stopped_early"] = pruned
        if pruned:
            record["metrics"]["score"] = None
    return record


def tuned(task: str, adapter: str, seed: int, lr: float, score: float):
    record: dict[str, Any] = make_record(task=task, adapter=adapter, seed=seed, score=score, train={"lr": lr},
                                         adapter_options={})
    record["tuning"] = {"role": "tuned", "chosen": {"lr": lr}, "budget": 4}
    return record


def choice(task: str, adapter: str, lr: float, validation: float, trials: list[dict[str, Any]], *,
           suite: str = "glue") -> dict[str, Any]:
    return {"kind": "tuning-choice", "version": 1, "suite": suite, "task": task, "adapter": adapter,
            "model": "minilm-l6", "preset": "cpu", "budget": 4, "sampler": "grid", "pruner": "hyperband",
            "chosen": {"lr": lr}, "validation_score": validation, "chosen_trial": 1, "trials": trials,
            "compute_seconds": 999.0}


def write_choice(results: Path, body: dict[str, Any]) -> None:
    path = results / "tuning" / "choices" / body["suite"] / body["task"] / body["adapter"] / "minilm-l6--cpu.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(body))


def lora_trials() -> list:
    return [trial("rte", "lora", 0, 1e-4, 0.55, 0.54), trial("rte", "lora", 1, 1e-3, 0.70, 0.66),
            trial("rte", "lora", 2, 1e-2, 0.40, pruned=True), trial("rte", "lora", 3, 1e-1, None, status="diverged")]


def test_expected_max_matches_the_hand_worked_example():
    curve = tv.expected_max([3.0, 1.0, 2.0])
    assert curve["n"].tolist() == [1, 2, 3]
    # n=1: the mean; n=2: 1*(1/9) + 2*(4/9-1/9) + 3*(1-4/9) = 22/9; n=3: 1/27 + 2*7/27 + 3*19/27 = 72/27
    assert curve["expected_max"].tolist() == pytest.approx([2.0, 22 / 9, 8 / 3])
    # draws are with replacement: n = N is below the sample maximum, which only n -> infinity reaches
    assert curve["expected_max"].iloc[-1] < 3.0
    assert tv.expected_max([1.0, 2.0, 3.0], n_max=200)["expected_max"].iloc[-1] == pytest.approx(3.0)
    # standard deviation at n=1: the population sd of 1,2,3
    assert curve["expected_max_std"].iloc[0] == pytest.approx(math.sqrt(2 / 3))
    # one value, ties, nothing
    assert tv.expected_max([0.5])["expected_max"].tolist() == [0.5]
    assert tv.expected_max([2.0, 2.0, 2.0])["expected_max"].tolist() == pytest.approx([2.0] * 3)
    assert tv.expected_max([]).empty and tv.expected_max([float("nan")]).empty


def test_expected_max_is_nondecreasing_in_n():
    values = [0.61, 0.52, 0.70, 0.70, 0.33, 0.58]
    curve = tv.expected_max(values, n_max=20)["expected_max"]
    assert (curve.diff().dropna() >= -1e-12).all()
    assert curve.iloc[0] == pytest.approx(sum(values) / len(values))


def test_trial_states():
    records = lora_trials() + [trial("rte", "lora", 4, 3e-4, None, status="failed")]
    assert [tv.trial_state(r) for r in records] == ["complete", "complete", "pruned", "diverged", "failed"]


def test_sensitivity_frame_one_row_per_trial_sorted_by_rate():
    other = make_record(task="rte", adapter="lora")  # a leaderboard record: not a trial, skipped
    frame = tv.sensitivity_frame([*reversed(lora_trials()), other])
    assert frame["lr"].tolist() == [1e-4, 1e-3, 1e-2, 1e-1]
    assert frame["state"].tolist() == ["complete", "complete", "pruned", "diverged"]
    assert frame["validation"].tolist()[:3] == [0.55, 0.70, 0.40] and math.isnan(frame["validation"].iloc[3])
    assert frame["test"].tolist()[:2] == [0.54, 0.66] and frame["test"].iloc[2:].isna().all()
    assert set(frame["method"]) == {"lora"} and frame["trial"].tolist() == [0, 1, 2, 3]
    assert (frame["scale"] == 100.0).all()  # accuracy: shown in %


def test_expected_max_frame_counts_pruned_draws_and_leaves_out_diverged():
    frame = tv.sensitivity_frame(lora_trials() + [trial("rte", "full", 0, 1e-5, 0.8), trial("rte", "full", 1, 1e-4, 0.6)])
    curves = tv.expected_max_frame(frame)
    lora = curves[curves["method"] == "lora"]
    assert lora["n"].tolist() == [1, 2, 3]  # complete 0.55, 0.70 and pruned 0.40 are the draws
    assert lora["expected_max"].tolist() == pytest.approx(tv.expected_max([0.55, 0.70, 0.40])["expected_max"])
    assert lora[["draws", "pruned_draws", "left_out"]].iloc[0].tolist() == [3, 1, 1]
    full = curves[curves["method"] == "full"]
    assert full["expected_max"].tolist() == pytest.approx([0.7, 0.6 / 4 + 0.8 * 3 / 4])


def test_several_models_on_one_task_are_told_apart():
    a = trial("rte", "lora", 0, 1e-4, 0.5)
    b = trial("rte", "lora", 0, 1e-4, 0.6)
    b["spec"]["model"] = "roberta-base"
    assert sorted(tv.sensitivity_frame([a, b])["method"]) == ["lora (minilm-l6, cpu)", "lora (roberta-base, cpu)"]


def test_tuned_seeds_frame_reads_only_tuned_records():
    records = [tuned("rte", "lora", 2, 1e-3, 0.65), tuned("rte", "lora", 1, 1e-3, 0.63), make_record()]
    frame = tv.tuned_seeds_frame(records)
    assert frame["seed"].tolist() == [1, 2] and frame["test"].tolist() == [0.63, 0.65]
    assert frame["lr"].tolist() == [1e-3, 1e-3] and set(frame["method"]) == {"lora"}


def test_load_tuning_budget_per_study_and_per_method(tmp_path):
    write_store(tmp_path / "tuning" / "trials", lora_trials() + [trial("mrpc", "lora", 0, 2e-4, 0.8, 0.79,
                                                                       seconds=3600.0)])
    write_store(tmp_path, [tuned("rte", "lora", 1, 1e-3, 0.63)])
    write_choice(tmp_path, choice("rte", "lora", 1e-3, 0.70, [{"number": 1, "test_score": 0.66}]))
    write_choice(tmp_path, choice("mrpc", "lora", 2e-4, 0.80, [{"number": 1, "test_score": 0.79}]))
    bad = tmp_path / "tuning" / "choices" / "glue" / "junk.json"
    bad.write_text("{not json")
    assert tv.has_tuning(tmp_path) and not tv.has_tuning(tmp_path / "nothing")
    frames = tv.load_tuning(tmp_path)
    assert len(frames["sensitivity"]) == 5 and len(frames["tuned"]) == 1
    assert [p for p, _ in frames["skipped"]] == [str(bad)]
    budget = frames["budget"].set_index("task")
    assert budget.loc["rte", ["trials", "complete", "pruned", "diverged", "failed"]].tolist() == [4, 2, 1, 1, 0]
    assert budget.loc["rte", "compute_hours"] == pytest.approx(40 / 3600)  # the trial records' seconds
    assert budget.loc["rte", "chosen_lr"] == 1e-3 and budget.loc["rte", "test_score"] == 0.66
    table = tv.budget_table(frames["budget"], "glue")
    assert len(table) == 1
    row = table.iloc[0]
    assert row["adapter"] == "lora" and row["studies"] == 2 and row["trials"] == 5
    assert row["compute_hours"] == pytest.approx(1 + 40 / 3600)
    assert row["lr mrpc"] == 2e-4 and row["lr rte"] == 1e-3
    assert tv.budget_table(frames["budget"], "toy").empty


def test_a_choice_without_trial_records_still_has_a_budget_row(tmp_path):
    write_choice(tmp_path, choice("rte", "lora", 1e-3, 0.7, [{"number": 0}, {"number": 1, "test_score": 0.6}]))
    budget = tv.load_tuning(tmp_path)["budget"]
    assert budget[["trials", "compute_hours", "chosen_lr"]].iloc[0].tolist() == [2, 999.0 / 3600, 1e-3]
