"""Checkpoints inside a run, so that a run that is cancelled, preempted (SLURM's SIGTERM, a requeue) or
killed resumes from its last checkpoint and ends with the same record as an uninterrupted run.

A checkpoint is one ``torch.save`` file, written atomically (a temporary file in the same folder, fsync,
``os.replace``) under ``<results>/.checkpoints/<suite>/<task>/<adapter>-<hash>-seed<seed>.pt`` (the
record's path with ``.pt``; hidden, so never read as a record). It holds everything the rest of the run
depends on: the trainable parameters and buffers (adapter and head), the optimiser and the schedule, the
RNG states (python, numpy, torch, CUDA), the step, epoch and batches consumed in the current epoch, the
per-epoch scores, the validation state (the selected epoch and its state), the loss log and the adapter's
own training state (``Adapter.training_state``). The frozen base is rebuilt by the run's own setup
(seeded), never saved.

It is written at the end of every epoch (after its evaluation) and, with ``--checkpoint-every N``, every
N optimiser steps. A resumed epoch draws the same batches (suites seed the batch order by seed and
epoch) and skips those already consumed; the RNG states are restored after the skip. The checkpoint is
removed once the run's record is written, unless that record says cancelled (the next invocation
resumes from it). Whether to checkpoint is an execution option (``ExecutionOptions.checkpoint_dir``):
it never enters a run's identity.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.records.record import record_relpath

CHECKPOINT_DIR = ".checkpoints"  # under the results folder
FORMAT = 1

# Fault injection for the tests: called after every optimiser step as (run, step); it may raise (a
# cancelled run) or kill the process. ``HARNESS_FAULT_KILL_AT_STEP=N`` kills the process with SIGKILL
# right after step N (once per run: a marker file beside its checkpoint says it happened; with
# ``HARNESS_FAULT_KILL_RUN`` only the runs whose id contains it), for the subprocess tests.
FAULT_HOOK: Callable[[Any, int], None] | None = None


def checkpoint_path(root: str | Path, key: Any) -> Path:
    return Path(root) / record_relpath(key).with_suffix(".pt")


def save_atomic(state: dict[str, Any], path: Path) -> None:
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-ckpt-", suffix=".pt", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(state, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def save(state: dict[str, Any], path: Path, keeper: Any = None) -> None:
    """To ``path`` (atomically), or, with a keeper (a Ray actor on the driver's node: Ray without a
    shared disk), to the keeper, so that a run whose node dies resumes on another node."""
    if keeper is None:
        save_atomic(state, path)
        return
    import io

    import ray
    import torch

    buffer = io.BytesIO()
    torch.save(state, buffer)
    ray.get(keeper.put.remote(state["run_id"], buffer.getvalue()))  # held before training goes on


def load(path: Path, run_id: str, config_hash: str, keeper: Any = None) -> dict[str, Any] | None:
    """The checkpoint of this run, or None (none, unreadable, or another run's/format's: removed)."""
    import io

    import torch

    if keeper is not None:
        import ray

        payload = ray.get(keeper.get.remote(run_id))
        source: Any = io.BytesIO(payload) if payload else None
    else:
        source = path if path.is_file() else None
    if source is None:
        return None
    try:
        state = torch.load(source, map_location="cpu", weights_only=False)
    except Exception:  # a torn or foreign file: start from scratch
        state = None
    if not isinstance(state, dict) or state.get("format") != FORMAT or state.get("run_id") != run_id \
            or state.get("config_hash") != config_hash:
        remove(path, keeper, run_id)
        return None
    return state


def remove(path: Path | None, keeper: Any = None, run_id: str | None = None) -> None:
    if keeper is not None and run_id is not None:
        import ray

        ray.get(keeper.drop.remote(run_id))
    if path is None:
        return
    for stale in (path, path.with_suffix(".killed")):
        with contextlib.suppress(OSError):
            stale.unlink()
    # empty folders up to .checkpoints go too
    folder = path.parent
    while folder.name and folder.name != CHECKPOINT_DIR:
        try:
            folder.rmdir()
        except OSError:
            break
        folder = folder.parent
    if folder.name == CHECKPOINT_DIR:
        with contextlib.suppress(OSError):
            folder.rmdir()


class CheckpointKeeper:
    """A Ray actor on the driver's node that holds the in-run checkpoints of tasks running on nodes
    without a shared disk (in its memory: nothing is written anywhere), by run id."""

    def __init__(self) -> None:
        self.held: dict[str, bytes] = {}

    def put(self, run_id: str, payload: bytes) -> int:
        self.held[run_id] = payload
        return len(payload)

    def get(self, run_id: str) -> bytes | None:
        return self.held.get(run_id)

    def drop(self, run_id: str) -> None:
        self.held.pop(run_id, None)

    def held_runs(self) -> list[str]:
        return sorted(self.held)


def rng_states() -> dict[str, Any]:
    import random

    import numpy as np
    import torch

    states: dict[str, Any] = {"python": random.getstate(), "numpy": np.random.get_state(),
                              "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    import random

    import numpy as np
    import torch

    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def fault_after_step(run: Any, step: int) -> None:
    """The fault-injection point (after optimiser step ``step``, 1-based)."""
    if FAULT_HOOK is not None:
        FAULT_HOOK(run, step)
    target = os.environ.get("HARNESS_FAULT_KILL_AT_STEP")
    only = os.environ.get("HARNESS_FAULT_KILL_RUN", "")  # only runs whose id contains this
    if target and int(target) == step and run.checkpoint_file is not None and only in run.spec.run_id:
        marker = run.checkpoint_file.with_suffix(".killed")
        if not marker.exists():
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.touch()
            import signal

            os.kill(os.getpid(), signal.SIGKILL)
