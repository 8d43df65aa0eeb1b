from __future__ import annotations

import pytest

from harness.errors import HarnessError, UnknownNameError
from harness.registry import ADAPTERS, SUITES, DuplicateNameError, Registry


def test_builtin_plugins_are_discovered():
    assert {"lora", "full", "head"} <= set(ADAPTERS.names())
    assert "glue" in SUITES.names()


def test_builtin_suites_are_modules_or_packages_and_helpers_are_not_plugins(monkeypatch):
    """A suite is a module (suites/glue.py) or a package whose __init__ imports its suite
    (suites/mt_bench/); ``_shared`` (helpers of several suites) is never imported as a plug-in."""
    import importlib
    import sys

    import harness.registry as registry

    imported: list[str] = []
    real_import = importlib.import_module

    def recording(name: str):
        imported.append(name)
        return real_import(name)

    monkeypatch.setattr(registry.importlib, "import_module", recording)
    Registry("suite", "suites", "harness.nothing").discover()
    assert imported == ["suites", "suites.coco_retrieval", "suites.glue", "suites.instructeval", "suites.mt_bench",
                        "suites.rscd", "suites.toy"]
    modules = {n: SUITES.get(n).__module__ for n in SUITES.names() if SUITES.get(n).__module__.startswith("suites.")}
    assert modules == {
        "coco-retrieval": "suites.coco_retrieval", "glue": "suites.glue", "rscd": "suites.rscd",
        "instructeval": "suites.instructeval.suite", "mt-bench": "suites.mt_bench.suite", "toy": "suites.toy",
    }
    assert SUITES.get("mt-bench") is sys.modules["suites.mt_bench"].MTBench


def test_duplicate_name_is_an_error():
    reg = Registry("thing", "adapters", "harness.nothing")

    @reg.register("x")
    class A:
        pass

    with pytest.raises(DuplicateNameError, match="already registered"):

        @reg.register("x")
        class B:
            pass


def test_unknown_name_names_the_closest_and_lists_all():
    with pytest.raises(UnknownNameError) as info:
        ADAPTERS.get("lroa")
    message = str(info.value)
    assert "did you mean 'lora'" in message
    assert "full" in message and "head" in message


def test_resolve_list_all_and_errors():
    assert ADAPTERS.resolve_list("all") == ADAPTERS.names()
    assert ADAPTERS.resolve_list("lora,head,lora") == ["lora", "head"]
    with pytest.raises(HarnessError, match="empty adapter list"):
        ADAPTERS.resolve_list(" , ")


def test_entry_point_plugins_are_loaded(monkeypatch):
    import harness.registry as registry

    class FakeEP:
        name = "thirdparty"

        def load(self):
            class ThirdParty:
                pass

            return ThirdParty

    reg = Registry("adapter", "adapters", "harness.adapters")
    monkeypatch.setattr(registry, "entry_points", lambda group: [FakeEP()] if group == "harness.adapters" else [])
    reg.discover()
    assert "thirdparty" in reg.names()
