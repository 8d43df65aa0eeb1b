"""``run --report-to tensorboard,wandb,mlflow`` (transformers' ``report_to`` convention): each finished
run's loss curve, learning rate and per-epoch dev scores are logged to the named trackers, from its
record, as the driver receives it (so every executor logs the same way, and a resumed run is not
logged twice: only runs of this invocation are).

Where they go: TensorBoard event files under ``<store>/tensorboard/<suite>-<task>-<adapter>-<hash>-seed<N>/`` (``tensorboard --logdir
runs/tensorboard``); W&B through ``wandb.init`` (project ``WANDB_PROJECT``, default ``peft-harness``;
``WANDB_MODE=offline`` writes under ``<store>/wandb/`` without an account); MLflow to
``MLFLOW_TRACKING_URI``, default the file store ``<store>/mlruns`` (``mlflow ui --backend-store-uri
runs/mlruns``). The learning rate is the schedule's value at each logged step, recomputed from the
record's settings with the training loop's own schedule (``harness.pipeline.train.lr_lambda``).
"""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.errors import HarnessError

TRACKERS = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow"}  # name -> package


def parse_report_to(text: str | None) -> tuple[str, ...]:
    """The trackers named (comma list; ``none`` or empty: none), each checked to be installed: a missing
    package is one error line at plan time."""
    names = [n.strip().lower() for n in str(text or "").split(",") if n.strip()]
    if names == ["none"] or not names:
        return ()
    if "all" in names:
        names = list(TRACKERS)
    for name in names:
        if name not in TRACKERS:
            raise HarnessError(f"--report-to {name}: valid trackers are {', '.join(TRACKERS)} (or none, all)")
        if importlib.util.find_spec(TRACKERS[name]) is None:
            raise HarnessError(f"--report-to {name}: the package '{TRACKERS[name]}' is not installed "
                               "(pip install -e '.[tracking]')")
    return tuple(dict.fromkeys(names))


def series(record: dict[str, Any]) -> dict[str, list[tuple[int, float]]]:
    """name -> [(step, value)]: ``train/loss``, ``train/lr``, ``eval/<metric>`` per epoch."""
    from harness.pipeline.train import lr_lambda

    out: dict[str, list[tuple[int, float]]] = {}
    loss = [(int(s), float(v)) for s, v in (record.get("loss_curve") or [])]
    out["train/loss"] = loss
    epochs = (record.get("metrics") or {}).get("per_epoch") or []
    for row in epochs:
        for key, value in row.items():
            if key not in ("epoch", "step") and isinstance(value, (int, float)):
                out.setdefault(f"eval/{key}", []).append((int(row.get("step") or 0), float(value)))
    train = (record.get("spec") or {}).get("train") or {}
    total = max([s for s, _ in loss] + [int(r.get("step") or 0) for r in epochs] + [1])
    warmup = int(float(train.get("warmup_ratio") or 0.0) * total)
    fn = lr_lambda(str(train.get("scheduler") or "linear"), warmup, total)
    base = float(train.get("lr") or 0.0)
    out["train/lr"] = [(s, base * fn(s - 1)) for s, _ in loss]
    return out


def run_name(record: dict[str, Any]) -> str:
    """The run id as one path component: ``glue-rte-lora-dabd4314ebb8-seed42``."""
    return str(record.get("run_id")).replace("/", "-")


def _params(record: dict[str, Any]) -> dict[str, Any]:
    spec = record.get("spec") or {}
    flat = {k: spec.get(k) for k in ("suite", "task", "adapter", "model", "preset", "seed")}
    flat.update({f"opt.{k}": v for k, v in (spec.get("adapter_options") or {}).items()})
    flat.update({f"train.{k}": v for k, v in (spec.get("train") or {}).items()})
    flat["config_hash"] = (record.get("key") or {}).get("config_hash")
    return {k: (json.dumps(v) if isinstance(v, (list, dict)) else v) for k, v in flat.items()}


def _tensorboard(record: dict[str, Any], root: Path) -> None:
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(log_dir=str(root / "tensorboard" / run_name(record)))
    try:
        for name, points in series(record).items():
            for step, value in points:
                writer.add_scalar(name, value, step)
        writer.add_text("config", json.dumps(_params(record), indent=1, default=str))
    finally:
        writer.close()


def _wandb(record: dict[str, Any], root: Path) -> None:
    import wandb

    (root / "wandb").mkdir(parents=True, exist_ok=True)
    run = wandb.init(project=os.environ.get("WANDB_PROJECT", "peft-harness"), name=run_name(record),
                     config=_params(record), dir=str(root), reinit="finish_previous")
    try:
        merged: dict[int, dict[str, float]] = {}
        for name, points in series(record).items():
            for step, value in points:
                merged.setdefault(step, {})[name] = value
        for step in sorted(merged):
            run.log(merged[step], step=step)
        score = (record.get("metrics") or {}).get("score")
        if isinstance(score, (int, float)):
            run.summary["score"] = score
        run.summary["status"] = record.get("status")
    finally:
        run.finish()


def _mlflow(record: dict[str, Any], root: Path) -> None:
    import mlflow

    uri = os.environ.get("MLFLOW_TRACKING_URI") or (root / "mlruns").resolve().as_uri()
    if uri.startswith("file:"):  # the file store needs no server or database; MLflow 3 asks for this opt-in
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment(os.environ.get("MLFLOW_EXPERIMENT_NAME", "peft-harness"))
    with mlflow.start_run(run_name=run_name(record)):
        mlflow.log_params({k: str(v)[:250] for k, v in _params(record).items()})
        for name, points in series(record).items():
            for step, value in points:
                mlflow.log_metric(name.replace("/", "_"), value, step=step)
        score = (record.get("metrics") or {}).get("score")
        if isinstance(score, (int, float)):
            mlflow.log_metric("score", float(score))
        mlflow.set_tag("status", str(record.get("status")))


LOGGERS: dict[str, Callable[[dict[str, Any], Path], None]] = {
    "tensorboard": _tensorboard, "wandb": _wandb, "mlflow": _mlflow}


def log_record_file(path: str | Path, trackers: tuple[str, ...], store_root: Path,
                    warn: Callable[[str], None] = print) -> None:
    """Log one finished run's record to every tracker; a tracker's failure is a warning, never the grid's."""
    if not trackers:
        return
    try:
        record = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        warn(f"warning: --report-to: cannot read {path}: {exc}")
        return
    for name in trackers:
        try:
            LOGGERS[name](record, Path(store_root))
        except Exception as exc:  # a tracker's outage must not stop the grid
            warn(f"warning: --report-to {name}: {record.get('run_id')} not logged: {type(exc).__name__}: {exc}")
