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
