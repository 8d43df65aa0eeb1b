"""Per-method tuning on held-out data (harness/tuning/study.py, harness/validation.py, `harness tune`):
the validation split, reads of the test split, the search, resume, shared studies, tuned rows."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from adapters.head import HeadOnly
from harness.cli.main import main
from harness.records.store import ResultStore
from harness.registry import ADAPTERS
from harness.search_space import DEFAULT_SPACE, LogUniform, check_space
from harness.validation import carve, carve_indices

ROOT = Path(__file__).resolve().parents[1]


class SlowHead(HeadOnly):
    """A head-only adapter whose preset rate (1e-5) is far below where it learns (about 1e-1)."""

    train_overrides = {"cpu": {"lr": 1e-5}}
    search_space = {"lr": LogUniform(1e-5, 1.0, prior=1e-5)}


@pytest.fixture
def slow_head():
    ADAPTERS.register("slow-head")(SlowHead)
    try:
        yield "slow-head"
    finally:
        ADAPTERS.unregister("slow-head")


def _records(root: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(root.rglob("*.json")) if not p.name.startswith(".")]


def _tune(results: Path, *extra: str) -> list[str]:
    return ["tune", "--suite", "toy", "--results-dir", str(results), "--no-progress", *extra]


# ---- the validation split ------------------------------------------------------------------------

def test_carve_is_disjoint_deterministic_and_seed_free():
    items = list(range(1000))
    train_a, val_a = carve(items, 100, "glue/rte")
    train_b, val_b = carve(items, 100, "glue/rte")
    assert val_a == val_b and train_a == train_b  # no run seed involved: the same for every run
    assert len(val_a) == 100 and not set(val_a) & set(train_a) and sorted(train_a + val_a) == items
    assert carve(items, 100, "glue/mrpc")[1] != val_a  # per task
    assert len(carve(items, 0.1, "glue/rte")[1]) == 100  # a fraction
    assert carve_indices(10, None, "x") == (list(range(10)), [])


def test_glue_validation_never_overlaps_training_for_any_seed_or_method():
    """GLUE's load_data: the held-out examples are the same for every seed, and none is trained on."""
    from harness.spec import TrainConfig
    from harness.suite import DataSource, LoadedModel, RunContext
    from suites.glue import Glue

    class Tok:  # a tokenizer that keeps the text, so the examples can be compared
        pad_token_id = 0

        def __call__(self, a, b=None, truncation=True, max_length=128):
            return {"input_ids": [(x, y) for x, y in zip(a, b or [None] * len(a))]}

    loaded = LoadedModel(model=None, family="encoder", head_modules=(), tokenizer=Tok(), info={"task": "rte"})
    train = TrainConfig(max_train_samples=2000, validation=500)
    seen = []
    for seed in (42, 64, 128):
        ctx = RunContext(device="cpu", data=DataSource(ROOT.parent / "shared" / "data"), seed=seed, preset="cpu",
                         work_dir=Path("."))
        data = Glue().load_data("rte", loaded, train, ctx)
        trained, held = set(data.train.input_ids), list(data.validation.input_ids)
        assert len(held) == 500 and not trained & set(held)
        seen.append(held)
    assert seen[0] == seen[1] == seen[2]


def test_test_split_is_read_once_after_selection(tmp_path, monkeypatch):
    """A trial (test_each_epoch off) reads the validation split every epoch and the test split once,
    after the last validation read: nothing selected can depend on it."""
    from suites.toy import Toy

    reads: list[str] = []
    original = Toy.evaluate

    def counting(self, model, data, loaded, train, ctx):
        reads.append("validation" if data.eval is data.validation else "test")
        return original(self, model, data, loaded, train, ctx)

    monkeypatch.setattr(Toy, "evaluate", counting)
    assert main(["run", "--suite", "toy", "--tasks", "sign", "--adapters", "head", "--epochs", "3",
                 "--test-each-epoch", "false", "--results-dir", str(tmp_path), "--no-progress"]) == 0
    assert reads == ["validation", "validation", "validation", "test"]
    (record,) = _records(tmp_path)
    assert record["metrics"]["test_reads"] == 1 and record["metrics"]["selection"] == "best-validation-epoch"
    assert "best-test-epoch" not in record["metrics"]["protocols"]


def test_default_protocol_keeps_both_scores(tmp_path):
    assert main(["run", "--suite", "toy", "--tasks", "sign", "--adapters", "head", "--results-dir", str(tmp_path),
                 "--no-progress"]) == 0
    (record,) = _records(tmp_path)
    m = record["metrics"]
    epoch = m["validation"]["best_epoch"]
    assert m["best_epoch"] == epoch and m["protocols"]["best-validation-epoch"]["epoch"] == epoch
    # the leaderboard's score is the test score at the validation-selected epoch, not the best test epoch
    assert m["score"] == m["per_epoch"][epoch - 1]["accuracy"]
    assert m["protocols"]["best-test-epoch"]["score"] == max(e["accuracy"] for e in m["per_epoch"])
    assert record["data_info"]["validation_examples"] == 8


# ---- search spaces ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ADAPTERS.names())
def test_every_adapter_declares_a_valid_search_space(name):
    cls = ADAPTERS.get(name)
    from harness.config import field_types

    check_space(cls.tuning_space(), set(field_types(cls.config_cls)), name)


def test_space_must_span_two_decades():
    from harness.errors import HarnessError

    with pytest.raises(HarnessError, match="two orders of magnitude"):
        check_space({"lr": LogUniform(1e-3, 5e-3)}, set(), "x")
    check_space(DEFAULT_SPACE, set(), "x")


# ---- the search ----------------------------------------------------------------------------------

def test_tune_finds_a_rate_far_from_the_presets(tmp_path, slow_head):
    """The adapter's preset rate (1e-5) learns nothing in 12 steps; a small grid finds one that does,
    and `run --tuned` runs the seeds there, labelled tuned."""
    assert main(_tune(tmp_path, "--tasks", "sign", "--adapters", slow_head, "--trials", "5", "--sampler", "grid",
                      "--pruner", "none")) == 0
    choice = json.loads((tmp_path / "tuning/choices/toy/sign/slow-head/toy-mlp--cpu.json").read_text())
    assert choice["budget"] == 5 and choice["trials_run"] == 5
    assert choice["chosen"]["lr"] >= 1e-2
    prior = [t for t in choice["trials"] if t["params"]["lr"] == pytest.approx(1e-5)]
    assert prior and choice["validation_score"] > prior[0]["validation_score"]
    assert main(["run", "--suite", "toy", "--tasks", "sign", "--adapters", slow_head, "--tuned", "--seeds", "1,2",
                 "--results-dir", str(tmp_path), "--no-progress"]) == 0
    records = _records(tmp_path / "toy")
    assert len(records) == 2
    for r in records:
        assert r["spec"]["train"]["lr"] == choice["chosen"]["lr"]
        assert r["tuning"]["role"] == "tuned" and r["tuning"]["budget"] == 5


def test_trials_never_reach_a_table(tmp_path, slow_head):
    from harness import aggregate

    assert main(_tune(tmp_path, "--tasks", "sign", "--adapters", slow_head, "--trials", "2", "--sampler", "grid",
                      "--pruner", "none")) == 0
    assert main(["run", "--suite", "toy", "--tasks", "sign", "--adapters", slow_head, "--tuned", "--seeds", "1",
                 "--results-dir", str(tmp_path), "--no-progress"]) == 0
    store = ResultStore(tmp_path)
    assert all("tuning/" not in str(p.relative_to(tmp_path)) for p in store.iter_paths())
    # even a trial record copied into the leaderboard's folders is dropped by the aggregation
    trial = next((tmp_path / "tuning" / "trials").rglob("*.json"))
    copy = tmp_path / "toy" / "sign" / "copied-trial.json"
    copy.write_text(trial.read_text())
    frame = aggregate.load_frame(store.records(warn=False))
    assert len(frame) == 1 and frame.iloc[0]["regime"] == "tuned" and "tuned" in frame.iloc[0]["label"]
    assert main(["report", "--results-dir", str(tmp_path), "--out", str(tmp_path / "tables")]) == 0
    # the leaderboard's tables (the tuning-*.csv files are about the trials, by design)
    text = "".join(p.read_text() for p in (tmp_path / "tables").glob("*.csv") if not p.name.startswith("tuning-"))
    assert text.count("tuned") >= 1 and json.loads(trial.read_text())["config_hash" if False else "run_id"] not in text


def test_tune_rejects_a_suite_without_validation(tmp_path, capsys):
    assert main(_tune(tmp_path, "--adapters", "head", "--trials", "2", "--validation", "none")) == 2
    assert "declares no validation split" in capsys.readouterr().err


# ---- resume and shared studies (separate processes) ------------------------------------------------

def _spawn(results: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "harness", *_tune(results, "--tasks", "sign", "--adapters", "head",
                                                                     "--sampler", "grid", "--pruner", "none", *extra)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _study_trials(results: Path) -> list:
    import optuna

    storage = f"sqlite:///{results / 'tuning' / 'studies.db'}"
    (summary,) = optuna.get_all_study_summaries(storage)
    return optuna.load_study(study_name=summary.study_name, storage=storage).get_trials()


@pytest.mark.slow
def test_killed_tune_resumes_without_repeating_finished_trials(tmp_path):
    proc = _spawn(tmp_path, "--trials", "4")
    trials_dir = tmp_path / "tuning" / "trials"
    deadline = time.time() + 300
    while time.time() < deadline and len(list(trials_dir.rglob("*.json"))) < 1:
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished_before = {p: p.stat().st_mtime_ns for p in trials_dir.rglob("*.json")}
    assert finished_before, "no trial finished before the kill"
    out = _spawn(tmp_path, "--trials", "4").communicate(timeout=600)[0]
    assert "chose lr=" in out, out
    states = [t.state.name for t in _study_trials(tmp_path)]
    assert states.count("COMPLETE") == 4 and "RUNNING" not in states
    for path, mtime in finished_before.items():  # finished trials were not run again
        assert path.stat().st_mtime_ns == mtime
    assert len(list(trials_dir.rglob("*.json"))) == 4


@pytest.mark.slow
def test_two_workers_share_one_study(tmp_path):
    a = _spawn(tmp_path, "--trials", "6")
    time.sleep(1.0)  # the first creates the study; the second joins it
    b = _spawn(tmp_path, "--trials", "6")
    out_a, out_b = a.communicate(timeout=600)[0], b.communicate(timeout=600)[0]
    assert a.returncode == 0 and b.returncode == 0, out_a + out_b
    trials = _study_trials(tmp_path)
    assert len(trials) == 6 and all(t.state.name == "COMPLETE" for t in trials)
    owners = {t.user_attrs["owner_pid"] for t in trials}
    assert owners == {a.pid, b.pid}
