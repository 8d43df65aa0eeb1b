"""Frozen run specifications (HELM style): what a run is, hashed so a finished run is found again."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field, fields, replace
from typing import Any

from harness.config import to_jsonable
from harness.errors import HarnessError

# TrainConfig fields added after records were shipped, with the default at which identity() omits them
TRAIN_IDENTITY_DEFAULTS: dict[str, Any] = {"precision": "fp32", "compile": False, "validation": None,
                                           "test_each_epoch": True}


def _setting(default: Any, *, cli: str | None = None, loop_only: bool = False) -> Any:
    metadata: dict[str, Any] = {"loop_only": loop_only}
    if cli is not None:
        metadata["cli"] = cli
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class TrainConfig:
    """The training budget and optimiser settings of one task. Suites give one per preset and task."""

    # metadata: ``cli`` the help of the ``run`` flag that overrides the field (--max-train-samples for
    # max_train_samples); ``loop_only`` a field that only steers the training loop (every other field
    # may change the loaded data or model, which the load cache keys on)
    epochs: float = _setting(1.0, cli="training epochs per task (fractions allowed)", loop_only=True)
    lr: float = _setting(5e-4, cli="learning rate of the adapter's parameters", loop_only=True)
    head_lr: float | None = _setting(None, cli="learning rate of the task head (default: --lr)", loop_only=True)
    batch_size: int = _setting(32, cli="training examples per optimizer step (per micro-batch with --grad-accum)")
    eval_batch_size: int = 64
    max_length: int = _setting(128, cli="tokens per example; longer examples are truncated")
    warmup_ratio: float = _setting(0.06, loop_only=True)
    weight_decay: float = _setting(0.0, loop_only=True)
    grad_accum: int = _setting(1, cli="micro-batches accumulated per optimizer step", loop_only=True)
    grad_clip: float | None = _setting(1.0, loop_only=True)
    max_train_samples: int | None = _setting(
        None, cli="training examples per task (a seeded subsample of the training split)")
    max_eval_samples: int | None = _setting(
        None, cli="evaluation examples per task (a seeded subsample of the dev split)")
    max_steps: int | None = _setting(
        None, cli="stop training after this many optimizer steps (smoke runs)", loop_only=True)
    eval_each_epoch: bool = _setting(True, loop_only=True)
    # linear warm-up then linear decay; "constant" keeps lr after warm-up
    scheduler: str = _setting("linear", loop_only=True)
    # per-task evaluation limit for smoke runs (instruction suites)
    limit: int | None = _setting(
        None, cli="evaluation items per task for smoke runs: examples per lm-eval task (INSTRUCTEVAL), "
                  "questions (MT-Bench); recorded, so limited and full results are never mixed")
    # Added after records were shipped: left out of RunSpec.identity() at these defaults, so that
    # the config hash of every existing record stays what it was (IDENTITY_DEFAULTS)
    precision: str = _setting("fp32", loop_only=True)  # fp32 or bf16 (autocast); the CLI resolves "auto" first
    compile: bool = _setting(False, loop_only=True)  # torch.compile after the adapter is applied
    # The held-out validation split carved from the training data (harness/validation.py): a count of
    # examples (an int >= 1) or a fraction of the training split (a float in (0, 1)); None: no validation
    # split, and epochs are selected on the test split (the papers' protocol). With one, the epoch (and
    # every hyperparameter `tune` picks) is selected on validation and the test split never steers.
    validation: float | None = _setting(
        None, cli="held-out validation examples carved from the training split (an integer), or a fraction "
                  "of it (0 < f < 1); epochs and tuning are selected on it, never on the test split")
    # With a validation split: also evaluate the test split every epoch (so the record keeps the papers'
    # best-test-epoch score as a labelled variant); False evaluates it once, at the selected epoch.
    test_each_epoch: bool = _setting(
        True, loop_only=True, cli="with a validation split: also score the test split every epoch, so the record keeps "
                                  "the papers' best-test-epoch score beside ours (false: once, at the selected epoch)")

    def __post_init__(self) -> None:
        # nan and inf pass the comparisons below (nan <= 0 is False): reject them first, by name
        for name in ("epochs", "lr", "head_lr", "warmup_ratio", "weight_decay", "grad_clip"):
            value = getattr(self, name)
            if value is None and name in ("head_lr", "grad_clip"):
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise HarnessError(f"{name} must be a finite number, got {value!r}")
        for name in ("batch_size", "eval_batch_size", "max_length", "grad_accum", "max_train_samples",
                     "max_eval_samples", "max_steps", "limit"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise HarnessError(f"{name} must be an integer, got {value!r}")
        if self.weight_decay < 0:
            raise HarnessError(f"weight_decay must not be negative, got {self.weight_decay}")
        if self.grad_clip is not None and self.grad_clip < 0:
            raise HarnessError(f"grad_clip must not be negative (0 or none: no clipping), got {self.grad_clip}")
        if self.epochs <= 0:
            raise HarnessError(f"epochs must be positive, got {self.epochs}")
        for name in ("lr", "head_lr"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise HarnessError(f"learning rates must be positive: {name} must be in (0, 1], got {value}")
        for name in ("batch_size", "eval_batch_size", "max_length", "grad_accum"):
            if getattr(self, name) < 1:
                raise HarnessError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise HarnessError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        for name in ("max_train_samples", "max_eval_samples", "max_steps", "limit"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise HarnessError(f"{name} must be a positive integer, got {value}")
        if self.scheduler not in ("linear", "constant", "cosine"):
            raise HarnessError(f"scheduler must be linear, constant or cosine, got {self.scheduler!r}")
        if self.validation is not None:
            v = self.validation
            if isinstance(v, float) and not math.isfinite(v):
                raise HarnessError(f"validation must be a finite number, got {v!r}")
            count = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and (
                float(v).is_integer() and v >= 1)
            fraction = isinstance(v, float) and math.isfinite(v) and 0.0 < v < 1.0
            if not (count or fraction):
                raise HarnessError(f"validation must be an example count (an integer >= 1) or a fraction in "
                                   f"(0, 1), got {v!r}")
        if self.precision not in ("fp32", "bf16"):
            raise HarnessError(f"precision must be fp32 or bf16 (auto is resolved before planning), got {self.precision!r}")

    def check_plausible(self) -> None:
        """Refuse, at plan time, a value outside its plausible range (``PLAUSIBLE_RANGES``), naming the
        range: ``--lr 2e5`` or ``--batch-size 10**30`` fail before any training, not as a run that
        explodes or overflows. Not part of ``__post_init__``, so records of old runs still read."""
        for name, (low, high, low_open) in PLAUSIBLE_RANGES.items():
            value = getattr(self, name)
            if value is None:
                continue
            if value < low or (low_open and value == low) or value > high:
                raise HarnessError(f"{name} must be in {'(' if low_open else '['}{low:g}, {high:g}], got {value!r}"
                                   + (f" (--{name.replace('_', '-')})" if name in train_override_flags() else ""))

    def with_overrides(self, **overrides: Any) -> TrainConfig:
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})


# TrainConfig's plausible ranges, checked at plan time (check_plausible): name -> (low, high, low excluded).
# warmup_ratio in [0, 1) is checked by __post_init__ already.
INT_MAX = 2**31 - 1
PLAUSIBLE_RANGES: dict[str, tuple[float, float, bool]] = {
    "lr": (0.0, 1.0, True),
    "head_lr": (0.0, 1.0, True),
    "epochs": (0.0, 1000.0, True),
    "weight_decay": (0.0, 1.0, False),
    "grad_clip": (0.0, 1e6, False),
    "batch_size": (1, 2**20, False),
    "eval_batch_size": (1, 2**20, False),
    "max_length": (1, 2**20, False),
    "grad_accum": (1, 2**16, False),
    "max_train_samples": (1, INT_MAX, False),
    "max_eval_samples": (1, INT_MAX, False),
    "max_steps": (1, INT_MAX, False),
    "limit": (1, INT_MAX, False),
}


def train_override_flags() -> dict[str, str]:
    """TrainConfig fields a ``run`` flag overrides, with the flag's help (field metadata ``cli``)."""
    return {f.name: f.metadata["cli"] for f in fields(TrainConfig) if "cli" in f.metadata}


def loop_only_fields() -> frozenset[str]:
    """TrainConfig fields that only steer the training loop (field metadata ``loop_only``)."""
    return frozenset(f.name for f in fields(TrainConfig) if f.metadata.get("loop_only"))


@dataclass(frozen=True)
class RunSpec:
    """One run: (suite, task, adapter, config, seed). ``config_hash`` covers everything but the seed
    and where it runs (device, data folder, results folder), so reruns anywhere find the same record."""

    suite: str
    task: str
    adapter: str
    model: str
    preset: str
    seed: int
    adapter_options: dict[str, Any] = field(default_factory=dict)  # the resolved config, as JSON
    train: TrainConfig = field(default_factory=TrainConfig)
    suite_options: dict[str, Any] = field(default_factory=dict)
    # a run that starts from another run's saved adapter (``run --warm-start``): that run's task and
    # config hash ({"task", "config_hash"}; same suite, adapter and seed). Part of the identity only
    # when set, so the hash of every run without one is what it always was
    warm_start: dict[str, Any] | None = None
    # what the plan knows about the run and its record copies (the preset's defaults, the caps applied and
    # those below the preset's: harness.pipeline.plan.preset_annotations), handed over so that running a
    # run never re-plans it. Never part of the identity, the equality or ``to_dict``
    annotations: dict[str, Any] | None = field(default=None, compare=False, repr=False, metadata={"recorded": False})

    def identity(self) -> dict[str, Any]:
        data = self.to_dict()
        data.pop("seed")
        for name, default in TRAIN_IDENTITY_DEFAULTS.items():
            if data["train"].get(name) == default:
                data["train"].pop(name)
        return data

    @property
    def config_hash(self) -> str:
        canonical = json.dumps(self.identity(), sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(canonical.encode()).hexdigest()[:12]

    @property
    def key(self) -> dict[str, Any]:
        """The record's ``key`` section: what the store files a run under (harness.records.record KEY_FIELDS)."""
        return {"suite": self.suite, "task": self.task, "adapter": self.adapter, "config_hash": self.config_hash,
                "seed": self.seed}

    @property
    def run_id(self) -> str:
        return f"{self.suite}/{self.task}/{self.adapter}/{self.config_hash}/seed{self.seed}"

    @property
    def parent_key(self) -> dict[str, Any] | None:
        """The key of the run this one starts from (``warm_start``), or None."""
        if not self.warm_start:
            return None
        return {"suite": self.suite, "task": self.warm_start["task"], "adapter": self.adapter,
                "config_hash": self.warm_start["config_hash"], "seed": self.seed}

    @property
    def parent_run_id(self) -> str | None:
        key = self.parent_key
        return None if key is None else f"{key['suite']}/{key['task']}/{key['adapter']}/{key['config_hash']}/seed{self.seed}"

    def to_dict(self) -> dict[str, Any]:
        data = to_jsonable(self)
        data.pop("annotations", None)
        if data.get("warm_start") is None:  # records of runs without one look as they always did
            data.pop("warm_start", None)
        return data

    @staticmethod
    def from_dict(data: dict[str, Any]) -> RunSpec:
        data = dict(data)
        data["train"] = TrainConfig(**data.get("train", {}))
        return RunSpec(**data)
