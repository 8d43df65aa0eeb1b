"""One run: a spec in, a record out.

``execute_run`` never raises for a run that goes wrong: a diverged, out-of-memory or failed run becomes
a record with that status, so one bad run cannot crash or hide in a grid. The pipeline around it:
``harness.pipeline.plan`` (request -> specs), ``harness.grid.run_grid`` and ``harness.grid.executors`` (which runs, where, and
their records written); inside it: ``harness.pipeline.train`` (setup, attach, optimiser, loop) and
``harness.pipeline.collect`` (the record's result sections).
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.pipeline.loss_log import UNDEFINED_METRIC, DivergedError
from harness.pipeline.run_record import _now, base_record
from harness.pipeline.trained import TrainedRun
from harness.redact import redact
from harness.registry import SUITES
from harness.signals import signal_name
from harness.spec import RunSpec
from harness.status import Status
from harness.suite import DataSource, Suite

# A run's work folder: <tmp>/harness-run-<pid>-<random>, so that whoever outlives a killed worker (the
# pool's driver) finds and removes the folder that worker left (harness.grid.executors)
WORK_DIR_PREFIX = "harness-run-"


def remove_work_dirs_of(pid: int) -> list[Path]:
    """Remove the work folders a (dead) process ``pid`` left in the temporary folder; what was removed."""
    removed = []
    for path in Path(tempfile.gettempdir()).glob(f"{WORK_DIR_PREFIX}{int(pid)}-*"):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


class RunCancelled(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM/SIGHUP) during a run: carries the run's ``cancelled`` record so that it is
    written, not lost, and the signal (None for a plain KeyboardInterrupt) for the exit code."""

    def __init__(self, record: dict[str, Any], signum: int | None = None):
        super().__init__("run cancelled")
        self.record = record
        if signum is not None:
            self.signum = signum

    def __reduce__(self) -> tuple[Any, ...]:  # a pool worker sends it to the driver
        return (RunCancelled, (self.record, getattr(self, "signum", None)))


@dataclass
class ExecutionOptions:
    device: str = "auto"
    data: DataSource = field(default_factory=lambda: DataSource(None))
    save_adapters: bool = False
    progress: bool = True
    threads: int | None = None
    cache: bool = True  # share model loads and tokenized data between the runs of this process
    # tuning (harness/tuning/study.py), by run id: a trial's link to its study (per-epoch validation reports,
    # pruning), and the ``tuning`` section of the record (a trial, or a run at tuned values)
    trial_links: dict[str, Any] = field(default_factory=dict)
    tuning_sections: dict[str, dict[str, Any]] = field(default_factory=dict)
    # in-run checkpoints (harness/pipeline/checkpoint.py): the folder (``<results>/.checkpoints``; None: none) and
    # every how many optimiser steps besides each epoch's end (None: epoch ends only). Not part of any
    # run's identity: a resumed run ends with the record of an uninterrupted one
    checkpoint_dir: str | None = None
    checkpoint_every: int | None = None
    checkpoint_keeper: Any = None  # Ray without a shared disk: the driver-side actor that holds them
    # which GPU share a run was placed on (--runs-per-gpu): runs per GPU, for the memory check
    runs_per_gpu: int = 1
    # runs whose adapter file is kept beside the record even without --save-adapters: the parents of
    # warm-started runs (RunSpec.warm_start), by run id
    keep_adapters: frozenset[str] = frozenset()


def resolve_device(name: str) -> Any:
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise HarnessError("--device cuda was requested but no CUDA device is available")
    return device


def execute_run(spec: RunSpec, options: ExecutionOptions, record_path: Path | None = None) -> dict[str, Any]:
    """Train and evaluate one run; always returns a record (status success/diverged/oom/failed)."""
    import torch

    from harness.pipeline.collect import collect_sections
    from harness.pipeline.environment import environment_info
    from harness.pipeline.train import TrainingRun

    suite = _suite_for(spec)
    record = base_record(spec, suite)
    link = options.trial_links.get(spec.run_id)
    tuning = link.section() if link is not None else options.tuning_sections.get(spec.run_id)
    if tuning:
        record["tuning"] = dict(tuning)
    t0 = time.perf_counter()
    cpu0 = time.process_time()
    device = resolve_device(options.device)
    run: TrainingRun | None = None
    work_dir: Path | None = None
    try:
        # inside the try: a full or unwritable temporary folder fails this run (recorded), not the grid
        work_dir = Path(tempfile.mkdtemp(prefix=f"{WORK_DIR_PREFIX}{os.getpid()}-"))
        if suite is None:  # it could not be instantiated: fail here, with the reason in the record
            suite = SUITES.get(spec.suite)()
        run = TrainingRun(spec, suite, options, device, work_dir, record_path)
        trained = run.run()
        record.update(collect_sections(trained))
        undefined_metric(record)  # raises DivergedError: a run without a defined score is no success
        record["status"] = Status.SUCCESS.value
        _keep_predictions(trained, record, record_path)
    except DivergedError as exc:
        record["status"] = Status.DIVERGED.value
        record["error"] = {"type": "DivergedError", "message": str(exc), "step": exc.step, "traceback": None,
                           "reason": exc.reason}
    except torch.OutOfMemoryError as exc:
        record["status"] = Status.OOM.value
        record["error"] = {"type": "OutOfMemoryError", "message": str(exc).splitlines()[0], "traceback": traceback.format_exc()}
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM/SIGHUP (harness.signals raises Interrupted)
        signum = getattr(exc, "signum", None)
        ctrl_c = signum is None or signal_name(signum) == "SIGINT"
        how = "interrupted by the user (Ctrl-C)" if ctrl_c else f"stopped by {signal_name(signum)}"
        record["status"] = Status.CANCELLED.value
        record["error"] = {"type": "KeyboardInterrupt", "message": how, "traceback": None,
                           "signal": signal_name(signum) if signum is not None else "SIGINT"}
        raise RunCancelled(record, signum) from None  # completed by the finally block before it propagates
    except Exception as exc:  # the grid goes on; the traceback is in the record
        record["status"] = Status.FAILED.value
        record["error"] = {"type": type(exc).__name__, "message": str(exc), "traceback": traceback.format_exc()}
    finally:
        error = record.get("error")
        if isinstance(error, dict):  # a URL with credentials or a query in an exception's text: its public form
            for key in ("message", "traceback"):
                error[key] = redact(error.get(key))
        if run is not None and record["status"] != Status.SUCCESS:
            # a run that stopped part way keeps what it had established (model, data, counts, losses)
            for key, value in run.sections_so_far().items():
                record.setdefault(key, value)
        record["finished_at"] = _now()
        t_env = time.perf_counter()
        # a cancelled run is recorded inside the stop's grace period: no seconds on a fresh speed probe
        record["environment"] = environment_info(device, probe=record["status"] != Status.CANCELLED.value)
        if work_dir is not None:
            shutil.rmtree(work_dir, ignore_errors=True)
        if device.type == "cuda":
            torch.cuda.empty_cache()
        _finish_timing(record, t0, time.perf_counter() - t_env, cpu0)
    return record


def undefined_metric(record: dict[str, Any]) -> None:
    """A run whose primary metric came out undefined (None or NaN: Pearson of constant predictions, an
    empty evaluation) diverged: recorded as such, with the reason, and never rerun as if it were missing."""
    metrics = record.get("metrics") or {}
    score = metrics.get("score")
    if isinstance(score, bool) or not isinstance(score, (int, float)) or not math.isfinite(score):
        primary = metrics.get("primary", "the primary metric")
        raise DivergedError(None, None, UNDEFINED_METRIC,
                            f"undefined metric: {primary} is {score!r} at the selected epoch "
                            f"({metrics.get('selection', '?')}): the predictions give it no value")


def _keep_predictions(run: TrainedRun, record: dict[str, Any], record_path: Path | None) -> None:
    """The per-example predictions of the epoch the record reports, beside the record
    (harness/records/predictions.py); nothing without a store or when the suite left none."""
    if record_path is None:
        return
    from harness.records.predictions import write_predictions

    metrics = record.get("metrics") or {}
    final = metrics.get("selection") == "final"
    scores = run.scores
    chosen = scores.final_predictions if final else scores.best_predictions
    if chosen:
        epoch = (scores.per_epoch[-1].get("epoch") if scores.per_epoch else None) if final else metrics.get("best_epoch")
        write_predictions(record_path, chosen, epoch)


def _suite_for(spec: RunSpec) -> Suite | None:
    """The run's suite, instantiated once for the whole run; None when that fails (the run then
    fails inside ``execute_run``'s try and its record says why)."""
    try:
        return SUITES.get(spec.suite)()
    except Exception:
        return None


# What this process spent before its first run (imports, planning, shape checks), noted by the CLI
# and recorded in the timing of the first run the process executes: with it, the records of a
# one-run grid add up to the command's wall time (less the record write and the interpreter's exit).
_PROCESS_STARTUP: dict[str, float] = {}


def note_startup(**seconds: float) -> None:
    _PROCESS_STARTUP.update(seconds)


def process_age_seconds() -> float | None:
    """Seconds since this process started (Linux /proc), or None where that cannot be read."""
    try:
        with open("/proc/self/stat") as fh:
            start_ticks = int(fh.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as fh:
            uptime = float(fh.read().split()[0])
        return max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return None


def _finish_timing(record: dict[str, Any], t0: float, environment_seconds: float, cpu0: float) -> None:
    timing = record.setdefault("timing", {})
    timing["total_seconds"] = time.perf_counter() - t0
    # CPU seconds of this process (all its threads) over the run: unlike the wall time it hardly
    # grows when other jobs share the cores, so the estimator can tell a busy machine's timing
    # (cpu_seconds / (threads x total_seconds) well below a quiet run's) from a slow run
    timing["cpu_seconds"] = time.process_time() - cpu0
    phases = timing.get("phases")
    if isinstance(phases, dict):
        phases["environment"] = environment_seconds
        phases["unaccounted"] = timing["total_seconds"] - sum(phases.values())
    if _PROCESS_STARTUP:
        timing["startup"] = dict(_PROCESS_STARTUP)  # once per process: only its first run paid it
        _PROCESS_STARTUP.clear()
