"""A grid that talks: the header, ``[i/N] ... -> record | ETA`` per finished run, the estimated grid time
(dry run included), estimates from comparable records, and ``--no-progress`` silencing every bar."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from harness.grid import progress
from tests.test_speed_paths import toy  # noqa: F401  (the toy suite fixture)


def _record(task: str, adapter: str, seconds: float, *, steps: int = 100, epochs: int = 2, train: float | None = None,
            evals: float = 0.0, max_steps: int | None = None, status: str = "success", threads: int | None = None,
            cpu: float | None = None, device: str = "cpu") -> dict:
    record = {
        "run_id": f"glue/{task}/{adapter}/h/{seconds}/{max_steps}/{threads}/{cpu}", "status": status,
        "environment": {"torch_threads": threads, "device": device} if threads else {},
        "spec": {"suite": "glue", "task": task, "adapter": adapter, "model": "m", "preset": "cpu",
                 "train": {"max_steps": max_steps, "limit": None, "epochs": epochs, "max_train_samples": 100}},
        "timing": {"total_seconds": seconds, "train_seconds": seconds if train is None else train,
                   "eval_seconds": evals, "steps": steps, "epochs": epochs, "samples": 1000},
    }
    if cpu is not None:
        record["timing"]["cpu_seconds"] = cpu
    return record


def _spec(task: str, adapter: str, max_steps: int | None = None) -> dict:
    return {"suite": "glue", "task": task, "adapter": adapter, "model": "m", "preset": "cpu",
            "train": {"max_steps": max_steps, "limit": None, "epochs": 2, "max_train_samples": 100}}


def test_format_duration():
    assert progress.format_duration(None) == "unknown"
    assert progress.format_duration(42) == "42s"
    assert progress.format_duration(600) == "10min"
    assert progress.format_duration(3 * 3600 + 5 * 60) == "3h05min"


def test_estimates_come_from_the_most_comparable_records():
    est = progress.Estimator.from_records([
        _record("rte", "lora", 100), _record("rte", "lora", 120), _record("rte", "full", 300),
        _record("sst2", "lora", 10), _record("sst2", "full", 30), _record("sst2", "head", 5, status="failed"),
    ])
    assert est.estimate(_spec("rte", "lora")) == 110  # same run: the median
    # same task, another adapter: the task's median times the adapter's ratio on the other tasks
    other = est.estimate(_spec("sst2", "dora"))
    assert other == pytest.approx(20.0)  # no dora anywhere: factor 1, median of sst2's runs
    assert est.estimate(_spec("qnli", "lora")) is not None  # another task of the same suite and model
    assert est.estimate({**_spec("rte", "lora"), "model": "other"}) is None  # nothing comparable


def test_estimates_prefer_records_of_the_grids_threads_and_scale_the_others():
    est = progress.Estimator.from_records([
        # rte: recorded with both layouts; one of two workers (1 thread) took 1.5x the single process (2)
        _record("rte", "lora", 150, threads=1), _record("rte", "lora", 100, threads=2),
        _record("sst2", "lora", 30, threads=1),  # sst2 only ever ran as a worker
    ])
    assert est.estimate(_spec("rte", "lora"), threads=1) == 150  # the records of that layout only
    assert est.estimate(_spec("rte", "lora"), threads=2) == 100
    assert est.estimate(_spec("rte", "lora")) == 125  # no layout asked: every record
    assert est.estimate(_spec("sst2", "lora"), threads=2) == pytest.approx(30 / 1.5)  # scaled by the ratio
    assert est.estimate(_spec("sst2", "lora"), threads=4) == 30  # no ratio measured for 4 threads: unscaled


def test_timings_of_a_shared_machine_are_scaled_to_the_quietest_records_cpu_use():
    est = progress.Estimator.from_records([
        # quiet: the two threads busy 90% of the run; shared with another job: the same CPU work,
        # twice the wall time (busy 45%), so it stands for a 100 s run, not a 200 s one
        _record("rte", "lora", 100, threads=2, cpu=180), _record("rte", "lora", 200, threads=2, cpu=180),
        _record("sst2", "lora", 40, threads=2, cpu=72),  # quiet as well
        _record("sst2", "full", 90, threads=2),  # no CPU time recorded (older record): as it is
        # a GPU run's CPU time says nothing about the machine's load
        _record("qnli", "lora", 50, threads=2, cpu=5, device="cuda:0"),
    ])
    assert est.estimate(_spec("rte", "lora"), threads=2) == pytest.approx(100.0)
    assert est.estimate(_spec("sst2", "lora"), threads=2) == pytest.approx(40.0)
    assert est.estimate(_spec("sst2", "full"), threads=2) == pytest.approx(90.0)
    assert est.estimate(_spec("qnli", "lora"), threads=2) == pytest.approx(50.0)
    # without CPU times nothing is scaled: the median of the quiet and the shared run
    plain = progress.Estimator.from_records([_record("rte", "lora", 100, threads=2),
                                             _record("rte", "lora", 200, threads=2)])
    assert plain.estimate(_spec("rte", "lora"), threads=2) == pytest.approx(150.0)


def test_cpu_workers_count_as_runs_at_once():
    from harness.grid.executors import ExecutorConfig, layout_line, worker_plan
    from harness.pipeline.runner import ExecutionOptions

    options = ExecutionOptions(device="cpu", progress=False)
    two = layout_line(ExecutorConfig(kind="local", workers=2), options)
    assert (two.parallel, two.threads) == (2, worker_plan(2, options).threads)
    one = layout_line(ExecutorConfig(kind="local", workers=1), ExecutionOptions(device="cpu", threads=2))
    assert (one.parallel, one.threads) == (1, 2) and "1 process x 2 torch threads" in one.text
    # the grid line divides the runs' estimates by the runs at once
    assert "2min" in progress.GridEstimate(240.0, 2, 0, (120.0, 120.0)).line(two.parallel)


def test_a_step_capped_run_is_estimated_from_its_steps():
    # 200 s: 10 s load and the rest, 150 s training over 100 steps in 2 epochs, 40 s for 2 evaluations
    est = progress.Estimator.from_records([_record("rte", "lora", 200, train=150, evals=40)])
    assert est.estimate(_spec("rte", "lora", max_steps=10)) == pytest.approx(10 + 15 + 20)  # one evaluation
    assert est.estimate(_spec("rte", "lora", max_steps=1000)) == pytest.approx(200)


def test_grid_progress_lines_count_path_and_eta():
    now = [0.0]
    lines: list[str] = []
    tracker = progress.GridProgress(["a", "b", "c"], [10.0, 20.0, None], echo=lines.append, clock=lambda: now[0])
    now[0] = 20.0  # run a took twice its estimate: the rest is scaled by 2
    tracker.finished("a", "[success] glue/rte lora", "results/glue/rte/a.json")
    assert lines[-1].startswith("[1/3] [success] glue/rte lora -> results/glue/rte/a.json | elapsed 20s, ")
    assert lines[-1].endswith("ETA 1min")  # 20 s x 2 for b, 20 s (the mean finished run) for c
    now[0] = 60.0
    tracker.finished("b", "[success] b", "b.json")
    tracker.finished("c", "[failed] c", "c.json")
    assert lines[-1].startswith("[3/3] [failed] c -> c.json") and lines[-1].endswith("ETA 0s")


def test_the_eta_of_parallel_runs_counts_the_runs_under_way():
    now = [0.0]
    lines: list[str] = []
    # 2 runs at once, 6 runs of 10 estimated seconds each, and the machine goes exactly as estimated:
    # the first two finish together at 10 s
    tracker = progress.GridProgress(list("abcdef"), [10.0] * 6, parallel=2, echo=lines.append, clock=lambda: now[0])
    assert tracker.eta_seconds() == pytest.approx(30.0)  # before any run: 60 s of runs, 2 at once
    now[0] = 10.0
    tracker.finished("a", "a", None)
    # b is under way, half done on average: 10 / (10 + 5) s per estimated second for 45 s of work left;
    # the truth is 20 s (b ends now, then c+d and e+f); counting only the finished run said 50 s
    assert tracker.eta_seconds() == pytest.approx(30.0)
    tracker.finished("b", "b", None)
    assert tracker.eta_seconds() == pytest.approx(14.0)  # 35 s of work at 10 / 25 s per estimated second
    now[0] = 20.0
    tracker.finished("c", "c", None)
    tracker.finished("d", "d", None)
    assert tracker.eta_seconds() == pytest.approx(20.0 / 45.0 * 15.0)  # 15 s of work left at 20/45


def test_grid_estimate_line():
    assert "3min" in progress.GridEstimate(180.0, 2, 0, (60.0, 120.0)).line()
    assert "unknown" in progress.GridEstimate(None, 0, 2, (None, None)).line()
    assert "1 more unknown" in progress.GridEstimate(None, 1, 1, (60.0, None)).line()


def _run(*extra: str, results: Path) -> list[str]:
    return ["run", "--suite", "toy", "--adapters", "head,full", "--seeds", "1", "--device", "cpu",
            "--results-dir", str(results), *extra]


def test_the_grid_talks_and_no_progress_silences_the_bars(toy, tmp_path: Path,  # noqa: F811
                                                         capsys: pytest.CaptureFixture):
    from harness.cli.main import main

    assert main(_run("--dry-run", results=tmp_path / "a")) == 0
    out = capsys.readouterr().out
    assert "4 runs planned" in out and "estimated grid time: unknown" in out

    assert main(_run(results=tmp_path / "a")) == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert lines[0].startswith("grid: 4 runs, 0 already done, 4 to run; preset cpu; model toy: toy-mlp; "
                               "device cpu; 1 process x ")
    finished = [line for line in lines if line.startswith("[")]
    assert [line[:5] for line in finished] == ["[1/4]", "[2/4]", "[3/4]", "[4/4]"]
    for line in finished:
        assert " -> " + str(tmp_path / "a" / "toy") in line and "| elapsed " in line and ", ETA " in line
    assert "it/s" in captured.err  # the training bar, on by default
    # this process's startup (imports, planning, shape checks) is in the first record it wrote, only there
    import json

    records = [json.loads(p.read_text()) for p in (tmp_path / "a").rglob("*.json")]
    with_startup = [r for r in records if "startup" in r["timing"]]
    assert len(with_startup) == 1
    assert {"harness_imports", "torch_import_and_device_check", "planning", "shape_checks_with_transformers_import",
            "preflight_store_scan_and_estimate"} <= set(with_startup[0]["timing"]["startup"])

    # the same grid again: all done, and now its own records time the estimate
    assert main(_run("--dry-run", "--force", results=tmp_path / "a")) == 0
    assert "estimated grid time: " in (out := capsys.readouterr().out) and "unknown" not in out.split("estimated")[-1]

    assert main(_run("--no-progress", results=tmp_path / "b")) == 0
    captured = capsys.readouterr()
    assert "it/s" not in captured.err and "\r" not in captured.err
    assert sum(line.startswith("[") for line in captured.out.splitlines()) == 4  # the run lines stay


def test_glue_evaluation_bar_obeys_no_progress(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    import torch
    import tqdm.auto

    from harness.suite import DataSource, LoadedModel, RunContext, TaskData
    from suites.glue import Encoded, Glue
    from tests.tiny_models import tiny_bert_classifier

    # the model (and so transformers, which subclasses tqdm) before tqdm is replaced
    loaded = LoadedModel(model=tiny_bert_classifier().eval(), family="encoder", head_modules=(),
                         tokenizer=SimpleNamespace(pad_token_id=0), info={"task": "sst2"})
    enc = Encoded(input_ids=[[1, 2, 3], [4, 5]], token_type_ids=None, labels=[0, 1])
    seen: list[object] = []

    def fake_tqdm(iterable, **kwargs):
        seen.append(kwargs.get("disable"))
        return iterable

    monkeypatch.setattr(tqdm.auto, "tqdm", fake_tqdm)
    train = Glue().train_config("cpu", "sst2", "minilm-l6")
    for on in (True, False):
        ctx = RunContext(device=torch.device("cpu"), data=DataSource(None), seed=0, preset="cpu", work_dir=tmp_path,
                         progress=on)
        with torch.inference_mode():
            metrics = Glue().evaluate(loaded.model, TaskData(train=None, eval=enc), loaded, train, ctx)
        assert "accuracy" in metrics
    assert seen == [None, True]  # None: tqdm's own no-terminal rule; --no-progress: always off
