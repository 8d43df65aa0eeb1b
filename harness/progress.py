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

Records that carry their CPU time (``timing.cpu_seconds``) also say how busy the machine let them be:
a CPU run whose threads got half a core each while other jobs ran took twice its quiet wall time, so
its timing is scaled to the busiest comparable record's (``busy_fraction``, ``_discount_contention``). Older records
have no CPU time and count as they are.
"""

from __future__ import annotations

import math
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from harness.status import Status

# the shipped records of this checkout: timing references for a grid into an empty results folder
SHIPPED_RESULTS = Path(__file__).resolve().parents[1] / "results"


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
class _Ref:
    suite: str
    task: str
    adapter: str
    model: str
    preset: str
    seconds: float  # total_seconds of the run
    train_seconds: float
    eval_seconds: float
    steps: int
    epochs: int
    samples: float | None
    max_steps: int | None
    limit: int | None
    threads: int | None = None  # torch threads the run used (environment.torch_threads)
    busy: float | None = None  # cpu_seconds / (threads x seconds) of a CPU run that recorded its CPU time

    def predict(self, train: Mapping[str, Any]) -> float | None:
        """This run's time for a budget that may stop after ``max_steps``: the training part scales
        with the steps, the evaluations with how many epochs end (one when the run stops inside the
        first epoch); loading and the rest stay."""
        if train.get("limit") != self.limit:
            return None
        want = train.get("max_steps")
        if not want:
            return None if self.max_steps else self.seconds
        if not self.steps:
            return None
        ratio = min(1.0, want / self.steps)
        evals = max(1, self.epochs)
        steps_per_epoch = self.steps / evals
        evals_planned = min(evals, max(1, math.ceil(want / steps_per_epoch)))
        fixed = self.seconds - self.train_seconds - self.eval_seconds
        return fixed + self.train_seconds * ratio + self.eval_seconds * evals_planned / evals


@dataclass
class Estimator:
    """Seconds per run from comparable finished records (see the module docstring)."""

    refs: list[_Ref] = field(default_factory=list)

    @classmethod
    def from_records(cls, records: Iterable[Mapping[str, Any]]) -> Estimator:
        refs: list[_Ref] = []
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
            samples = timing.get("samples")
            refs.append(_Ref(f["suite"], f["task"], f["adapter"], f["model"], f["preset"], float(seconds),
                             float(timing.get("train_seconds") or 0.0), float(timing.get("eval_seconds") or 0.0),
                             int(timing.get("steps") or 0), int(timing.get("epochs") or 0),
                             float(samples) if samples else None, f["train"].get("max_steps"), f["train"].get("limit"),
                             _threads(record), busy_fraction(record, float(seconds))))
        return cls(_discount_contention(refs))

    def _predictions(self, f: Mapping[str, Any], threads: int | None = None, **same: bool) -> list[tuple[_Ref, float]]:
        """Predictions of the refs that match ``f`` on the ``same`` fields: those run with ``threads``
        torch threads when there are any, else all of them scaled to ``threads`` (``_thread_ratio``)."""
        out = []
        for r in self.refs:
            if all(getattr(r, k) == f[k] for k, wanted in same.items() if wanted):
                value = r.predict(f["train"])
                if value is not None:
                    out.append((r, value))
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
        by_task: dict[tuple[str, str], list[_Ref]] = {}
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
    from harness.store import ResultStore

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
        return text + "; the machine's load changes it)"


def busy_fraction(record: Mapping[str, Any], seconds: float) -> float | None:
    """How busy a CPU run kept its threads: CPU seconds / (threads x wall seconds). None without a
    recorded CPU time (older records) or on a GPU, where the CPU mostly waits."""
    cpu = (record.get("timing") or {}).get("cpu_seconds")
    threads = _threads(record)
    device = str((record.get("environment") or {}).get("device") or "cpu")
    if not isinstance(cpu, (int, float)) or cpu <= 0 or not threads or device.startswith("cuda"):
        return None
    return min(1.0, cpu / (threads * seconds))


def _discount_contention(refs: list[_Ref]) -> list[_Ref]:
    """A run that shared its cores with other jobs got less CPU per wall second: its CPU time stays,
    its wall time grows. Each such reference is scaled to the wall time it would have taken as busy
    as the busiest reference with the same torch threads (the quietest conditions on record), so
    that timings recorded while the machine was shared do not inflate a quiet machine's estimate."""
    quiet: dict[int | None, float] = {}
    for r in refs:
        if r.busy is not None:  # busy_fraction gives one only with threads and a positive CPU time
            quiet[r.threads] = max(quiet.get(r.threads, 0.0), r.busy)
    out = []
    for r in refs:
        if r.busy is None:
            out.append(r)
            continue
        factor = r.busy / quiet[r.threads]  # <= 1: the busiest of its thread count is in quiet
        out.append(replace(r, seconds=r.seconds * factor, train_seconds=r.train_seconds * factor,
                           eval_seconds=r.eval_seconds * factor))
    return out


def _threads(record: Mapping[str, Any]) -> int | None:
    value = (record.get("environment") or {}).get("torch_threads")
    return value if isinstance(value, int) and value > 0 else None


def estimate_grid(pending: Sequence[Any], estimator: Estimator, threads: int | None = None) -> GridEstimate:
    """Each pending run's estimate at ``threads`` torch threads per run (None on a GPU: unscaled)."""
    per_run = tuple(estimator.estimate(spec, threads) for spec in pending)
    unknown = sum(s is None for s in per_run)
    total = None if unknown else sum(s for s in per_run if s is not None)
    return GridEstimate(total, len(per_run) - unknown, unknown, per_run)


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
    print(line, file=sys.stderr, flush=True)
