"""One status vocabulary (harness/status.py) that records, resume and the tables all read."""

from __future__ import annotations

from harness import aggregate, record, spec, store
from harness.status import ALL_STATUSES, DONE_STATUSES, UNSUCCESSFUL_STATUSES, Status


def test_the_vocabulary_and_what_resume_skips():
    assert ALL_STATUSES == ("success", "failed", "diverged", "oom", "cancelled")
    # diverged and oom are results about the method (done); failed and cancelled are rerun
    assert DONE_STATUSES == ("success", "diverged", "oom")
    assert not Status.FAILED.done and not Status.CANCELLED.done and Status("oom").done
    assert UNSUCCESSFUL_STATUSES == tuple(s for s in ALL_STATUSES if s != "success")
    assert Status.SUCCESS == "success"  # compares equal to the text a record holds


def test_every_module_reads_the_one_vocabulary():
    assert record.STATUSES is ALL_STATUSES and spec.RECORD_STATUSES is ALL_STATUSES
    assert store.DONE_STATUSES is DONE_STATUSES and aggregate.FAILURE_STATUSES is UNSUCCESSFUL_STATUSES


def test_a_specs_key_is_its_records_key():
    from harness.record import KEY_FIELDS
    from harness.runner import base_record
    from harness.spec import RunSpec

    spec = RunSpec(suite="glue", task="rte", adapter="lora", model="minilm-l6", preset="cpu", seed=7)
    assert spec.key == base_record(spec)["key"] and tuple(spec.key) == KEY_FIELDS
