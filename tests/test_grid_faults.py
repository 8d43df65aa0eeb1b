"""Faults in a grid: kill -9 and resume, concurrent writers, diverged/oom/failed runs, the parallel and
Ray executors, and the in-process load cache.

The grids run ``toy-faults`` (tests/toy_faults.py): the toy suite with a behaviour per task name (``ok``
trains, ``slow`` sleeps in every step, ``nan``/``inf`` diverge at step 2, ``oom`` raises CUDA's
out-of-memory error, ``boom`` a ValueError). Subprocesses import it by name before the CLI, as a
plug-in outside the built-in packages; every run leaves a marker file when its training starts, so the
kill test kills in the middle of a known run instead of after a guessed delay.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from harness.records.check import load_record
from harness.records.store import ResultStore

PLUGIN = "tests.toy_faults"
SUITE = "toy-faults"
ROOT = Path(__file__).resolve().parents[1]
LAUNCH = f"import sys, {PLUGIN}; from harness.cli.main import main; sys.exit(main(sys.argv[1:]))"


@pytest.fixture(scope="module")
def fake():
    """The toy-faults suite registered in this process (removed again afterwards, so that no other test
    sees it)."""
    module = importlib.import_module(PLUGIN)
    yield module
    module.unregister()


def _env(**extra: str) -> dict[str, str]:
    """A subprocess's environment: this checkout first on the path (the harness and tests.toy_faults)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    env.update({"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}, **extra)
    return env


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-c", LAUNCH, "run", "--suite", SUITE, "--adapters", "head", "--device", "cpu",
            "--no-progress", *args]


def audit(root: Path, planned: int) -> dict[str, int]:
    """The figures of a store after a grid: runs planned, recorded (valid records), duplicated (a run
    recorded in more than one file), lost (planned, not recorded), partial (files that are not
    records, temporary files included)."""
    files = [p for p in root.rglob("*.json")]
    temps = [p for p in files if p.name.startswith(".tmp-")]
    by_run: dict[str, int] = {}
    bad = 0
    for path in files:
        if path in temps:
            continue
        try:
            record = load_record(path)
        except ValueError:
            bad += 1
            continue
        by_run[record["run_id"]] = by_run.get(record["run_id"], 0) + 1
    return {"planned": planned, "recorded": len(by_run), "duplicated": sum(n - 1 for n in by_run.values()),
            "lost": planned - len(by_run), "partial": bad + len(temps)}


def _records(root: Path) -> dict[int, tuple[Path, dict]]:
    return {load_record(p)["key"]["seed"]: (p, load_record(p)) for p in ResultStore(root).iter_paths()}


# ---------------------------------------------------------------------------------------------------
# (a) kill -9 in the middle of a run, then the same command again
# ---------------------------------------------------------------------------------------------------


def test_kill_dash_nine_mid_run_then_resume(tmp_path: Path):
    results, markers = tmp_path / "results", tmp_path / "markers"
    markers.mkdir()
    env = _env(TOY_FAULTS_MARKERS=str(markers), TOY_FAULTS_SLEEP="0.25")
    command = _cli("--tasks", "slow", "--seeds", "1,2,3", "--results-dir", str(results))
    grid = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 180
    while not list(markers.glob("slow-seed2-*")):  # run 2 of 3 has started training
        assert grid.poll() is None, grid.communicate()[0]
        assert time.monotonic() < deadline, "run 2 never started"
        time.sleep(0.05)
    time.sleep(0.5)  # two of its eight 0.25 s steps: certainly mid-run
    os.kill(grid.pid, signal.SIGKILL)
    grid.wait(timeout=30)
    assert grid.returncode == -signal.SIGKILL

    before = _records(results)
    assert sorted(before) == [1], "only the run that finished before the kill is recorded"
    first_path, first = before[1]
    first_mtime = first_path.stat().st_mtime_ns
    # what a writer killed between its temporary file and the replace leaves behind
    torn = first_path.parent / f".tmp-{grid.pid}@{os.uname().nodename}@killed00.json"  # the pattern of harness.records.store.TEMP_NAME
    torn.write_text('{"schema_version": 1, "run_id": "toy-faults/slow/head/x/seed2", "sta')
    assert ResultStore(results).load(warn=False).skipped == []  # never read as a record

    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert "planned 3, already done 1, ran 2 (success=2)" in again.stdout

    after = _records(results)
    assert sorted(after) == [1, 2, 3]
    assert after[1][0].stat().st_mtime_ns == first_mtime and after[1][1] == first  # not rerun
    assert all(rec["status"] == "success" for _, rec in after.values())
    assert after[2][1]["started_at"] >= first["finished_at"]  # the interrupted run ran again
    assert not torn.exists(), "the dead writer's temporary file is cleaned up"
    runs_started = sorted(p.name.split("-")[1] for p in markers.iterdir())
    assert runs_started == ["seed1", "seed2", "seed2", "seed3"]  # 2 interrupted then rerun; 1 never twice
    figures = audit(results, planned=3)
    print("kill/resume figures:", json.dumps(figures))
    assert figures == {"planned": 3, "recorded": 3, "duplicated": 0, "lost": 0, "partial": 0}


# ---------------------------------------------------------------------------------------------------
# (b) concurrent writers
# ---------------------------------------------------------------------------------------------------

WRITER = textwrap.dedent(
    """
    import sys
    from harness.records.store import ResultStore
    store, writer = ResultStore(sys.argv[1]), sys.argv[2]
    for round_ in range(40):
        for seed in range(10):
            store.write({"schema_version": 1, "run_id": f"s/t/a/h/seed{seed}", "spec": {}, "status": "success",
                         "key": {"suite": "s", "task": "t", "adapter": "a", "config_hash": "h", "seed": seed},
                         "metrics": {"score": round_}, "writer": writer, "padding": "x" * 20000})
    """
)


def test_two_processes_writing_the_same_records_never_tear_them(tmp_path: Path):
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), name]) for name in ("A", "B")]
    reads = 0
    while any(w.poll() is None for w in writers):  # read while both write: never a partial record
        for path in ResultStore(tmp_path).iter_paths():
            load_record(path)  # raises on a torn file
            reads += 1
    assert [w.wait() for w in writers] == [0, 0]
    files = sorted(p.name for p in tmp_path.rglob("*") if p.is_file())
    assert files == sorted(f"a-h-seed{s}.json" for s in range(10))  # one file per run, no temporaries
    last = {load_record(tmp_path / "s" / "t" / f)["metrics"]["score"] for f in files}
    assert last == {39}
    assert reads > 0


def test_sequential_and_parallel_grids_on_one_store_at_once(fake, tmp_path: Path, monkeypatch):
    """A parallel grid (--workers 2, in a subprocess) and a sequential grid (in this process) over the
    same runs and the same store, started so that they overlap."""
    from harness.grid.run_grid import run_grid
    from harness.pipeline.runner import ExecutionOptions

    results, markers = tmp_path / "results", tmp_path / "markers"
    markers.mkdir()
    for name, value in {"TOY_FAULTS_SLEEP": "0.1", "TOY_FAULTS_MARKERS": str(markers)}.items():
        monkeypatch.setenv(name, value)
    env = _env()
    parallel = subprocess.Popen(_cli("--tasks", "ok,slow", "--seeds", "1,2", "--results-dir", str(results), "--workers", "2"),
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 180
    while not list(markers.iterdir()):  # a worker is training
        assert parallel.poll() is None, parallel.communicate()
        assert time.monotonic() < deadline, "the parallel grid never started a run"
        time.sleep(0.02)
    assert len(list(ResultStore(results).iter_paths())) < 4  # it has not finished: the grids overlap
    sequential = run_grid(_plan("ok,slow", seeds=(1, 2)), ResultStore(results),
                          ExecutionOptions(device="cpu", progress=False), echo=lambda _: None)
    out, err = parallel.communicate(timeout=300)
    assert parallel.returncode == 0, err
    threads = max(1, len(os.sched_getaffinity(0)) // 2)
    assert f"executor: local, 2 worker processes, {threads} torch threads each" in out
    ran = [int(out.split(" ran ")[1].split()[0]), sequential.ran]
    writers = {p.name.split("-")[2] for p in markers.iterdir()}
    figures = audit(results, planned=4)
    print("concurrency figures:", json.dumps({**figures, "runs executed by (parallel, sequential)": ran,
                                               "writer processes": len(writers)}))
    assert figures == {"planned": 4, "recorded": 4, "duplicated": 0, "lost": 0, "partial": 0}
    assert len(writers) >= 2  # this process and pool workers trained runs (a fast worker may take all four)
    records = [load_record(p) for p in ResultStore(results).iter_paths()]
    assert all(r["status"] == "success" for r in records)
    assert out.count(f"[success] {SUITE}/") == ran[0]  # one summary line per run the parallel driver ran


# ---------------------------------------------------------------------------------------------------
# (c) diverged, out of memory, failed: recorded with what went wrong, and the grid goes on
# ---------------------------------------------------------------------------------------------------


def _plan(tasks: str, seeds: tuple[int, ...] = (1,), adapters: str = "head"):
    from harness.pipeline.plan import GridRequest, plan_grid

    return plan_grid(GridRequest(suite=SUITE, adapters=adapters, tasks=tasks, seeds=seeds, preset="cpu"),
                     cuda_available=False)


def test_statuses_of_runs_that_go_wrong_and_resume(fake, tmp_path: Path):
    from harness.cli.run import _plan_table
    from harness.grid.run_grid import run_grid
    from harness.pipeline.runner import ExecutionOptions

    specs = _plan("nan,inf,oom,boom,ok")
    store = ResultStore(tmp_path)
    lines: list[str] = []
    outcome = run_grid(specs, store, ExecutionOptions(device="cpu", progress=False), echo=lines.append)
    assert outcome.ran == 5 and len(lines) == 5  # the grid went on after each
    records = {r["key"]["task"]: r for r in store.records(warn=False)}
    assert records["nan"]["status"] == "diverged" and records["nan"]["error"]["step"] == 2
    assert "nan" in records["nan"]["error"]["message"]
    assert records["inf"]["status"] == "diverged" and records["inf"]["error"]["step"] == 2
    assert records["oom"]["status"] == "oom" and "out of memory" in records["oom"]["error"]["message"]
    assert records["boom"]["status"] == "failed"
    assert "ValueError: fake failure inside the suite" in records["boom"]["error"]["traceback"]
    assert records["ok"]["status"] == "success" and records["ok"]["metrics"]["score"] is not None
    assert len(records["nan"]["loss_curve"]) == 2  # the two finite steps before the NaN

    table = _plan_table(specs, {}, store, force=False)
    assert "failed (will rerun)" in table and "done: diverged (skip)" in table and "done: oom (skip)" in table
    assert "4 already done, 1 to run (1 failed or cancelled, rerun)" in table
    again = run_grid(specs, store, ExecutionOptions(device="cpu", progress=False), echo=lines.append)
    assert (again.skipped, again.ran, again.by_status) == (4, 1, {"failed": 1})  # only the failed one
    forced = run_grid(specs, store, ExecutionOptions(device="cpu", progress=False), force=True, echo=lines.append)
    assert forced.ran == 5
    assert len(list(tmp_path.rglob("*.json"))) == 5


def test_cancelled_records_are_rerun(fake, tmp_path: Path):
    from harness.grid.run_grid import run_grid
    from harness.pipeline.runner import ExecutionOptions

    specs = _plan("ok")
    store = ResultStore(tmp_path)
    run_grid(specs, store, ExecutionOptions(device="cpu", progress=False), echo=lambda _: None)
    path = next(store.iter_paths())
    record = json.loads(path.read_text())
    record["status"] = "cancelled"
    path.write_text(json.dumps(record))
    assert not store.is_complete(record["key"])
    outcome = run_grid(specs, store, ExecutionOptions(device="cpu", progress=False), echo=lambda _: None)
    assert outcome.ran == 1 and load_record(path)["status"] == "success"


def test_stale_temporary_files_are_judged_by_their_writer(tmp_path: Path):
    from harness.records.store import STALE_TEMP_SECONDS, temp_is_stale

    host = os.uname().nodename
    now = time.time()
    assert not temp_is_stale(f".tmp-{os.getpid()}@{host}@abcd1234.json", now, now=now)  # a live writer: keep
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    assert temp_is_stale(f".tmp-{int(dead.stdout)}@{host}@abcd1234.json", now, now=now)
    assert not temp_is_stale(".tmp-1@elsewhere@abcd1234.json", now - 60, now=now)  # cannot check: wait
    assert temp_is_stale(".tmp-1@elsewhere@abcd1234.json", now - STALE_TEMP_SECONDS - 1, now=now)


# ---------------------------------------------------------------------------------------------------
# caching within a grid
# ---------------------------------------------------------------------------------------------------


def test_cached_loads_give_the_same_records_as_fresh_loads(fake, tmp_path: Path):
    from harness.grid.run_grid import run_grid
    from harness.pipeline import load as load_cache
    from harness.pipeline.runner import ExecutionOptions

    specs = _plan("ok,nan", seeds=(1, 2), adapters="head,full")  # 8 runs, 4 distinct loads
    results = {}
    for cache in (False, True):
        load_cache.MODEL_CACHE.clear()
        load_cache.DATA_CACHE.clear()
        fake.LOADS.clear()
        store = ResultStore(tmp_path / str(cache))
        run_grid(specs, store, ExecutionOptions(device="cpu", progress=False, cache=cache), echo=lambda _: None)
        results[cache] = {r["run_id"]: r for r in store.records(warn=False)}
        hits = [r["timing"]["load_cached"] for r in results[cache].values() if r["status"] == "success"]
        if cache:
            # execution order grouped (task, seed): each load served the second adapter too
            assert sorted(fake.LOADS) == [("nan", 1), ("nan", 2), ("ok", 1), ("ok", 2)]
            assert sum(h["model"] for h in hits) == 2 and sum(h["data"] for h in hits) == 2
        else:
            assert len(fake.LOADS) == 8 and not any(h["model"] or h["data"] for h in hits)
    assert results[True].keys() == results[False].keys() and len(results[True]) == 8
    for run_id, fresh in results[False].items():
        cached = results[True][run_id]
        assert cached["status"] == fresh["status"]
        assert cached["loss_curve"] == fresh["loss_curve"], run_id  # same init, same data, same numbers
        assert cached.get("metrics") == fresh.get("metrics")


# ---------------------------------------------------------------------------------------------------
# (d) Ray, a local instance started for the grid
# ---------------------------------------------------------------------------------------------------


def test_ray_executor_runs_a_small_grid_end_to_end(tmp_path: Path):
    results = tmp_path / "results"
    env = _env(RAY_USAGE_STATS_ENABLED="0")
    done = subprocess.run(_cli("--tasks", "ok,boom", "--seeds", "1", "--results-dir", str(results), "--executor", "ray"),
                          env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 1, done.stderr[-3000:]  # a failed run: exit code 1
    assert "1 of them not done: exit code 1" in done.stdout
    assert "executor: ray at a local instance; each run asks for num_cpus=1" in done.stdout
    assert "planned 2, already done 0, ran 2 (failed=1, success=1)" in done.stdout
    records = {r["key"]["task"]: r for r in ResultStore(results).records(warn=False)}
    assert records["ok"]["status"] == "success" and records["boom"]["status"] == "failed"
    assert records["ok"]["environment"]["torch_threads"] == 1  # the task's one CPU
    figures = audit(results, planned=2)
    print("ray figures:", json.dumps(figures))
    assert figures == {"planned": 2, "recorded": 2, "duplicated": 0, "lost": 0, "partial": 0}


# ---------------------------------------------------------------------------------------------------
# resources: GPU pinning and Ray requests (the CUDA paths, checked without a GPU)
# ---------------------------------------------------------------------------------------------------


def test_pool_workers_get_one_gpu_each_or_a_share_of_the_cores(monkeypatch):
    import queue

    from harness.errors import HarnessError
    from harness.grid import executors
    from harness.grid.executors import WorkerPlan, _init_pool_worker, worker_plan
    from harness.pipeline.runner import ExecutionOptions

    monkeypatch.setattr(executors, "_cuda_count", lambda: 2)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert worker_plan(2, ExecutionOptions(device="auto")) == WorkerPlan(gpus=("0", "1"), threads=None)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")  # a restricted machine: pin inside what is visible
    assert worker_plan(2, ExecutionOptions(device="cuda")).gpus == ("3", "5")
    with pytest.raises(HarnessError, match="--workers 3 needs 3 GPUs"):
        worker_plan(3, ExecutionOptions(device="cuda"))
    with pytest.raises(HarnessError, match="names one GPU"):
        worker_plan(2, ExecutionOptions(device="cuda:1"))
    cores = len(os.sched_getaffinity(0))
    assert worker_plan(2, ExecutionOptions(device="cpu")) == WorkerPlan(gpus=(), threads=max(1, cores // 2))
    assert worker_plan(2, ExecutionOptions(device="cpu", threads=3)).threads == 3

    slots = queue.Queue()
    for i in (0, 1):
        slots.put(i)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.setenv(var, "1")
    seen = []
    for _ in range(2):  # what each of two fresh workers does first
        _init_pool_worker(slots, WorkerPlan(gpus=("3", "5"), threads=4), ())
        seen.append((os.environ["CUDA_VISIBLE_DEVICES"], os.environ["OMP_NUM_THREADS"]))
    assert seen == [("3", "4"), ("5", "4")]


def test_ray_tasks_ask_for_a_gpu_only_when_runs_use_cuda():
    from harness.grid.executor_ray import ray_resources
    from harness.pipeline.runner import ExecutionOptions

    assert ray_resources(ExecutionOptions(device="cuda"), cluster_gpus=0) == {"num_gpus": 1, "num_cpus": 1.0}
    assert ray_resources(ExecutionOptions(device="auto"), cluster_gpus=8)["num_gpus"] == 1
    assert ray_resources(ExecutionOptions(device="auto", threads=4), cluster_gpus=0) == {"num_gpus": 0, "num_cpus": 4.0}
    assert ray_resources(ExecutionOptions(device="cpu"), cluster_gpus=8)["num_gpus"] == 0


def test_a_local_ray_instance_leaves_the_process_signal_handlers_as_it_found_them(tmp_path: Path, monkeypatch):
    # ray.init installs its own SIGTERM handler and ray.shutdown leaves it there; a notebook or a later
    # grid in the same process would then exit on SIGTERM without the harness's cleanup
    pytest.importorskip("ray", reason="the Ray executor needs ray (pip install 'peft-harness[grid]')")
    from harness.grid.executor_ray import run_ray
    from harness.grid.run_grid import GridOutcome
    from harness.pipeline.runner import ExecutionOptions

    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    marker = lambda signum, frame: None  # noqa: E731
    previous = signal.signal(signal.SIGTERM, marker)
    try:
        run_ray([], tmp_path, ExecutionOptions(progress=False), None, (), GridOutcome(), lambda line: None,
                lambda result: None)
        assert signal.getsignal(signal.SIGTERM) is marker
    finally:
        signal.signal(signal.SIGTERM, previous)
