"""Records are untrusted text (issue 36, class 6): of duplicated records the one that finished last wins
by its parsed time, never by comparing text (a malformed timestamp is the oldest), and the warning says
when the copies' scores differ; a seed that diverged is said in the table cell ("n=2 (1 diverged)"),
not shown as a merely missing seed."""

from __future__ import annotations

import pytest

from harness import aggregate
from harness.aggregate.formatting import format_cell
from harness.aggregate.identity import dedupe_records, finished_time
from tests.record_factory import make_record


def _copy(score: float, finished_at, seed: int = 1):
    record = make_record(score=score, seed=seed)
    record["finished_at"] = finished_at
    return record


@pytest.mark.parametrize("bad", ["9999-garbage", "not a time", "", None, 12345, "2026-13-45T99:00:00"])
def test_a_copy_with_a_malformed_timestamp_never_beats_the_real_record(bad):
    real = _copy(0.81, "2026-03-01T10:00:00+00:00")
    forged = _copy(0.99, bad)
    for order in ([real, forged], [forged, real]):
        kept, duplicates = dedupe_records(order)
        assert len(kept) == 1 and kept[0]["metrics"]["score"] == 0.81
        assert "their scores differ" in duplicates[0] and "0.99" in duplicates[0] and "0.81" in duplicates[0]


def test_timestamps_compare_as_times_not_text():
    # as text "2026-03-01T09:00:00+00:00" > "2026-03-01T10:00:00+02:00", as times it is later (09 UTC > 08 UTC)
    later = _copy(0.7, "2026-03-01T09:00:00+00:00")
    earlier = _copy(0.6, "2026-03-01T10:00:00+02:00")
    kept, _ = dedupe_records([earlier, later])
    assert kept[0]["metrics"]["score"] == 0.7
    naive, aware = _copy(0.5, "2026-03-01T11:00:00"), _copy(0.4, "2026-03-01T10:30:00Z")
    assert dedupe_records([aware, naive])[0][0]["metrics"]["score"] == 0.5  # no zone: UTC
    assert finished_time({"finished_at": "garbage"}) < finished_time(later)


def test_identical_copies_warn_without_a_score_difference():
    a, b = _copy(0.81, "2026-03-01T10:00:00+00:00"), _copy(0.81, "2026-03-02T10:00:00+00:00")
    _, duplicates = dedupe_records([a, b])
    assert duplicates and "(2 records)" in duplicates[0] and "differ" not in duplicates[0]


@pytest.mark.parametrize("args, expected", [
    ((0.8123, 0.79, 0.83, 2, 2, 1), "0.81 [0.79, 0.83] n=2 (1 diverged)"),
    ((0.8123, None, None, 1, 2, 2), "0.81 (1 seed, 2 diverged)"),
    ((None, None, None, 0, 2, 3), "– (3 diverged)"),
    ((0.8123, 0.79, 0.83, 3, 2, 0), "0.81 [0.79, 0.83] n=3"),
])
def test_the_cell_says_seeds_diverged(args, expected):
    mean, low, high, n, digits, diverged = args
    assert format_cell(mean, low, high, n, digits, diverged=diverged) == expected


def test_a_diverged_seed_shows_in_markdown_and_latex_tables():
    records = [make_record(seed=s, score=0.6 + s / 100) for s in (1, 2, 3)]
    records += [make_record(adapter="dora", seed=s, score=0.7 + s / 100) for s in (1, 2)]
    gone = make_record(adapter="dora", seed=3, score=None, status="diverged")
    gone["error"] = {"type": "DivergedError", "message": "loss exploded", "reason": "loss exploded", "step": 40,
                     "traceback": None}
    records.append(gone)
    frame = aggregate.load_frame(records)
    files = aggregate.build_report(frame, baseline="lora", formats=["md", "latex"])
    md = next(text for name, text in files.items() if name.endswith(".md") and name != "leaderboard.md")
    tex = next(text for name, text in files.items() if name.endswith(".tex"))
    dora_md = next(line for line in md.splitlines() if "dora" in line)
    assert "| 2 (1 diverged) |" in dora_md, md  # n=2, the third seed said diverged
    assert "1 diverged" in next(line for line in tex.splitlines() if "dora" in line), tex
    assert "diverged" not in next(line for line in md.splitlines() if "| lora" in line or "lora r" in line)
