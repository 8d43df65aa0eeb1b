"""What a grid tells its user while it runs: a header, a line ``[i/N]`` per finished run with the
record's path and an ETA, and the estimated time of the whole grid (printed by the dry run too).

Estimates come from the timings of finished records of comparable runs (pure Python, no torch), most
specific first:

1. the same suite, task, adapter, model and preset (any config): their median ``total_seconds``;
2. the same suite, task, model and preset, other adapters: their median, times this adapter's median
   ratio to the others on the tasks where both ran (an adapter that is 2x slower elsewhere is 2x
   slower here);
3. the same suite, model and preset, other tasks: seconds per planned training sample (epochs x
   ``max_train_samples``) when the budget names one, else the median run;
4. nothing comparable: unknown until runs of this grid finish.

At every level the records run with the grid's torch threads per run are preferred (a record's
``environment.torch_threads``: on the 2-core machine 1 means one of two workers, 2 a single process);
when a level has none, its records are scaled by the measured ratio between the two thread counts
(the median over runs recorded with both). On the CPU, N workers run N runs at once, each at the speed
a record of that layout shows, so the grid's time is the sum of its runs' estimates divided by N.

Reference records are those of the grid's own store plus the shipped ``results/`` of this checkout
(timings of the cpu preset on a 2-core machine), so that a grid into an empty folder has an estimate.
While the grid runs, the ETA of the remaining runs is their estimate scaled by how fast the finished
runs went against their own estimates (a faster or busier machine corrects itself after one run).

Machines differ in speed too: the same runs took twice as long on one session's 2-core machine as on
another's. Records of CPU runs carry the machine's speed probe (``environment.speed_probe``, see
harness/speed_probe.py); when the grid's own machine has been probed, a reference with a probe at the
same torch threads is scaled by (this machine's seconds per probe step / the record's) and, at every
level, such calibrated references are preferred to those without a probe, which count as they are.

Records that carry their CPU time (``timing.cpu_seconds``) also say how busy the machine let them be:
a CPU run whose threads got half a core each while other jobs ran took twice its quiet wall time, so
its timing is scaled to the busiest comparable record's (``harness.aggregate.reference_timing``). Older records
have no CPU time and count as they are.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import speed_probe
from harness.aggregate.reference_timing import Reference, busy_fraction, calibrate, discount_contention
from harness.status import Status
from harness.untrusted import safe_print

__all__ = ["Estimator", "GridEstimate", "GridProgress", "busy_fraction", "estimate_grid", "format_duration",
           "grid_header", "planned_samples", "reference_records"]

# the shipped records of this checkout: timing references for a grid into an empty results folder
SHIPPED_RESULTS = Path(__file__).resolve().parents[2] / "results"


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{seconds:.0f}s"
    minutes = seconds / 60
    if minutes < 60:
        return f"{minutes:.0f}min"
    return f"{int(minutes // 60)}h{int(minutes % 60):02d}min"


def _spec_fields(spec: Any) -> dict[str, Any]:
    """The fields an estimate compares, from a RunSpec or from a record's ``spec`` dict."""
    if isinstance(spec, Mapping):
        train = spec.get("train") or {}
        return {"suite": spec.get("suite"), "task": spec.get("task"), "adapter": spec.get("adapter"),
                "model": spec.get("model"), "preset": spec.get("preset"), "train": dict(train)}
    return {"suite": spec.suite, "task": spec.task, "adapter": spec.adapter, "model": spec.model,
            "preset": spec.preset, "train": dict(spec.train.__dict__)}


def planned_samples(train: Mapping[str, Any]) -> float | None:
    """Training samples a budget plans (epochs x max_train_samples), when it caps them."""
    cap = train.get("max_train_samples")
    if not cap:
        return None
    steps = train.get("max_steps")
    batch = train.get("batch_size") or 1
    samples = float(train.get("epochs") or 1.0) * cap
    if steps:
        samples = min(samples, steps * batch * (train.get("grad_accum") or 1))
    return samples


@dataclass
class Estimator:
    """Seconds per run from comparable finished records (see the module docstring)."""

    refs: list[Reference] = field(default_factory=list)
    machine_probe: float | None = None  # this machine's seconds per probe step, when probed

    @property
    def calibrated(self) -> int:
        """How many references are scaled to this machine by their speed probe."""
        return sum(r.calibrated for r in self.refs)

    @classmethod
    def from_records(cls, records: Iterable[Mapping[str, Any]], machine_probe: Mapping[str, Any] | None = None
                     ) -> Estimator:
        """``machine_probe``: this machine's ``speed_probe.measure()``, at the grid's threads per run."""
        refs: list[Reference] = []
        seen: set[str] = set()
        for record in records:
            if record.get("status") != Status.SUCCESS or record.get("run_id") in seen:
                continue
            seen.add(str(record.get("run_id")))
            timing = record.get("timing") or {}
            seconds = timing.get("total_seconds")
            spec = record.get("spec")
            if not isinstance(seconds, (int, float)) or seconds <= 0 or not isinstance(spec, Mapping):
                continue
            f = _spec_fields(spec)
            refs.append(Reference.from_record(record, f, float(seconds)))
        here = speed_probe.seconds_per_step(machine_probe)
        threads = machine_probe.get("threads") if here is not None and machine_probe else None
        return cls(calibrate(discount_contention(refs), here, threads), here)

    def _predictions(self, f: Mapping[str, Any], threads: int | None = None, **same: bool) -> list[tuple[Reference, float]]:
        """Predictions of the refs that match ``f`` on the ``same`` fields: those run with ``threads``
        torch threads when there are any, else all of them scaled to ``threads`` (``_thread_ratio``)."""
        out = []
        for r in self.refs:
            if all(getattr(r, k) == f[k] for k, wanted in same.items() if wanted):
                value = r.predict(f["train"])
                if value is not None:
                    out.append((r, value))
        calibrated = [(r, v) for r, v in out if r.calibrated]  # at the probe's threads, the grid's
        if calibrated:
            return calibrated
        if threads is None or not out:
            return out
        matching = [(r, v) for r, v in out if r.threads == threads]
        return matching or [(r, v * self._thread_ratio(r.threads, threads)) for r, v in out]

    def _thread_ratio(self, have: int | None, want: int) -> float:
        """How much longer a run takes with ``want`` torch threads than with ``have``, on this data:
        the median over runs (suite, task, adapter, model, preset) recorded with both."""
        if have is None or have == want:
            return 1.0
        groups: dict[tuple, dict[int, list[float]]] = {}
        for r in self.refs:
            if r.threads in (have, want) and not r.max_steps:
                key = (r.suite, r.task, r.adapter, r.model, r.preset)
                groups.setdefault(key, {}).setdefault(r.threads, []).append(r.seconds)
        ratios = [statistics.median(g[want]) / statistics.median(g[have]) for g in groups.values()
                  if want in g and have in g]
        return statistics.median(ratios) if ratios else 1.0

    def estimate(self, spec: Any, threads: int | None = None) -> float | None:
        """Seconds for ``spec`` run with ``threads`` torch threads (None: any records, unscaled)."""
        f = _spec_fields(spec)
        exact = self._predictions(f, threads, suite=True, task=True, adapter=True, model=True, preset=True)
        if exact:
            return statistics.median(v for _, v in exact)
        task_refs = self._predictions(f, threads, suite=True, task=True, model=True, preset=True)
        if task_refs:
            return statistics.median(v for _, v in task_refs) * self._adapter_factor(f)
        suite_refs = self._predictions(f, threads, suite=True, model=True, preset=True)
        if not suite_refs:
            return None
        planned = planned_samples(f["train"])
        per_sample = [v / r.samples for r, v in suite_refs if r.samples and not r.max_steps]
        if planned and per_sample and not f["train"].get("max_steps"):
            return planned * statistics.median(per_sample) * self._adapter_factor(f)
        return statistics.median(v for _, v in suite_refs) * self._adapter_factor(f)

    def _adapter_factor(self, f: Mapping[str, Any]) -> float:
        """Median over tasks of (this adapter's time / the median time of the task's runs)."""
        ratios = []
        by_task: dict[tuple[str, str], list[Reference]] = {}
        for r in self.refs:
            if (r.suite, r.model, r.preset) == (f["suite"], f["model"], f["preset"]) and not r.max_steps:
                by_task.setdefault((r.suite, r.task), []).append(r)
        for refs in by_task.values():
            own = [r.seconds for r in refs if r.adapter == f["adapter"]]
            if own:
                ratios.append(statistics.median(own) / statistics.median(r.seconds for r in refs))
        return statistics.median(ratios) if ratios else 1.0


def reference_records(store_root: Path, extra: Sequence[Path] = (SHIPPED_RESULTS,)) -> list[dict[str, Any]]:
    """Records of the grid's store and of the shipped results (each folder once), quietly: an
    unreadable record is no timing reference but no reason to warn either."""
    from harness.records.store import ResultStore

    roots: list[Path] = []
    for root in (store_root, *extra):
        resolved = Path(root).resolve()
        if resolved.is_dir() and resolved not in roots:
            roots.append(resolved)
    records: list[dict[str, Any]] = []
    for root in roots:
        records.extend(ResultStore(root).load(warn=False).records)
    return records


@dataclass(frozen=True)
class GridEstimate:
    seconds: float | None  # wall time of the runs still to do; None when some are unknown
    known: int  # runs with an estimate
    unknown: int
    per_run: tuple[float | None, ...]
    calibration: str = ""  # how the machine's speed probe entered, for the line

    def line(self, parallel: int = 1) -> str:
        if not self.per_run:
            return "estimated grid time: nothing to run"
        if not self.known:
            return ("estimated grid time: unknown (no comparable finished records to time it by; "
                    "the ETA appears after the first run)")
        total = sum(s for s in self.per_run if s is not None) / max(1, parallel)
        text = f"estimated grid time: {format_duration(total)}"
        if self.unknown:
            text += f" for {self.known} runs with comparable records, {self.unknown} more unknown"
        text += " (from the timings of comparable finished records"
        text += f", {parallel} runs at once" if parallel > 1 else ""
        text += f"; {self.calibration}" if self.calibration else ""
        return text + "; the machine's load changes it)"


def estimate_grid(pending: Sequence[Any], estimator: Estimator, threads: int | None = None) -> GridEstimate:
    """Each pending run's estimate at ``threads`` torch threads per run (None on a GPU: unscaled)."""
    per_run = tuple(estimator.estimate(spec, threads) for spec in pending)
    unknown = sum(s is None for s in per_run)
    total = None if unknown else sum(s for s in per_run if s is not None)
    return GridEstimate(total, len(per_run) - unknown, unknown, per_run, calibration_note(estimator))


def calibration_note(estimator: Estimator) -> str:
    """What the speed probe did to the estimate, in words ("" when this machine was not probed)."""
    if estimator.machine_probe is None:
        return ""
    here = f"this machine's speed probe: {estimator.machine_probe * 1000:.0f} ms/step"
    if not estimator.calibrated:
        return f"{here}; no reference record has one at these threads, so their timings count as they are"
    return f"{estimator.calibrated} of {len(estimator.refs)} reference records scaled by their own probe to {here}"


def grid_header(specs: Sequence[Any], done: int, *, device: str, layout: str) -> str:
    """One line a newcomer reads first: what runs, on what, how many, how many are done."""
    presets = sorted({s.preset for s in specs})
    models: dict[str, list[str]] = {}
    for s in specs:
        models.setdefault(s.suite, [])
        if s.model not in models[s.suite]:
            models[s.suite].append(s.model)
    model_text = ", ".join(f"{suite}: {'/'.join(names)}" for suite, names in models.items())
    return (f"grid: {len(specs)} runs, {done} already done, {len(specs) - done} to run; preset {','.join(presets)}; "
            f"model {model_text}; device {device}; {layout}")


class GridProgress:
    """Prints ``[i/N] <summary> -> <record path> | elapsed, ETA`` as each run finishes (in any order,
    from any executor). The runs are the ones to execute (skipped ones are not counted)."""

    def __init__(self, run_ids: Sequence[str], estimates: Sequence[float | None], *, parallel: int = 1,
                 echo: Callable[[str], None] = print, clock: Callable[[], float] = time.monotonic):
        if len(run_ids) != len(estimates):
            raise ValueError("one estimate per run")
        self.total = len(run_ids)
        self.parallel = max(1, parallel)
        self.echo = echo
        self.clock = clock
        self.start = clock()
        self.done = 0
        self._pending: dict[str, float | None] = dict(zip(run_ids, estimates))
        self._est_done = 0.0  # estimates of the finished runs that had one

    def eta_seconds(self) -> float | None:
        remaining = len(self._pending)
        if remaining == 0:
            return 0.0
        elapsed = self.clock() - self.start
        known = [e for e in self._pending.values() if e is not None]
        # runs at once: when one finishes, the others are under way, on average half done; counting
        # them keeps the first ETAs of a parallel grid from doubling (one finished run in the time of two)
        in_flight = 0.5 * min(self.parallel - 1, len(known)) * (sum(known) / len(known)) if known else 0.0
        # actual seconds per estimated second in this grid so far (a busy or fast machine corrects
        # the reference timings); before any run finishes, runs at once divide the estimate
        done = self._est_done + in_flight
        speed = elapsed / done if self._est_done > 0 and elapsed > 0 else 1.0 / self.parallel
        if len(known) == remaining:
            return (sum(known) - (in_flight if self._est_done > 0 else 0.0)) * speed
        if self.done:  # remaining runs without an estimate: the mean finished run stands in
            return (sum(known) - in_flight) * speed + (remaining - len(known)) * elapsed / self.done
        return None

    def finished(self, run_id: str, summary: str, path: str | None) -> str:
        self.done += 1
        est = self._pending.pop(run_id, None)
        if est is not None:
            self._est_done += est
        elapsed = self.clock() - self.start
        width = len(str(self.total))
        where = f" -> {path}" if path else ""
        line = (f"[{self.done:>{width}}/{self.total}] {summary}{where} | elapsed {format_duration(elapsed)}, "
                f"ETA {format_duration(self.eta_seconds())}")
        self.echo(line)
        return line


def err(line: str) -> None:
    safe_print(line, file=sys.stderr, flush=True)
