from __future__ import annotations

import pytest

from harness.errors import HarnessError, UnknownNameError
from harness.registry import ADAPTERS, SUITES, DuplicateNameError, Registry


def test_builtin_plugins_are_discovered():
    assert {"lora", "full", "head"} <= set(ADAPTERS.names())
    assert "glue" in SUITES.names()


def test_builtin_suites_are_modules_or_packages_and_helpers_are_not_plugins(monkeypatch):
    """A suite is a module (suites/toy.py) or a package (suites/glue/) whose __init__ imports its suite
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
        "coco-retrieval": "suites.coco_retrieval.suite", "glue": "suites.glue.suite", "rscd": "suites.rscd.suite",
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


# ---------------------------------------------------------------------------------------------------
# the contract is checked when a plug-in registers (issue 35), not when a run first builds it
# ---------------------------------------------------------------------------------------------------


def _adapter_registry() -> Registry:
    from harness.registry import check_adapter

    return Registry("adapter", "adapters", "harness.nothing", check=check_adapter)


def test_an_adapter_names_its_config_once_as_the_base_type_argument():
    from dataclasses import dataclass

    from adapters._toolkit.lowrank import LowRankAdapter
    from adapters._toolkit.peft_tuner import PeftLoraAdapter
    from harness.adapter import Adapter, AdapterConfig, LowRankConfig

    @dataclass(frozen=True)
    class MyOptions(LowRankConfig):
        scale: float = 2.0

    class Plain(Adapter[MyOptions]):
        pass

    class Peft(PeftLoraAdapter[MyOptions]):
        pass

    class TwoArguments(LowRankAdapter[MyOptions, object]):  # the config is the AdapterConfig argument
        pass

    class Explicit(Adapter[AdapterConfig]):  # a third party's explicit config_cls still wins
        config_cls = MyOptions

    class Inherits(Plain):  # no type argument of its own: the parent's config
        pass

    assert {c.config_cls for c in (Plain, Peft, TwoArguments, Explicit, Inherits)} == {MyOptions}
    reg = _adapter_registry()
    reg.register("my-method")(Peft)
    assert reg.get("my-method") is Peft and Peft(MyOptions(rank=4)).config.scale == 2.0


def test_a_class_that_breaks_the_contract_fails_at_registration():
    from dataclasses import dataclass

    from harness.adapter import Adapter, AdapterConfig

    reg = _adapter_registry()
    with pytest.raises(HarnessError, match=r"adapter 'not-one': class .*NotAnAdapter is not a subclass of harness.adapter.Adapter"):

        @reg.register("not-one")
        class NotAnAdapter:
            pass

    @dataclass  # a dataclass of its own, not frozen and no AdapterConfig: options mutable after hashing
    class Mutable:
        rank: int = 4

    with pytest.raises(HarnessError, match=r"adapter 'mutable' .*its config class .*Mutable is not a frozen dataclass"):

        @reg.register("mutable")
        class UsesMutable(Adapter[AdapterConfig]):
            config_cls = Mutable

    class PlainOptions:  # not an AdapterConfig at all: no type argument is taken from it
        pass

    with pytest.raises(HarnessError, match="is not a frozen dataclass deriving from harness.adapter.AdapterConfig"):

        @reg.register("plain")
        class UsesPlain(Adapter):
            config_cls = PlainOptions

    assert reg.names() == []
    with pytest.raises(HarnessError, match=r"suite 'x': class .*Nope is not a subclass of harness.suite.Suite"):
        from harness.registry import check_suite

        @Registry("suite", "suites", "harness.nothing", check=check_suite).register("x")
        class Nope:
            pass


@pytest.mark.parametrize("name", ["", "LoRA", "my lora", "-lead", "a/b", None])
def test_a_plugin_name_is_lower_case_letters_digits_dots_dashes(name):
    with pytest.raises(HarnessError, match="is not valid: lower-case letters"):
        Registry("adapter", "adapters", "harness.nothing").register(name)


def test_a_third_party_plugin_that_breaks_the_contract_is_skipped_with_one_warning(monkeypatch):
    import harness.registry as registry

    class FakeEP:
        name = "broken"

        def load(self):
            class NotAnAdapter:
                pass

            return NotAnAdapter

    reg = _adapter_registry()
    monkeypatch.setattr(registry, "entry_points", lambda group: [FakeEP()])
    monkeypatch.setattr(reg, "builtin_package", "adapters")
    with pytest.warns(UserWarning, match="could not register adapter plug-in 'broken': adapter 'broken': class"):
        reg.discover()
    assert "broken" not in reg.names() and "lora" not in reg.names()  # builtins register with ADAPTERS, not here
