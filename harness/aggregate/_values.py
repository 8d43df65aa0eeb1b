"""Value helpers every aggregate module shares: a record's sections, finite numbers, canonical JSON and
the NaN-aware reductions of frame columns (one definition each, so that the tables agree)."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import pandas as pd


def section_of(record: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    """A record section as a mapping; failed runs may lack it or hold null."""
    value = record.get(name)
    return value if isinstance(value, Mapping) else {}


def finite_number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def mean_or_nan(values: pd.Series) -> float:
    return float(values.mean()) if values.notna().any() else math.nan


def max_or_nan(values: pd.Series) -> float:
    return float(values.max()) if values.notna().any() else math.nan


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def first_valid(values: pd.Series) -> Any:
    valid = values.dropna()
    return valid.iloc[0] if len(valid) else None


def any_true(values: pd.Series) -> bool | None:
    known = values.dropna()
    return bool(known.astype(bool).any()) if len(known) else None


def sum_or_nan(values: pd.Series) -> float:
    return float(values.sum()) if values.notna().any() else math.nan


def estimate_only(measured: pd.Series, estimated: pd.Series) -> bool:
    """Whether a cell's memory is an estimate only: no run of it was measured, some were estimated."""
    return bool(measured.isna().all() and estimated.notna().any())


def split_joined(values: pd.Series) -> set[str]:
    """The items of a column of comma-joined texts (``suite_tasks``, ``limited_by``), all rows together."""
    return {item for v in values.dropna() for item in str(v).split(",") if item}


def ours_only(table: pd.DataFrame) -> pd.DataFrame:
    """Our rows only: never the papers' reported numbers (``source == "reported"``)."""
    return table[table["source"] == "ours"] if "source" in table else table
