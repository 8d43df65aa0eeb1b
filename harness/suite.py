"""The suite plug-in contract.

A suite owns its tasks, data, model loading, loss and metrics; the harness owns the training loop,
the adapter, measurements and records. Register with ``@register_suite("name")``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from harness.errors import HarnessError, UnknownNameError
from harness.metrics import MetricSpec, declared
from harness.spec import TrainConfig

if TYPE_CHECKING:
    import torch
    from torch import nn


@dataclass(frozen=True)
class DataSource:
    """Where data comes from: a local root laid out like ../shared/data, or the Hugging Face hub."""

    root: Path | None  # None: the hub

    @property
    def offline(self) -> bool:
        return self.root is not None

    def folder(self, name: str, how_to_get: str) -> Path:
        """The dataset folder under the root, or a one-line error that says how to obtain it."""
        assert self.root is not None
        path = self.root / name
        if not path.is_dir():
            raise HarnessError(f"data folder {path} is missing; {how_to_get}")
        return path


@dataclass
class LoadedModel:
    model: nn.Module
    family: str  # harness.adapter.MODEL_FAMILIES
    head_modules: tuple[str, ...]  # module names trained in full and counted apart
    tokenizer: Any = None  # tokenizer / processor / transform, whatever the suite's data needs
    info: dict[str, Any] = field(default_factory=dict)  # recorded: source, pretrained or random, ...
    task_type: str = ""


@dataclass
class TaskData:
    train: Any  # an iterable of batches is built by ``Suite.train_batches``
    eval: Any  # the test split (GLUE dev, COCO val, ...): scored, never used to select anything
    validation: Any = None  # held out of the training data (harness/validation.py), in ``eval``'s form
    info: dict[str, Any] = field(default_factory=dict)  # recorded: sizes, source, notes


@dataclass(frozen=True)
class RunContext:
    device: torch.device
    data: DataSource
    seed: int
    preset: str
    work_dir: Path  # scratch space for this run (generated answers, caches)
    options: dict[str, Any] = field(default_factory=dict)  # suite options from the CLI
    run_id: str = ""  # RunSpec.run_id: names files a suite writes for this run
    record_path: Path | None = None  # where the record will be written (None: no store); suites may keep
    # files of their own beside it (same stem, a suffix of their own, never *.json)
    progress: bool = True  # False (--no-progress): a suite's own bars stay silent too
    # side channel (harness/records/predictions.py): a suite's evaluate may put here the per-example predictions
    # of the split it scored ({"predictions": [...], "labels": [...]}; the context is frozen, this dict is
    # not); the runner keeps the best epoch's and writes them beside the record (<record stem>.preds.npz)
    predictions: dict[str, Any] = field(default_factory=dict)


class Suite:
    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    family: ClassVar[str] = "encoder"
    # Tasks that exist, and the subset a preset runs by default.
    tasks: ClassVar[tuple[str, ...]] = ()
    presets: ClassVar[tuple[str, ...]] = ("paper", "cpu")
    # How the reported score is chosen when the suite evaluates every epoch: the papers report the
    # best dev epoch ("best-dev-epoch"); the final-epoch score is always recorded too.
    selection: ClassVar[str] = "best-dev-epoch"
    # Whether the TaskData a run loads stays read-only during the run, so that the runs of a grid can
    # share one tokenized copy (a suite that keeps per-run state in its data must leave this False).
    share_task_data: ClassVar[bool] = False
    # runs that may start from another run's saved adapter (``run --warm-start SOURCE``): source task ->
    # the tasks whose runs then start from the source task's run of the same adapter, config and seed
    warm_start_tasks: ClassVar[dict[str, tuple[str, ...]]] = {}
    # The metrics this suite reports, each with its unit and direction (harness/metrics.py); every table,
    # axis and caption shows a score in its declared unit, and the runner records it.
    metrics: ClassVar[tuple[MetricSpec, ...]] = ()
    # Whether the suite honours ``--limit`` (TrainConfig.limit, a per-task evaluation cap); a suite that
    # does not refuses it at plan time instead of recording a cap it never applied.
    honours_limit: ClassVar[bool] = False

    # ---- plan-time (no model, no data loaded) -----------------------------------------------------
    def default_tasks(self, preset: str) -> list[str]:
        return list(self.tasks)

    def resolve_tasks(self, spec: str | None, preset: str) -> list[str]:
        if not spec or spec == "all":
            return self.default_tasks(preset) if not spec else list(self.tasks)
        names = [t.strip() for t in spec.split(",") if t.strip()]
        if not names:
            raise HarnessError(f"empty task list for suite '{self.name}'")
        for task in names:
            if task not in self.tasks:
                raise UnknownNameError(f"{self.name} task", task, self.tasks)
        return list(dict.fromkeys(names))

    def task_available(self, task: str, data: DataSource) -> bool:
        """Whether a default task's data exists (tasks asked for by name are checked by check_data)."""
        return True

    def default_model(self, preset: str) -> str:
        raise NotImplementedError

    def train_config(self, preset: str, task: str, model: str) -> TrainConfig:
        raise NotImplementedError

    def check_model(self, model: str) -> None:
        """Raise a one-line HarnessError for a model this suite cannot use (before loading it)."""

    def default_adapter_options(self, model: str) -> dict[str, Any]:
        """Options that depend on the model (e.g. ``targets``: query,value vs q_proj,v_proj)."""
        return {}

    def meta_model(self, model: str, task: str) -> tuple[nn.Module, tuple[str, ...]] | None:
        """The model skeleton on the meta device and its head module names, for parameter counts and
        shape checks without weights; None when the suite cannot build one offline."""
        return None

    def check_data(self, task: str, data: DataSource) -> None:
        """Raise a one-line HarnessError when the task's data is missing (before any model loads)."""

    def option_names(self) -> tuple[str, ...]:
        """Suite options accepted through ``--suite-opt KEY=VALUE``."""
        return ()

    def resolve_options(self, preset: str, model: str, options: dict[str, Any]) -> dict[str, Any]:
        """The suite options as the run spec records and hashes them: plan-time values resolved from
        the environment (e.g. which judge) are added here; never secrets."""
        return dict(options)

    def preflight(self, options: dict[str, Any], preset: str, model: str) -> None:
        """Checks of the suite options that need no model or data (an unreachable judge, code
        execution without the opt-in): raise a one-line HarnessError before the first run loads."""

    # ---- run-time ----------------------------------------------------------------------------
    def load_model(self, model_name: str, task: str, ctx: RunContext) -> LoadedModel:
        raise NotImplementedError

    def load_data(self, task: str, loaded: LoadedModel, train: TrainConfig, ctx: RunContext) -> TaskData:
        raise NotImplementedError

    def train_batches(self, data: TaskData, train: TrainConfig, epoch: int, ctx: RunContext) -> Iterable[dict]:
        """The batches of one epoch, already on ``ctx.device``; each a dict with an int
        ``num_samples`` key that the loop pops before the forward pass."""
        raise NotImplementedError

    def num_train_batches(self, data: TaskData, train: TrainConfig) -> int:
        raise NotImplementedError

    def training_loss(self, model: nn.Module, batch: dict[str, Any]) -> torch.Tensor:
        return model(**batch).loss

    def evaluate(self, model: nn.Module, data: TaskData, loaded: LoadedModel, train: TrainConfig,
                 ctx: RunContext) -> dict[str, float]:
        raise NotImplementedError

    def primary_metric(self, task: str) -> str:
        raise NotImplementedError

    def validation_metric(self, task: str) -> str:
        """The metric ``evaluate_validation`` returns that selects the epoch and `tune`'s choice (higher
        is better); by default the task's primary metric."""
        return self.primary_metric(task)

    def evaluate_validation(self, model: nn.Module, data: TaskData, loaded: LoadedModel, train: TrainConfig,
                            ctx: RunContext) -> dict[str, float]:
        """Score the held-out validation split (``data.validation``). By default the suite's own
        ``evaluate`` on it: a suite whose validation split is in the same form as its test split needs
        nothing more; one whose test is a different kind of evaluation overrides this."""
        from dataclasses import replace

        return self.evaluate(model, replace(data, eval=data.validation), loaded, train, ctx)

    def metric(self, name: str) -> MetricSpec:
        """The declaration of one of this suite's metrics, or a one-line error listing the declared ones."""
        return declared(self.metrics, name, self.name)

    def check_train_config(self, task: str, train: TrainConfig) -> None:
        """Plan-time checks of a task's training settings against what the suite can apply: ``--limit``
        on a suite that ignores it, a primary metric the suite did not declare."""
        if train.limit is not None and not self.honours_limit:
            raise HarnessError(
                f"suite '{self.name}' does not use --limit (it would be recorded but not applied); cap the "
                "evaluation with --max-eval-samples and training with --max-train-samples / --max-steps"
            )
        if self.metrics:
            self.metric(self.primary_metric(task))
