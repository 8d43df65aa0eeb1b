"""The in-run checkpoints and the warm start of a run (harness/pipeline/checkpoint.py), as a part of
``harness.pipeline.train.TrainingRun``: saved at each epoch end (or every N steps) and resumed from, so that a
preempted or killed run ends with the record an uninterrupted one would have."""

from __future__ import annotations

import contextlib

from harness.errors import HarnessError
from harness.pipeline import checkpoint as ckpt
from harness.pipeline.train_setup import restore_trainable_state, trainable_state


class CheckpointingRun:
    """Mixed into TrainingRun: everything here reads and writes the run's own state."""

    def warm_start(self) -> None:
        """Start from the parent run's saved adapter (``RunSpec.warm_start``): its adapter tensors (never
        its head: the tasks' heads differ) replace the freshly initialised ones."""
        import json

        from safetensors.torch import load_file

        from harness.records.record import record_relpath

        parent = self.spec.parent_key
        if self.record_path is None:
            raise HarnessError(f"warm start from {self.spec.parent_run_id} needs the result store (no record path)")
        root = self.record_path.parent.parent.parent  # <root>/<suite>/<task>/<file>
        record_file = root / record_relpath(parent)
        tensors_file = record_file.with_suffix(".adapter.safetensors")
        status = None
        if record_file.is_file():
            with contextlib.suppress(ValueError, OSError):
                status = json.loads(record_file.read_text(encoding="utf-8")).get("status")
        if status != "success" or not tensors_file.is_file():
            raise HarnessError(f"warm start: the run {self.spec.parent_run_id} has no successful record with a saved "
                               f"adapter ({record_file}: {status or 'missing'}); it runs first in the same grid")
        state = load_file(str(tensors_file))
        head_names = {n for n, p in self.model.named_parameters() if id(p) in self.head_ids}
        own = self.adapter.adapter_state_dict(self.model, frozenset(self.head_ids))
        usable = {k: v for k, v in state.items() if k in own and k not in head_names and own[k].shape == v.shape}
        if not usable:
            raise HarnessError(f"warm start: no tensor of {tensors_file.name} fits this run's adapter")
        self.adapter.load_adapter_state_dict(self.model, usable)
        self.sections["warm_start"] = {"from": self.spec.parent_run_id, "tensors": len(usable),
                                       "skipped": sorted(set(state) - set(usable))}

    # ---- checkpoints (harness/pipeline/checkpoint.py) -------------------------------------------------------
    def checkpointable(self) -> bool:
        return self.checkpoint_file is not None and self.adapter.checkpointable() and self.optimizer is not None

    def save_checkpoint(self, batches: int) -> None:
        """Everything the rest of the run depends on, after optimiser step ``self.step`` with ``batches``
        batches of epoch ``self.epoch`` consumed (0: at an epoch's end, its evaluation done)."""
        if not self.checkpointable():
            return
        from harness.signals import deferred

        self.loss_log.flush()
        state = {
            "format": ckpt.FORMAT, "run_id": self.spec.run_id, "config_hash": self.spec.config_hash,
            "total_steps": self.total_steps, "step": self.step, "epoch": self.epoch, "batches": batches,
            "samples": self.samples, "model": trainable_state(self.model),
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "adapter": self.adapter.training_state(), "rng": ckpt.rng_states(),
            "losses": list(self.loss_log.values), "per_epoch": self.per_epoch, "best": self.best,
            "best_epoch": self.best_epoch, "val_per_epoch": self.val_per_epoch, "val_best": self.val_best,
            "test_best": self.test_best, "test_best_epoch": self.test_best_epoch, "test_reads": self.test_reads,
            "selected_state": self.selected_state, "merged_eval": self.merged_eval,
            "eval_per_epoch": self.eval_per_epoch, "eval_seconds": self.eval_seconds,
            "saved_for_backward": getattr(self.memory, "saved_for_backward", None),
            "resumes": (self.resumed_from or {}).get("resumes", 0),
        }
        with deferred():  # a stop signal waits for the file (it is atomic anyway)
            ckpt.save(state, self.checkpoint_file, self.checkpoint_keeper)
        self.checkpoints_saved += 1

    def _resume(self) -> None:
        """Continue from this run's checkpoint, if it has one (before the loop's first epoch)."""
        if not self.checkpointable():
            return
        state = ckpt.load(self.checkpoint_file, self.spec.run_id, self.spec.config_hash, self.checkpoint_keeper)
        if state is None or state["total_steps"] != self.total_steps:
            return
        restore_trainable_state(self.model, state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.adapter.load_training_state(state["adapter"])
        self.step, self.epoch, self.samples = state["step"], state["epoch"], state["samples"]
        self._resume_batches = state["batches"]
        self.loss_log.values = list(state["losses"])
        for name in ("per_epoch", "best", "best_epoch", "val_per_epoch", "val_best", "test_best",
                     "test_best_epoch", "test_reads", "selected_state", "merged_eval", "eval_per_epoch",
                     "eval_seconds"):
            setattr(self, name, state[name])
        if state.get("saved_for_backward") is not None:
            self.memory.saved_for_backward = state["saved_for_backward"]
        ckpt.set_rng_states(state["rng"])
        self._resume_rng = state["rng"] if state["batches"] else None
        self.bar.update(self.step)
        self.resumed_from = {"step": self.step, "epoch": self.epoch, "batches": state["batches"],
                             "resumes": int(state.get("resumes", 0)) + 1}
