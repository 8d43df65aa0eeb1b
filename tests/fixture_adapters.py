"""Adapters that exist only for the tests (tests/fixtures_*.py), registered while the contract tests
(tests/test_contract.py, parametrised over the registry) are collected and run, and unregistered
otherwise: `harness ls adapters`, `--adapters all` and every other test module never see them.

tests/conftest.py imports the two hooks below, which is how pytest finds them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest

from harness.registry import ADAPTERS
from tests.fixtures_rslora import RsLoRA

# named apart from what docs/adding-an-adapter.md has a user write (adapters/rslora.py registers "rslora"):
# a user who follows it must not collide with a fixture when the tests collect
FIXTURE_ADAPTERS = {"test-rslora": RsLoRA}
CONTRACT_MODULE = "test_contract.py"


@contextlib.contextmanager
def fixture_adapters_registered() -> Iterator[None]:
    for name, cls in FIXTURE_ADAPTERS.items():
        ADAPTERS.register(name)(cls)
    try:
        yield
    finally:
        for name in FIXTURE_ADAPTERS:
            ADAPTERS.unregister(name)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector):  # noqa: ANN201 (a hook wrapper)
    """The contract module reads the registry when it is imported (its parametrisation): register
    around its collection only."""
    if isinstance(collector, pytest.Module) and collector.path.name == CONTRACT_MODULE:
        with fixture_adapters_registered():
            yield
    else:
        yield


@pytest.fixture(autouse=True, scope="module")
def _fixture_adapters_for_the_contract(request: pytest.FixtureRequest) -> Iterator[None]:
    """...and while its tests run (each test looks its adapter up by name)."""
    if request.path.name != CONTRACT_MODULE:
        yield
        return
    with fixture_adapters_registered():
        yield
