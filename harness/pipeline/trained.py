"""A trained run as one frozen value: what ``harness.pipeline.train.TrainingRun`` established, handed to
``harness.pipeline.collect`` (the record's result sections), ``harness.pipeline.saved_run`` (the folder of a
saved run) and the runner (the predictions beside the record).

The model, adapter, data and context are references to the live objects (collect still evaluates and
saves through them); frozen means no field is reassigned after training. The groups mirror the record:
``EpochScores`` feeds ``metrics``, ``TrainTiming`` feeds ``timing``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from harness.adapter import Adapter
    from harness.pipeline.measure import ParamCounts
    from harness.spec import RunSpec
    from harness.suite import LoadedModel, RunContext, Suite, TaskData


@dataclass(frozen=True)
class EpochScores:
    """The evaluations of the run's epochs and the epoch selected among them."""

    primary: str  # the suite's primary metric of the task (scores the test split)
    per_epoch: list[dict[str, Any]]  # the test split's metrics per scored epoch, with "epoch" and "step"
    best: dict[str, float] | None  # the test metrics of the selected epoch
    best_epoch: int | None  # the selected epoch (on validation when there is one)
    validation_primary: str  # the metric that selects on the validation split
    validation_per_epoch: list[dict[str, Any]]
    validation_best: dict[str, float] | None  # None: the run had no validation split
    test_best: dict[str, float] | None  # the papers' protocol: the best test epoch (test_each_epoch only)
    test_best_epoch: int | None
    test_reads: int  # evaluations of the test split (selection never reads them)
    stopped_early: bool  # a tuning trial pruned by its study
    # the suite's per-example side channel (harness/records/predictions.py) of the selected and last epoch
    best_predictions: dict[str, Any] | None
    final_predictions: dict[str, Any] | None


@dataclass(frozen=True)
class TrainTiming:
    """The training loop's share of the record's ``timing``; collect adds the variants' evaluations."""

    load_seconds: float
    load_cached: dict[str, bool]  # model / data served from this process's cache (harness/pipeline/load.py)
    train_seconds: float  # the loop's wall time less its evaluations
    eval_seconds: float  # the per-epoch evaluations (and the selected state's test)
    eval_per_epoch: list[float]
    validation_seconds: float  # the validation passes' part of eval_seconds
    eval_merged: bool  # the epochs were scored with the adapter merged into the base weights
    steps: int
    epochs: int
    samples: int
    mean_step_seconds: float | None
    phases: dict[str, float]  # setup, train, eval: a copy, which collect extends in its own dict
    checkpoints_saved: int
    resumed_from: dict[str, Any] | None  # {"step", "epoch", "batches", "resumes"} when resumed


@dataclass(frozen=True)
class TrainedRun:
    """One run after its training loop (``TrainingRun.run()``), everything the record is made from."""

    spec: RunSpec
    suite: Suite
    work_dir: Path  # the run's temporary folder: the adapter file is written there first
    record_path: Path | None
    keep_adapter: bool  # copy the adapter file and the saved-run folder beside the record
    adapter: Adapter[Any]
    model: Any
    loaded: LoadedModel
    data: TaskData
    ctx: RunContext
    head_ids: frozenset[int]
    counts: ParamCounts
    total_steps: int
    precision: str  # the precision used (the spec's request resolved on the device)
    compile_info: dict[str, Any]
    memory: dict[str, Any]  # the record's ``memory``, measured when the loop ended
    scores: EpochScores
    timing: TrainTiming
    model_info: dict[str, Any]
    data_info: dict[str, Any]
    loss_curve: list[list[float]]  # [[step, loss]] (harness.pipeline.loss_log.loss_points)
    warm_start: dict[str, Any] | None  # None: the run did not start from a parent's adapter
