"""The evaluations inside the training loop, as a part of ``harness.pipeline.train.TrainingRun``: the
model scored after each epoch (validation selects the epoch where the data has a validation split), and
the one test evaluation of the selected state after the loop."""

from __future__ import annotations

import contextlib
import time

from harness.pipeline.evaluation import better, evaluate, merged_for_eval, sync_device
from harness.pipeline.train_setup import restore_trainable_state, trainable_state


class EvaluatingRun:
    """Mixed into TrainingRun: everything here reads and writes the run's own state."""

    def _evaluate_epoch(self, merge: bool) -> None:
        """Score the model after an epoch (merged into the base weights where that is exact), or once
        as it came (``merge`` False: an evaluation-only run, epoch 0).

        With a validation split the epoch is selected on it; the test split is scored every epoch only
        when ``test_each_epoch`` asks for it (so the record keeps the papers' best-test-epoch score as
        a labelled variant), else once after training, at the selected epoch (``_test_selected``)."""
        if merge:
            sync_device(self.device)
            self.step_memory.before_eval()
        t_eval = time.perf_counter()
        validating = self.data.validation is not None
        read_test = not validating or self.train.test_each_epoch or not merge
        args = (self.suite, self.forward_model, self.data, self.loaded, self.train, self.ctx)
        merged = merged_for_eval(self.adapter, self.model) if merge else contextlib.nullcontext(False)
        with merged as was_merged, self.amp():
            if merge:
                self.merged_eval = was_merged
            t_val = time.perf_counter()
            val_metrics = evaluate(*args, split="validation") if validating else None
            self.ctx.predictions.clear()  # the side channel keeps the test split's predictions only
            self.validation_seconds += time.perf_counter() - t_val if validating else 0.0
            metrics = evaluate(*args) if read_test else None
        if metrics is not None:
            self.test_reads += 1
        self.eval_per_epoch.append(time.perf_counter() - t_eval)
        self.eval_seconds += self.eval_per_epoch[-1]
        point = {"epoch": self.epoch, "step": self.step}
        predictions = dict(self.ctx.predictions) or None  # the test split's (harness/records/predictions.py)
        self.ctx.predictions.clear()
        if metrics is not None:
            self.per_epoch.append({**point, **metrics})
            self.final_predictions = predictions
            if self.test_best is None or better(metrics.get(self.primary), self.test_best.get(self.primary)):
                self.test_best, self.test_best_epoch = metrics, self.epoch
        if val_metrics is None:  # the papers' protocol: the best test epoch
            if not merge:
                self.best, self.best_epoch = metrics, 0
                self.best_predictions = predictions
            elif self.best is None or better(metrics.get(self.primary), self.best.get(self.primary)):
                self.best, self.best_epoch = metrics, self.epoch
                self.best_predictions = predictions
            return
        self.val_per_epoch.append({**point, **val_metrics})
        if self.val_best is None or better(val_metrics.get(self.val_primary), self.val_best.get(self.val_primary)):
            self.val_best, self.best_epoch = val_metrics, self.epoch
            self.best = metrics  # None until _test_selected scores the selected state
            self.best_predictions = predictions
            if metrics is None:
                self.selected_state = trainable_state(self.model)
        if self.epoch_hook is not None and self.epoch_hook(self.epoch, val_metrics.get(self.val_primary)):
            self.stopped_early = True

    def _test_selected(self) -> None:
        """The one test evaluation of a run that did not score the test split every epoch: the
        validation-selected state, restored if training went on past it."""
        if self.best is not None or self.val_best is None or self.stopped_early:
            return
        if self.selected_state is not None and self.best_epoch != self.epoch:
            restore_trainable_state(self.model, self.selected_state)
        self.selected_state = None
        t_eval = time.perf_counter()
        args = (self.suite, self.forward_model, self.data, self.loaded, self.train, self.ctx)
        with merged_for_eval(self.adapter, self.model), self.amp():
            self.best = evaluate(*args)
        self.best_predictions = dict(self.ctx.predictions) or None
        self.final_predictions = self.best_predictions
        self.ctx.predictions.clear()
        self.test_reads += 1
        self.eval_seconds += time.perf_counter() - t_eval
        self.test_best, self.test_best_epoch = None, None  # one test score: no best-test-epoch variant


