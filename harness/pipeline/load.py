"""Loading a run's model and data, and the per-process cache of loads.

Within a process, runs that share (suite, model, task, seed, ...) share one model load and one
tokenized dataset (``LoadCache``); the grid is executed in an order that puts such runs next to each
other (``harness.grid.run_grid.execution_order``), so a cache of one or two entries is enough.
"""

from __future__ import annotations

import copy
import json
import os
import random
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import replace
from typing import Any

from harness.config import to_jsonable
from harness.spec import RunSpec, loop_only_fields
from harness.suite import LoadedModel, RunContext, Suite, TaskData

# A pristine copy of a loaded model is kept for the next run only when its weights are on the CPU and
# take at most this much memory (env HARNESS_MODEL_CACHE_MB; 0 turns the model cache off). Above it a
# second copy in RAM costs more than reloading from the local disk saves.
DEFAULT_MODEL_CACHE_MB = 2048
# TrainConfig fields that only steer the training loop (their metadata says so); every other field may
# change the loaded data
LOOP_ONLY_FIELDS = loop_only_fields()


class LoadCache:
    """A small LRU of loads, per process. Entries hold the value and the RNG state right after the
    load, which a hit restores: a cached run then sees exactly the random numbers an uncached run
    would (the classifier head is initialised by the seeded RNG inside the load)."""

    def __init__(self, entries: int):
        if entries < 1:
            raise ValueError("a LoadCache needs at least one entry")
        self.entries = entries
        self._items: OrderedDict[Hashable, tuple[Any, Any]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, key: Hashable) -> tuple[Any, Any] | None:
        item = self._items.get(key)
        if item is None:
            self.misses += 1
            return None
        self._items.move_to_end(key)
        self.hits += 1
        return item

    def put(self, key: Hashable, value: Any, rng: Any) -> None:
        self._items[key] = (value, rng)
        self._items.move_to_end(key)
        while len(self._items) > self.entries:
            self._items.popitem(last=False)

    def clear(self) -> None:
        self._items.clear()


# one entry each is enough because execution_order groups runs that share a load
MODEL_CACHE = LoadCache(1)
DATA_CACHE = LoadCache(2)


def _rng_state() -> tuple[Any, ...]:
    import numpy as np
    import torch

    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    return random.getstate(), np.random.get_state(), torch.get_rng_state(), cuda


def _set_rng_state(state: tuple[Any, ...]) -> None:
    import numpy as np
    import torch

    py, npy, cpu, cuda = state
    random.setstate(py)
    np.random.set_state(npy)
    torch.set_rng_state(cpu)
    if cuda is not None:
        torch.cuda.set_rng_state_all(cuda)


def model_cache_limit_bytes() -> int:
    return int(float(os.environ.get("HARNESS_MODEL_CACHE_MB", DEFAULT_MODEL_CACHE_MB)) * 2**20)


def _cacheable_model(model: Any) -> bool:
    """Only CPU-resident models that fit the budget: a GPU copy would halve what a run may use."""
    tensors = [*model.parameters(), *model.buffers()]
    if any(t.device.type != "cpu" for t in tensors):
        return False
    return sum(t.numel() * t.element_size() for t in tensors) <= model_cache_limit_bytes()


def _load_key(suite: Suite, spec: RunSpec, ctx: RunContext) -> tuple[Hashable, ...]:
    # everything the suite's load_model sees (the seed too: a new head is drawn from the seeded RNG), and
    # the loader itself, so that a replaced (e.g. monkeypatched) loader never gets another's result
    return (type(suite).load_model, spec.suite, spec.model, spec.task, spec.preset, spec.seed, str(ctx.device),
            str(ctx.data.root), json.dumps(spec.suite_options, sort_keys=True, default=str))


def _data_key(suite: Suite, spec: RunSpec, ctx: RunContext) -> tuple[Hashable, ...]:
    fields = {k: v for k, v in to_jsonable(spec.train).items() if k not in LOOP_ONLY_FIELDS}
    return (type(suite).load_data, *_load_key(suite, spec, ctx), json.dumps(fields, sort_keys=True, default=str))


def load_for_run(suite: Suite, spec: RunSpec, ctx: RunContext, use_cache: bool) -> tuple[LoadedModel, TaskData, dict[str, bool]]:
    """The suite's load_model + load_data, served from the process cache when an earlier run of this
    process loaded the same thing. The run gets a deep copy of the cached model (adapters modify the
    model in place) and shares the cached TaskData (read-only during a run)."""
    hits = {"model": False, "data": False}
    key = _load_key(suite, spec, ctx)
    cached = MODEL_CACHE.get(key) if use_cache else None
    if cached is not None:
        pristine, rng = cached
        loaded = replace(pristine, model=copy.deepcopy(pristine.model), info=copy.deepcopy(pristine.info))
        _set_rng_state(rng)
        hits["model"] = True
    else:
        loaded = suite.load_model(spec.model, spec.task, ctx)
        if use_cache and _cacheable_model(loaded.model):
            pristine = replace(loaded, model=copy.deepcopy(loaded.model), info=copy.deepcopy(loaded.info))
            MODEL_CACHE.put(key, pristine, _rng_state())
    share = use_cache and suite.share_task_data
    data_key = _data_key(suite, spec, ctx)
    cached = DATA_CACHE.get(data_key) if share else None
    if cached is not None:
        data, rng = cached
        _set_rng_state(rng)
        hits["data"] = True
    else:
        data = suite.load_data(spec.task, loaded, spec.train, ctx)
        if share:
            DATA_CACHE.put(data_key, data, _rng_state())
    return loaded, data, hits
