"""The toy suite: the smallest complete suite, and the template to copy for a new one.

A 4-8-2 MLP learns two tasks on random points: ``sign`` (is the first coordinate positive?) and ``xor``
(do the first two coordinates differ in sign? needs the hidden layer). No data files, no network, no
weights: a run takes about a second on a CPU, so the harness's own tests train it (grids, workers,
kill and resume, exit codes, gradient accumulation) and a change to the loop can be tried on it.
Everything is seeded: the points by the task and split (the same for every run), the model's
initialisation by the run's seed (the runner seeds torch before ``load_model``), the batch order by the
run's seed and the epoch.

It is a suite of its own, so it only runs when asked for (``--suite toy``): no grid of a real suite
includes it, its records exist only where someone ran it, and ``harness ls suites`` marks it as an
example. The adapters that run on it are ``head`` and ``full``: the
MLP has no transformer blocks, so the adapters that look for sites in them (LoRA and the other low-rank
methods, BitFit) are refused at plan time (``meta_model`` lets the planner see that without a run). Its
scores say little (16 steps on 32 points); what it is for is that every part of a run happens.

A new suite copies this file: register a model (or use a catalogue one), name the tasks, give each
preset a ``TrainConfig``, load the model and the data, yield batches, return the loss and the metrics.
The contract tests (``tests/test_contract.py``) pick it up by its registered name.
"""

from __future__ import annotations

import math
import zlib
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from harness.batching import subsample
from harness.config import build
from harness.errors import HarnessError
from harness.metrics import MetricSpec
from harness.models import ModelEntry, register_model
from harness.registry import register_suite
from harness.spec import TrainConfig
from harness.suite import LoadedModel, RunContext, Suite, TaskData
from harness.validation import carve_indices

if TYPE_CHECKING:  # torch is imported when a run needs it: listing the suites must not load it
    import torch
    from torch import nn

MODEL = "toy-mlp"
FEATURES, HIDDEN, CLASSES = 4, 8, 2
# task -> label of each point (a bool tensor); the tasks of the suite are the keys
LABELS = {
    "sign": lambda x: x[:, 0] > 0,
    "xor": lambda x: (x[:, 0] > 0) ^ (x[:, 1] > 0),
}
# One budget for both presets: there is no paper to follow; 16 steps keep a run at about a second.
# A quarter of the training points (8 of 32) is held out as the validation split that selects the epoch (and `tune`'s
# choices); the dev points are the test split, only scored.
TRAIN = TrainConfig(epochs=2, lr=0.1, batch_size=4, eval_batch_size=16, warmup_ratio=0.0, validation=0.25)

# A catalogue entry, so that `--model toy-mlp` is known offline (the weights are built, never loaded).
register_model(ModelEntry(name=MODEL, family="encoder", description="[example] the toy suite's 4-8-2 MLP "
                                                                    "(random init, no weights)"))


@dataclass(frozen=True)
class ToyOptions:
    """``--suite-opt`` keys of the toy suite, validated once (``preflight`` runs this at plan time)."""

    points: int = 32  # points per split (train and dev each)

    def __post_init__(self) -> None:
        if self.points < 1:
            raise HarnessError(f"suite 'toy': points must be at least 1, got {self.points}")


def points(task: str, split: str, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A split's points and labels: the same for every run and process (seeded by task and split)."""
    import torch

    seed = zlib.crc32(f"{task}/{split}".encode())  # stable across processes, unlike hash()
    x = torch.randn(count, FEATURES, generator=torch.Generator().manual_seed(seed))
    return x, LABELS[task](x).long()


def toy_mlp() -> nn.Module:
    from torch import nn

    # named children: "head" is the task head, which the harness trains in full and counts apart
    layers = {"body": nn.Linear(FEATURES, HIDDEN), "act": nn.ReLU(), "head": nn.Linear(HIDDEN, CLASSES)}
    return nn.Sequential(OrderedDict(layers))


@register_suite("toy")
class Toy(Suite):
    description = "[example] a 4-8-2 MLP on random points in about a second; the template for a new suite"
    family = "encoder"  # a classifier with a head: the adapters of encoder models apply
    tasks = tuple(LABELS)
    share_task_data = True  # the points are only read during a run: a grid's runs may share them
    warm_start_tasks = {"sign": ("xor",)}  # `--warm-start sign`: xor's runs start from sign's (the tests)
    metrics = (MetricSpec("accuracy", "fraction", primary=True),)  # names, units, directions

    # ---- plan time: no model, no data ------------------------------------------------------------
    def default_model(self, preset: str) -> str:
        return MODEL

    def check_model(self, model: str) -> None:
        if model != MODEL:
            raise HarnessError(f"suite 'toy' builds its own model; --model must be {MODEL}, got '{model}'")

    def default_adapter_options(self, model: str) -> dict[str, Any]:
        # no transformer blocks: a low-rank adapter targets the MLP's hidden layer (4 -> 8) by its name,
        # at a rank that fits it (and MELoRA's and SeRA's blocks at a count that divides 4, 8 and the rank)
        return {"targets": ("body",), "rank": 4, "split": 2}

    def train_config(self, preset: str, task: str, model: str) -> TrainConfig:
        return TRAIN

    def option_names(self) -> tuple[str, ...]:
        return tuple(ToyOptions.__dataclass_fields__)

    def preflight(self, options: dict[str, Any], preset: str, model: str) -> None:
        build(ToyOptions, options, "suite 'toy'")  # a bad value fails before any run starts

    def meta_model(self, model: str, task: str) -> tuple[nn.Module, tuple[str, ...]] | None:
        import torch

        with torch.device("meta"):
            return toy_mlp(), ("head",)

    def primary_metric(self, task: str) -> str:
        return "accuracy"

    # ---- run time ----------------------------------------------------------------------------------
    def load_model(self, model_name: str, task: str, ctx: RunContext) -> LoadedModel:
        return LoadedModel(model=toy_mlp(), family=self.family, head_modules=("head",),
                           info={"model": model_name, "pretrained": False})

    def load_data(self, task: str, loaded: LoadedModel, train: TrainConfig, ctx: RunContext) -> TaskData:
        count = build(ToyOptions, ctx.options, "suite 'toy'").points
        splits = {}
        # the validation split is carved from the training points first, the same for every seed
        # (harness/validation.py); --max-train-samples / --max-eval-samples then take a seeded subset
        x, y = points(task, "train", count)
        train_idx, val_idx = carve_indices(count, train.validation, f"{self.name}/{task}")
        keep = subsample(train_idx, train.max_train_samples, ctx.seed)
        splits["train"] = (x[keep], y[keep])
        val_idx = subsample(val_idx, train.max_eval_samples, 0)  # a smoke cap, after the carve
        splits["validation"] = (x[val_idx], y[val_idx])
        x, y = points(task, "dev", count)
        keep = subsample(list(range(count)), train.max_eval_samples, 0)
        splits["dev"] = (x[keep], y[keep])
        # recorded as the run's data_info: what was trained, selected and evaluated on
        return TaskData(train=splits["train"], eval=splits["dev"],
                        validation=splits["validation"] if val_idx else None,
                        info={"task": task, "train_examples": len(splits["train"][1]),
                              "validation_examples": len(val_idx), "eval_examples": len(splits["dev"][1])})

    def num_train_batches(self, data: TaskData, train: TrainConfig) -> int:
        return math.ceil(len(data.train[1]) / train.batch_size)

    def train_batches(self, data: TaskData, train: TrainConfig, epoch: int, ctx: RunContext) -> Iterator[dict]:
        import torch

        x, y = data.train
        order = torch.randperm(len(y), generator=torch.Generator().manual_seed(ctx.seed * 1000 + epoch))
        for start in range(0, len(y), train.batch_size):
            idx = order[start:start + train.batch_size]
            # num_samples: popped by the loop (throughput), the rest goes to training_loss
            yield {"x": x[idx].to(ctx.device), "y": y[idx].to(ctx.device), "num_samples": len(idx)}

    def training_loss(self, model: nn.Module, batch: dict[str, Any]) -> torch.Tensor:
        from torch import nn

        return nn.functional.cross_entropy(model(batch["x"]).float(), batch["y"])  # float: bf16 autocast

    def evaluate(self, model: nn.Module, data: TaskData, loaded: LoadedModel, train: TrainConfig,
                 ctx: RunContext) -> dict[str, float]:
        x, y = data.eval
        correct = 0
        for start in range(0, len(y), train.eval_batch_size):  # the harness runs this under inference_mode
            logits = model(x[start:start + train.eval_batch_size].to(ctx.device))
            correct += int((logits.argmax(-1).cpu() == y[start:start + train.eval_batch_size]).sum())
        return {"accuracy": correct / len(y)}
