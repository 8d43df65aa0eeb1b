"""Executors: where the runs of a grid execute. No scheduler of our own.

- ``local`` with one worker (the default): ``grid.run_grid``, every run in this process.
- ``local`` with N workers: N spawned worker processes (``_Pool``), one run at a time each; a worker
  that dies costs only the run it held (reported lost, its folder removed) and is replaced.
  With CUDA every worker sees one GPU (``CUDA_VISIBLE_DEVICES``); on the CPU every worker gets
  cores // N torch threads.
- ``ray``: every run is one Ray task (``harness.grid.executor_ray``).

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

EXECUTORS = ("local", "ray", "slurm")
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
        if self.kind not in EXECUTORS:
            raise HarnessError(f"--executor must be one of {', '.join(EXECUTORS)}, got {self.kind!r}")
        if isinstance(self.workers, bool) or not isinstance(self.workers, int) or self.workers < 1:
            raise HarnessError(f"--workers must be a positive integer, got {self.workers!r}")
        if self.kind == "ray" and self.workers != 1:
            raise HarnessError("--workers applies to --executor local; Ray runs as many runs at once as the "
                               "cluster has resources for")
        if self.kind == "slurm" and self.workers != 1:
            raise HarnessError("--workers applies to --executor local; on Slurm every run is a job of the array "
                               "(--slurm-array-parallelism caps how many run at once)")
        if isinstance(self.runs_per_gpu, bool) or not isinstance(self.runs_per_gpu, int) or self.runs_per_gpu < 1:
            raise HarnessError(f"--runs-per-gpu must be a positive integer, got {self.runs_per_gpu!r}")
        if self.kind != "ray" and (not self.shared_disk or self.data_url):
            raise HarnessError("--no-shared-disk and --ray-data-url apply to --executor ray")
        if self.data_url and self.shared_disk:
            raise HarnessError("--ray-data-url applies with --no-shared-disk (with a shared disk, --data-dir)")
        if self.address is not None and self.kind != "ray":
            raise HarnessError("--address applies to --executor ray")
        if self.address is not None and not self.address.strip():
            raise HarnessError("--address is empty; use 'auto', host:port or ray://host:10001")

    @property
    def parallel(self) -> bool:
        return self.kind in ("ray", "slurm") or self.workers > 1


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
    if executor.kind == "ray" and not executor.shared_disk and any(s.warm_start for s in pending):
        raise HarnessError("--warm-start needs the parent runs' adapter files where the dependent runs train: "
                           "use a shared disk (leave out --no-shared-disk)")
    waves = dependency_waves(pending)
    for number, wave in enumerate(waves):
        if number:  # warm-started runs, once the runs they start from are recorded
            echo(f"{len(wave)} warm-started run(s) now that the runs they start from are recorded")
        _dispatch(executor, wave, root, options, modules, outcome, echo, report)
    return outcome


def _dispatch(executor: ExecutorConfig, pending: list[RunSpec], root: Path, options: ExecutionOptions,
              modules: tuple[str, ...], outcome: GridOutcome, echo: Callable[[str], None],
              report: Callable[[RunResult], None]) -> None:
    if executor.kind == "ray":
        from harness.grid.executor_ray import run_ray

        run_ray(pending, root, options, executor.address, modules, outcome, echo, report,
                shared_disk=executor.shared_disk, data_url=executor.data_url, runs_per_gpu=executor.runs_per_gpu)
    elif executor.kind == "slurm":
        from harness.grid.executor_slurm import SlurmOptions, run_slurm

        run_slurm(pending, root, options, executor.slurm or SlurmOptions(), modules, outcome, echo, report)
    else:
        _run_pool(pending, root, options, executor.workers, modules, outcome, echo, report)


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


@dataclass(frozen=True)
class Layout:
    """How a grid runs, for its header and its estimate: ``parallel`` runs at once, each with
    ``threads`` torch threads (None on a GPU, where threads do not set the speed)."""

    device: str
    text: str
    parallel: int
    threads: int | None


def layout_line(executor: ExecutorConfig, options: ExecutionOptions) -> Layout:
    """The grid header's device and layout, and the runs at once with their threads. CPU workers run
    at once too: each at the speed a record run in the same layout shows (the estimate prefers those)."""
    cuda = _uses_cuda(options.device)
    device = options.device if options.device != "auto" else ("cuda" if cuda else "cpu")
    if executor.kind == "ray":
        from harness.redact import redact

        return Layout(device, f"executor ray ({redact(executor.address) or 'a local instance'})", 1,
                      None if cuda else options.threads or 1)
    if executor.kind == "slurm":
        slurm = executor.slurm
        gpus = getattr(slurm, "gpus_per_task", 0)
        parallel = getattr(slurm, "array_parallelism", 1)
        return Layout("cuda" if gpus else device, f"executor slurm (a job array, up to {parallel} at once)",
                      parallel, None if gpus else options.threads or 1)
    if executor.workers > 1:
        plan = worker_plan(executor.workers, options, options.runs_per_gpu)
        each = f"GPUs {','.join(plan.gpus)}" if plan.gpus else f"{plan.threads} torch thread(s) each"
        return Layout(device, f"{executor.workers} worker processes, {each}", executor.workers,
                      None if cuda else plan.threads)
    if cuda:
        return Layout(device, "1 process", 1, None)
    import torch

    threads = options.threads or torch.get_num_threads()
    return Layout(device, f"1 process x {threads} torch threads", 1, threads)


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
