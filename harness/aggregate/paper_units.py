"""The units of the metrics the papers report, for numbers that come without a record: the reported
tables under ``results/reference/*.csv`` (harness/aggregate/reference.py) and the paper-layout tables'
sub-metric headers (harness/aggregate/paper_format.py). A record states its own units
(``metrics.unit``, ``metrics.units``); these name the same metrics as the built-in suites declare them
(``Suite.metrics``; tests/test_report.py checks that they agree), written here because the tables never
import a suite (suites import torch).
"""

from __future__ import annotations

from harness.metrics import UNITS, Unit

# suite -> metric (as our records name it) -> unit name (harness.metrics.UNITS)
PAPER_METRIC_UNITS: dict[str, dict[str, str]] = {
    "glue": {"accuracy": "fraction", "f1": "fraction", "mcc": "coefficient", "pearson": "coefficient",
             "spearman": "coefficient"},
    "instructeval": {"average": "fraction", "mmlu": "fraction", "bbh": "fraction", "drop": "fraction",
                     "drop_em": "fraction", "humaneval": "fraction"},
    "mt-bench": {"overall": "rating_1_10", "turn1": "rating_1_10", "turn2": "rating_1_10"},
    "coco-retrieval": {"rsum": "sum_of_percent",
                       **{f"{d}_r{k}": "percent" for d in ("i2t", "t2i") for k in (1, 5, 10)}},
    "rscd": {"accuracy": "fraction", "macro_f1": "fraction"},
}


def paper_unit(suite: str, metric: str) -> Unit | None:
    """The unit of a metric a paper reports for one of our suites, or None when none is declared."""
    name = PAPER_METRIC_UNITS.get(suite, {}).get(metric)
    return UNITS[name] if name is not None else None
