"""In-run checkpoints (harness/pipeline/checkpoint.py): a run interrupted at a random step resumes from its last
checkpoint and ends with the record of an uninterrupted run (scores and losses bit-identical on the CPU);
the checkpoint is gone once the record is written; a cancelled record keeps it.

The toy suite: 24 training points in batches of 4, 2 epochs = 12 optimiser steps, validation selects the
epoch; ``head`` (the head only) and ``full`` (every weight) train it.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from harness.grid.run_grid import run_grid
from harness.pipeline import checkpoint as ckpt
from harness.pipeline.plan import GridRequest, plan_grid
from harness.pipeline.runner import ExecutionOptions, RunCancelled
from harness.records.store import ResultStore

COMPARED = ("metrics", "loss_curve", "params", "adapter_info", "analysis", "data_info", "status")


def _specs(adapters: str = "head,full", seeds: tuple[int, ...] = (3,)):
    return plan_grid(GridRequest(suite="toy", adapters=adapters, tasks="sign", seeds=seeds, preset="cpu"),
                     cuda_available=False)


def _options(root: Path, every: int | None) -> ExecutionOptions:
    return ExecutionOptions(device="cpu", progress=False, checkpoint_dir=str(root / ckpt.CHECKPOINT_DIR),
                            checkpoint_every=every)


def _by_id(store: ResultStore) -> dict[str, dict]:
    return {r["run_id"]: r for r in store.records(warn=False)}


@pytest.fixture(autouse=True)
def _no_fault():
    yield
    ckpt.FAULT_HOOK = None


def _interrupt_at(step_to_stop: int):
    def hook(run, step):
        if step == step_to_stop:
            raise KeyboardInterrupt  # what Ctrl-C or SLURM's SIGTERM raise in the run (harness.signals)

    return hook


@pytest.mark.parametrize("every", [None, 1, 5])
def test_interrupted_at_a_random_step_resumes_to_the_same_record(tmp_path: Path, every):
    specs = _specs()
    plain = ResultStore(tmp_path / "plain")
    run_grid(specs, plain, _options(plain.root, every), echo=lambda _: None)
    expected = _by_id(plain)
    assert not (plain.root / ckpt.CHECKPOINT_DIR).exists(), "checkpoints go once the records are written"
    total = expected[specs[0].run_id]["timing"]["steps"]
    assert total == 12

    rng = random.Random(f"{every}")
    for spec in specs:
        stop = rng.randint(1, total - 1)
        store = ResultStore(tmp_path / f"cut-{spec.adapter}")
        options = _options(store.root, every)
        ckpt.FAULT_HOOK = _interrupt_at(stop)
        with pytest.raises(RunCancelled):
            run_grid([spec], store, options, echo=lambda _: None)
        ckpt.FAULT_HOOK = None
        cancelled = store.get(spec.key)
        assert cancelled["status"] == "cancelled"
        saved = ckpt.checkpoint_path(options.checkpoint_dir, spec.key)
        # the hook runs right after step ``stop``, before that step's checkpoint; epochs end at steps 6 and 12
        last = (stop - 1) // (every or 6) * (every or 6)
        assert saved.is_file() == (last > 0), (stop, last)

        outcome = run_grid([spec], store, options, echo=lambda _: None)
        assert outcome.by_status == {"success": 1}
        resumed = store.get(spec.key)
        for section in COMPARED:
            assert resumed[section] == expected[spec.run_id][section], (spec.adapter, stop, section)
        where = resumed["timing"]["checkpoints"]["resumed_from"]
        assert (where or {}).get("step", 0) == last, (stop, where)
        assert not saved.exists() and not (store.root / ckpt.CHECKPOINT_DIR).exists()


def test_two_interruptions_and_a_foreign_checkpoint(tmp_path: Path):
    (spec,) = _specs("full")
    plain = ResultStore(tmp_path / "plain")
    run_grid([spec], plain, _options(plain.root, 2), echo=lambda _: None)
    expected = plain.get(spec.key)

    store = ResultStore(tmp_path / "cut")
    options = _options(store.root, 2)
    for stop in (3, 9):  # the second interruption happens in the resumed run
        ckpt.FAULT_HOOK = _interrupt_at(stop)
        with pytest.raises(RunCancelled):
            run_grid([spec], store, options, echo=lambda _: None)
    ckpt.FAULT_HOOK = None
    run_grid([spec], store, options, echo=lambda _: None)
    resumed = store.get(spec.key)
    assert resumed["timing"]["checkpoints"]["resumed_from"] == {"step": 8, "epoch": 1, "batches": 2, "resumes": 2}
    for section in COMPARED:
        assert resumed[section] == expected[section], section

    # a checkpoint that is not this run's (another config, a torn file) is ignored and removed
    path = ckpt.checkpoint_path(options.checkpoint_dir, spec.key)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"not a checkpoint")
    assert ckpt.load(path, spec.run_id, spec.config_hash) is None and not path.exists()


def test_no_checkpoint_without_the_option_and_for_adapters_that_cannot_restore(tmp_path: Path):
    from harness.adapter import Adapter

    (spec,) = _specs("head")
    store = ResultStore(tmp_path)
    ckpt.FAULT_HOOK = _interrupt_at(7)
    with pytest.raises(RunCancelled):
        run_grid([spec], store, ExecutionOptions(device="cpu", progress=False), echo=lambda _: None)
    assert not any(tmp_path.rglob("*.pt"))

    class Hooked(Adapter):
        def on_step_end(self, model, step):  # keeps state we cannot see
            pass

    class Restorable(Hooked):
        def training_state(self):
            return {"x": 1}

    assert Adapter.checkpointable(Adapter.__new__(Adapter))
    assert not Hooked.checkpointable(Hooked.__new__(Hooked))
    assert Restorable.checkpointable(Restorable.__new__(Restorable))
