"""Batching utilities shared by the suites: seeded subsampling and length-grouped batches."""

from __future__ import annotations

import os
import random
from typing import TypeVar

T = TypeVar("T")


def subsample(items: list[T], limit: int | None, seed: int) -> list[T]:
    """At most ``limit`` items, a seeded random subset kept in the original order (all when no limit)."""
    if limit is None or len(items) <= limit:
        return items
    order = list(range(len(items)))
    random.Random(seed).shuffle(order)
    return [items[i] for i in sorted(order[:limit])]


def length_grouped_batches(lengths: list[int], batch_size: int, rng: random.Random,
                           chunk_batches: int = 50) -> list[list[int]]:
    """Shuffle, sort by length inside chunks of ``chunk_batches`` batches, then shuffle the batches:
    far less padding than random batches, still a random order."""
    order = list(range(len(lengths)))
    rng.shuffle(order)
    chunk = batch_size * chunk_batches
    batches: list[list[int]] = []
    for start in range(0, len(order), chunk):
        part = sorted(order[start : start + chunk], key=lambda i: lengths[i])
        batches.extend(part[i : i + batch_size] for i in range(0, len(part), batch_size))
    rng.shuffle(batches)
    return batches


# compiled runs pad their batches to a bounded set of widths (harness/pipeline/evaluation.py, issue 38)
COMPILE_PAD_MULTIPLE = 32


def compile_pad_multiple() -> int:
    """The padded sequence length of a compiled run's batches is rounded up to a multiple of this
    (env HARNESS_COMPILE_PAD_MULTIPLE, default 32): with max_length 128 at most four widths, so the
    compiled graphs are a bounded set instead of one per batch length. Eager runs pad nothing extra."""
    return max(1, int(os.environ.get("HARNESS_COMPILE_PAD_MULTIPLE", COMPILE_PAD_MULTIPLE)))
