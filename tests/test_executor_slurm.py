"""The Slurm executor (harness/grid/executor_slurm.py), tested through submitit's local executor: the same job
array, each job a local process. One job is preempted mid-run (submitit's USR2: its checkpoint() is
called and the job requeued), another is killed mid-run (SIGKILL: the driver resubmits it); both resume
from their in-run checkpoints and end with the records of an uninterrupted run. The sbatch script of a
real Slurm submission is checked as text (no Slurm here).
"""

from __future__ import annotations

import importlib
import os
import signal
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("submitit", reason="the Slurm executor needs submitit (pip install 'peft-harness[grid]')")

from harness.errors import HarnessError  # noqa: E402
from harness.grid.executor_slurm import SlurmOptions, parse_extra, sbatch_preview, timeout_minutes  # noqa: E402
from harness.pipeline import checkpoint as ckpt  # noqa: E402
from harness.pipeline.runner import ExecutionOptions  # noqa: E402
from harness.records.store import ResultStore  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = "tests.toy_faults"
COMPARED = ("metrics", "loss_curve", "params", "adapter_info", "data_info", "status")


@pytest.fixture(scope="module")
def fake():
    module = importlib.import_module(PLUGIN)
    yield module
    module.unregister()


def test_sbatch_script_of_a_real_submission(tmp_path: Path):
    slurm = SlurmOptions(partition="gpu", gpus_per_task=1, time="2:30:00", array_parallelism=8,
                         extra=("#SBATCH --qos=high", "#SBATCH --constraint a100 --exclusive"), cluster="slurm")
    text = sbatch_preview(slurm, ExecutionOptions(device="cuda"), tmp_path / ".slurm", runs=40)
    for line in ("#SBATCH --partition=gpu", "#SBATCH --gpus-per-task=1", "#SBATCH --time=150",
                 "#SBATCH --array=0-39%8", "#SBATCH --qos=high", "#SBATCH --constraint=a100",
                 "#SBATCH --exclusive", "#SBATCH --cpus-per-task=4", "#SBATCH --signal=USR2@90"):
        assert line in text, (line, text)
    assert timeout_minutes("45") == 45 and timeout_minutes("1-00:00:00") == 1440 and timeout_minutes("0:30") == 1
    assert parse_extra(["--mem=64G", "#SBATCH --account proj"]) == {"mem": "64G", "account": "proj"}
    with pytest.raises(HarnessError, match="--slurm-time"):
        SlurmOptions(time="two hours")
    with pytest.raises(HarnessError, match="--slurm-extra"):
        SlurmOptions(extra=("qos=high",))


def _newest_marker(markers: Path, seed: int) -> Path | None:
    found = sorted(markers.glob(f"slow-seed{seed}-*"), key=lambda p: int(p.name.split("-")[-1]))
    return found[-1] if found else None


def test_preempted_and_killed_jobs_resume_from_their_checkpoints(fake, tmp_path: Path, monkeypatch):
    from harness.grid.executor_slurm import run_slurm
    from harness.grid.run_grid import GridOutcome, run_grid
    from harness.pipeline.plan import GridRequest, plan_grid

    markers = tmp_path / "markers"
    markers.mkdir()
    for name, value in {"TOY_FAULTS_SLEEP": "0.6", "OMP_NUM_THREADS": "1",
                        "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p),
                        # the job of seed 2 kills itself (SIGKILL) right after its step 5, once
                        "HARNESS_FAULT_KILL_AT_STEP": "5", "HARNESS_FAULT_KILL_RUN": "seed2"}.items():
        monkeypatch.setenv(name, value)
    specs = plan_grid(GridRequest(suite="toy-faults", adapters="head", tasks="slow", seeds=(1, 2), preset="cpu"),
                      cuda_available=False)

    plain = ResultStore(tmp_path / "plain")
    monkeypatch.setenv("TOY_FAULTS_SLEEP", "0")
    run_grid(specs, plain, ExecutionOptions(device="cpu", progress=False), echo=lambda _: None)
    monkeypatch.setenv("TOY_FAULTS_SLEEP", "0.6")
    monkeypatch.setenv("TOY_FAULTS_MARKERS", str(markers))
    expected = {r["run_id"]: r for r in plain.records(warn=False)}

    results = tmp_path / "results"
    options = ExecutionOptions(device="cpu", progress=False, threads=1,
                               checkpoint_dir=str(results / ckpt.CHECKPOINT_DIR), checkpoint_every=2)
    first = specs[0]
    preempted: list[int] = []

    def preempt_seed1(jobs):
        if preempted:
            return
        preempted.append(0)

        def watch():  # once seed 1 has a checkpoint (step 2), send it submitit's preemption signal
            saved = ckpt.checkpoint_path(options.checkpoint_dir, first.key)
            deadline = time.monotonic() + 500
            while not saved.exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            marker = _newest_marker(markers, 1)
            pid = int(marker.name.split("-")[2])
            os.kill(pid, signal.SIGUSR2)
            preempted[0] = pid

        threading.Thread(target=watch, daemon=True).start()

    lines: list[str] = []
    outcome = GridOutcome(planned=2)

    def report(result):
        outcome.count(result.status, result.unsaved)
        lines.append(result.summary)

    slurm = SlurmOptions(cluster="local", array_parallelism=2, time="30", resubmit=1)
    run_slurm(specs, results, options, slurm, (PLUGIN,), outcome, lines.append, report, poll_seconds=0.5,
              on_submit=preempt_seed1)
    print("\n".join(lines))
    assert outcome.by_status == {"success": 2} and outcome.lost == 0, lines
    assert preempted and preempted[0] > 0
    assert any(line.startswith("[resubmit] toy-faults/slow/head/") and "seed2" in line for line in lines), lines
    store = ResultStore(results)
    for spec in specs:
        record = store.get(spec.key)
        for section in COMPARED:
            assert record[section] == expected[spec.run_id][section], (spec.seed, section)
        resumed = record["timing"]["checkpoints"]["resumed_from"]
        assert resumed is not None and resumed["step"] >= 2, (spec.seed, resumed)
    # the seed-2 job was killed once at step 5 (its last checkpoint: step 4), seed 1 preempted once
    assert store.get(specs[1].key)["timing"]["checkpoints"]["resumed_from"]["step"] == 4
    # seed 1 started twice (the requeue), seed 2 twice (the resubmission): the marker files say so
    starts = sorted(p.name.split("-")[1] for p in markers.iterdir())
    assert starts.count("seed1") == 2 and starts.count("seed2") == 2, starts
    assert not (results / ckpt.CHECKPOINT_DIR).exists()
