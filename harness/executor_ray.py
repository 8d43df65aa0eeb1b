"""The Ray executor: every run is one Ray task asking for the resources it needs (one GPU, or
``--threads`` CPUs), on an existing cluster (``--address auto`` or ``ray://host:10001``) or on a local
Ray instance started for the grid (no address). Each task writes its own record into the shared store.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

from harness.errors import HarnessError
from harness.grid import GridOutcome, RunResult, record_lost, run_and_record
from harness.plugins import import_plugins
from harness.redact import redact
from harness.runner import ExecutionOptions
from harness.spec import RunSpec
from harness.store import ResultStore


def _ray_task(spec: RunSpec, root: str, options: ExecutionOptions, modules: tuple[str, ...]) -> RunResult:
    import_plugins(modules)
    result, _ = run_and_record(spec, ResultStore(root), options)
    return result


def ray_resources(options: ExecutionOptions, cluster_gpus: float) -> dict[str, float]:
    """One GPU per run when the runs use CUDA (the device flag, or auto on a cluster with GPUs); else
    ``--threads`` CPUs (default 1)."""
    wants_gpu = options.device.startswith("cuda") or (options.device == "auto" and cluster_gpus > 0)
    if wants_gpu:
        return {"num_gpus": 1, "num_cpus": float(options.threads or 1)}
    return {"num_gpus": 0, "num_cpus": float(options.threads or 1)}


def _import_path() -> str:
    """PYTHONPATH plus the entries of sys.path outside the interpreter's own (the working directory,
    test folders), which a fresh worker process would not have."""
    prefixes = tuple({sys.prefix, sys.base_prefix, sys.exec_prefix})
    extra = [str(Path(p).resolve()) for p in sys.path if p and Path(p).is_dir() and not str(Path(p).resolve()).startswith(prefixes)]
    current = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return os.pathsep.join(dict.fromkeys([*current, *extra]))


@contextlib.contextmanager
def _env(name: str, value: str) -> Iterator[None]:
    old = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


def run_ray(pending: list[RunSpec], root: Path, options: ExecutionOptions, address: str | None,
             modules: tuple[str, ...], outcome: GridOutcome, echo: Callable[[str], None],
             report: Callable[[RunResult], None]) -> None:
    try:
        import ray
    except ImportError:
        raise HarnessError("--executor ray needs Ray: pip install 'peft-harness[grid]'") from None

    started_here = not ray.is_initialized()
    if started_here:
        if address is None:
            # a local instance for this grid: no more CPUs than the runs can use (Ray starts a worker
            # per CPU), no dashboard; PYTHONPATH gains this process's extra import paths, so that
            # plug-ins found here are found in the workers
            cpus = min(os.cpu_count() or 1, len(pending) * int(options.threads or 1))
            with _env("PYTHONPATH", _import_path()):  # the raylet, and so every worker, inherits it
                ray.init(num_cpus=max(1, cpus), include_dashboard=False, log_to_driver=False,
                         configure_logging=False)
        else:
            ray.init(address=address, log_to_driver=False, configure_logging=False)
    try:
        resources = ray_resources(options, float(ray.cluster_resources().get("GPU", 0)))
        echo(f"executor: ray at {redact(address) or 'a local instance'}; each run asks for "
             + ", ".join(f"{k}={v:g}" for k, v in resources.items() if v))
        if resources["num_gpus"] and options.device == "auto":
            options = replace(options, device="cuda")
        if not resources["num_gpus"] and options.threads is None:
            options = replace(options, threads=int(resources["num_cpus"]))
        task = ray.remote(_ray_task).options(**resources)
        refs = {task.remote(spec, str(root), options, modules): spec for spec in pending}
        waiting = list(refs)
        while waiting:
            done, waiting = ray.wait(waiting, num_returns=1)
            try:
                result = ray.get(done[0])
            except ray.exceptions.RayError as exc:  # the task's worker or node died
                record_lost(refs[done[0]], f"Ray task failed ({type(exc).__name__})", outcome, echo)
            else:
                report(result)
    finally:
        if started_here:
            ray.shutdown()
