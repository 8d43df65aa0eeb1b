"""Plug-ins registered outside the built-in packages: a fresh worker process (a pool worker, a Ray
task) imports them by module name before it runs, so they must be importable there (installed, or on
PYTHONPATH).
"""

from __future__ import annotations

import importlib

from harness.errors import HarnessError
from harness.registry import ADAPTERS, SUITES
from harness.spec import RunSpec

BUILTIN_PACKAGES = ("adapters", "suites", "harness")


def plugin_modules(specs: list[RunSpec]) -> tuple[str, ...]:
    """Modules that register the suites and adapters of these runs outside the built-in packages
    (which every process discovers by itself); a fresh worker imports them before running."""
    names: list[str] = []
    for spec in specs:
        for obj in (SUITES.get(spec.suite), ADAPTERS.get(spec.adapter)):
            module = getattr(obj, "__module__", "")
            if module.split(".")[0] not in BUILTIN_PACKAGES and module not in names:
                if module == "__main__":
                    raise HarnessError(f"'{spec.suite}'/'{spec.adapter}' is registered in __main__, which parallel "
                                       "workers cannot import; move it into a module")
                names.append(module)
    return tuple(names)


def import_plugins(modules: tuple[str, ...]) -> None:
    for name in modules:
        importlib.import_module(name)
