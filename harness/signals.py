"""SIGTERM and SIGHUP handled like Ctrl-C (SIGINT), in the driver and in every pool worker.

SLURM, ``docker stop`` and systemd stop a job with SIGTERM (then SIGKILL after a grace period); a
closed terminal sends SIGHUP. Python's default for both is to die at once, which skips every
``finally``: no ``cancelled`` record, a leaked ``harness-run-*`` folder, orphaned workers. Here they
raise ``Interrupted`` (a KeyboardInterrupt) in the main thread instead, so the code that already
handles Ctrl-C (the cancelled record, the temporary folder, stopping the pool) handles them too.

The first signal interrupts; later ones are ignored so that the cleanup it started (writing the
cancelled record, stopping the workers) is not cut short; SIGKILL remains the way to force it, and in
the driver a second Ctrl-C (except while a record is being written).
Inside ``deferred()`` (a record being written) a signal is held and raised when the block ends.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any

HANDLED = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)
_state: dict[str, Any] = {"received": None, "deferring": 0, "pending": None, "idle_exit": False, "running": 0}


class Interrupted(KeyboardInterrupt):
    """A stop signal, raised where the program was; ``signum`` says which (exit code 128 + signum)."""

    def __init__(self, signum: int):
        super().__init__(f"stopped by {signal_name(signum)}")
        self.signum = signum

    def __reduce__(self) -> tuple[Any, ...]:  # travels from a pool worker to the driver
        return (Interrupted, (self.signum,))


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def exit_code(exc: BaseException) -> int:
    """The conventional exit status of a process stopped by this interrupt: 128 + the signal."""
    return 128 + int(getattr(exc, "signum", signal.SIGINT))


def received() -> int | None:
    """The stop signal this process got, if any."""
    return _state["received"]


def _handler(signum: int, frame: Any) -> None:
    if _state["received"] is not None:
        if signum == signal.SIGINT and not _state["deferring"] and not _state["idle_exit"]:
            raise KeyboardInterrupt  # a second Ctrl-C at the driver's terminal: stop waiting for the cleanup
        return  # already stopping: let the cleanup finish
    _state["received"] = signum
    if _state["deferring"]:
        _state["pending"] = signum
        return
    if _state["idle_exit"] and not _state["running"]:
        raise SystemExit(128 + signum)  # a pool worker between runs: nothing to clean up, exit quietly
    raise Interrupted(signum)


@contextlib.contextmanager
def interrupt_on_signals(signals: tuple[int, ...] = HANDLED) -> Iterator[None]:
    """Within the block, these signals raise ``Interrupted`` in the main thread; the previous handlers
    come back afterwards. Outside the main thread (where Python allows no handlers) it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    reset()  # a new grid in this process
    previous = {s: signal.signal(s, _handler) for s in signals}
    try:
        yield
    finally:
        for s, old in previous.items():
            signal.signal(s, old)


def install_in_worker(signals: tuple[int, ...] = HANDLED) -> None:
    """For a pool worker process, for its whole life (a second Ctrl-C does not cut the cancelled
    record's write short there). A worker signalled between runs exits at once."""
    _state["idle_exit"] = True
    for s in signals:
        signal.signal(s, _handler)


def is_running() -> bool:
    return bool(_state["running"])


@contextlib.contextmanager
def running() -> Iterator[None]:
    """A run is executing (a stop signal interrupts it instead of exiting the worker)."""
    _state["running"] += 1
    try:
        yield
    finally:
        _state["running"] -= 1


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Hold a stop signal that arrives inside the block (a record being written) until it ends."""
    _state["deferring"] += 1
    try:
        yield
    finally:
        _state["deferring"] -= 1
        pending, _state["pending"] = _state["pending"], None
        if pending is not None and not _state["deferring"]:
            raise Interrupted(pending)


def reset() -> None:
    """Forget a received signal (tests run several grids in one process)."""
    _state.update(received=None, deferring=0, pending=None)
