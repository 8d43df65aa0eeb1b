from __future__ import annotations

from pathlib import Path

import pytest

from tests.fixture_adapters import _fixture_adapters_for_the_contract, pytest_make_collect_report  # noqa: F401

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    # Tiny models are far faster on one thread, and CI has 2 cores shared with nothing else.
    import torch

    torch.set_num_threads(1)
    yield


@pytest.fixture(scope="session")
def shared_data() -> Path:
    assert SHARED_DATA.is_dir(), f"the real data is expected at {SHARED_DATA} (see the README)"
    return SHARED_DATA


# The fast lane (`pytest -m "not slow"`, docs/testing.md): besides the tests marked @pytest.mark.slow in
# their files, the tests listed in tests/slow_tests.txt are slow. That list is measured, not guessed:
# `python scripts/slow_tests.py DURATIONS.txt` rewrites it from a `pytest --durations=0` run, keeping the
# fastest tests whose total stays inside the fast lane's budget. CI runs every test.
SLOW_LIST = Path(__file__).with_name("slow_tests.txt")


def _listed_slow_tests() -> frozenset[str]:
    if not SLOW_LIST.is_file():
        return frozenset()
    lines = (line.split("#", 1)[0].strip() for line in SLOW_LIST.read_text(encoding="utf-8").splitlines())
    return frozenset(line for line in lines if line)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    slow = _listed_slow_tests()
    for item in items:
        # a parametrised test is listed by its full id or, for all its cases, by its id without parameters
        if item.nodeid in slow or item.nodeid.split("[", 1)[0] in slow:
            item.add_marker(pytest.mark.slow)
