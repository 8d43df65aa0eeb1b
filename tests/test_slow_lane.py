"""The fast lane's list of slow tests (tests/slow_tests.txt, scripts/slow_tests.py, tests/conftest.py)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("slow_tests", ROOT / "scripts" / "slow_tests.py")
slow_tests = importlib.util.module_from_spec(spec)
spec.loader.exec_module(slow_tests)

DURATIONS = """
============================= slowest durations ==============================
12.50s call     tests/test_a.py::test_big[case one]
0.40s setup    tests/test_a.py::test_big[case one]
3.00s call     tests/test_b.py::test_mid
0.20s call     tests/test_b.py::test_small
0.10s teardown tests/test_b.py::test_small
(12 durations < 0.005s hidden.  Use -vv to show these durations.)
"""


def test_durations_are_summed_per_test_including_ids_with_spaces():
    assert slow_tests.durations(DURATIONS) == pytest.approx(
        {"tests/test_a.py::test_big[case one]": 12.9, "tests/test_b.py::test_mid": 3.0, "tests/test_b.py::test_small": 0.3})


def test_the_fastest_tests_within_the_budget_stay_fast():
    per_test = slow_tests.durations(DURATIONS)
    slow, total = slow_tests.split(per_test, budget=4.0)
    assert slow == ["tests/test_a.py::test_big[case one]"] and total == pytest.approx(3.3)
    assert slow_tests.split(per_test, budget=100.0) == ([], pytest.approx(16.2))


def test_a_listed_test_is_marked_slow_and_the_list_names_existing_tests(request: pytest.FixtureRequest):
    from tests.conftest import _listed_slow_tests

    listed = _listed_slow_tests()
    for nodeid in listed:  # a stale entry (a renamed or removed test) would silently stop counting
        path = ROOT / nodeid.split("::", 1)[0]
        assert path.is_file(), f"tests/slow_tests.txt lists {nodeid}, whose file does not exist"
        # the test function, or the test class a (perhaps inherited) method runs in, is in that file
        name = nodeid.split("[", 1)[0].split("::")[1]
        text = path.read_text(encoding="utf-8")
        assert f"def {name}(" in text or f"class {name}(" in text or f"class {name}:" in text, nodeid
    own = request.node
    assert (own.get_closest_marker("slow") is not None) == (own.nodeid in listed or own.nodeid.split("[")[0] in listed)
