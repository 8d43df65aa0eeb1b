"""COCO captions: the split files, the captions JSON read and checked (one error line per malformed entry),
images with their captions, and the epoch's (image, caption) pairs."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.datafiles import cached, read_json, require_fields
from harness.errors import HarnessError

if TYPE_CHECKING:
    pass


# ------------------------------------------------------------------------------------------------------
# data
# ------------------------------------------------------------------------------------------------------


HOW_TO_GET_COCO = (
    "put COCO in the release layout under <data root>/coco: annotations/captions_{train,val}2017.json and the "
    "image folders train2017/ and val2017/ (cocodataset.org/#download)"
)


@dataclass
class CaptionedImages:
    paths: list[Path]
    captions: list[list[str]]  # per image
    captions_file: Path
    images_in_file: int  # images the captions file describes (vs len(paths) on disk)


def _first(candidates: list[Path], what: str) -> Path:
    for path in candidates:
        if path.exists():
            return path
    raise HarnessError(f"COCO {what} not found (looked for {', '.join(str(c) for c in candidates)}); {HOW_TO_GET_COCO}")


def coco_split_files(folder: Path, split: str) -> tuple[Path, Path]:
    """(captions JSON, image folder) of ``split`` ('train' or 'val') in a COCO-layout folder."""
    name = f"{split}2017"
    images = _first([folder / name, folder / "images" / name, folder / "coco_mini" / name], f"{name} image folder")
    captions = _first(
        [folder / "annotations" / f"captions_{name}.json", folder / f"captions_{name}.json",
         images.parent / "annotations" / f"captions_{name}.json"],
        f"captions_{name}.json",
    )
    return captions, images


COCO_CAPTIONS = "a COCO captions file (a JSON object with 'images' and 'annotations' lists)"


def read_captions_json(captions_file: Path) -> dict[str, Any]:
    """The captions JSON, its structure validated: one line naming the file and the entry otherwise."""
    data = read_json(captions_file, COCO_CAPTIONS)
    require_fields(data, {"images": list, "annotations": list}, captions_file, "top level")
    for i, image in enumerate(data["images"]):
        require_fields(image, {"id": int, "file_name": str}, captions_file, f"images[{i}]")
    for i, ann in enumerate(data["annotations"]):
        require_fields(ann, {"image_id": int, "caption": str}, captions_file, f"annotations[{i}]")
    return data


def read_captioned_images(captions_file: Path, image_dir: Path) -> CaptionedImages:
    """Images of the captions file that exist in ``image_dir``, in file-name order, with their captions
    (read once per file identity and process: the plan-time check and the runs share it)."""
    return cached((captions_file, image_dir), "coco-captions", lambda: _read_captioned_images(captions_file, image_dir))


def _read_captioned_images(captions_file: Path, image_dir: Path) -> CaptionedImages:
    data = read_captions_json(captions_file)
    by_id: dict[int, list[str]] = {}
    for ann in data["annotations"]:
        by_id.setdefault(ann["image_id"], []).append(ann["caption"].strip())
    paths, captions = [], []
    for image in sorted(data["images"], key=lambda im: im["file_name"]):
        path = image_dir / image["file_name"]
        if path.is_file() and by_id.get(image["id"]):
            paths.append(path)
            captions.append(by_id[image["id"]])
    if not paths:
        raise HarnessError(f"none of the images in {captions_file} are in {image_dir}; {HOW_TO_GET_COCO}")
    return CaptionedImages(paths, captions, captions_file, len(data["images"]))


def epoch_pairs(captions_per_image: list[int], batch_size: int, rng: random.Random) -> list[list[tuple[int, int]]]:
    """Batches of (image, caption number) for one epoch: every caption once, one caption per image per
    round, so no image appears twice in a batch."""
    rounds = max(captions_per_image)
    orders = [rng.sample(range(n), n) for n in captions_per_image]
    batches: list[list[tuple[int, int]]] = []
    for r in range(rounds):
        images = [i for i, n in enumerate(captions_per_image) if r < n]
        rng.shuffle(images)
        pairs = [(i, orders[i][r]) for i in images]
        batches.extend(pairs[j : j + batch_size] for j in range(0, len(pairs), batch_size))
    rng.shuffle(batches)
    return batches
