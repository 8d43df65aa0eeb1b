"""Runs that depend on runs (``run --warm-start``): the toy suite warm-starts ``xor`` from ``sign`` (GLUE:
rte, mrpc, stsb from mnli, LoRA's protocol). The plan adds and orders the parent runs, the dependency
enters only the dependent runs' identity (every other hash is unchanged), a dependent starts from its
parent's saved adapter, waits for its parent's record in parallel grids, and fails with a clear line
when the parent has none.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.grid.run_grid import dependency_order, dependency_waves, run_grid
from harness.pipeline.plan import GridRequest, plan_grid
from harness.pipeline.runner import ExecutionOptions
from harness.records.store import ResultStore


def _plan(tasks: str, warm: str | None = None, seeds=(1,), adapters="full"):
    return plan_grid(GridRequest(suite="toy", adapters=adapters, tasks=tasks, seeds=seeds, preset="cpu",
                                 warm_start=warm), cuda_available=False)


def test_the_plan_adds_orders_and_hashes_the_dependency():
    cold = _plan("sign,xor", seeds=(1, 2))
    warm = _plan("xor", "sign", seeds=(1, 2))
    assert [s.task for s in warm] == ["sign", "sign", "xor", "xor"]  # the parents are planned, first
    by = {(s.task, s.seed): s for s in cold}
    for spec in warm:
        if spec.task == "sign":  # the parent is the very run a grid without --warm-start plans
            assert spec == by[("sign", spec.seed)] and "warm_start" not in spec.to_dict()
        else:
            assert spec.warm_start == {"task": "sign", "config_hash": by[("sign", spec.seed)].config_hash}
            assert spec.config_hash != by[("xor", spec.seed)].config_hash
            assert spec.parent_run_id == by[("sign", spec.seed)].run_id
            assert spec.to_dict()["warm_start"]["task"] == "sign"
    # runs without a dependency keep the hashes of the shipped records: no key was added to them
    assert by[("xor", 1)].identity() == json.loads(json.dumps(by[("xor", 1)].identity()))
    assert "warm_start" not in by[("xor", 1)].identity()
    with pytest.raises(HarnessError, match="warm-starts from: sign"):
        _plan("xor", "xor")
    with pytest.raises(HarnessError, match="none is planned"):
        _plan("sign", "sign")

    shuffled = list(reversed(warm))
    ordered = dependency_order(shuffled)
    assert [s.task for s in ordered] == ["sign", "sign", "xor", "xor"]
    waves = dependency_waves(shuffled)
    assert [[s.task for s in wave] for wave in waves] == [["sign", "sign"], ["xor", "xor"]]


def test_a_dependent_starts_from_its_parents_adapter(tmp_path: Path):
    specs = _plan("xor", "sign")
    store = ResultStore(tmp_path / "warm")
    outcome = run_grid(list(reversed(specs)), store, ExecutionOptions(device="cpu", progress=False),
                       echo=lambda _: None)
    assert outcome.by_status == {"success": 2}
    parent, child = (store.get(s.key) for s in specs)
    assert store.path_for(specs[0].key).with_suffix(".adapter.safetensors").is_file()  # kept for the child
    assert child["warm_start"] == {"from": specs[0].run_id, "tensors": 2, "skipped": []}  # body weight, bias
    assert child["spec"]["warm_start"]["config_hash"] == specs[0].config_hash
    assert "warm_start" not in parent and "warm_start" not in parent["spec"]

    cold = ResultStore(tmp_path / "cold")
    run_grid(_plan("xor"), cold, ExecutionOptions(device="cpu", progress=False), echo=lambda _: None)
    (cold_record,) = cold.records(warn=False)
    assert cold_record["loss_curve"][0] != child["loss_curve"][0]  # it did not start from scratch

    # parallel executors: the dependent waits for its parent's record (a second wave)
    from harness.grid.executors import ExecutorConfig, run_with_executor

    lines: list[str] = []
    pool = ResultStore(tmp_path / "pool")
    result = run_with_executor(ExecutorConfig(kind="local", workers=2), specs, pool,
                               ExecutionOptions(device="cpu", progress=False), echo=lines.append)
    assert result.by_status == {"success": 2}, lines
    assert any("1 warm-started run(s) now that the runs they start from are recorded" in line for line in lines)
    assert pool.get(specs[1].key)["loss_curve"] == child["loss_curve"]


def test_a_dependent_without_its_parent_fails_with_a_clear_line(tmp_path: Path):
    specs = _plan("xor", "sign")
    store = ResultStore(tmp_path)
    run_grid([specs[1]], store, ExecutionOptions(device="cpu", progress=False), echo=lambda _: None)
    record = store.get(specs[1].key)
    assert record["status"] == "failed"
    assert "has no successful record with a saved adapter" in record["error"]["message"]
    # the parent recorded without its adapter file (an earlier grid without --warm-start) runs again first
    run_grid([specs[0]], store, ExecutionOptions(device="cpu", progress=False), echo=lambda _: None)
    assert not store.path_for(specs[0].key).with_suffix(".adapter.safetensors").exists()  # none dependent: not kept
    outcome = run_grid(specs, store, ExecutionOptions(device="cpu", progress=False), echo=lambda _: None)
    assert (outcome.skipped, outcome.ran, outcome.by_status) == (0, 2, {"success": 2})
