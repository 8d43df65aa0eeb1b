"""Which result store a command writes to and reads from.

``results/`` in the checkout is the *shipped* reference store (records of real runs, tracked in git):
nothing writes there unless asked to with ``--results-dir results``. Your own runs go to ``runs/`` (or
``HARNESS_RESULTS_DIR``). ``report`` and the app can read several stores at once; every row of their
frames then says where it comes from (the ``store`` column: ``shipped`` or the store's path; not ``source``, which
says ``ours`` or ``reported`` in harness.aggregate's tables).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SHIPPED_RESULTS_DIR = PROJECT_ROOT / "results"
USER_RESULTS_DIR = "runs"
SHIPPED = "shipped"
_KEY_FIELDS = ("suite", "task", "adapter", "config_hash", "seed")


def user_results_dir() -> Path:
    """Where run, reproduce and report write and read by default: ``HARNESS_RESULTS_DIR``, else ``runs/``."""
    return Path(os.environ.get("HARNESS_RESULTS_DIR") or USER_RESULTS_DIR)


def is_shipped(path: str | Path) -> bool:
    try:
        return Path(path).resolve() == SHIPPED_RESULTS_DIR.resolve()
    except OSError:
        return False


def source_name(path: str | Path) -> str:
    """``shipped`` for the checkout's results/, else the path as given."""
    return SHIPPED if is_shipped(path) else str(path)


def read_dirs(results_dirs: Sequence[str | Path] | None, *, with_shipped: bool = False) -> list[Path]:
    """The stores a reader reads: the ``--results-dir`` values (repeatable), else the user's store; plus the
    shipped store with ``with_shipped``; each once, in that order."""
    dirs = [Path(d) for d in (results_dirs or [])] or [user_results_dir()]
    if with_shipped:
        dirs.append(SHIPPED_RESULTS_DIR)
    out: list[Path] = []
    seen: set[Path] = set()
    for d in dirs:
        key = d.resolve()
        if key not in seen:
            seen.add(key)
            out.append(d)
    return out


def _key(record: Any) -> tuple[str, ...]:
    key = record.get("key") if isinstance(record, dict) else None
    key = key if isinstance(key, dict) else {}
    return tuple(str(key.get(k)) for k in _KEY_FIELDS)


def record_sources(loaded: Iterable[tuple[str, Sequence[Any]]]) -> dict[tuple[str, ...], str]:
    """(suite, task, adapter, config hash, seed) -> the source of the record the frame keeps for it (of
    copies in several stores, the latest ``finished_at``, as ``harness.aggregate`` dedupes them)."""
    best: dict[tuple[str, ...], tuple[str, str]] = {}
    for source, records in loaded:
        for record in records:
            key, finished = _key(record), str(record.get("finished_at") or "")
            if key not in best or finished > best[key][0]:
                best[key] = (finished, source)
    return {k: v[1] for k, v in best.items()}


def add_source(frame: Any, sources: dict[tuple[str, ...], str]) -> Any:
    """The flat frame with a ``store`` column (where each kept record comes from)."""
    keys = zip(*(frame[c].astype(str) for c in _KEY_FIELDS)) if len(frame) else iter(())
    frame["store"] = [sources.get(tuple(k), "") for k in keys]
    return frame


def row_sources(frame: Any) -> dict[tuple[str, str], str]:
    """(suite, row key) -> the sources of its records, joined with '+': a leaderboard row's origin."""
    if "store" not in frame.columns or not len(frame):
        return {}
    grouped = frame.groupby(["suite", "row_key"])["store"].agg(lambda s: "+".join(sorted({str(v) for v in s})))
    return {tuple(map(str, k)): v for k, v in grouped.items()}
