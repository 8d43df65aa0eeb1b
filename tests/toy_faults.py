"""The toy suite (suites/toy.py) with a fault per task, for the tests of what a grid does when runs go
wrong: ``ok`` trains, ``slow`` sleeps in every step (``TOY_FAULTS_SLEEP`` seconds, default 0.25),
``nan``/``inf`` give a non-finite loss at step 2, ``oom`` raises CUDA's out-of-memory error and ``boom``
a ValueError at step 1, ``explode`` multiplies its (finite) loss by 1000 from step 24 on, ``undefined``
evaluates its primary metric to NaN and ``hang`` sleeps for ever in its first step (a worker to kill).
Every task trains on the ``sign`` points, one epoch of 8 steps (``explode``: 4 epochs), evaluated once.

Importing the module registers the suite ``toy-faults`` (a subprocess imports it before ``harness.cli.main``;
pool and Ray workers import it by name, as they do any plug-in outside the built-in packages);
``unregister`` undoes that, so that no later test sees the suite. ``TOY_FAULTS_MARKERS`` names a folder
where every run leaves a file when its training starts (``<task>-seed<seed>-<pid>-<ns>``), so a test can
act in the middle of a known run instead of after a guessed delay. ``LOADS`` lists the
``load_model`` calls of this process as (task, seed). A data root holding ``toy-faults/note.txt`` puts its
text into the run's ``data_info`` (``data_note``): the proof that a shipped data folder arrived.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from pathlib import Path

import torch

from harness.registry import SUITES, register_suite
from suites.toy import Toy

NAME = "toy-faults"
LOADS: list[tuple[str, int]] = []


@register_suite(NAME)
class FaultyToy(Toy):
    description = "[test] the toy suite with a fault per task"
    tasks = ("ok", "slow", "nan", "inf", "oom", "boom", "explode", "undefined", "hang")

    def __init__(self):
        super().__init__()
        self._steps: dict[str, list[int]] = {}  # training_loss calls per task in this instance (one run)

    def default_tasks(self, preset):
        return ["ok"]

    def train_config(self, preset, task, model):
        epochs = 4 if task == "explode" else 1  # past the divergence check's warm-up (harness.pipeline.loss_log)
        # no validation split: the faults fire at fixed steps of the full 32 points
        return dataclasses.replace(super().train_config(preset, task, model), epochs=epochs, eval_each_epoch=False,
                                   validation=None)

    def load_model(self, model_name, task, ctx):
        LOADS.append((task, ctx.seed))
        return super().load_model(model_name, task, ctx)

    def load_data(self, task, loaded, train, ctx):
        data = super().load_data("sign", loaded, train, ctx)
        info = {**data.info, "task": task}
        note = ctx.data.root / NAME / "note.txt" if ctx.data.root is not None else None
        if note is not None and note.is_file():  # the Ray tests: the data folder reached the worker
            info["data_note"] = note.read_text().strip()
        return dataclasses.replace(data, info=info)

    def train_batches(self, data, train, epoch, ctx):
        task = data.info["task"]
        markers = os.environ.get("TOY_FAULTS_MARKERS")
        if markers:
            Path(markers, f"{task}-seed{ctx.seed}-{os.getpid()}-{time.time_ns()}").touch()
        for index, batch in enumerate(super().train_batches(data, train, epoch, ctx)):
            yield {**batch, "task": task, "index": index}

    def training_loss(self, model, batch):
        task, index = batch.pop("task"), batch.pop("index")
        if task == "slow":
            time.sleep(float(os.environ.get("TOY_FAULTS_SLEEP", "0.25")))
        if task == "hang":
            time.sleep(3600)
        if task == "oom" and index == 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB (fake)")
        if task == "boom" and index == 1:
            raise ValueError("fake failure inside the suite")
        loss = super().training_loss(model, batch)
        if task == "explode" and self._steps.setdefault("explode", [0])[0] >= 24:
            loss = loss * 1000.0
        self._steps.setdefault(task, [0])[0] += 1
        return loss * float(task) if task in ("nan", "inf") and index == 2 else loss

    def evaluate(self, model, data, loaded, train, ctx):
        metrics = super().evaluate(model, data, loaded, train, ctx)
        return {**metrics, "accuracy": float("nan")} if data.info["task"] == "undefined" else metrics


def unregister() -> None:
    """Forget the suite and this module (a later import registers it again) and the runner's load cache."""
    from harness.pipeline import load as load_cache

    SUITES.unregister(NAME)
    sys.modules.pop(__name__, None)
    load_cache.MODEL_CACHE.clear()
    load_cache.DATA_CACHE.clear()
