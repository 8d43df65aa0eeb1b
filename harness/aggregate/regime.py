"""Tuning trials and regimes: which records are leaderboard rows, and how each row's rate and epoch were
chosen (harness/tuning/study.py writes the ``tuning`` section; harness/pipeline/collect.py the ``metrics.protocol``)."""

from __future__ import annotations

from harness.aggregate._values import section_of
from harness.records.record import RunRecord

REGIMES = ("tuned", "fixed", "fixed, test-selected")


def is_trial(record: RunRecord) -> bool:
    """A tuning trial (harness/tuning/study.py): part of a search, never a leaderboard row."""
    return section_of(record, "tuning").get("role") == "trial"


def regime_of(record: RunRecord) -> str:
    """How a record's score was selected and its rate set: ``tuned`` (at the values `tune` chose on
    the validation split), ``fixed`` (the preset's shared rate, epoch selected on validation) or
    ``fixed, test-selected`` (the papers' protocol: the epoch selected on the test split itself)."""
    if section_of(record, "tuning").get("role") == "tuned":
        return "tuned"
    protocol = section_of(record, "metrics").get("protocol")
    return "fixed" if protocol == "best-validation-epoch" else "fixed, test-selected"
