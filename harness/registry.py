"""Name -> plug-in registries for adapters and suites.

Built-in plug-ins live in the top-level ``adapters`` and ``suites`` packages and are discovered by
importing every module there; third-party packages register through the entry-point groups
``harness.adapters`` and ``harness.suites`` (the entry point loads a module or an object whose import
registers it). Registration is by decorator; a duplicate name is an error, and so is a class that does
not keep the contract (an adapter that is no ``harness.adapter.Adapter`` or whose config is no frozen
``AdapterConfig`` dataclass, a suite that is no ``harness.suite.Suite``): checked when the class is
registered, at import, as lm-evaluation-harness's registry does, not when a run first builds it.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
import re
import warnings
from collections.abc import Callable, Iterator
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Generic, TypeVar

from harness.errors import HarnessError, UnknownNameError

if TYPE_CHECKING:  # annotations only: importing the contracts here would import torch with the registry
    from harness.adapter import Adapter
    from harness.suite import Suite

T = TypeVar("T")
NAME = re.compile(r"[a-z0-9][a-z0-9._-]*")


class DuplicateNameError(HarnessError):
    pass


class Registry(Generic[T]):
    """A name -> class mapping filled by the ``register`` decorator."""

    def __init__(self, kind: str, builtin_package: str, entry_point_group: str,
                 check: Callable[[str, object], None] | None = None):
        self.kind = kind
        self.check = check  # raises a one-line HarnessError for an object that breaks the contract
        self.builtin_package = builtin_package
        self.entry_point_group = entry_point_group
        self._items: dict[str, T] = {}
        self._discovered = False

    def register(self, name: str) -> Callable[[T], T]:
        if not isinstance(name, str) or not NAME.fullmatch(name):
            raise HarnessError(f"{self.kind} name {name!r} is not valid: lower-case letters, digits, '.', '_' and '-', "
                               "starting with a letter or a digit (e.g. 'my-lora')")

        def decorator(obj: T) -> T:
            if self.check is not None:
                self.check(name, obj)
            existing = self._items.get(name)
            if existing is not None and existing is not obj:
                where = getattr(existing, "__module__", "?")
                raise DuplicateNameError(f"{self.kind} '{name}' is already registered (by {where})")
            self._items[name] = obj
            try:
                obj.name = name  # type: ignore[attr-defined]
                # an adapter that declares no display name of its own (an inherited one would name its parent)
                if hasattr(obj, "display_name") and not vars(obj).get("display_name"):
                    obj.display_name = name  # type: ignore[attr-defined]
            except (AttributeError, TypeError):
                pass
            return obj

        return decorator

    def unregister(self, name: str) -> None:
        """For tests that register throw-away plug-ins."""
        self._items.pop(name, None)

    def discover(self) -> None:
        if self._discovered:
            return
        self._discovered = True
        package = importlib.import_module(self.builtin_package)
        for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name):
            if not info.name.startswith("_"):
                importlib.import_module(f"{self.builtin_package}.{info.name}")
        for ep in entry_points(group=self.entry_point_group):
            try:
                loaded = ep.load()
            except Exception as exc:  # a broken third-party plug-in must not break the harness
                warnings.warn(f"could not load {self.kind} plug-in {ep.name!r}: {exc}", stacklevel=2)
                continue
            if ep.name not in self._items and isinstance(loaded, type):
                try:
                    self.register(ep.name)(loaded)
                except HarnessError as exc:  # the contract broken: said in one line, the others still load
                    warnings.warn(f"could not register {self.kind} plug-in {ep.name!r}: {exc}", stacklevel=2)

    def get(self, name: str) -> T:
        self.discover()
        try:
            return self._items[name]
        except KeyError:
            raise UnknownNameError(self.kind, name, self._items) from None

    def names(self) -> list[str]:
        self.discover()
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        self.discover()
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def resolve_list(self, spec: str | list[str]) -> list[str]:
        """'all' or a comma list -> validated names, in the given order, without duplicates."""
        items = [s.strip() for s in spec.split(",")] if isinstance(spec, str) else list(spec)
        items = [s for s in items if s]
        if not items:
            raise HarnessError(f"empty {self.kind} list; known {self.kind}s: {', '.join(self.names())}")
        if items == ["all"]:
            return self.names()
        out: list[str] = []
        for item in items:
            self.get(item)
            if item not in out:
                out.append(item)
        return out


def check_adapter(name: str, obj: object) -> None:
    """An adapter is a subclass of harness.adapter.Adapter whose config class (its base's type argument, or
    ``config_cls``) is a frozen dataclass deriving from AdapterConfig."""
    from harness.adapter import Adapter, AdapterConfig

    if not (isinstance(obj, type) and issubclass(obj, Adapter)):
        raise HarnessError(f"adapter '{name}': {_what(obj)} is not a subclass of harness.adapter.Adapter "
                           "(write: class MyAdapter(Adapter[MyOptions]))")
    config = obj.config_cls
    params = getattr(config, "__dataclass_params__", None)
    if not (isinstance(config, type) and issubclass(config, AdapterConfig) and dataclasses.is_dataclass(config)
            and params is not None and params.frozen):
        raise HarnessError(f"adapter '{name}' ({_what(obj)}): its config {_what(config)} is not a frozen dataclass "
                           "deriving from harness.adapter.AdapterConfig (name it as the type argument: "
                           "Adapter[MyOptions], with @dataclass(frozen=True) class MyOptions(AdapterConfig))")


def check_suite(name: str, obj: object) -> None:
    from harness.suite import Suite

    if not (isinstance(obj, type) and issubclass(obj, Suite)):
        raise HarnessError(f"suite '{name}': {_what(obj)} is not a subclass of harness.suite.Suite")


def _what(obj: object) -> str:
    if isinstance(obj, type):
        return f"class {obj.__module__}.{obj.__qualname__}"
    return f"{type(obj).__name__} {obj!r}"[:120]


ADAPTERS: Registry[type[Adapter]] = Registry("adapter", "adapters", "harness.adapters", check=check_adapter)
SUITES: Registry[type[Suite]] = Registry("suite", "suites", "harness.suites", check=check_suite)

register_adapter = ADAPTERS.register
register_suite = SUITES.register
