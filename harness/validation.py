"""The held-out validation split: carved from a task's training data, the same for every method and seed.

``TrainConfig.validation`` declares its size per preset (an example count, or a fraction of the training
split). The carve is seeded by the suite and task only (never by the run seed), so every adapter and
every seed is selected on the very same examples, and it happens before the training subsample
(``--max-train-samples``) is drawn from the rest, so no validation example is ever trained on.
Suites call ``carve`` in ``load_data`` and put the held-out part in ``TaskData.validation``.
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Callable, Hashable, Sequence
from typing import TypeVar

from harness.errors import HarnessError

T = TypeVar("T")


def validation_count(available: int, size: float | None) -> int:
    """How many of ``available`` training examples the validation split takes (0: none declared)."""
    if size is None:
        return 0
    count = int(round(size * available)) if size < 1 else int(size)
    count = max(1, count)
    if count >= available:
        raise HarnessError(f"the validation split ({count} examples) would leave no training data out of "
                           f"{available}; declare a smaller validation size")
    return count


def carve_indices(available: int, size: float | None, key: str,
                  identities: Sequence[Hashable] | None = None) -> tuple[list[int], list[int]]:
    """(training indices, validation indices), each in the original order. ``key`` (suite/task) seeds
    the draw: stable across processes and machines (crc32, not ``hash``), independent of the run seed.

    ``identities`` (one per item, e.g. the example's text): items that are the same example are held
    out together, so that a duplicate in the source data (GLUE's train splits have some: RTE 2, SST-2
    371) is never trained on while its twin is validated on. The split then holds at least the
    declared count (a few more where the last group drawn had twins)."""
    count = validation_count(available, size)
    if count == 0:
        return list(range(available)), []
    ids: Sequence[Hashable] = identities if identities is not None else range(available)
    if len(ids) != available:
        raise HarnessError(f"carve: {len(ids)} identities for {available} items")
    groups: dict[Hashable, list[int]] = {}
    for i, ident in enumerate(ids):
        groups.setdefault(ident, []).append(i)
    order = list(groups)
    random.Random(zlib.crc32(f"validation/{key}".encode())).shuffle(order)
    held: list[int] = []
    for ident in order:
        if len(held) >= count:
            break
        held.extend(groups[ident])
    if len(held) >= available:
        raise HarnessError(f"the validation split would leave no training data out of {available}")
    held_set = set(held)
    return [i for i in range(available) if i not in held_set], sorted(held)


def carve(items: Sequence[T], size: float | None, key: str,
          identity: Callable[[T], Hashable] | None = None) -> tuple[list[T], list[T]]:
    """(training items, validation items) of a task's training split; ``identity`` names an item's
    content (duplicates are held out together)."""
    identities = [identity(x) for x in items] if identity is not None else None
    train_idx, val_idx = carve_indices(len(items), size, key, identities)
    return [items[i] for i in train_idx], [items[i] for i in val_idx]
