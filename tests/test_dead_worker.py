"""One dead worker is one lost run (issue 36, class 3): a ``--workers 2`` grid in a subprocess, one of
its worker processes killed with SIGKILL in the middle of a known run. The run it held is reported lost
with the reason, a new worker takes its slot, every other run of the grid finishes with its own
record, the totals and the exit code say one run is not done, and no work folder or temporary record is
left behind. The next invocation runs the lost run alone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from harness.records.store import ResultStore
from tests.test_grid_faults import LAUNCH, ROOT, SUITE


def _grid(root: Path, *args: str, sleep: str = "0.4") -> tuple[list[str], dict[str, str]]:
    env = dict(os.environ)
    env.update(PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p),
               HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", TOY_FAULTS_SLEEP=sleep,
               TOY_FAULTS_MARKERS=str(root / "markers"), TMPDIR=str(root / "tmp"))
    (root / "markers").mkdir(exist_ok=True)
    (root / "tmp").mkdir(exist_ok=True)
    command = [sys.executable, "-c", LAUNCH, "run", "--suite", SUITE, "--adapters", "head", "--device", "cpu",
               "--no-progress", "--results-dir", str(root / "results"), *args]
    return command, env


def _wait_for_markers(markers: Path, n: int, process: subprocess.Popen) -> list[Path]:
    deadline = time.monotonic() + 240
    while len(list(markers.iterdir())) < n:
        assert process.poll() is None, process.communicate()[0]
        assert time.monotonic() < deadline, "the runs never started"
        time.sleep(0.05)
    return sorted(markers.iterdir())


def test_a_worker_killed_mid_run_costs_that_run_only(tmp_path: Path):
    command, env = _grid(tmp_path, "--tasks", "slow", "--seeds", "1,2,3,4", "--workers", "2")
    grid = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    first = _wait_for_markers(tmp_path / "markers", 2, grid)[0]  # both workers are training
    time.sleep(0.5)
    _, seed, pid, _ = first.name.split("-")
    victim, victim_seed = int(pid), int(seed[len("seed"):])
    assert victim != grid.pid
    os.kill(victim, signal.SIGKILL)
    out, _ = grid.communicate(timeout=300)

    # the run it held: lost, with the reason; the rest of the grid ran on a new worker
    lost = [line for line in out.splitlines() if line.startswith("[lost]")]
    assert len(lost) == 1, out
    assert f"seed{victim_seed}" in lost[0] and f"worker process {victim} died (killed by SIGKILL)" in lost[0], out
    assert "a new worker takes its place" in out
    assert "planned 4, already done 0, ran 3 (success=3), lost 1" in out, out
    assert grid.returncode == 1, out  # one run is not done
    records = {r["key"]["seed"]: r for r in ResultStore(tmp_path / "results").records(warn=False)}
    assert sorted(records) == sorted({1, 2, 3, 4} - {victim_seed}), out
    assert all(r["status"] == "success" for r in records.values()), out  # none mislabelled cancelled
    # no work folder, no temporary record left
    assert [p.name for p in (tmp_path / "tmp").iterdir() if p.name.startswith("harness-run-")] == []
    assert list((tmp_path / "results").rglob(".tmp-*")) == []

    # the next invocation runs the lost run alone
    again = subprocess.run(command, env={**env, "TOY_FAULTS_SLEEP": "0"}, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "planned 4, already done 3, ran 1 (success=1)" in again.stdout
