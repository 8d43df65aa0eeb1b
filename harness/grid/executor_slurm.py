"""The Slurm executor, through submitit: the runs of a grid are submitted as one job array (one run per
array task), each asking for ``--slurm-gpus-per-task`` GPUs (or ``--threads`` CPUs) for
``--slurm-time``, at most ``--slurm-array-parallelism`` at once, with any further ``#SBATCH`` lines
given by ``--slurm-extra``.

Every job writes its own record into the results folder (a cluster's shared filesystem), exactly as a
local worker does. A job that reaches its time limit or is preempted gets submitit's signal (USR2,
``signal_delay_s`` before the end); ``SlurmRun`` is a ``submitit.helpers.Checkpointable``, so submitit
calls its ``checkpoint`` (a ``DelayedSubmission`` of the same run) and requeues the job, which then
continues from the run's last in-run checkpoint (harness/pipeline/checkpoint.py: every epoch's end and every
``--checkpoint-every`` steps) instead of from scratch. A job that dies without a record (killed, its
node lost) is resubmitted by the driver up to ``--slurm-resubmit`` times (default 1), again from the
checkpoint; after that it counts as lost and the same command resumes it later.

The driver (the ``harness run`` process, on a login node: keep it in tmux/screen, or run it as a small
job of its own) waits for the jobs and prints a line per finished run. submitit's files (the pickled
runs, the sbatch scripts, each job's stdout/stderr) go to ``<results>/.slurm``.

For the tests, ``HARNESS_SLURM_CLUSTER=local`` runs the same jobs through submitit's local executor
(each job a local process, preemption simulated by its signal), ``debug`` in this process.
"""

from __future__ import annotations

import os
import re
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.grid.executor import Executor, Layout, Wave, refuse_ray_options, register_executor
from harness.grid.run_grid import GridOutcome, RunResult, record_lost, run_and_record
from harness.pipeline.runner import ExecutionOptions
from harness.plugins import import_plugins
from harness.records.store import ResultStore
from harness.spec import RunSpec

SLURM_DIR = ".slurm"  # under the results folder: submitit's pickles, scripts and logs


@dataclass(frozen=True)
class SlurmOptions:
    partition: str | None = None
    gpus_per_task: int = 0
    time: str = "4:00:00"  # minutes, H:MM:SS or D-HH:MM:SS, as sbatch --time
    array_parallelism: int = 64
    extra: tuple[str, ...] = ()  # "#SBATCH --qos=high" lines (or "--qos=high")
    cpus_per_task: int | None = None  # default: --threads, else 1 (with GPUs: 4)
    mem_gb: float | None = None
    resubmit: int = 1  # a job that died without a record is submitted again this many times
    cluster: str | None = field(default_factory=lambda: os.environ.get("HARNESS_SLURM_CLUSTER") or None)

    def __post_init__(self) -> None:
        timeout_minutes(self.time)  # a bad value fails at plan time
        parse_extra(self.extra)
        if self.gpus_per_task < 0 or self.array_parallelism < 1 or self.resubmit < 0:
            raise HarnessError("--slurm-gpus-per-task must be >= 0, --slurm-array-parallelism >= 1, "
                               "--slurm-resubmit >= 0")
        if self.cluster not in (None, "slurm", "local", "debug"):
            raise HarnessError(f"HARNESS_SLURM_CLUSTER must be slurm, local or debug, got {self.cluster!r}")


def timeout_minutes(text: str) -> int:
    """sbatch's --time formats: M, M:S, H:M:S, D-H, D-H:M, D-H:M:S -> whole minutes (at least 1)."""
    text = str(text).strip()
    match = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", text)
    if not match:
        raise HarnessError(f"--slurm-time must be minutes, H:MM:SS or D-HH:MM:SS (as sbatch --time), got {text!r}")
    days, a, b, c = match.groups()
    if days is not None:  # D-H[:M[:S]]
        minutes = int(days) * 1440 + int(a) * 60 + int(b or 0) + int(c or 0) / 60
    elif c is not None:  # H:M:S
        minutes = int(a) * 60 + int(b) + int(c) / 60
    elif b is not None:  # M:S
        minutes = int(a) + int(b) / 60
    else:
        minutes = int(a)
    return max(1, int(round(minutes)))


def parse_extra(lines: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """``--slurm-extra "#SBATCH --qos=high"`` (repeatable; several options on one line allowed) ->
    submitit's ``slurm_additional_parameters`` ({"qos": "high"}; a bare flag is True)."""
    params: dict[str, Any] = {}
    for line in lines:
        words = shlex.split(line.strip().removeprefix("#SBATCH"))
        i = 0
        while i < len(words):
            word = words[i]
            if not word.startswith("--") or len(word) < 3:
                raise HarnessError(f"--slurm-extra takes sbatch long options such as \"#SBATCH --qos=high\", "
                                   f"got {line!r}")
            key, eq, value = word[2:].partition("=")
            if not eq and i + 1 < len(words) and not words[i + 1].startswith("--"):
                value, i = words[i + 1], i + 1
            params[key.replace("-", "_")] = value if (eq or value) else True
            i += 1
    return params


def executor_parameters(slurm: SlurmOptions, options: ExecutionOptions, name: str = "harness") -> dict[str, Any]:
    """The submitit parameters of one run's job (AutoExecutor names; slurm_* ones apply on Slurm only)."""
    params: dict[str, Any] = {"timeout_min": timeout_minutes(slurm.time), "name": name, "tasks_per_node": 1,
                              "nodes": 1, "slurm_array_parallelism": slurm.array_parallelism}
    cpus = slurm.cpus_per_task or options.threads or (4 if slurm.gpus_per_task else 1)
    params["cpus_per_task"] = cpus
    if slurm.gpus_per_task:
        params["slurm_gpus_per_task"] = slurm.gpus_per_task
    if slurm.partition:
        params["slurm_partition"] = slurm.partition
    if slurm.mem_gb:
        params["mem_gb"] = slurm.mem_gb
    extra = parse_extra(slurm.extra)
    if extra:
        params["slurm_additional_parameters"] = extra
    return params


def sbatch_preview(slurm: SlurmOptions, options: ExecutionOptions, folder: Path, runs: int) -> str:
    """The sbatch script submitit writes for the grid's job array (shown by ``--dry-run``)."""
    from submitit.slurm.slurm import _make_sbatch_string

    params = executor_parameters(slurm, options)
    slurm_params = {k.removeprefix("slurm_"): v for k, v in params.items() if k.startswith("slurm_")}
    generic = {"time": params["timeout_min"], "job_name": params["name"], "ntasks_per_node": 1, "nodes": 1,
               "cpus_per_task": params["cpus_per_task"]}
    if "mem_gb" in params:
        generic["mem"] = f"{params['mem_gb']}GB"
    return _make_sbatch_string(command="python -u -m submitit.core._submit " + str(folder), folder=folder,
                               map_count=runs, **generic, **slurm_params)


class SlurmRun:
    """One run as a submitit job. Checkpointable: on a time limit or preemption submitit calls
    ``checkpoint`` and requeues the job; the run then resumes from its in-run checkpoint."""

    def __call__(self, spec: RunSpec, root: str, options: ExecutionOptions, modules: tuple[str, ...]) -> RunResult:
        import_plugins(modules)
        result, _ = run_and_record(spec, ResultStore(root), options)
        return result

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        from submitit.helpers import DelayedSubmission

        # the state that matters is on disk (the in-run checkpoint): the same call again resumes it
        return DelayedSubmission(SlurmRun(), *args, **kwargs)


def make_executor(slurm: SlurmOptions, folder: Path, options: ExecutionOptions) -> Any:
    try:
        import submitit
    except ImportError:
        raise HarnessError("--executor slurm needs submitit: pip install 'peft-harness[grid]'") from None
    if slurm.cluster in (None, "slurm"):
        import shutil

        if shutil.which("sbatch") is None or shutil.which("srun") is None:
            raise HarnessError("--executor slurm: no Slurm on this machine (sbatch/srun not on PATH); run it on the "
                               "cluster's login node, try --dry-run for the job script, or set "
                               "HARNESS_SLURM_CLUSTER=local to run the job array here")
        executor = submitit.AutoExecutor(folder=folder, cluster="slurm")
    else:
        executor = submitit.AutoExecutor(folder=folder, cluster=slurm.cluster)
    executor.update_parameters(**executor_parameters(slurm, options))
    return executor


def run_slurm(pending: list[RunSpec], root: Path, options: ExecutionOptions, slurm: SlurmOptions,
              modules: tuple[str, ...], outcome: GridOutcome, echo: Callable[[str], None],
              report: Callable[[RunResult], None], *, poll_seconds: float = 2.0,
              on_submit: Callable[[dict[Any, RunSpec]], None] | None = None) -> None:
    folder = root / SLURM_DIR
    executor = make_executor(slurm, folder, options)
    if slurm.gpus_per_task and options.device == "auto":
        options = replace(options, device="cuda")
    echo(f"executor: slurm ({slurm.cluster or 'slurm'}), {len(pending)} runs as a job array"
         f"{f' on partition {slurm.partition}' if slurm.partition else ''}, "
         f"{slurm.gpus_per_task} GPU(s) per run, time {slurm.time}; submitit files in {folder}")
    jobs = _submit(executor, pending, root, options, modules)
    if on_submit is not None:
        on_submit(jobs)
    tries = {spec.run_id: 0 for spec in pending}
    store = ResultStore(root)
    try:
        while jobs:
            finished = [job for job in jobs if job.done()]
            if not finished:
                time.sleep(poll_seconds)
                continue
            again: list[RunSpec] = []
            for job in finished:
                spec = jobs.pop(job)
                try:
                    report(job.result())
                except Exception as exc:  # killed, node lost, out of requeues: no answer from the job
                    if store.status(spec.key) is None and tries[spec.run_id] < slurm.resubmit:
                        tries[spec.run_id] += 1
                        echo(f"[resubmit] {spec.run_id}: job {job.job_id} ended without a record "
                             f"({type(exc).__name__}); submitted again, it resumes from its checkpoint")
                        again.append(spec)
                    else:
                        record_lost(spec, f"Slurm job {job.job_id} failed ({type(exc).__name__})", outcome, echo)
            if again:
                resubmitted = _submit(executor, again, root, options, modules)
                jobs.update(resubmitted)
                if on_submit is not None:
                    on_submit(resubmitted)
    except BaseException:
        for job in jobs:  # Ctrl-C at the driver: the runs it started are cancelled too
            try:
                job.cancel(check=False)
            except Exception:  # noqa: BLE001 - best effort
                pass
        raise


def _submit(executor: Any, specs: list[RunSpec], root: Path, options: ExecutionOptions,
            modules: tuple[str, ...]) -> dict[Any, RunSpec]:
    submitted = []
    with executor.batch():  # one job array
        for spec in specs:
            submitted.append((executor.submit(SlurmRun(), spec, str(root), options, modules), spec))
    return dict(submitted)


@register_executor("slurm")
class SlurmExecutor(Executor):
    """The runs of a grid as one Slurm job array through submitit (one run per array task)."""

    def check(self) -> None:
        c = self.config
        if c.workers != 1:
            raise HarnessError("--workers applies to --executor local; on Slurm every run is a job of the array "
                               "(--slurm-array-parallelism caps how many run at once)")
        refuse_ray_options(c)

    def layout(self, options: ExecutionOptions, device: str, cuda: bool) -> Layout:
        slurm = self.config.slurm or SlurmOptions()
        return Layout("cuda" if slurm.gpus_per_task else device,
                      f"executor slurm (a job array, up to {slurm.array_parallelism} at once)",
                      slurm.array_parallelism, None if slurm.gpus_per_task else options.threads or 1)

    def run(self, wave: Wave) -> None:
        run_slurm(wave.pending, wave.root, wave.options, self.config.slurm or SlurmOptions(), wave.modules,
                  wave.outcome, wave.echo, wave.report)
