"""Name -> plug-in registries for adapters and suites.

Built-in plug-ins live in the top-level ``adapters`` and ``suites`` packages and are discovered by
importing every module there; third-party packages register through the entry-point groups
``harness.adapters`` and ``harness.suites`` (the entry point loads a module or an object whose import
registers it). Registration is by decorator; a duplicate name is an error.
"""

from __future__ import annotations

import importlib
import pkgutil
import warnings
from collections.abc import Callable, Iterator
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Generic, TypeVar

from harness.errors import HarnessError, UnknownNameError

if TYPE_CHECKING:  # annotations only: importing the contracts here would import torch with the registry
    from harness.adapter import Adapter
    from harness.suite import Suite

T = TypeVar("T")


class DuplicateNameError(HarnessError):
    pass


class Registry(Generic[T]):
    """A name -> class mapping filled by the ``register`` decorator."""

    def __init__(self, kind: str, builtin_package: str, entry_point_group: str):
        self.kind = kind
        self.builtin_package = builtin_package
        self.entry_point_group = entry_point_group
        self._items: dict[str, T] = {}
        self._discovered = False

    def register(self, name: str) -> Callable[[T], T]:
        if not name or name != name.strip().lower() or " " in name:
            raise ValueError(f"{self.kind} names are lowercase without spaces, got {name!r}")

        def decorator(obj: T) -> T:
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
                self.register(ep.name)(loaded)

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


ADAPTERS: Registry[type[Adapter]] = Registry("adapter", "adapters", "harness.adapters")
SUITES: Registry[type[Suite]] = Registry("suite", "suites", "harness.suites")

register_adapter = ADAPTERS.register
register_suite = SUITES.register
