"""The Ray executor: every run is one Ray task asking for the resources it needs (one GPU, or
``--threads`` CPUs), on an existing cluster (``--address auto`` or ``ray://host:10001``) or on a local
Ray instance started for the grid (no address). Each task writes its own record into the shared store.

Without a shared disk (``--no-shared-disk``) the tasks are never told where the results folder is: a
task runs in a scratch folder of its own node, returns its record and the files the run wrote beside it
(``--save-adapters`` tensors, a suite's side files) as bytes, and the driver writes them into its store
(the driver is the only writer). The data reaches the workers either from the driver, which packs its
data folder once into Ray's object store (each node unpacks it once, into its temporary folder; the
object store holds 30% of a node's memory by default, and the pack is refused above
``HARNESS_RAY_SHIP_MAX_MB``, default 1024), or from a URL that every node reads itself with fsspec
(``--ray-data-url s3://bucket/data``, any fsspec protocol; ``file://`` for a path every node has).
In-run checkpoints are held by a keeper actor on the driver's node (in its memory; harness/pipeline/checkpoint.py
``CheckpointKeeper``): a task whose node dies is retried once on another node (``max_retries``) and
resumes there from the run's last checkpoint.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import shutil
import signal
import sys
import tarfile
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.grid.executor import Executor, Layout, Wave, register_executor
from harness.grid.run_grid import (
    GridOutcome,
    RunResult,
    record_lost,
    run_and_record,
    summary_line,
    write_record,
)
from harness.pipeline.runner import ExecutionOptions
from harness.plugins import import_plugins
from harness.records.store import ResultStore
from harness.redact import redact
from harness.spec import RunSpec


def _ray_task(spec: RunSpec, root: str, options: ExecutionOptions, modules: tuple[str, ...]) -> RunResult:
    import_plugins(modules)
    result, _ = run_and_record(spec, ResultStore(root), options)
    return result


SHIP_MAX_BYTES = int(float(os.environ.get("HARNESS_RAY_SHIP_MAX_MB", "1024")) * 2**20)


def _ray_task_remote(spec: RunSpec, options: ExecutionOptions, modules: tuple[str, ...],
                     data: tuple[str, Any] | None) -> tuple[dict[str, Any], dict[str, bytes]]:
    """A run on a node that does not see the driver's disk: (the record, {relative path: bytes} of the
    files the run wrote beside its record). The task writes nothing outside its scratch folder and
    its node's temporary folder (data cache, checkpoints)."""
    from harness.pipeline import runner
    from harness.pipeline.checkpoint import CHECKPOINT_DIR, checkpoint_path, remove
    from harness.pipeline.runner import RunCancelled
    from harness.suite import DataSource

    import_plugins(modules)
    node_tmp = Path(tempfile.gettempdir())
    scratch = Path(tempfile.mkdtemp(prefix="harness-ray-task-"))
    cwd = os.getcwd()
    os.chdir(scratch)  # whatever a library writes relative to the working folder stays here
    try:
        if data is not None:
            options = replace(options, data=DataSource(node_data(*data, node_tmp)))
        if options.checkpoint_dir:  # on this node; a retry on the same node resumes from it
            options = replace(options, checkpoint_dir=str(node_tmp / f"harness-{os.getuid()}" / CHECKPOINT_DIR))
        local = ResultStore(scratch / "results")
        try:
            record = runner.execute_run(spec, options, record_path=local.path_for(spec.key))
        except RunCancelled as cancelled:
            record = cancelled.record
        files = {str(p.relative_to(local.root)): p.read_bytes() for p in sorted(local.root.rglob("*"))
                 if p.is_file()}
        if record.get("status") != "cancelled" and options.checkpoint_dir:
            remove(checkpoint_path(options.checkpoint_dir, spec.key), options.checkpoint_keeper, spec.run_id)
        return record, files
    finally:
        os.chdir(cwd)
        shutil.rmtree(scratch, ignore_errors=True)


def pack_folder(root: Path) -> tuple[str, bytes]:
    """A data folder as one tar (its digest names the nodes' unpacked copies)."""
    size = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    if size > SHIP_MAX_BYTES:
        raise HarnessError(f"the data folder {root} holds {size / 2**20:.0f} MiB, more than the "
                           f"{SHIP_MAX_BYTES / 2**20:.0f} MiB that are shipped through Ray's object store "
                           "(HARNESS_RAY_SHIP_MAX_MB); put it where every node can read it and pass "
                           "--ray-data-url (s3://, gs://, file://...)")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.add(str(root), arcname=".")
    payload = buffer.getvalue()
    return hashlib.sha256(payload).hexdigest()[:16], payload


def node_data(kind: str, value: Any, node_tmp: Path) -> Path:
    """The data root on this node: ('tar', (digest, bytes)) unpacked once per node, or ('url', URL)
    copied once per node with fsspec; later tasks on the node reuse it (a lock file serialises them)."""
    import fcntl

    key = value[0] if kind == "tar" else hashlib.sha256(str(value).encode()).hexdigest()[:16]
    target = node_tmp / f"harness-data-{os.getuid()}" / key
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (target / ".complete").exists():
            shutil.rmtree(target, ignore_errors=True)
            target.mkdir(parents=True)
            if kind == "tar":
                payload = value[1]
                if not isinstance(payload, bytes):  # an ObjectRef: fetched from the object store once per node
                    import ray

                    payload = ray.get(payload)
                with tarfile.open(fileobj=io.BytesIO(payload), mode="r") as tar:
                    tar.extractall(target, filter="data")
            else:
                fetch_url(str(value), target)
            (target / ".complete").touch()
    return target


def fetch_url(url: str, target: Path) -> None:
    """Copy the folder at ``url`` (any fsspec protocol) into ``target``."""
    try:
        import fsspec
    except ImportError:
        raise HarnessError("--ray-data-url needs fsspec: pip install 'peft-harness[grid]'") from None
    fs, path = fsspec.core.url_to_fs(url)
    path = path.rstrip("/")
    for name in fs.find(path):
        relative = name[len(path):].lstrip("/")
        destination = target / relative
        destination.parent.mkdir(parents=True, exist_ok=True)
        fs.get_file(name, str(destination))


def store_remote_result(store: ResultStore, record: dict[str, Any], files: dict[str, bytes]) -> RunResult:
    """The driver writes what a remote task sent: the side files (atomically), then the record."""
    for relative, payload in files.items():
        target = (store.root / relative).resolve()
        if store.root.resolve() not in target.parents:  # a path that would leave the results folder
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=target.parent)
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
        os.replace(tmp, target)
    written, unsaved = write_record(store, record)
    summary = summary_line(record) + (f"\n{unsaved}" if unsaved else "")
    return RunResult(record["run_id"], record["status"], summary, str(written or ""), unsaved=bool(unsaved))


def _data_for_workers(ray: Any, options: ExecutionOptions, data_url: str | None,
                      echo: Callable[[str], None]) -> tuple[str, Any] | None:
    """What the tasks get to find their data: a URL, the driver's data folder packed once into the
    object store (an ObjectRef inside the tuple: each node fetches it once), or None (the hub)."""
    if data_url:
        echo(f"data: every node reads {data_url} (fsspec), once")
        return ("url", data_url)
    root = options.data.root
    if root is None:
        return None
    digest, payload = pack_folder(Path(root))
    echo(f"data: {root} shipped once through Ray's object store ({len(payload) / 2**20:.1f} MiB)")
    return ("tar", (digest, ray.put(payload)))  # put once; every task gets the reference


def _keeper(ray: Any) -> Any:
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from harness.pipeline.checkpoint import CheckpointKeeper

    here = ray.get_runtime_context().get_node_id()
    return ray.remote(CheckpointKeeper).options(
        num_cpus=0, scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=here, soft=False)).remote()


def ray_resources(options: ExecutionOptions, cluster_gpus: float, runs_per_gpu: int = 1) -> dict[str, float]:
    """One GPU per run when the runs use CUDA (the device flag, or auto on a cluster with GPUs), or
    1/K of one with ``--runs-per-gpu K`` (Ray packs K runs on a GPU); else ``--threads`` CPUs
    (default 1)."""
    wants_gpu = options.device.startswith("cuda") or (options.device == "auto" and cluster_gpus > 0)
    if wants_gpu:
        return {"num_gpus": 1 / runs_per_gpu if runs_per_gpu > 1 else 1, "num_cpus": float(options.threads or 1)}
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
            report: Callable[[RunResult], None], *, shared_disk: bool = True, data_url: str | None = None,
            runs_per_gpu: int = 1, init: dict[str, Any] | None = None) -> None:
    try:
        import ray
    except ImportError:
        raise HarnessError("--executor ray needs Ray: pip install 'peft-harness[grid]'") from None

    started_here = not ray.is_initialized()
    # ray.init replaces the SIGTERM/SIGINT handlers and ray.shutdown leaves its own in place: they are
    # put back when this grid ends, so the process (a notebook, a later grid) keeps its own behaviour
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    if started_here:
        if address is None:
            # a local instance for this grid: no more CPUs than the runs can use (Ray starts a worker
            # per CPU), no dashboard; PYTHONPATH gains this process's extra import paths, so that
            # plug-ins found here are found in the workers
            cpus = min(os.cpu_count() or 1, len(pending) * int(options.threads or 1))
            with _env("PYTHONPATH", _import_path()):  # the raylet, and so every worker, inherits it
                ray.init(num_cpus=max(1, cpus), include_dashboard=False, log_to_driver=False,
                         configure_logging=False, **(init or {}))
        else:
            ray.init(address=address, log_to_driver=False, configure_logging=False, **(init or {}))
    try:
        resources = ray_resources(options, float(ray.cluster_resources().get("GPU", 0)), runs_per_gpu)
        where = redact(address) or ("a local instance" if started_here else "the cluster this process is connected to")
        echo(f"executor: ray at {where}; each run asks for "
             + ", ".join(f"{k}={v:g}" for k, v in resources.items() if v)
             + ("" if shared_disk else "; no shared disk: the driver writes every record"))
        if resources["num_gpus"] and options.device == "auto":
            options = replace(options, device="cuda")
        if not resources["num_gpus"] and options.threads is None:
            options = replace(options, threads=int(resources["num_cpus"]))
        store = ResultStore(root)
        if shared_disk:
            task = ray.remote(_ray_task).options(**resources)
            refs = {task.remote(spec, str(root), options, modules): spec for spec in pending}
        else:
            data = _data_for_workers(ray, options, data_url, echo)
            if options.checkpoint_dir:  # checkpoints held on the driver's node: a run whose node dies resumes
                options = replace(options, checkpoint_keeper=_keeper(ray))
            # a task whose node dies is retried once elsewhere (from scratch there: its checkpoint was on that node)
            task = ray.remote(_ray_task_remote).options(max_retries=1, **resources)
            refs = {task.remote(spec, options, modules, data): spec for spec in pending}
        waiting = list(refs)
        while waiting:
            done, waiting = ray.wait(waiting, num_returns=1)
            try:
                answer = ray.get(done[0])
            except ray.exceptions.RayError as exc:  # the task's worker or node died
                record_lost(refs[done[0]], f"Ray task failed ({type(exc).__name__})", outcome, echo)
            else:
                report(answer if shared_disk else store_remote_result(store, *answer))
    finally:
        if started_here:
            ray.shutdown()
            _restore_handlers(handlers)


def _restore_handlers(handlers: dict) -> None:
    """Put back the signal handlers found before ray.init (only the main thread may set them)."""
    if threading.current_thread() is not threading.main_thread():
        return
    for sig, handler in handlers.items():
        if handler is not None:  # None: set from C, cannot be restored from Python
            signal.signal(sig, handler)


@register_executor("ray")
class RayExecutor(Executor):
    """Every run one Ray task asking for the resources it needs, on a local instance or a cluster."""

    def check(self) -> None:
        c = self.config
        if c.workers != 1:
            raise HarnessError("--workers applies to --executor local; Ray runs as many runs at once as the "
                               "cluster has resources for")
        if c.data_url and c.shared_disk:
            raise HarnessError("--ray-data-url applies with --no-shared-disk (with a shared disk, --data-dir)")
        if c.address is not None and not c.address.strip():
            raise HarnessError("--address is empty; use 'auto', host:port or ray://host:10001")

    def layout(self, options: ExecutionOptions, device: str, cuda: bool) -> Layout:
        return Layout(device, f"executor ray ({redact(self.config.address) or 'a local instance'})", 1,
                      None if cuda else options.threads or 1)

    def check_runs(self, pending: list[RunSpec]) -> None:
        if not self.config.shared_disk and any(s.warm_start for s in pending):
            raise HarnessError("--warm-start needs the parent runs' adapter files where the dependent runs train: "
                               "use a shared disk (leave out --no-shared-disk)")

    def run(self, wave: Wave) -> None:
        c = self.config
        run_ray(wave.pending, wave.root, wave.options, c.address, wave.modules, wave.outcome, wave.echo, wave.report,
                shared_disk=c.shared_disk, data_url=c.data_url, runs_per_gpu=c.runs_per_gpu)
