"""Metric declarations with units. Pure Python (no torch): suites, the runner, ``report`` and the app share it.

Each suite declares its metrics once, on its class, as ``Suite.metrics`` (a tuple of
:class:`MetricSpec`). The runner writes the primary metric's unit, display scale and direction into
every record (``metrics.unit``, ``metrics.display_scale``, ``metrics.higher_is_better``, ``metrics.units``),
and the tables read them from there, never from the suites (suites import torch). A metric its record
does not declare is shown on its own scale and labelled ``unit unknown``: nothing is ever scaled by
guessing from its name or its values. Numbers that come without a record (the papers' reported tables)
carry their units beside them (harness/aggregate/paper_units.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from harness.errors import HarnessError


@dataclass(frozen=True)
class Unit:
    name: str
    display_scale: float  # stored value x display_scale = the number printed
    label: str  # what the printed number is in, for headers, axes and captions
    # units whose printed numbers may be averaged together (GLUE's average mixes accuracy in % and
    # MCC / Pearson x 100, as the papers do); a sum of percentages or a rating is never averaged with them
    family: str


UNITS: dict[str, Unit] = {
    u.name: u
    for u in (
        Unit("fraction", 100.0, "%", "points"),
        Unit("percent", 1.0, "%", "points"),
        Unit("coefficient", 100.0, "x100", "points"),  # MCC, Pearson, Spearman in [-1, 1]
        Unit("sum_of_percent", 1.0, "sum of %", "sum_of_percent"),  # COCO's rsum, 0-600
        Unit("rating_1_10", 1.0, "rating 1-10", "rating_1_10"),  # MT-Bench's judge score
        Unit("count", 1.0, "count", "count"),
        Unit("seconds", 1.0, "s", "seconds"),
    )
}
UNKNOWN_UNIT = Unit("unknown", 1.0, "unit unknown", "unknown")


@dataclass(frozen=True)
class MetricSpec:
    """One metric a suite reports: its unit, whether higher is better, whether it is a primary metric."""

    name: str
    unit: str
    higher_is_better: bool = True
    primary: bool = False  # the primary metric of at least one task (``Suite.primary_metric`` says which)
    description: str = ""

    def __post_init__(self) -> None:
        if not self.name:
            raise HarnessError("a metric needs a name")
        if self.unit not in UNITS:
            raise HarnessError(f"metric '{self.name}': unit {self.unit!r} is not one of {', '.join(UNITS)}")

    @property
    def unit_info(self) -> Unit:
        return UNITS[self.unit]

    @property
    def display_scale(self) -> float:
        return UNITS[self.unit].display_scale

    def header(self) -> str:
        """``accuracy (%)``, ``rsum (sum of %)``: the metric with its unit, for table headers and axes."""
        return f"{self.name} ({UNITS[self.unit].label})"

    def to_record(self) -> dict[str, Any]:
        return {"unit": self.unit, "display_scale": self.display_scale, "higher_is_better": self.higher_is_better}


def declared(metrics: tuple[MetricSpec, ...], name: str, suite: str = "") -> MetricSpec:
    """The declaration of ``name``, or a one-line error naming the suite and its declared metrics."""
    for m in metrics:
        if m.name == name:
            return m
    where = f"suite '{suite}'" if suite else "this suite"
    raise HarnessError(f"metric '{name}' is not declared by {where}; declared: "
                       f"{', '.join(m.name for m in metrics) or '(none)'} (Suite.metrics)")


def record_fields(metrics: tuple[MetricSpec, ...], primary: str, suite: str = "") -> dict[str, Any]:
    """What the runner adds to a record's ``metrics`` section: the primary metric's unit, scale and
    direction, and the unit of every declared metric."""
    spec = declared(metrics, primary, suite)
    return {**spec.to_record(), "units": {m.name: m.unit for m in metrics}}


def _metrics_section(record: Mapping[str, Any]) -> Mapping[str, Any]:
    metrics = record.get("metrics")
    return metrics if isinstance(metrics, Mapping) else {}


def unit_of_record(record: Mapping[str, Any]) -> Unit:
    """The unit of a record's primary score, as the record states it (``metrics.unit``), else
    ``unknown`` (a version 1 record not migrated: python -m harness records migrate)."""
    unit = _metrics_section(record).get("unit")
    return UNITS[unit] if isinstance(unit, str) and unit in UNITS else UNKNOWN_UNIT


def unit_of_metric(record: Mapping[str, Any], name: str) -> Unit:
    """The unit of any metric of a record (not only the primary), as the record states it
    (``metrics.units``), else ``unknown`` (shown unscaled)."""
    units = _metrics_section(record).get("units")
    unit = units.get(name) if isinstance(units, Mapping) else None
    return UNITS[unit] if isinstance(unit, str) and unit in UNITS else UNKNOWN_UNIT


def higher_is_better_of_record(record: Mapping[str, Any]) -> bool:
    """Whether a higher primary score is better, as the record states it; a record that does not say: yes."""
    value = _metrics_section(record).get("higher_is_better")
    return value if isinstance(value, bool) else True
