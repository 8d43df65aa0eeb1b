"""The grid: which runs are pending, the order they execute in, one run executed and its record
written, the sequential executor (``run_grid``) and the grid's totals (``GridOutcome``).
``harness.grid.executors`` runs the same ``run_and_record`` on parallel local workers or on Ray.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.pipeline import runner
from harness.pipeline.runner import ExecutionOptions, RunCancelled
from harness.records.store import NEWER_SCHEMA, ResultStore
from harness.redact import redact
from harness.signals import deferred
from harness.spec import RunSpec
from harness.status import DONE_STATUSES, Status


@dataclass
class GridOutcome:
    planned: int = 0
    skipped: int = 0
    ran: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    lost: int = 0  # dispatched runs that came back without a record (a worker or node died)
    unsaved: int = 0  # runs whose record could not be written at its path (kept elsewhere, see RunResult)

    def count(self, status: str, unsaved: bool = False) -> None:
        self.ran += 1
        self.by_status[status] = self.by_status.get(status, 0) + 1
        self.unsaved += unsaved

    def totals_line(self) -> str:
        statuses = ", ".join(f"{k}={v}" for k, v in sorted(self.by_status.items())) or "none"
        line = f"planned {self.planned}, already done {self.skipped}, ran {self.ran} ({statuses})"
        if self.lost:
            line += f", lost {self.lost} (no record: rerun the same command to resume them)"
        if self.unsaved:
            line += (f", unsaved {self.unsaved} (their records could not be written to the store; kept where "
                     "the [unsaved] lines say)")
        if self.unfinished or self.unsaved:
            # an unsaved record is not in the store either: the next invocation runs it again
            line += f"; {self.unfinished + self.unsaved} of them not done: exit code 1 (the same command reruns them)"
        return line

    @property
    def exit_code(self) -> int:
        """The exit code of a command that ran this grid (``run``, ``reproduce``): 1 when any run is
        not done or its record is not in the store, else 0."""
        return 1 if self.unfinished or self.unsaved else 0

    @property
    def unfinished(self) -> int:
        """Runs of this invocation that did not end in a done status (failed, cancelled, lost): the
        exit code is 1 when there is any. diverged and oom are results about the method, recorded as
        done, and do not count."""
        return self.lost + sum(n for status, n in self.by_status.items() if status not in DONE_STATUSES)


@dataclass(frozen=True)
class RunResult:
    """What a worker hands back to the driver after writing a record (the record stays in the store)."""

    run_id: str
    status: str
    summary: str
    path: str  # where the record is: its place in the store, or where it was kept when that failed
    unsaved: bool = False  # the store's write failed; the record is at ``path`` (or printed) instead


def summary_line(record: dict[str, Any]) -> str:
    key = record["key"]
    head = f"[{record['status']}] {key['suite']}/{key['task']} {key['adapter']} seed={key['seed']}"
    if record["status"] != Status.SUCCESS:
        err = record.get("error") or {}
        return f"{head}: {err.get('type', '')}: {str(err.get('message', ''))[:200]}"
    m, p, t, mem = record["metrics"], record["params"], record["timing"], record["memory"]
    score = m.get("score")
    score_s = f"{score:.4f}" if isinstance(score, (int, float)) else str(score)
    mem_s = f"{mem.get('peak_bytes', 0) / 2**20:.0f} MiB{'' if mem.get('device') == 'cuda' else ' (est.)'}"
    step = t.get("mean_step_seconds")
    step_s = f"{step * 1000:.0f} ms/step" if step else "-"
    return (
        f"{head}: {m['primary']}={score_s} ({m['selection']}) params={p['adapter_trainable']:,} "
        f"head={p['head']:,} mem={mem_s} train={t['train_seconds']:.1f}s {step_s}"
    )


def iter_pending(specs: list[RunSpec], store: ResultStore, force: bool) -> Iterator[tuple[RunSpec, bool]]:
    """(spec, done). A record of a newer schema counts as done even with --force: it is never
    overwritten by this (older) harness."""
    for spec in specs:
        key = spec.key
        status = store.status(key)  # one read (is_complete would read the record again)
        yield spec, status == NEWER_SCHEMA or (not force and status in DONE_STATUSES)


def execution_order(specs: list[RunSpec]) -> list[RunSpec]:
    """Runs that share a model load and tokenized data (same suite, model, task, seed) next to each
    other, adapters in the order given, so that the one-entry load cache hits. The plan (and the dry
    run) keep the order as given; only execution is regrouped; records do not depend on the order."""
    first = {}
    for i, spec in enumerate(specs):
        first.setdefault((spec.suite, spec.model, spec.task, spec.seed), i)
    return sorted(specs, key=lambda s: first[(s.suite, s.model, s.task, s.seed)])


def split_pending(specs: list[RunSpec], store: ResultStore, force: bool) -> tuple[list[RunSpec], int]:
    """(runs to execute in execution order, number already done). Also clears temporary files that
    writers killed mid-write left behind. A done run that a pending warm-started run starts from, but
    whose adapter file is missing (recorded without one), runs again first."""
    store.clean_stale_temps()
    pending, done = [], 0
    done_specs = {}
    for spec, complete in iter_pending(specs, store, force):
        if complete:
            done += 1
            done_specs[spec.run_id] = spec
        else:
            pending.append(spec)
    for parent_id in sorted({s.parent_run_id for s in pending if s.warm_start}):
        parent = done_specs.get(parent_id)
        if parent is not None and not store.path_for(parent.key).with_suffix(".adapter.safetensors").is_file():
            pending.append(parent)
            done -= 1
    return dependency_order(execution_order(pending)), done


def dependency_order(pending: list[RunSpec]) -> list[RunSpec]:
    """Runs whose parent (``RunSpec.warm_start``) is pending after every run that is not such a run
    (stable otherwise): a sequential grid trains the parents first."""
    waiting = {s.parent_run_id for s in pending if s.warm_start} & {s.run_id for s in pending}
    return sorted(pending, key=lambda s: bool(s.warm_start) and s.parent_run_id in waiting)


def dependency_waves(pending: list[RunSpec]) -> list[list[RunSpec]]:
    """The runs in waves for the parallel executors: a run waits for the wave of its parent's record."""
    ids = {s.run_id for s in pending}
    first = [s for s in pending if not (s.warm_start and s.parent_run_id in ids)]
    later = [s for s in pending if s.warm_start and s.parent_run_id in ids]
    return [wave for wave in (first, later) if wave]


def with_kept_parents(specs: list[RunSpec], options: ExecutionOptions) -> ExecutionOptions:
    """The parents of warm-started runs keep their adapter file (without --save-adapters too)."""
    parents = frozenset(s.parent_run_id for s in specs if s.warm_start)
    if not parents:
        return options
    from dataclasses import replace

    return replace(options, keep_adapters=frozenset(options.keep_adapters) | parents)


def run_and_record(spec: RunSpec, store: ResultStore, options: ExecutionOptions) -> tuple[RunResult, dict[str, Any]]:
    """Execute one run and write its record (atomically) from the process that ran it."""
    path = store.path_for(spec.key)
    try:
        record = runner.execute_run(spec, options, record_path=path)  # through the module: tests replace it
    except RunCancelled as cancelled:
        # the next invocation reruns it (not done), from its checkpoint when it has one
        _, unsaved = write_record(store, cancelled.record)
        if unsaved:
            print(unsaved, file=sys.stderr, flush=True)
        raise
    written, unsaved = write_record(store, record)
    if not unsaved:
        drop_checkpoint(spec, options)
    summary = summary_line(record) + (f"\n{unsaved}" if unsaved else "")
    return RunResult(spec.run_id, record["status"], summary, str(written or ""), unsaved=bool(unsaved)), record


def drop_checkpoint(spec: RunSpec, options: ExecutionOptions) -> None:
    """The run's record is written (any status but cancelled): its in-run checkpoint has done its job."""
    if options.checkpoint_dir:
        from harness.pipeline.checkpoint import checkpoint_path, remove

        remove(checkpoint_path(options.checkpoint_dir, spec.key))


def write_record(store: ResultStore, record: dict[str, Any]) -> tuple[Path | None, str]:
    """Write a finished run's record; a stop signal waits until it is written. When the store refuses
    the write (a full disk, a folder turned read-only mid-grid) the record is kept elsewhere instead of
    lost and the grid goes on: (where it is, a ``[unsaved]`` line saying so; '' when all went well)."""
    with deferred():
        try:
            return store.write(record), ""
        except (OSError, TypeError, ValueError) as exc:  # a full disk; a value JSON cannot hold
            target = store.path_for(record["key"])
            kept = store.keep_unsaved(record)
            why = f"[unsaved] {record['run_id']}: cannot write {target} ({getattr(exc, 'strerror', None) or exc})"
            if kept is not None:
                line = (f"{why}; the record is kept at {kept}: move it to {target} once that works, or the next "
                        "invocation runs it again")
            else:
                line = f"{why}, nor anywhere else; the record was printed on stderr as JSON"
                print(json.dumps(record, default=str), file=sys.stderr, flush=True)
            return kept, line


def run_grid(
    specs: list[RunSpec],
    store: ResultStore,
    options: ExecutionOptions,
    *,
    force: bool = False,
    echo: Callable[[str], None] = print,
    on_result: Callable[[RunResult], None] | None = None,
) -> GridOutcome:
    """The sequential executor: every run in this process, one after another. ``on_result`` (the
    grid's ``[i/N] ... | ETA`` reporter) replaces the plain summary line."""
    outcome = GridOutcome(planned=len(specs))
    pending, outcome.skipped = split_pending(specs, store, force)
    options = with_kept_parents(specs, options)
    for spec in pending:
        result, _ = run_and_record(spec, store, options)
        outcome.count(result.status, result.unsaved)
        if on_result is not None:
            on_result(result)
        else:
            echo(result.summary)
    return outcome


def record_lost(spec: RunSpec, why: str, outcome: GridOutcome, echo: Callable[[str], None]) -> None:
    outcome.lost += 1
    echo(f"[lost] {spec.run_id}: {redact(why)}; no record was written, so the next invocation runs it again")


def default_results_dir() -> Path:
    """The user's store (``runs/`` or ``HARNESS_RESULTS_DIR``), never the shipped ``results/`` (harness.records.stores)."""
    from harness.records.stores import user_results_dir

    return user_results_dir()
