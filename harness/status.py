"""The status vocabulary of a run record, in one place (records, store, resume, aggregation and the CLI
all read it from here). Pure Python: the app imports it."""

from __future__ import annotations

from enum import Enum


class Status(str, Enum):
    """How a run ended. ``str`` values, so a status compares equal to the text a record holds."""

    SUCCESS = "success"
    FAILED = "failed"  # an error in the harness, the suite or the adapter: rerun by the next invocation
    # the loss became NaN or infinite, exploded far above its start, or the primary metric came out
    # undefined (harness.pipeline.loss_log): a result about the method, done
    DIVERGED = "diverged"
    OOM = "oom"  # out of device memory: a result about the method at this budget, done
    CANCELLED = "cancelled"  # Ctrl-C, SIGTERM or SIGHUP: rerun by the next invocation

    @property
    def done(self) -> bool:
        """Whether resume skips a run with this status (``--force`` reruns it anyway)."""
        return self in (Status.SUCCESS, Status.DIVERGED, Status.OOM)


ALL_STATUSES: tuple[str, ...] = tuple(s.value for s in Status)
DONE_STATUSES: tuple[str, ...] = tuple(s.value for s in Status if s.done)
# every way a run can end without a score: counted per cell of the leaderboard
UNSUCCESSFUL_STATUSES: tuple[str, ...] = tuple(s.value for s in Status if s is not Status.SUCCESS)
