"""Stop signals with real processes (issue 15, "Signals"): SIGTERM (SLURM, docker stop, systemd), SIGHUP
(a closed terminal) and SIGINT (Ctrl-C) stop a grid the same way, sequential or with --workers 2:
the run in progress is recorded as ``cancelled``, no ``harness-run-*`` folder is left, no process of
the grid survives (workers, resource tracker), the exit code is 128 + the signal. Killing the driver
with SIGKILL (which it cannot handle) still leaves no worker behind.

Every process of a grid carries a marker in its environment, so survivors are found even after they
were re-parented; the toy-faults suite of tests/toy_faults.py leaves a file when a run starts
training, so each signal lands in the middle of a known run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from harness import signals
from harness.records.store import ResultStore
from tests.test_grid_faults import LAUNCH, ROOT, SUITE

STEP_SECONDS = "1.0"  # each fake run is 8 steps: a signal 0.5 s in is certainly mid-run
BOUND_SECONDS = 90  # everything gone within this (a worker that imported torch takes seconds to exit here)


@pytest.fixture(scope="module")
def plugin() -> Path:
    """The folder a subprocess needs on its path to import tests.toy_faults (and this checkout's harness)."""
    return ROOT


class Grid:
    """A grid in a subprocess with its own temporary folder and an environment marker."""

    def __init__(self, plugin: Path, root: Path, *args: str, group: bool = False):
        self.results, self.markers, self.tmp = root / "results", root / "markers", root / "tmp"
        self.markers.mkdir()
        self.tmp.mkdir()
        self.token = uuid.uuid4().hex
        env = dict(os.environ)
        env.update(PYTHONPATH=os.pathsep.join(p for p in (str(plugin), env.get("PYTHONPATH", "")) if p),
                   HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", TOY_FAULTS_SLEEP=STEP_SECONDS,
                   TOY_FAULTS_MARKERS=str(self.markers), TMPDIR=str(self.tmp), HARNESS_SIGNAL_TEST=self.token)
        command = [sys.executable, "-c", LAUNCH, "run", "--suite", SUITE, "--adapters", "head",
                   "--device", "cpu", "--no-progress", "--tasks", "slow", "--results-dir", str(self.results), *args]
        self.process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                        start_new_session=group)

    def wait_for_runs(self, n: int) -> list[int]:
        """Block until n runs are training; their seeds."""
        deadline = time.monotonic() + 240
        while len(list(self.markers.iterdir())) < n:
            assert self.process.poll() is None, self.process.communicate()[0]
            assert time.monotonic() < deadline, "the runs never started"
            time.sleep(0.05)
        time.sleep(0.5)
        return sorted(int(p.name.split("-")[1][len("seed"):]) for p in self.markers.iterdir())

    def finish(self) -> tuple[int, str]:
        out, _ = self.process.communicate(timeout=BOUND_SECONDS)
        return self.process.returncode, out


def survivors(token: str) -> list[str]:
    """Processes whose environment carries the marker (psutil when installed, else /proc)."""
    found = []
    try:
        import psutil
    except ImportError:
        psutil = None
    if psutil is not None:
        for proc in psutil.process_iter(["pid", "cmdline"]):
            try:
                if proc.environ().get("HARNESS_SIGNAL_TEST") == token and proc.status() != psutil.STATUS_ZOMBIE:
                    found.append(f"{proc.pid} {' '.join(proc.info['cmdline'] or [])[:120]}")
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        return found
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if f"HARNESS_SIGNAL_TEST={token}".encode() in (entry / "environ").read_bytes().split(b"\0"):
                    found.append(entry.name)
            except OSError:
                continue
    return found


def assert_nothing_left(grid: Grid) -> None:
    deadline = time.monotonic() + BOUND_SECONDS
    while survivors(grid.token):
        assert time.monotonic() < deadline, f"processes left behind: {survivors(grid.token)}"
        time.sleep(0.2)
    left = [p.name for p in grid.tmp.iterdir() if p.name.startswith("harness-run-")]
    assert left == [], "temporary run folders left behind"


def records(grid: Grid) -> dict[int, dict]:
    return {r["key"]["seed"]: r for r in ResultStore(grid.results).records(warn=False)}


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT], ids=lambda s: s.name)
def test_a_sequential_grid_stopped_by_a_signal(signum: int, plugin: Path, tmp_path: Path):
    grid = Grid(plugin, tmp_path, "--seeds", "1,2")
    assert grid.wait_for_runs(1) == [1]
    assert [int(p.split()[0]) for p in survivors(grid.token)] == [grid.process.pid]  # what is checked after
    os.kill(grid.process.pid, signum)
    code, out = grid.finish()
    assert code == 128 + signum, out
    assert f"interrupted ({signal.Signals(signum).name})" in out
    assert_nothing_left(grid)
    done = records(grid)
    assert sorted(done) == [1] and done[1]["status"] == "cancelled", out  # run 2 never started
    assert done[1]["error"]["signal"] == signal.Signals(signum).name
    assert done[1]["environment"] and done[1]["finished_at"]


def test_a_cancelled_run_reruns_after_sigterm(plugin: Path, tmp_path: Path):
    grid = Grid(plugin, tmp_path, "--seeds", "1")
    grid.wait_for_runs(1)
    grid.process.send_signal(signal.SIGTERM)
    assert grid.finish()[0] == 128 + signal.SIGTERM
    assert records(grid)[1]["status"] == "cancelled"
    env = dict(os.environ, PYTHONPATH=str(plugin), HF_HUB_OFFLINE="1", TOY_FAULTS_SLEEP="0")
    rerun = subprocess.run([sys.executable, "-c", LAUNCH, "run", "--suite", SUITE, "--adapters", "head",
                            "--device", "cpu", "--no-progress", "--tasks", "slow", "--seeds", "1", "--results-dir",
                            str(grid.results)], env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert "planned 1, already done 0, ran 1 (success=1)" in rerun.stdout
    assert records(grid)[1]["status"] == "success"


PARALLEL_CASES = [  # (who gets the signal, signal): the driver alone, or the whole group (systemd, SLURM, Ctrl-C)
    ("driver", signal.SIGTERM), ("driver", signal.SIGHUP), ("group", signal.SIGTERM), ("group", signal.SIGINT),
    ("driver", signal.SIGKILL), ("driver-then-kill", signal.SIGTERM),
]


@pytest.mark.parametrize("target,signum", PARALLEL_CASES, ids=[f"{t}-{s.name}" for t, s in PARALLEL_CASES])
def test_a_parallel_grid_stopped_by_a_signal(target: str, signum: int, plugin: Path, tmp_path: Path):
    grid = Grid(plugin, tmp_path, "--seeds", "1,2,3", "--workers", "2", group=True)
    started = grid.wait_for_runs(2)  # both workers are training; the third run waits
    # the driver, the resource tracker and two workers, all found by their marker before the signal
    assert len(survivors(grid.token)) == 4, survivors(grid.token)
    if target == "group":
        os.killpg(grid.process.pid, signum)
    else:
        os.kill(grid.process.pid, signum)
    if target == "driver-then-kill":  # SIGKILL while the driver stops its workers (SLURM's KillWait ran out)
        time.sleep(0.3)
        os.kill(grid.process.pid, signal.SIGKILL)
        signum = signal.SIGKILL
    code, out = grid.finish()
    assert code == (-signal.SIGKILL if signum == signal.SIGKILL else 128 + signum), out
    assert_nothing_left(grid)
    done = records(grid)
    # the two runs in progress are recorded as cancelled (by their workers, even when the driver was
    # killed outright); the queued run never started
    assert sorted(done) == started and all(r["status"] == "cancelled" for r in done.values()), (out, done)
    assert len(list(grid.markers.iterdir())) == 2
    print(f"{target} {signal.Signals(signum).name}:", json.dumps({"exit": code, "cancelled": sorted(done)}))


# ---------------------------------------------------------------------------------------------------
# the handlers themselves, in this process
# ---------------------------------------------------------------------------------------------------


def test_sigterm_raises_interrupted_and_later_signals_wait_for_the_cleanup():
    # compared with what was installed before, not with SIG_DFL: an earlier test in the same process
    # (ray.init installs its own SIGTERM handler) may have left another handler in place
    before = signal.getsignal(signal.SIGTERM)
    with signals.interrupt_on_signals():
        with pytest.raises(signals.Interrupted) as caught:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
        assert caught.value.signum == signal.SIGTERM and isinstance(caught.value, KeyboardInterrupt)
        assert signals.exit_code(caught.value) == 143
        os.kill(os.getpid(), signal.SIGHUP)  # a second signal during the cleanup: ignored
        time.sleep(0.1)
        with pytest.raises(KeyboardInterrupt):  # but a second Ctrl-C at the driver forces the stop
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)
    assert signal.getsignal(signal.SIGTERM) == before  # the previous handlers are back
    assert signal.getsignal(signal.SIGINT) is not signals._handler


def test_a_signal_during_a_record_write_waits_until_it_is_written():
    written = []
    with signals.interrupt_on_signals():
        with pytest.raises(signals.Interrupted):
            with signals.deferred():
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(0.1)
                written.append("record")
    assert written == ["record"]


WATCH = """
import sys, threading, time
from harness.grid import executors
from harness import signals
executors._DRIVER["pid"] = -1  # a driver that is gone
threading.Thread(target=executors._leave_without_driver, daemon=True).start()
if sys.argv[1] == "running":
    with signals.running():
        time.sleep(4)
    print("run finished", flush=True)
time.sleep(60)
"""


@pytest.mark.parametrize("state", ["idle", "running"])
def test_a_worker_whose_driver_is_gone_leaves_once_no_run_is_in_progress(state: str):
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-c", WATCH, state], capture_output=True, text=True, timeout=60)
    assert done.returncode == 128 + signal.SIGTERM, done.stderr
    # idle: within the watch interval; running: not before the run is over
    assert ("run finished" in done.stdout) == (state == "running")
    assert time.monotonic() - start < 30
