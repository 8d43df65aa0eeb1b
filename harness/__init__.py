"""PEFT benchmark harness: registry, runner, measurements, result store.

Importing this package is cheap and never imports torch: the leaderboard app imports
``harness.records.record``, ``harness.records.store`` and ``harness.aggregate`` only.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["load_saved_run", "run_grid_api"]


def __getattr__(name: str):  # the Python API, imported on first use (torch only then)
    if name == "run_grid_api":
        from harness.api import run_grid_api

        return run_grid_api
    if name == "load_saved_run":
        from harness.pipeline.saved_run import load_saved_run

        return load_saved_run
    raise AttributeError(f"module 'harness' has no attribute {name!r}")
