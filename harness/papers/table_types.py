"""The types a paper table is declared with (``harness.papers.tables`` holds the tables themselves).

Torch-free (the app imports it). A ``PaperTable`` is one table of a seed paper with its rows
(``TableRow``) as the paper lists them; each checks its own structure when built (``__post_init__``:
roles, printed counts, reported-only rows). ``reported_rows`` joins a row with its reported numbers in
``results/reference/*.csv`` by (table, method label, params).
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import HarnessError, UnknownNameError

REFERENCE_DIR = Path(__file__).resolve().parents[2] / "results" / "reference"
# the target roles of harness.targets (kept as strings here: this module must not import torch users)
ROLES = ("attention-qv", "attention-qk", "attention-kv", "attention-qkv", "attention-ffn", "all-linear")
_UNITS = {"": 1, "K": 1_000, "M": 1_000_000, "B": 1_000_000_000}


def parse_printed(printed: str) -> tuple[float, int, int]:
    """'0.135M' -> (0.135, 3 decimals, unit 1e6); the paper's rounding of a parameter count."""
    match = re.fullmatch(r"(\d+(?:\.(\d+))?)([KMB]?)", printed.strip())
    if match is None:
        raise HarnessError(f"printed parameter count {printed!r} is not like 0.135M, 37.4K or 7B")
    return float(match.group(1)), len(match.group(2) or ""), _UNITS[match.group(3)]


def rounds_to(count: int, printed: str) -> bool:
    """Whether ``count`` prints as ``printed`` at the paper's precision (135,168 -> '0.135M')."""
    value, decimals, unit = parse_printed(printed)
    return round(count / unit, decimals) == round(value, decimals)


def as_printed(count: int, printed: str) -> str:
    """``count`` written at the precision and unit of ``printed``."""
    _, decimals, unit = parse_printed(printed)
    suffix = {v: k for k, v in _UNITS.items()}[unit]
    return f"{count / unit:.{decimals}f}{suffix}"


@dataclass(frozen=True)
class TableRow:
    """One row of a paper table. ``adapter`` None: a method we do not have ("reported only")."""

    label: str  # the paper's method label, exactly the reference CSV's ``method``
    adapter: str | None
    options: dict[str, Any] = field(default_factory=dict)  # adapter options (rank, split, k, bottleneck, ...)
    targets: str | None = None  # a target role; None: the table's
    params: str | None = None  # the trainable-parameter count as the paper prints it ("0.135M")
    models: tuple[str, ...] | None = None  # catalogue models the row is run on; None: the table's
    seeds: tuple[int, ...] | None = None  # None: the table's
    flagged: tuple[str, ...] = ()  # our choices where the paper is silent, one sentence each
    params_mismatch: str = ""  # why our count cannot print as the paper's (checked by the tests)
    note: str = ""

    def __post_init__(self) -> None:
        where = f"paper table row '{self.label}'"
        if not self.label:
            raise HarnessError("a paper table row needs the paper's method label")
        if self.targets is not None and self.targets not in ROLES:
            raise HarnessError(f"{where}: unknown target role '{self.targets}'; roles: {', '.join(ROLES)}")
        if self.params is not None:
            parse_printed(self.params)
        if self.adapter is None and not self.note:
            raise HarnessError(f"{where}: a reported-only row must say why (note)")
        if self.adapter is None and (self.options or self.flagged):
            raise HarnessError(f"{where}: a reported-only row has no options to run")

    @property
    def runnable(self) -> bool:
        return self.adapter is not None


@dataclass(frozen=True)
class PaperTable:
    name: str  # the CLI name: msplora-t1
    paper: str
    where: str  # "Table 1" as the reference CSV's ``table``
    title: str
    reference_file: str  # results/reference/<file>
    suites: tuple[str, ...]  # every runnable row runs on each (SeRA Table 2: instructeval and mt-bench)
    models: tuple[str, ...]  # catalogue names; the reference CSV's model for each, in ``reference_models``
    reference_models: tuple[str, ...]
    tasks: tuple[str, ...]
    seeds: tuple[int, ...]
    targets: str  # the target role of the table ("attention-qv" for "q and v")
    protocol: str  # the training protocol in words, and where it is stated
    rows: tuple[TableRow, ...]
    train: dict[str, Any] = field(default_factory=dict)  # TrainConfig overrides for every task
    train_by_task: dict[str, dict[str, Any]] = field(default_factory=dict)  # per-task overrides
    suite_options: dict[str, Any] = field(default_factory=dict)
    flagged: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        where = f"paper table {self.name}"
        if len(self.models) != len(self.reference_models) or not self.models:
            raise HarnessError(f"{where}: models and reference_models must be non-empty and of one length")
        if self.targets not in ROLES:
            raise HarnessError(f"{where}: unknown target role '{self.targets}'; roles: {', '.join(ROLES)}")
        if not (self.suites and self.tasks and self.seeds and self.rows):
            raise HarnessError(f"{where}: suites, tasks, seeds and rows must be non-empty")

    def row(self, label: str) -> TableRow:
        for row in self.rows:
            if row.label == label or row_key(row) == label:
                return row
        raise UnknownNameError(f"{self.name} row", label, [row_key(r) for r in self.rows])

    def row_models(self, row: TableRow) -> tuple[str, ...]:
        return row.models or self.models

    def reference_model(self, model: str) -> str:
        return self.reference_models[self.models.index(model)]


def row_key(row: TableRow) -> str:
    """A unique name of a row within its table: the label, plus the printed count where two rows
    share a label (AdapterDrop 0.3M and 0.9M)."""
    return f"{row.label} [{row.params}]" if row.params and row.label in _DUPLICATE_LABELS else row.label


_DUPLICATE_LABELS = {"AdptD", "Adpt^P", "Adpt^H"}


def reported_rows(table: PaperTable, row: TableRow, model: str, reference_dir: Path = REFERENCE_DIR) -> list[dict[str, str]]:
    """The reference CSV rows of this table row on this model (all tasks and metrics), as printed."""
    path = reference_dir / table.reference_file
    with open(path, encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    ref_model = table.reference_model(model)
    out = [r for r in rows if r["table"] == table.where and r["method"] == row.label and r["model"] == ref_model]
    if row.params is not None and row.params != "0":
        wanted = parse_printed(row.params)
        out = [r for r in out if r["params"] and abs(float(r["params"]) - wanted[0] * wanted[2]) < 0.5]
    return out
