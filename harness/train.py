"""Training one run, in the order it happens: setup (seed, precision, load), attach the adapter, the
optimiser, the loop (with the per-epoch evaluations). ``harness.collect`` then adds the adapter's extra
evaluations and analyses and turns the trained run into the record's result sections.

``TrainingRun`` holds what the run has established so far; when the run fails part way its
``sections_so_far`` (model and data info, parameter counts, the loss curve) still enter the record
(``harness.runner.execute_run``).
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.adapter import Adapter
from harness.attach import attach, build_adapter
from harness.errors import HarnessError
from harness.evaluation import (
    autocast_for,
    better,
    compile_for_run,
    evaluate,
    merged_for_eval,
    resolve_precision,
    sync_device,
)
from harness.load_cache import load_for_run
from harness.loss_log import LOSS_SYNC_STEPS, DivergedError, LossLog, loss_points
from harness.measure import (
    CudaStepMemory,
    MemoryMeter,
    PhaseTimer,
    SavedTensorMeter,
    StepTimer,
    count_parameters,
    module_param_ids,
)
from harness.spec import RunSpec, TrainConfig
from harness.suite import RunContext, Suite


def seed_everything(seed: int) -> None:
    import random

    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def lr_lambda(kind: str, warmup: int, total: int) -> Callable[[int], float]:
    def fn(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        if kind == "constant":
            return 1.0
        progress = (step - warmup) / max(1, total - warmup)
        if kind == "cosine":
            return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
        return max(0.0, 1.0 - progress)

    return fn


def silence_library_bars() -> None:
    """--no-progress reaches the libraries' own bars too (transformers' weight loading, the hub)."""
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    if "transformers" in sys.modules:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()


def planned_steps(adapter: Adapter, batches_per_epoch: int, train: TrainConfig) -> int:
    """Optimiser steps of the run: epochs x steps per epoch, capped by ``max_steps``; 0 for an adapter
    that does not train (evaluation only: the pretrained model as it is)."""
    steps_per_epoch = max(1, math.ceil(batches_per_epoch / train.grad_accum))
    total_steps = math.ceil(train.epochs * steps_per_epoch)
    if train.max_steps is not None:
        total_steps = min(total_steps, train.max_steps)
    return total_steps if adapter.trains else 0


class TrainingRun:
    """One run from its spec to the record's result sections: ``run()`` calls the phases in order."""

    def __init__(self, spec: RunSpec, suite: Suite, options: Any, device: Any, work_dir: Path,
                 record_path: Path | None):
        self.spec, self.suite, self.options, self.device = spec, suite, options, device
        self.work_dir, self.record_path = work_dir, record_path
        self.train: TrainConfig = spec.train
        self.phases = PhaseTimer()
        self.sections: dict[str, Any] = {}  # model_info, data_info, params, loss_curve once known

    def sections_so_far(self) -> dict[str, Any]:
        """What a failed run still records: the sections established before it failed."""
        return dict(self.sections)

    def run(self) -> None:
        """Setup, attach, optimiser, loop; ``harness.collect`` then turns the trained run into the
        record's sections."""
        self.setup()
        self.attach()
        self.build_optimizer()
        self.loop()

    # ---- setup: the run's context, seed, precision, the load ---------------------------------------
    def setup(self) -> None:
        import torch

        spec, options, device = self.spec, self.options, self.device
        if options.threads:
            torch.set_num_threads(options.threads)
        self.adapter = build_adapter(spec.adapter, dict(spec.adapter_options))
        self.ctx = RunContext(
            device=device, data=options.data, seed=spec.seed, preset=spec.preset, work_dir=self.work_dir,
            options=dict(spec.suite_options), run_id=spec.run_id, record_path=self.record_path,
            progress=options.progress,
        )
        if not options.progress:
            silence_library_bars()
        seed_everything(spec.seed)
        self.step_memory = CudaStepMemory(device)
        busy = self.step_memory.baseline()  # before the model loads, as peft's method_comparison
        if busy:
            print(busy, file=sys.stderr)
        self.precision = resolve_precision(self.train.precision, device)
        self.amp = autocast_for(self.precision, device)
        t_load = time.perf_counter()
        self.loaded, self.data, self.cache_hits = load_for_run(self.suite, spec, self.ctx, options.cache)
        loaded = self.loaded
        self.sections["model_info"] = {"family": loaded.family, "head_modules": list(loaded.head_modules),
                                       **loaded.info}
        self.sections["data_info"] = dict(self.data.info)
        self.load_seconds = time.perf_counter() - t_load

    # ---- attach: the adapter on the loaded model, the head trainable, counts -----------------------
    def attach(self) -> None:
        self.t_setup = time.perf_counter()
        spec, adapter, loaded = self.spec, self.adapter, self.loaded
        batches_per_epoch = self.suite.num_train_batches(self.data, self.train)
        self.total_steps = planned_steps(adapter, batches_per_epoch, self.train)
        model = loaded.model
        self.head_ids = module_param_ids(model, loaded.head_modules)
        seed_everything(spec.seed)  # adapter init does not depend on how much randomness loading used
        model = attach(adapter, model, family=loaded.family, head_modules=loaded.head_modules,
                       total_steps=self.total_steps, seed=spec.seed, task_type=loaded.task_type)
        self.head_params = [p for p in model.parameters() if id(p) in self.head_ids]
        if adapter.trains_head:
            for p in self.head_params:
                p.requires_grad_(True)
        model.to(self.device)
        self.model = model
        self.counts = count_parameters(model, self.head_ids)
        self.sections["params"] = self.counts.to_dict()
        if self.counts.trainable_total == 0 and adapter.trains:
            raise HarnessError(f"adapter '{spec.adapter}' left nothing trainable")

    # ---- optimiser: parameter groups, the adapter's optimiser or AdamW, the schedule ---------------
    def build_optimizer(self) -> None:
        import torch

        train, model = self.train, self.model
        adapter_params = [p for p in model.parameters() if p.requires_grad and id(p) not in self.head_ids]
        trainable_head = [p for p in self.head_params if p.requires_grad]
        groups = []
        if adapter_params:
            groups.append({"params": adapter_params, "lr": train.lr, "name": "adapter"})
        if trainable_head:
            groups.append({"params": trainable_head, "lr": train.head_lr or train.lr, "name": "head"})
        self.optimizer: Any = None
        if self.adapter.trains:
            self.optimizer = self.adapter.build_optimizer(model, groups, train.lr, train.weight_decay)
            if self.optimizer is None:
                self.optimizer = torch.optim.AdamW(groups, lr=train.lr, weight_decay=train.weight_decay)
            warmup = int(train.warmup_ratio * self.total_steps)
            self.scheduler = torch.optim.lr_scheduler.LambdaLR(
                self.optimizer, lr_lambda(train.scheduler, warmup, self.total_steps))
        self.trained_params = [p for g in groups for p in g["params"]]

    # ---- the loop: steps, gradient accumulation, an evaluation per epoch ---------------------------
    def loop(self) -> None:
        from tqdm.auto import tqdm

        spec, device = self.spec, self.device
        self.forward_model, self.compile_info = compile_for_run(self.model, self.train.compile)
        self.memory = MemoryMeter(device)
        self.memory.start()
        self.timer = StepTimer(device)
        self.saved_meter = SavedTensorMeter()
        self.loss_log = LossLog(on_device=device.type == "cuda")
        self.eval_per_epoch: list[float] = []
        self.merged_eval = False
        self.per_epoch: list[dict[str, Any]] = []
        self.best: dict[str, float] | None = None
        self.best_epoch: int | None = None
        self.best_predictions: dict[str, Any] | None = None  # the suite's side channel (harness/predictions.py)
        self.final_predictions: dict[str, Any] | None = None
        self.primary = self.suite.primary_metric(spec.task)
        self.eval_seconds = 0.0
        self.samples = 0
        self.step = 0
        self.epoch = 0
        self.phases.add("setup", time.perf_counter() - self.t_setup)
        self.train_t0 = time.perf_counter()
        self.bar = tqdm(total=self.total_steps, desc=f"{spec.adapter} {spec.task} s{spec.seed}",
                        disable=not self.options.progress, leave=False, file=sys.stderr, dynamic_ncols=True)
        try:
            while self.step < self.total_steps:
                self._epoch()
            if self.total_steps == 0:  # an evaluation-only run: score the model once as it came
                self._evaluate_epoch(merge=False)
        finally:
            self.bar.close()
            self.loss_log.flush(check=False)
            self.sections["loss_curve"] = loss_points(self.loss_log.values)
        sync_device(device)
        self.train_seconds = time.perf_counter() - self.train_t0 - self.eval_seconds
        self.phases.add("train", self.train_seconds)
        self.phases.add("eval", self.eval_seconds)

    def _epoch(self) -> None:
        train, model, adapter, loss_log = self.train, self.model, self.adapter, self.loss_log
        model.train()
        micro = 0
        accumulated: Any = 0.0
        step_at_epoch_start = self.step
        for batch in self.suite.train_batches(self.data, train, self.epoch, self.ctx):
            n = int(batch.pop("num_samples"))
            if micro == 0:
                adapter.on_step_begin(model, self.step)
                self.timer.begin()
            measure = self.step == 1 and micro == 0
            with self.saved_meter.measure() if measure else contextlib.nullcontext():
                with self.amp():
                    loss = self.suite.training_loss(self.forward_model, batch)
                    extra = adapter.extra_loss(model)
                    if extra is not None:
                        loss = loss + extra
                (loss / train.grad_accum).backward()
            if measure:
                self.memory.saved_for_backward = self.saved_meter.bytes
            if loss_log.on_device:  # no host sync per step: LossLog reads and checks them in blocks
                accumulated = loss.detach().float() / train.grad_accum + accumulated
            else:
                value = float(loss.detach())
                if not math.isfinite(value):
                    raise DivergedError(self.step, value)
                accumulated += value / train.grad_accum
            self.samples += n
            micro += 1
            if micro < train.grad_accum:
                continue
            self._optimizer_step(micro, accumulated)
            micro = 0
            accumulated = 0.0
            if self.step >= self.total_steps:
                break
        if micro:  # the epoch's last, partial accumulation
            self._optimizer_step(micro, accumulated)
        if self.step == step_at_epoch_start:  # no batch at all: looping on would never end
            raise RuntimeError(f"suite '{self.spec.suite}' gave no training batch in epoch {self.epoch}")
        self.epoch += 1
        last = self.step >= self.total_steps
        loss_log.flush()
        if train.eval_each_epoch or last:
            self._evaluate_epoch(merge=True)

    def _optimizer_step(self, micro: int, accumulated: Any) -> None:
        # Each micro-batch's loss was divided by grad_accum; the last accumulation of an epoch may hold
        # fewer micro-batches, so its gradients (and logged loss) are rescaled to the mean over those it
        # has. Gradients never carry into the next epoch, and an epoch shorter than grad_accum still steps.
        import torch

        train = self.train
        if micro < train.grad_accum:
            scale = train.grad_accum / micro
            for p in self.trained_params:
                if p.grad is not None:
                    p.grad.mul_(scale)
            accumulated *= scale
        if train.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.trained_params, train.grad_clip)
        self.optimizer.step()
        self.adapter.on_step_end(self.model, self.step)
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.timer.end()
        self.step_memory.sample()
        self.loss_log.append(accumulated, self.step)
        self.step += 1
        self.bar.update(1)
        loss_log = self.loss_log
        if loss_log.last is not None and (not loss_log.on_device or self.step % LOSS_SYNC_STEPS == 0):
            self.bar.set_postfix(loss=f"{loss_log.last:.4f}")

    def _evaluate_epoch(self, merge: bool) -> None:
        """Score the model after an epoch (merged into the base weights where that is exact), or once
        as it came (``merge`` False: an evaluation-only run, epoch 0)."""
        if merge:
            sync_device(self.device)
            self.step_memory.before_eval()
        t_eval = time.perf_counter()
        args = (self.suite, self.forward_model, self.data, self.loaded, self.train, self.ctx)
        if merge:
            with merged_for_eval(self.adapter, self.model) as self.merged_eval, self.amp():
                metrics = evaluate(*args)
        else:
            with self.amp():
                metrics = evaluate(*args)
        self.eval_per_epoch.append(time.perf_counter() - t_eval)
        self.eval_seconds += self.eval_per_epoch[-1]
        self.per_epoch.append({"epoch": self.epoch, "step": self.step, **metrics})
        predictions = dict(self.ctx.predictions) or None
        self.ctx.predictions.clear()
        if not merge:
            self.best, self.best_epoch = metrics, 0
            self.best_predictions = predictions
        elif self.best is None or better(metrics.get(self.primary), self.best.get(self.primary)):
            self.best, self.best_epoch = metrics, self.epoch
            self.best_predictions = predictions
        self.final_predictions = predictions
