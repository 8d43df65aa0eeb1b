"""Training one run, in the order it happens: setup (seed, precision, load), attach the adapter, the
optimiser, the loop (with the per-epoch evaluations: ``harness.pipeline.train_eval``). ``run()`` returns the
trained run as a frozen ``harness.pipeline.trained.TrainedRun``, which ``harness.pipeline.collect`` turns into
the record's result sections (with the adapter's extra evaluations and analyses).

``TrainingRun`` holds what the run has established so far; when the run fails part way its
``sections_so_far`` (model and data info, parameter counts, the loss curve) still enter the record
(``harness.pipeline.runner.execute_run``).
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.parameters import module_param_ids
from harness.pipeline import checkpoint as ckpt
from harness.pipeline.attach import attach, build_adapter
from harness.pipeline.evaluation import autocast_for, compile_for_run, resolve_precision, sync_device
from harness.pipeline.load import load_for_run
from harness.pipeline.loss_log import LOSS_SYNC_STEPS, DivergedError, LossLog, loss_points
from harness.pipeline.measure import (
    CudaStepMemory,
    MemoryMeter,
    PhaseTimer,
    SavedTensorMeter,
    StepTimer,
    count_parameters,
)
from harness.pipeline.train_checkpoint import CheckpointingRun
from harness.pipeline.train_eval import EvaluatingRun
from harness.pipeline.train_setup import (  # noqa: F401  (re-exported: harness.pipeline.train is where callers look)
    lr_lambda,
    planned_steps,
    restore_trainable_state,
    seed_everything,
    silence_library_bars,
    trainable_state,
)
from harness.pipeline.trained import EpochScores, TrainedRun, TrainTiming
from harness.spec import RunSpec, TrainConfig
from harness.suite import RunContext, Suite


def epoch_hook_for(options: Any, spec: RunSpec) -> Callable[[int, float | None], bool] | None:
    links = getattr(options, "trial_links", None) or {}
    link = links.get(spec.run_id)
    return link.report if link is not None else None


class TrainingRun(CheckpointingRun, EvaluatingRun):
    """One run from its spec to the trained run: ``run()`` calls the phases in order and returns ``result()``."""

    def __init__(self, spec: RunSpec, suite: Suite, options: Any, device: Any, work_dir: Path,
                 record_path: Path | None):
        self.spec, self.suite, self.options, self.device = spec, suite, options, device
        self.work_dir, self.record_path = work_dir, record_path
        self.train: TrainConfig = spec.train
        self.phases = PhaseTimer()
        # called after each validation score as (epoch, score); True stops the run there (a tuning
        # trial its study prunes: harness/tuning); from the execution options, never from the spec
        self.epoch_hook: Callable[[int, float | None], bool] | None = epoch_hook_for(options, spec)
        self.sections: dict[str, Any] = {}  # model_info, data_info, params, loss_curve once known
        # in-run checkpoints (harness/pipeline/checkpoint.py); an execution option, never part of the spec
        folder = getattr(options, "checkpoint_dir", None)
        self.checkpoint_file: Path | None = ckpt.checkpoint_path(folder, spec.key) if folder else None
        self.checkpoint_every: int | None = getattr(options, "checkpoint_every", None)
        self.checkpoint_keeper: Any = getattr(options, "checkpoint_keeper", None)
        self.resumed_from: dict[str, Any] | None = None  # {"step", "epoch", "batches"} when resumed
        self._resume_batches = 0  # batches of the current epoch consumed before the checkpoint
        self._resume_rng: dict[str, Any] | None = None
        self.checkpoints_saved = 0

    def sections_so_far(self) -> dict[str, Any]:
        """What a failed run still records: the sections established before it failed."""
        return dict(self.sections)

    def run(self) -> TrainedRun:
        """Setup, attach, optimiser, loop; ``harness.pipeline.collect`` then turns the trained run into the
        record's sections."""
        self.setup()
        self.attach()
        self.build_optimizer()
        self.loop()
        return self.result()

    def result(self) -> TrainedRun:
        """The trained run as one frozen value (after ``loop``). The memory figures are read here, when
        the loop has ended and before the adapter's extra evaluations, as the record always measured them."""
        memory = self.memory.report(self.model, self.optimizer)
        cuda_steps = self.step_memory.report()
        if cuda_steps:  # accelerator figures in their own keys, never mixed with the CPU estimate
            memory["cuda_train_steps"] = cuda_steps
        spec, options, sections = self.spec, self.options, self.sections
        scores = EpochScores(
            primary=self.primary, per_epoch=self.per_epoch, best=self.best, best_epoch=self.best_epoch,
            validation_primary=self.val_primary, validation_per_epoch=self.val_per_epoch,
            validation_best=self.val_best, test_best=self.test_best, test_best_epoch=self.test_best_epoch,
            test_reads=self.test_reads, stopped_early=self.stopped_early,
            best_predictions=self.best_predictions, final_predictions=self.final_predictions)
        timing = TrainTiming(
            load_seconds=self.load_seconds, load_cached=self.cache_hits, train_seconds=self.train_seconds,
            eval_seconds=self.eval_seconds, eval_per_epoch=self.eval_per_epoch,
            validation_seconds=self.validation_seconds, eval_merged=self.merged_eval, steps=self.step,
            epochs=self.epoch, samples=self.samples, mean_step_seconds=self.timer.mean_step_seconds,
            phases=dict(self.phases.seconds), checkpoints_saved=self.checkpoints_saved,
            resumed_from=self.resumed_from)
        # the parents of warm-started runs keep their adapter file even without --save-adapters
        keep = options.save_adapters or spec.run_id in getattr(options, "keep_adapters", frozenset())
        return TrainedRun(
            spec=spec, suite=self.suite, work_dir=self.work_dir, record_path=self.record_path,
            keep_adapter=bool(keep), adapter=self.adapter, model=self.model, loaded=self.loaded, data=self.data,
            ctx=self.ctx, head_ids=self.head_ids, counts=self.counts, total_steps=self.total_steps,
            precision=self.precision, compile_info=self.compile_info, memory=memory, scores=scores,
            timing=timing, model_info=sections["model_info"], data_info=sections["data_info"],
            loss_curve=sections["loss_curve"], warm_start=sections.get("warm_start"))

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
        if spec.warm_start:
            self.warm_start()
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
        self.forward_model, self.compile_info = compile_for_run(self.model, self.train.compile, device)
        self.memory = MemoryMeter(device)
        self.memory.start()
        self.timer = StepTimer(device)
        self.saved_meter = SavedTensorMeter()
        self.loss_log = LossLog(on_device=device.type == "cuda")
        self.eval_per_epoch: list[float] = []
        self.merged_eval = False
        self.per_epoch: list[dict[str, Any]] = []
        self.best: dict[str, float] | None = None  # the test metrics of the selected epoch
        self.best_epoch: int | None = None  # the selected epoch (on validation when there is one)
        self.val_per_epoch: list[dict[str, Any]] = []
        self.val_best: dict[str, float] | None = None
        self.test_best: dict[str, float] | None = None  # the papers' protocol: the best test epoch
        self.test_best_epoch: int | None = None
        self.test_reads = 0  # evaluations of the test split (selection never reads them)
        self.selected_state: dict[str, Any] | None = None
        self.stopped_early = False  # a tuning trial pruned by its study (epoch_hook)
        self.best_predictions: dict[str, Any] | None = None  # the suite's side channel (harness/records/predictions.py)
        self.final_predictions: dict[str, Any] | None = None
        self.primary = self.suite.primary_metric(spec.task)
        self.val_primary = self.suite.validation_metric(spec.task)
        self.eval_seconds = 0.0
        self.validation_seconds = 0.0  # the part of eval_seconds spent on the validation split
        self.samples = 0
        self.step = 0
        self.epoch = 0
        self.phases.add("setup", time.perf_counter() - self.t_setup)
        self.train_t0 = time.perf_counter()
        self.bar = tqdm(total=self.total_steps, desc=f"{spec.adapter} {spec.task} s{spec.seed}",
                        disable=not self.options.progress, leave=False, file=sys.stderr, dynamic_ncols=True)
        self._resume()
        try:
            while self.step < self.total_steps and not self.stopped_early:
                self._epoch()
            if self.total_steps == 0:  # an evaluation-only run: score the model once as it came
                self._evaluate_epoch(merge=False)
            self._test_selected()
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
        batches = iter(self.suite.train_batches(self.data, train, self.epoch, self.ctx))
        # a run resumed mid-epoch: the epoch's batches are drawn again (seeded by seed and epoch) and
        # those consumed before the checkpoint skipped; then the RNG states as they were at the checkpoint
        consumed, self._resume_batches = self._resume_batches, 0
        for _ in range(consumed):
            next(batches, None)
        if self._resume_rng is not None:
            ckpt.set_rng_states(self._resume_rng)
            self._resume_rng = None
        for batch in batches:
            consumed += 1
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
            if self.checkpoint_every and self.step % self.checkpoint_every == 0:
                self.save_checkpoint(batches=consumed)
        if micro:  # the epoch's last, partial accumulation
            self._optimizer_step(micro, accumulated)
        if consumed == 0:  # no batch at all: looping on would never end
            raise RuntimeError(f"suite '{self.spec.suite}' gave no training batch in epoch {self.epoch}")
        self.epoch += 1
        last = self.step >= self.total_steps
        loss_log.flush()
        if train.eval_each_epoch or last:
            self._evaluate_epoch(merge=True)
        if not self.stopped_early:
            self.save_checkpoint(batches=0)


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
        ckpt.fault_after_step(self, self.step)
        loss_log = self.loss_log
        if loss_log.last is not None and (not loss_log.on_device or self.step % LOSS_SYNC_STEPS == 0):
            self.bar.set_postfix(loss=f"{loss_log.last:.4f}")
