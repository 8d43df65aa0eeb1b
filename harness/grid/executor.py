"""The executor interface: where the runs of a grid execute. No scheduler of our own.

An executor is one class, registered by name with ``@register_executor("name")``, that the grid hands
each wave of pending runs (a wave: runs whose warm-start parents are recorded). It

- ``check()``s the grid options that concern it (one ``HarnessError`` line for an option that does not
  apply to it), when the options are built: before anything is planned or loaded, and ``check_runs()``
  the pending runs before any starts;
- says its ``layout()`` (the grid header's device and layout, how many runs at once, their threads);
- ``run()``s a wave: executes every run somewhere, and calls ``wave.report(result)`` once per finished run
  (whoever executed it wrote its record through the store's atomic write, or the executor writes the
  record it got back); a run that comes back without a record is reported lost
  (``harness.grid.run_grid.record_lost``); on Ctrl-C or a stop signal (``KeyboardInterrupt``) it cancels
  what is queued or in flight and re-raises.

The built-in executors: ``local`` (harness/grid/executors.py: in this process, or N worker processes),
``ray`` (harness/grid/executor_ray.py), ``slurm`` (harness/grid/executor_slurm.py). A new executor is one
file with one such class (built in: imported by ``harness.grid.executors``, which looks executors up by
name; a third party's: through the entry-point group ``harness.executors``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from harness.errors import HarnessError

if TYPE_CHECKING:
    from harness.grid.run_grid import GridOutcome, RunResult
    from harness.pipeline.runner import ExecutionOptions
    from harness.spec import RunSpec


@dataclass(frozen=True)
class Layout:
    """How a grid runs, for its header and its estimate: ``parallel`` runs at once, each with
    ``threads`` torch threads (None on a GPU, where threads do not set the speed)."""

    device: str
    text: str
    parallel: int
    threads: int | None


@dataclass(frozen=True)
class Wave:
    """What an executor gets for one wave of pending runs."""

    pending: list[RunSpec]
    root: Path  # the results folder (resolved)
    options: ExecutionOptions
    modules: tuple[str, ...]  # plug-in modules a fresh worker process must import (harness.plugins)
    outcome: GridOutcome  # for runs lost without a record (record_lost)
    echo: Callable[[str], None]
    report: Callable[[RunResult], None]  # once per finished run


class Executor:
    """Base class of the executors; ``config`` is the grid's ``ExecutorConfig``."""

    name: ClassVar[str] = ""

    def __init__(self, config: Any):
        self.config = config

    def check(self) -> None:
        """Raise one HarnessError line for a grid option that does not apply to this executor."""

    def check_runs(self, pending: list[RunSpec]) -> None:
        """Raise one HarnessError line for runs this executor cannot execute as configured (before any starts)."""

    @property
    def parallel(self) -> bool:
        """Whether runs leave this process (then the driver prints a line per finished run and no bars)."""
        return True

    def layout(self, options: ExecutionOptions, device: str, cuda: bool) -> Layout:
        raise NotImplementedError

    def run(self, wave: Wave) -> None:
        raise NotImplementedError


EXECUTORS: dict[str, type[Executor]] = {}  # filled by @register_executor; harness.grid.executors looks names up


def register_executor(name: str) -> Callable[[type[Executor]], type[Executor]]:
    def decorator(cls: type[Executor]) -> type[Executor]:
        if not (isinstance(cls, type) and issubclass(cls, Executor)):
            raise HarnessError(f"executor '{name}': {cls!r} is not a subclass of harness.grid.executor.Executor")
        existing = EXECUTORS.get(name)
        if existing is not None and existing is not cls:
            raise HarnessError(f"executor '{name}' is already registered (by {existing.__module__})")
        cls.name = name
        EXECUTORS[name] = cls
        return cls

    return decorator


def refuse_ray_options(config: Any) -> None:
    """The options only the Ray executor reads, refused by the others."""
    if not config.shared_disk or config.data_url:
        raise HarnessError("--no-shared-disk and --ray-data-url apply to --executor ray")
    if config.address is not None:
        raise HarnessError("--address applies to --executor ray")
