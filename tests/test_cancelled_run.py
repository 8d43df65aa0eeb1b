"""Ctrl-C in the middle of a run: the run is recorded as ``cancelled`` (not lost), the interrupt still
stops the grid, and the next invocation reruns it."""

from __future__ import annotations

import pytest

from harness.grid.run_grid import run_and_record
from harness.pipeline.runner import ExecutionOptions, RunCancelled
from harness.records.store import ResultStore
from harness.registry import SUITES
from harness.status import DONE_STATUSES
from tests.test_zero_shot import SUITE, FakeDualSuite, spec


class InterruptedSuite(FakeDualSuite):
    def training_loss(self, model, batch):
        raise KeyboardInterrupt


@pytest.fixture
def interrupted_suite():
    SUITES.register(SUITE)(InterruptedSuite)
    yield
    SUITES.unregister(SUITE)


def test_an_interrupted_run_is_recorded_as_cancelled(interrupted_suite, tmp_path):
    store = ResultStore(tmp_path)
    run = spec("full")
    with pytest.raises(KeyboardInterrupt):
        run_and_record(run, store, ExecutionOptions(device="cpu", progress=False, cache=False))

    record = store.get(run.key)
    assert record is not None and record["status"] == "cancelled"
    assert record["environment"] and record["finished_at"]
    assert "cancelled" not in DONE_STATUSES  # so the next invocation runs it again
    assert issubclass(RunCancelled, KeyboardInterrupt)


class TerminatedSuite(FakeDualSuite):
    def training_loss(self, model, batch):
        import signal

        from harness.signals import Interrupted

        raise Interrupted(signal.SIGTERM)  # what harness/signals.py raises for SIGTERM


def test_a_run_stopped_by_sigterm_is_recorded_as_cancelled_with_the_signal(tmp_path):
    import pickle

    SUITES.register(SUITE)(TerminatedSuite)
    try:
        store = ResultStore(tmp_path)
        run = spec("full")
        with pytest.raises(RunCancelled) as caught:
            run_and_record(run, store, ExecutionOptions(device="cpu", progress=False, cache=False))
    finally:
        SUITES.unregister(SUITE)
    record = store.get(run.key)
    assert record["status"] == "cancelled" and record["error"]["signal"] == "SIGTERM"
    assert record["error"]["message"] == "stopped by SIGTERM"
    # a pool worker sends it to the driver: the record and the signal (the exit code) survive the trip
    back = pickle.loads(pickle.dumps(caught.value))
    assert back.record == caught.value.record and back.signum == 15
