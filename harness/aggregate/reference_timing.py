"""A reference record's timing made comparable with the grid's machine (pure Python, no torch): the
wall time it would have taken on a quiet machine (``discount_contention``, from its CPU time) and on
this machine (``calibrate``, from the two machines' speed probes, harness/speed_probe.py)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from harness import speed_probe


@dataclass
class Reference:
    """A finished record's timing, reduced to what an estimate compares and scales."""

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
    probe: float | None = None  # seconds per speed-probe step of the run's machine, at its threads
    calibrated: bool = False  # timings scaled to the grid's machine by the probes

    @classmethod
    def from_record(cls, record: Mapping[str, Any], spec: Mapping[str, Any], seconds: float) -> Reference:
        """``spec``: the record's spec fields (suite, task, adapter, model, preset, train)."""
        timing = record.get("timing") or {}
        samples = timing.get("samples")
        return cls(spec["suite"], spec["task"], spec["adapter"], spec["model"], spec["preset"], seconds,
                   float(timing.get("train_seconds") or 0.0), float(timing.get("eval_seconds") or 0.0),
                   int(timing.get("steps") or 0), int(timing.get("epochs") or 0),
                   float(samples) if samples else None, spec["train"].get("max_steps"), spec["train"].get("limit"),
                   _threads(record), busy_fraction(record, seconds), _record_probe(record))

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


def busy_fraction(record: Mapping[str, Any], seconds: float) -> float | None:
    """How busy a CPU run kept its threads: CPU seconds / (threads x wall seconds). None without a
    recorded CPU time (older records) or on a GPU, where the CPU mostly waits."""
    cpu = (record.get("timing") or {}).get("cpu_seconds")
    threads = _threads(record)
    device = str((record.get("environment") or {}).get("device") or "cpu")
    if not isinstance(cpu, (int, float)) or cpu <= 0 or not threads or device.startswith("cuda"):
        return None
    return min(1.0, cpu / (threads * seconds))


def discount_contention(refs: list[Reference]) -> list[Reference]:
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


def _record_probe(record: Mapping[str, Any]) -> float | None:
    """Seconds per probe step of a CPU record's machine at the run's threads (None without one)."""
    environment = record.get("environment") or {}
    if str(environment.get("device") or "cpu").startswith("cuda"):
        return None
    return speed_probe.seconds_per_step(environment.get("speed_probe"), _threads(record))


def calibrate(refs: list[Reference], here: float | None, threads: int | None) -> list[Reference]:
    """References probed at ``threads`` torch threads, scaled to the machine whose probe step took
    ``here`` seconds: a machine half as fast takes twice as long for the same run."""
    if here is None:
        return refs
    out = []
    for r in refs:
        if r.probe is None or r.threads != threads:
            out.append(r)
            continue
        factor = here / r.probe
        out.append(replace(r, seconds=r.seconds * factor, train_seconds=r.train_seconds * factor,
                           eval_seconds=r.eval_seconds * factor, calibrated=True))
    return out


def _threads(record: Mapping[str, Any]) -> int | None:
    value = (record.get("environment") or {}).get("torch_threads")
    return value if isinstance(value, int) and value > 0 else None


# The machine the leaderboard's train-time column is normalised to: a quiet one (the run's threads kept
# busy all the time) whose speed-probe step takes this long. 0.5 s is about the 2-core machine the
# shipped seed-42 main-job runs were measured on (0.50-0.54 s per probe step at 2 threads).
REFERENCE_PROBE_SECONDS = 0.5


def quiet_reference_train_seconds(record: Mapping[str, Any]) -> tuple[float | None, str]:
    """A CPU record's train time as it would have been on a quiet reference machine, and how it was
    normalised: the wall time scaled by how busy the run could keep its threads (``busy_fraction``,
    from ``timing.cpu_seconds``: a run sharing its cores took longer for the same CPU work) and by the
    speed probe (``REFERENCE_PROBE_SECONDS`` / the record's probe step: a machine twice as fast took half
    as long). ``how`` is "cpu time + probe", "probe", "cpu time" or "raw" (what was missing is not
    corrected: such cells are flagged), and "gpu" for CUDA runs (not normalised: no probe of GPUs).
    The raw wall time stays in the record (``timing.train_seconds``)."""
    timing = record.get("timing") or {}
    train = timing.get("train_seconds")
    if not isinstance(train, (int, float)) or isinstance(train, bool) or not math.isfinite(train) or train <= 0:
        return None, "raw"
    device = str((record.get("environment") or {}).get("device") or (record.get("memory") or {}).get("device")
                 or "cpu")
    if device.startswith("cuda"):
        return float(train), "gpu"
    seconds = float(train)
    how = []
    total = timing.get("total_seconds")
    busy = busy_fraction(record, float(total)) if isinstance(total, (int, float)) and total > 0 else None
    if busy is not None:
        seconds *= busy
        how.append("cpu time")
    probe = _record_probe(record)
    if probe is not None:
        seconds *= REFERENCE_PROBE_SECONDS / probe
        how.append("probe")
    return seconds, " + ".join(how) or "raw"
