"""The papers' reported numbers (``results/reference/*.csv``), in a frame of their own."""

from __future__ import annotations

import csv
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from harness.aggregate.paper_units import paper_unit

REFERENCE_COLUMNS = (
    "paper", "table", "model", "suite", "task", "adapter", "method", "metric", "value", "scale",
    "params", "source", "note",
)
# "score": a number on the metric's own scale (MT-Bench's 1-10 rating), kept as printed
REFERENCE_SCALES = {"percent": 100.0, "fraction": 1.0, "score": 1.0}


def _reference_row_problems(row: Mapping[str, Any]) -> list[str]:
    problems = [f"empty '{c}'" for c in ("paper", "table", "task", "method", "metric", "value", "source")
                if not str(row.get(c) or "").strip()]
    if str(row.get("scale") or "").strip() not in REFERENCE_SCALES:
        problems.append(f"scale must be one of {', '.join(REFERENCE_SCALES)}")
    try:
        float(row.get("value") or "")
    except ValueError:
        problems.append(f"value {row.get('value')!r} is not a number")
    params = str(row.get("params") or "").strip()
    if params:
        try:
            float(params)
        except ValueError:
            problems.append(f"params {params!r} is not a number")
    return problems


def _reference_score(suite: str, metric: str, value: float, scale: str) -> float:
    """A printed number on the scale our records store: divided by the display scale of the metric's
    declared unit (harness/aggregate/paper_units.py: accuracy 94.7 -> 0.947, MCC 63.4 -> 0.634, rsum and
    MT-Bench ratings as printed); a metric none declares (MNLI-mismatched) by the row's own ``scale``."""
    unit = paper_unit(suite, metric)
    return value / (unit.display_scale if unit is not None else REFERENCE_SCALES[scale])


def load_reference(folder: str | Path) -> tuple[pd.DataFrame, list[tuple[str, str]]]:
    """Every ``*.csv`` of reported numbers under ``folder``, and the (file, why) of rows skipped.

    Values are stored as the paper prints them (``scale`` percent or fraction) and returned as
    fractions in ``score`` so they sit beside our metrics.
    """
    rows: list[dict[str, Any]] = []
    skipped: list[tuple[str, str]] = []
    root = Path(folder)
    for path in sorted(root.rglob("*.csv")) if root.is_dir() else []:
        try:
            with open(path, encoding="utf-8", newline="") as fh:
                reader = csv.DictReader(fh)
                missing = [c for c in REFERENCE_COLUMNS if c not in (reader.fieldnames or [])]
                if missing:
                    skipped.append((str(path), f"missing columns {', '.join(missing)}"))
                    continue
                for line, row in enumerate(reader, start=2):
                    problems = _reference_row_problems(row)
                    if problems:
                        skipped.append((f"{path}:{line}", "; ".join(problems)))
                        continue
                    rows.append({c: (row[c] or "").strip() for c in REFERENCE_COLUMNS})
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            skipped.append((str(path), f"unreadable CSV: {exc}"))
    frame = pd.DataFrame(rows, columns=list(REFERENCE_COLUMNS))
    frame["value"] = pd.to_numeric(frame["value"], errors="coerce").astype("float64")
    frame["params"] = pd.to_numeric(frame["params"], errors="coerce").astype("float64")
    frame["score"] = [_reference_score(*row) for row in zip(frame["suite"], frame["metric"], frame["value"],
                                                             frame["scale"])]
    frame["score"] = frame["score"].astype("float64")
    frame["source_kind"] = "reported"
    return frame, skipped
