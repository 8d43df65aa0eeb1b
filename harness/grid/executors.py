"""Executors: where the runs of a grid execute (the interface: harness/grid/executor.py). No scheduler of our own.

- ``local`` with one worker (the default): ``grid.run_grid``, every run in this process.
- ``local`` with N workers: N spawned worker processes (``_Pool``), one run at a time each; a worker
  that dies costs only the run it held (reported lost, its folder removed) and is replaced.
  With CUDA every worker sees one GPU (``CUDA_VISIBLE_DEVICES``); on the CPU every worker gets
  cores // N torch threads.
- ``ray``: every run is one Ray task (``harness.grid.executor_ray``).
- ``slurm``: one job array per grid, through submitit (``harness.grid.executor_slurm``).
- any executor a third party registers through the entry-point group ``harness.executors``.

Whoever executes a run writes its record, through the store's atomic write, into a results folder
that every worker sees (a shared filesystem on a cluster); the driver only prints a line per finished
run and the totals. Plug-ins registered outside the built-in packages are imported in the workers by
module name (``harness.plugins``), so they must be importable there (installed, or on PYTHONPATH).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from harness import signals
from harness.errors import HarnessError
from harness.grid import executor_ray, executor_slurm  # noqa: F401  (register ray and slurm)
from harness.grid.executor import EXECUTORS, Executor, Layout, Wave, refuse_ray_options, register_executor
from harness.grid.run_grid import (
    GridOutcome,
    RunResult,
    dependency_waves,
    run_grid,
    split_pending,
    with_kept_parents,
)

# the pool's processes (harness.grid.worker_pool); the worker-side names are re-exported for the tests
from harness.grid.worker_pool import _DRIVER, WorkerPlan, _init_pool_worker, _leave_without_driver, _Pool  # noqa: F401
from harness.pipeline.runner import ExecutionOptions
from harness.plugins import plugin_modules
from harness.records.store import ResultStore
from harness.spec import RunSpec

ENTRY_POINT_GROUP = "harness.executors"
# After a stop signal, how long pool workers get to write their runs' cancelled records and exit before
# they are killed (SLURM waits 30 s between SIGTERM and SIGKILL, docker stop 10 s)
STOP_GRACE_SECONDS = float(os.environ.get("HARNESS_STOP_GRACE_SECONDS", "20"))


@dataclass(frozen=True)
class ExecutorConfig:
    """How a grid executes: ``local`` with ``workers`` processes, or ``ray`` at ``address``."""

    kind: str = "local"
    workers: int = 1
    address: str | None = None  # ray only: None starts a local instance; "auto" or "ray://..." connects
    slurm: Any = None  # slurm only: harness.grid.executor_slurm.SlurmOptions
    shared_disk: bool = True  # ray only: False: tasks return records and files, the driver writes them
    data_url: str | None = None  # ray without a shared disk: every node reads the data root here (fsspec)
    runs_per_gpu: int = 1  # local workers and ray: K runs share one GPU

    def __post_init__(self) -> None:
        executor_class(self.kind)  # a name no executor registered: the valid ones, in one line
        if isinstance(self.workers, bool) or not isinstance(self.workers, int) or self.workers < 1:
            raise HarnessError(f"--workers must be a positive integer, got {self.workers!r}")
        if isinstance(self.runs_per_gpu, bool) or not isinstance(self.runs_per_gpu, int) or self.runs_per_gpu < 1:
            raise HarnessError(f"--runs-per-gpu must be a positive integer, got {self.runs_per_gpu!r}")
        self.executor().check()  # the options that do not apply to this executor

    def executor(self) -> Executor:
        return executor_class(self.kind)(self)

    @property
    def parallel(self) -> bool:
        return self.executor().parallel


def executor_names() -> tuple[str, ...]:
    _discover()
    return tuple(sorted(EXECUTORS))


def executor_class(name: str) -> type[Executor]:
    _discover()
    if name not in EXECUTORS:
        raise HarnessError(f"--executor must be one of {', '.join(sorted(EXECUTORS))}, got {name!r}")
    return EXECUTORS[name]


_discovered: list[bool] = []


def _discover() -> None:
    """Third parties' executors, once (the built-in ones registered when this module was imported)."""
    if _discovered:
        return
    _discovered.append(True)
    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            ep.load()  # its module's @register_executor registers it
        except Exception as exc:  # a broken third-party executor must not break the harness
            import warnings

            warnings.warn(f"could not load executor plug-in {ep.name!r}: {exc}", stacklevel=2)


def run_with_executor(
    executor: ExecutorConfig,
    specs: list[RunSpec],
    store: ResultStore,
    options: ExecutionOptions,
    *,
    force: bool = False,
    echo: Callable[[str], None] = print,
    on_result: Callable[[RunResult], None] | None = None,
) -> GridOutcome:
    """``on_result`` (harness.grid.progress's ``[i/N] ... | ETA`` line) replaces the plain summary line of
    each run as it finishes, whichever executor ran it."""
    # SIGTERM (SLURM, docker stop, systemd) and SIGHUP stop the grid the way Ctrl-C does: the run in
    # progress is recorded as cancelled, temporary folders go, the workers stop (harness/signals.py)
    with signals.interrupt_on_signals():
        return _run_with_executor(executor, specs, store, options, force=force, echo=echo, on_result=on_result)


def _run_with_executor(executor: ExecutorConfig, specs: list[RunSpec], store: ResultStore, options: ExecutionOptions,
                       *, force: bool, echo: Callable[[str], None],
                       on_result: Callable[[RunResult], None] | None) -> GridOutcome:
    if not executor.parallel:
        return run_grid(specs, store, options, force=force, echo=echo, on_result=on_result)
    outcome = GridOutcome(planned=len(specs))
    pending, outcome.skipped = split_pending(specs, store, force)
    if not pending:
        return outcome
    # bars of several workers on one terminal are noise; the driver prints one line per finished run
    options = with_kept_parents(specs, replace(options, progress=False))
    root = store.root.resolve()
    modules = plugin_modules(pending)
    report = _reporter(outcome, echo, on_result)
    runner = executor.executor()
    runner.check_runs(pending)
    waves = dependency_waves(pending)
    for number, wave in enumerate(waves):
        if number:  # warm-started runs, once the runs they start from are recorded
            echo(f"{len(wave)} warm-started run(s) now that the runs they start from are recorded")
        runner.run(Wave(wave, root, options, modules, outcome, echo, report))
    return outcome


def _reporter(outcome: GridOutcome, echo: Callable[[str], None],
              on_result: Callable[[RunResult], None] | None) -> Callable[[RunResult], None]:
    def report(result: RunResult) -> None:
        outcome.count(result.status, result.unsaved)
        (on_result or (lambda r: echo(r.summary)))(result)

    return report


# --workers auto on the CPU: each worker needs about this much host memory (a model, its pristine
# cached copy, tokenized data, activations); env HARNESS_WORKER_RAM_MB
WORKER_RAM_BYTES = int(float(os.environ.get("HARNESS_WORKER_RAM_MB", 3072)) * 2**20)


def _available_ram_bytes() -> int | None:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def auto_worker_count(pending: int, options: ExecutionOptions) -> tuple[int, str]:
    """``--workers auto``. With CUDA: one worker per visible GPU. On the CPU: one single-threaded
    worker per core (bench/bench_workers.py measured 2 workers x 1 thread against 1 x 2 threads on
    2 cores for the cpu GLUE grid: see the README), capped by the runs to do and by the host memory
    (``HARNESS_WORKER_RAM_MB`` per worker); with ``--threads T`` one worker per T cores."""
    if pending <= 1:
        return 1, "one run to do"
    if _uses_cuda(options.device):
        gpus = _cuda_count()
        k = options.runs_per_gpu
        return max(1, min(gpus * k, pending)), (f"{k} per GPU" if k > 1 else "one per GPU") + f", {gpus} visible"
    cores = _cores()
    per_worker = options.threads or 1
    workers = max(1, cores // per_worker)
    why = f"{cores} cores, {per_worker} thread(s) per worker"
    ram = _available_ram_bytes()
    if ram is not None and workers > max(1, ram // WORKER_RAM_BYTES):
        workers = max(1, ram // WORKER_RAM_BYTES)
        why += f", capped by {ram / 2**30:.1f} GiB available memory"
    return min(workers, pending), why


def layout_line(executor: ExecutorConfig, options: ExecutionOptions) -> Layout:
    """The grid header's device and layout, and the runs at once with their threads (the executor's own)."""
    cuda = _uses_cuda(options.device)
    device = options.device if options.device != "auto" else ("cuda" if cuda else "cpu")
    return executor.executor().layout(options, device, cuda)


@register_executor("local")
class LocalExecutor(Executor):
    """In this process (one worker: ``run_grid``), or N spawned worker processes, one run at a time each."""

    def check(self) -> None:
        refuse_ray_options(self.config)

    @property
    def parallel(self) -> bool:
        return self.config.workers > 1

    def layout(self, options: ExecutionOptions, device: str, cuda: bool) -> Layout:
        # CPU workers run at once too: each at the speed a record run in the same layout shows (the
        # estimate prefers those)
        workers = self.config.workers
        if workers > 1:
            plan = worker_plan(workers, options, options.runs_per_gpu)
            each = f"GPUs {','.join(plan.gpus)}" if plan.gpus else f"{plan.threads} torch thread(s) each"
            return Layout(device, f"{workers} worker processes, {each}", workers, None if cuda else plan.threads)
        if cuda:
            return Layout(device, "1 process", 1, None)
        import torch

        threads = options.threads or torch.get_num_threads()
        return Layout(device, f"1 process x {threads} torch threads", 1, threads)

    def run(self, wave: Wave) -> None:
        _run_pool(wave.pending, wave.root, wave.options, self.config.workers, wave.modules, wave.outcome,
                  wave.echo, wave.report)


# ---------------------------------------------------------------------------------------------------
# local process pool
# ---------------------------------------------------------------------------------------------------


def worker_plan(workers: int, options: ExecutionOptions, runs_per_gpu: int = 1) -> WorkerPlan:
    """One GPU per worker when the runs use CUDA (``runs_per_gpu`` K: K workers per GPU, filled GPU by
    GPU); otherwise the cores split evenly."""
    if _uses_cuda(options.device):
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        ids = [d.strip() for d in visible.split(",") if d.strip()] if visible else [str(i) for i in range(_cuda_count())]
        if options.device not in ("auto", "cuda"):
            raise HarnessError(f"--device {options.device} names one GPU; with --workers each worker gets its own, "
                               "so use --device cuda or auto")
        if workers > len(ids) * runs_per_gpu:
            need = -(-workers // runs_per_gpu)
            raise HarnessError(f"--workers {workers} needs {need} GPUs ({runs_per_gpu} run(s) per GPU), found {len(ids)}")
        return WorkerPlan(gpus=tuple(ids[i // runs_per_gpu] for i in range(workers)), threads=options.threads)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return WorkerPlan(gpus=(), threads=options.threads or max(1, cores // workers))


def packing_check(runs_per_gpu: int, per_run_bytes: int | None, free_bytes: int, total_bytes: int) -> str | None:
    """``--runs-per-gpu K``: whether K runs fit one GPU. ``per_run_bytes``: the estimate of one run
    (the largest CUDA peak of comparable finished records; None: unknown). A line saying why not, or
    None when they fit (or nothing is known to check against)."""
    if runs_per_gpu <= 1 or per_run_bytes is None:
        return None
    need = per_run_bytes * runs_per_gpu * 1.1  # 10% for fragmentation and the CUDA contexts
    if need > free_bytes:
        return (f"--runs-per-gpu {runs_per_gpu}: {runs_per_gpu} runs x {per_run_bytes / 2**30:.1f} GiB (the "
                f"largest comparable record) + 10% need {need / 2**30:.1f} GiB, the GPU has "
                f"{free_bytes / 2**30:.1f} GiB free of {total_bytes / 2**30:.1f} GiB; use "
                f"--runs-per-gpu {max(1, int(free_bytes / (per_run_bytes * 1.1)))} or fewer")
    return None


def run_memory_estimate(store_root: Path, specs: list[RunSpec]) -> int | None:
    """The largest CUDA peak (reserved, else allocated) of finished records of the same suites and
    models as these runs, or None when there is none."""
    from harness.records.store import ResultStore

    wanted = {(s.suite, s.model) for s in specs}
    peaks = []
    for record in ResultStore(store_root).records(warn=False):
        spec = record.get("spec") or {}
        if (record.get("key", {}).get("suite"), spec.get("model")) not in wanted:
            continue
        memory = record.get("memory") or {}
        peak = memory.get("cuda_max_reserved_bytes") or memory.get("cuda_max_allocated_bytes")
        if isinstance(peak, (int, float)) and peak > 0:
            peaks.append(int(peak))
    return max(peaks) if peaks else None


def check_gpu_packing(runs_per_gpu: int, store_root: Path, specs: list[RunSpec]) -> str | None:
    """The packing check on this machine's first GPU (torch.cuda.mem_get_info), or None without CUDA."""
    if runs_per_gpu <= 1 or _cuda_count() == 0:
        return None
    import torch

    free, total = torch.cuda.mem_get_info(0)
    return packing_check(runs_per_gpu, run_memory_estimate(store_root, specs), free, total)


def _uses_cuda(device: str) -> bool:
    if device == "auto":
        return _cuda_count() > 0
    return device.startswith("cuda")


def _cuda_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def _run_pool(pending: list[RunSpec], root: Path, options: ExecutionOptions, workers: int,
              modules: tuple[str, ...], outcome: GridOutcome, echo: Callable[[str], None],
              report: Callable[[RunResult], None]) -> None:
    plan = worker_plan(workers, options, options.runs_per_gpu)
    options = replace(options, threads=plan.threads)
    echo(f"executor: local, {workers} worker processes"
         + (f", GPUs {','.join(plan.gpus)}" if plan.gpus else f", {plan.threads} torch threads each"))
    pool = _Pool(pending, root, options, plan, workers, modules, outcome, echo, report)
    try:
        pool.run()
    except BaseException:
        # Ctrl-C reaches the workers too (one process group), SIGTERM to the driver alone does not: either
        # way the queued runs must not start, and no worker may outlive the driver
        pool.stop(STOP_GRACE_SECONDS)
        raise
