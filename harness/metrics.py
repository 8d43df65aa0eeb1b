"""Metric declarations with units. Pure Python (no torch): suites, the runner, ``report`` and the app share it.

Each suite declares its metrics once, as ``Suite.metrics`` (a tuple of :class:`MetricSpec`). The five
built-in suites' declarations are written here, in :data:`BUILTIN_METRICS`, and their classes point to
them (``metrics = BUILTIN_METRICS["glue"]``), so that the tables can read the units of records written
before the runner recorded them without importing a suite (suites import torch); a third-party suite
declares its tuple on its own class. The runner writes the primary metric's unit, display scale and
direction into every new record (``metrics.unit``, ``metrics.display_scale``,
``metrics.higher_is_better``, ``metrics.units``), and the tables read them from there first. A metric
that neither its record nor this table declares is shown on its own scale and labelled
``unit unknown``: nothing is ever scaled by guessing from its name or its values.
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


# The built-in suites' declarations (their classes' ``metrics`` point here); also read for records
# written before the runner recorded units.
_GLUE = (
    MetricSpec("accuracy", "fraction", primary=True),
    MetricSpec("f1", "fraction"),
    MetricSpec("mcc", "coefficient", primary=True, description="Matthews correlation (CoLA)"),
    MetricSpec("pearson", "coefficient", primary=True, description="Pearson correlation (STS-B)"),
    MetricSpec("spearman", "coefficient", description="Spearman correlation (STS-B)"),
)
_INSTRUCTEVAL = (
    MetricSpec("average", "fraction", primary=True, description="mean of the benchmark scores"),
    MetricSpec("mmlu", "fraction"),
    MetricSpec("bbh", "fraction"),
    MetricSpec("drop", "fraction", description="DROP F1"),
    MetricSpec("drop_em", "fraction"),
    MetricSpec("humaneval", "fraction", description="pass@1"),
)
_MTBENCH = (
    MetricSpec("overall", "rating_1_10", primary=True, description="mean judge rating over both turns"),
    MetricSpec("turn1", "rating_1_10"),
    MetricSpec("turn2", "rating_1_10"),
    *(MetricSpec(f"category_{c}", "rating_1_10") for c in
      ("writing", "roleplay", "reasoning", "math", "coding", "extraction", "stem", "humanities")),
)
_COCO = (
    MetricSpec("rsum", "sum_of_percent", primary=True, description="R@1+R@5+R@10 both directions (0-600)"),
    *(MetricSpec(f"{d}_r{k}", "percent") for d in ("i2t", "t2i") for k in (1, 5, 10)),
)
_RSCD = (
    MetricSpec("accuracy", "fraction", primary=True),
    MetricSpec("macro_f1", "fraction"),
)
BUILTIN_METRICS: dict[str, tuple[MetricSpec, ...]] = {
    "glue": _GLUE, "instructeval": _INSTRUCTEVAL, "mt-bench": _MTBENCH, "coco-retrieval": _COCO, "rscd": _RSCD,
}


def unit_of_record(record: Mapping[str, Any]) -> Unit:
    """The unit of a record's primary score: the record's own ``metrics.unit``, else the built-in
    declaration of its suite (records written before units were recorded), else ``unknown``."""
    metrics = record.get("metrics") if isinstance(record.get("metrics"), Mapping) else {}
    unit = metrics.get("unit") if isinstance(metrics, Mapping) else None
    if isinstance(unit, str) and unit in UNITS:
        return UNITS[unit]
    key = record.get("key") if isinstance(record.get("key"), Mapping) else {}
    primary = metrics.get("primary") if isinstance(metrics, Mapping) else None
    for spec in BUILTIN_METRICS.get(str(key.get("suite")), ()):
        if spec.name == primary:
            return spec.unit_info
    return UNKNOWN_UNIT


def unit_of_metric(record: Mapping[str, Any], name: str) -> Unit:
    """The unit of any metric of a record (not only the primary): the record's ``metrics.units``, else
    its suite's built-in declaration, else ``unknown`` (shown unscaled)."""
    metrics = record.get("metrics") if isinstance(record.get("metrics"), Mapping) else {}
    units = metrics.get("units") if isinstance(metrics, Mapping) else None
    if isinstance(units, Mapping) and units.get(name) in UNITS:
        return UNITS[units[name]]
    key = record.get("key") if isinstance(record.get("key"), Mapping) else {}
    for spec in BUILTIN_METRICS.get(str(key.get("suite")), ()):
        if spec.name == name:
            return spec.unit_info
    return UNKNOWN_UNIT


def higher_is_better_of_record(record: Mapping[str, Any]) -> bool:
    metrics = record.get("metrics") if isinstance(record.get("metrics"), Mapping) else {}
    value = metrics.get("higher_is_better") if isinstance(metrics, Mapping) else None
    if isinstance(value, bool):
        return value
    key = record.get("key") if isinstance(record.get("key"), Mapping) else {}
    for spec in BUILTIN_METRICS.get(str(key.get("suite")), ()):
        if isinstance(metrics, Mapping) and spec.name == metrics.get("primary"):
            return spec.higher_is_better
    return True
