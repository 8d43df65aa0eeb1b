"""Per-example predictions of a run's scored split, kept beside its record (not in it).

A suite's ``evaluate`` may leave the predictions of the items it scored in ``RunContext.predictions``
(the side channel; GLUE does); the training loop keeps those of the epoch the record reports (the best
dev epoch, or the final one) and the runner writes them next to the record as ``<record stem>.preds.npz``
(compressed numpy arrays ``predictions`` and ``labels``, in the split's order, plus ``epoch``). The store
reads only ``*.json`` files as records, so the sidecar is never taken for one; a record without a sidecar
(every record written before this, every suite without the side channel) simply has no per-item data.

With the predictions of two configurations on the same items for the same seeds, a paired comparison
can resample test items as well as seeds (``harness.aggregate.stats.item_seed_bootstrap``).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

SUFFIX = ".preds.npz"


def predictions_path(record_path: str | Path) -> Path:
    """``results/glue/rte/lora-<hash>-seed42.json`` -> ``.../lora-<hash>-seed42.preds.npz``."""
    path = Path(record_path)
    return path.with_name(path.name[: -len(path.suffix)] + SUFFIX if path.suffix else path.name + SUFFIX)


def write_predictions(record_path: str | Path, predictions: Mapping[str, Any], epoch: int | None = None) -> Path:
    """The sidecar, written to a temporary file in the same folder and renamed over any old one."""
    import numpy as np

    target = predictions_path(record_path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-preds-", suffix=".npz", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez_compressed(fh, predictions=np.asarray(predictions["predictions"]),
                                labels=np.asarray(predictions["labels"]),
                                epoch=np.asarray(-1 if epoch is None else int(epoch)))
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def load_predictions(record_path: str | Path) -> dict[str, Any] | None:
    """The sidecar of a record (``predictions``, ``labels``, ``epoch``), or None when there is none."""
    import numpy as np

    path = predictions_path(record_path)
    if not path.is_file():
        return None
    with np.load(path) as data:
        return {"predictions": data["predictions"], "labels": data["labels"], "epoch": int(data["epoch"])}


def _accuracy(labels: Any, predictions: Any) -> float:
    import numpy as np

    return float(np.mean(np.asarray(labels) == np.asarray(predictions)))


def _mcc(labels: Any, predictions: Any) -> float:
    import numpy as np

    y, p = np.asarray(labels).astype(int), np.asarray(predictions).astype(int)
    tp, tn = float(np.sum((y == 1) & (p == 1))), float(np.sum((y == 0) & (p == 0)))
    fp, fn = float(np.sum((y == 0) & (p == 1))), float(np.sum((y == 1) & (p == 0)))
    denominator = ((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn)) ** 0.5
    return (tp * tn - fp * fn) / denominator if denominator else 0.0


def _f1(labels: Any, predictions: Any) -> float:
    import numpy as np

    y, p = np.asarray(labels).astype(int), np.asarray(predictions).astype(int)
    tp = float(np.sum((y == 1) & (p == 1)))
    denominator = float(np.sum(p == 1) + np.sum(y == 1))
    return 2 * tp / denominator if denominator else 0.0


def _pearson(labels: Any, predictions: Any) -> float:
    import numpy as np

    y, p = np.asarray(labels, dtype=float), np.asarray(predictions, dtype=float)
    if y.std() == 0 or p.std() == 0:
        return 0.0
    return float(np.corrcoef(y, p)[0, 1])


# the primary metrics of the suites that keep predictions (GLUE), on the records' scale (fractions and
# coefficients), computed without sklearn so that the report stays light
METRICS = {"accuracy": _accuracy, "mcc": _mcc, "f1": _f1, "pearson": _pearson}


def paired_predictions(root: str | Path, suite: str, task: str, x: tuple[str, str], y: tuple[str, str],
                       seeds: list[int]) -> tuple[list[Any], list[Any], Any] | None:
    """The predictions of configuration ``x`` and baseline ``y`` ((adapter, config hash) each) on every
    shared seed, and the labels, when every one of those records has a sidecar on the same items; else
    None."""
    import numpy as np

    from harness.records.record import record_relpath

    xs, ys, labels = [], [], None
    for seed in seeds:
        for (adapter, config_hash), out in ((x, xs), (y, ys)):
            key = {"suite": suite, "task": task, "adapter": adapter, "config_hash": config_hash, "seed": seed}
            found = load_predictions(Path(root) / record_relpath(key))
            if found is None:
                return None
            if labels is None:
                labels = found["labels"]
            elif len(found["labels"]) != len(labels) or not np.array_equal(found["labels"], labels):
                return None
            out.append(found["predictions"])
    return (xs, ys, labels) if labels is not None else None
