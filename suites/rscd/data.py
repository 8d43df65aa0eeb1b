"""RSCD's data: the 27 road-surface classes and their parsing from file names, the label modes, the release's
split folders, scanning them, and the seeded stratified sample."""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from harness.datafiles import cached
from harness.errors import HarnessError

if TYPE_CHECKING:
    pass


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
