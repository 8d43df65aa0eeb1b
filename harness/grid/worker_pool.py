"""The local executor's worker processes (``--workers N``): what each worker runs (``_pool_worker_main``,
one run at a time, stop signals handled like Ctrl-C, death with the driver) and the driver's side
(``_Pool``): a worker that dies costs only the run it held, reported lost with the reason; its work
folder and a torn temporary record are removed and a new worker takes its slot.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import signals
from harness.errors import HarnessError
from harness.grid.run_grid import GridOutcome, RunResult, record_lost, run_and_record
from harness.pipeline.runner import ExecutionOptions
from harness.plugins import import_plugins
from harness.records.store import ResultStore
from harness.spec import RunSpec


@dataclass(frozen=True)
class WorkerPlan:
    """What each pool worker is given: a GPU to see (by index into ``gpus``) or a thread budget."""

    gpus: tuple[str, ...]  # CUDA device ids, one per worker; empty on the CPU
    threads: int | None  # torch threads per worker on the CPU

    def __post_init__(self) -> None:
        if self.threads is not None and self.threads < 1:
            raise HarnessError(f"threads per worker must be positive, got {self.threads}")


def _init_pool_worker(slots: Any, plan: WorkerPlan, modules: tuple[str, ...]) -> None:
    """Runs in each fresh (spawned) worker before torch is imported there."""
    index = slots.get()
    if plan.gpus:
        os.environ["CUDA_VISIBLE_DEVICES"] = plan.gpus[index]
    if plan.threads:
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = str(plan.threads)
    import_plugins(modules)


def _start_pool_worker(slots: Any, plan: WorkerPlan, modules: tuple[str, ...]) -> None:
    """A worker's start: stop signals handled like Ctrl-C, death with the driver, then the setup."""
    signals.install_in_worker()
    _DRIVER["pid"] = os.getppid()
    _die_with_parent()
    threading.Thread(target=_leave_without_driver, name="driver-watch", daemon=True).start()
    _init_pool_worker(slots, plan, modules)


class _Slot:
    """The worker's slot index (which GPU it sees), given the way _init_pool_worker reads a queue."""

    def __init__(self, index: int):
        self.index = index

    def get(self) -> int:
        return self.index


def _pool_worker_main(index: int, plan: WorkerPlan, modules: tuple[str, ...], root: str,
                      options: ExecutionOptions, conn: Any) -> None:
    """A pool worker (a spawned process): runs the specs the driver sends, one at a time, and answers
    each with ("done", result), ("cancelled", signum) or ("error", why); None or a closed pipe ends it."""
    _start_pool_worker(_Slot(index), plan, modules)
    while True:
        try:
            spec = conn.recv()
        except (EOFError, OSError):
            return
        if spec is None:
            return
        try:
            result = _pool_task(spec, root, options)
        except KeyboardInterrupt as exc:  # the run's cancelled record is written by now: this worker stops
            with contextlib.suppress(OSError, ValueError):
                conn.send(("cancelled", getattr(exc, "signum", None)))
            return
        except Exception as exc:  # noqa: BLE001 - the driver reports it as this run's loss
            message = ("error", f"{type(exc).__name__}: {str(exc)[:300]}")
            conn.send(message)
        else:
            conn.send(("done", result))


def _leave_without_driver() -> None:
    """A worker between runs whose driver is gone (killed while it stopped the pool) would wait on the
    pool's queue for ever (the workers hold both ends of it): leave. A run in progress is left to the
    stop signal, which records it as cancelled first."""
    while True:
        time.sleep(1.0)
        if os.getppid() != _DRIVER["pid"] and not signals.is_running():
            os._exit(128 + (signals.received() or signal.SIGTERM))


_DRIVER: dict[str, int] = {}  # in a pool worker: the driver's pid


def _die_with_parent() -> None:
    """Ask Linux for SIGTERM when the driver dies, even by SIGKILL, so that no worker is orphaned (it
    then records its run as cancelled and exits). Elsewhere the driver's own stop has to do."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    parent = os.getppid()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))  # 1 = PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the driver died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)


def _pool_task(spec: RunSpec, root: str, options: ExecutionOptions) -> RunResult:
    try:
        stopping = signals.received()
        if stopping is not None:  # this worker was told to stop: start no further run
            raise signals.Interrupted(stopping)
        with signals.running():
            result, _ = run_and_record(spec, ResultStore(root), options)
    except KeyboardInterrupt as exc:  # the run's cancelled record is written by now
        if _DRIVER and os.getppid() != _DRIVER["pid"]:
            # the driver is gone (killed): nobody will read the answer or send the pool's stop, and
            # the pool's queues would keep this process waiting for ever; leave now
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(signals.exit_code(exc))
        raise
    return result


# A slot whose worker dies before it takes a run this many times in a row gives up (a worker that
# cannot start: its runs are reported lost rather than retried for ever)
MAX_STARTUP_DEATHS = 3


def death_reason(exitcode: int | None) -> str:
    """How a worker process ended, in words: 'killed by SIGKILL', 'exit code 1'."""
    if exitcode is None:
        return "ended"
    if exitcode < 0:
        return f"killed by {signals.signal_name(-exitcode)}"
    return f"exit code {exitcode}"


class _Worker:
    """One pool worker process, its pipe and the run it holds (None: idle)."""

    def __init__(self, context: Any, index: int, args: tuple[Any, ...]):
        self.index = index
        self.conn, child = context.Pipe(duplex=True)
        self.process = context.Process(target=_pool_worker_main, args=(index, *args, child),
                                       name=f"harness-worker-{index}", daemon=False)
        self.process.start()
        child.close()
        self.spec: RunSpec | None = None
        self.ran = 0  # runs it finished
        self.leaving = False  # it was stopped (its run is recorded cancelled): no further run, it exits

    def assign(self, spec: RunSpec) -> None:
        self.spec = spec
        self.conn.send(spec)


class _Pool:
    """The local executor's processes. A worker that dies (SIGKILL, the OOM killer) costs the run it
    held, reported lost with the reason, and nothing else: its work folder and a torn temporary record
    are removed, a new worker takes its slot, and the other workers and the queued runs go on."""

    def __init__(self, pending: list[RunSpec], root: Path, options: ExecutionOptions, plan: WorkerPlan,
                 workers: int, modules: tuple[str, ...], outcome: GridOutcome, echo: Callable[[str], None],
                 report: Callable[[RunResult], None]):
        import multiprocessing

        # spawn, not fork: a forked copy of a process that already imported torch (and maybe CUDA) is unsafe
        self.context = multiprocessing.get_context("spawn")
        self.queue = list(reversed(pending))  # pop() takes the next run in execution order
        self.root, self.args = root, (plan, modules, str(root), options)
        self.outcome, self.echo, self.report = outcome, echo, report
        self.workers: dict[int, _Worker] = {}
        self.startup_deaths = {i: 0 for i in range(workers)}
        for index in range(min(workers, len(pending))):
            self.workers[index] = _Worker(self.context, index, self.args)

    def run(self) -> None:
        from multiprocessing.connection import wait

        while self.workers:
            for worker in list(self.workers.values()):
                if worker.spec is None and not worker.leaving:
                    if self.queue:
                        self._assign(worker)
                    else:  # nothing left for it: let it go
                        self._release(worker)
            if not self.workers:
                break
            waitables: list[Any] = []
            for worker in self.workers.values():
                waitables += [worker.conn, worker.process.sentinel]
            ready = set(wait(waitables, timeout=5.0))
            for worker in list(self.workers.values()):
                if worker.conn in ready or worker.process.sentinel in ready:
                    self._serve(worker)

    def _assign(self, worker: _Worker) -> None:
        spec = self.queue.pop()
        try:
            worker.assign(spec)
        except (OSError, ValueError):  # the worker died before it could take the run: it is not lost
            worker.spec = None
            self.queue.append(spec)
            self._died(worker)

    def _serve(self, worker: _Worker) -> None:
        """Read what the worker said; when it is gone, account for the run it held."""
        while True:
            try:
                if not worker.conn.poll():
                    break
                message = worker.conn.recv()
            except (EOFError, OSError):
                break
            kind = message[0]
            spec, worker.spec = worker.spec, None
            if kind == "done":
                worker.ran += 1
                self.startup_deaths[worker.index] = 0
                self.report(message[1])
            elif kind == "cancelled":  # this worker alone was stopped (SIGTERM to it): the run's record says so
                worker.leaving = True
                self.outcome.count("cancelled")
                self.echo(f"[cancelled] {spec.run_id if spec else '?'}: worker process {worker.process.pid} was "
                          f"stopped by {signals.signal_name(message[1]) if message[1] else 'a signal'}; "
                          "the next invocation runs it again")
            elif spec is not None:
                record_lost(spec, f"worker process {worker.process.pid} failed ({message[1]})", self.outcome,
                            self.echo)
        if not worker.process.is_alive():
            worker.process.join(1)
            self._died(worker)

    def _died(self, worker: _Worker) -> None:
        from harness.pipeline.runner import remove_work_dirs_of
        from harness.records.store import ResultStore

        pid, how = worker.process.pid, death_reason(worker.process.exitcode)
        if worker.spec is not None:
            record_lost(worker.spec, f"worker process {pid} died ({how}) during the run", self.outcome, self.echo)
            worker.spec = None
        elif worker.ran == 0:
            self.startup_deaths[worker.index] += 1
        worker.conn.close()
        del self.workers[worker.index]
        remove_work_dirs_of(pid)  # what the run had in the temporary folder
        ResultStore(self.root).clean_stale_temps()  # a record it was writing when killed (its pid is dead)
        if not self.queue:
            return
        if self.startup_deaths[worker.index] >= MAX_STARTUP_DEATHS:
            if not self.workers:  # no worker can start: the rest of the grid is lost, not retried for ever
                while self.queue:
                    record_lost(self.queue.pop(), f"no worker process could start ({how} {MAX_STARTUP_DEATHS} "
                                "times in a row)", self.outcome, self.echo)
            return
        self.echo(f"[pool] worker process {pid} {how}; a new worker takes its place")
        self.workers[worker.index] = _Worker(self.context, worker.index, self.args)

    def _release(self, worker: _Worker) -> None:
        with contextlib.suppress(OSError, ValueError):
            worker.conn.send(None)
        worker.process.join(30)
        if worker.process.is_alive():
            worker.process.kill()
            worker.process.join(5)
        worker.conn.close()
        del self.workers[worker.index]

    def stop(self, grace: float) -> None:
        """After a stop (Ctrl-C, a signal, an error in the driver): no queued run starts; the workers are
        told to stop (SIGTERM: each records its run as cancelled; ignored by one that got the signal
        already), waited for, and killed when they outlast the grace period."""
        self.queue.clear()
        processes = [w.process for w in self.workers.values()]
        for process in processes:
            if process.is_alive():
                with contextlib.suppress(ProcessLookupError, TypeError):
                    os.kill(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for process in processes:
            process.join(max(0.0, deadline - time.monotonic()))
        for process in processes:
            if process.is_alive():
                process.kill()
                process.join(5)
        from harness.pipeline.runner import remove_work_dirs_of

        for process in processes:  # a worker killed after the grace period could not remove its folder
            if not process.is_alive() and process.pid is not None:
                remove_work_dirs_of(process.pid)


