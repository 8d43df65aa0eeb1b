"""--runs-per-gpu K (packed GPUs), checked without CUDA: which GPU each local worker sees, what a Ray
task asks for, the memory check against the GPU's free memory and the largest comparable record."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.grid import executors
from harness.grid.executor_ray import ray_resources
from harness.grid.executors import ExecutorConfig, WorkerPlan, auto_worker_count, packing_check, worker_plan
from harness.pipeline.runner import ExecutionOptions

GiB = 2**30


def test_local_workers_fill_each_gpu_with_k_runs(monkeypatch):
    monkeypatch.setattr(executors, "_cuda_count", lambda: 2)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert worker_plan(4, ExecutionOptions(device="cuda"), runs_per_gpu=2) == WorkerPlan(gpus=("0", "0", "1", "1"),
                                                                                          threads=None)
    assert worker_plan(3, ExecutionOptions(device="cuda"), runs_per_gpu=4).gpus == ("0", "0", "0")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "6,7")
    assert worker_plan(8, ExecutionOptions(device="auto"), runs_per_gpu=4).gpus == ("6",) * 4 + ("7",) * 4
    with pytest.raises(HarnessError, match=r"--workers 5 needs 3 GPUs \(2 run\(s\) per GPU\), found 2"):
        worker_plan(5, ExecutionOptions(device="cuda"), runs_per_gpu=2)
    workers, why = auto_worker_count(20, ExecutionOptions(device="cuda", runs_per_gpu=4))
    assert (workers, why) == (8, "4 per GPU, 2 visible")
    assert auto_worker_count(3, ExecutionOptions(device="cuda", runs_per_gpu=4))[0] == 3
    # on the CPU the flag changes nothing
    assert worker_plan(2, ExecutionOptions(device="cpu"), runs_per_gpu=4).gpus == ()


def test_ray_tasks_ask_for_a_fraction_of_a_gpu():
    for k, share in ((1, 1), (2, 0.5), (4, 0.25), (8, 0.125)):
        assert ray_resources(ExecutionOptions(device="cuda"), 0, runs_per_gpu=k) == {"num_gpus": share, "num_cpus": 1.0}
    assert ray_resources(ExecutionOptions(device="auto"), cluster_gpus=0, runs_per_gpu=4)["num_gpus"] == 0
    with pytest.raises(HarnessError, match="--runs-per-gpu must be a positive integer"):
        ExecutorConfig(kind="ray", runs_per_gpu=0)


def test_memory_check_against_free_memory_and_the_largest_record(tmp_path: Path, monkeypatch):
    assert packing_check(4, 10 * GiB, free_bytes=79 * GiB, total_bytes=80 * GiB) is None  # 44 GiB fit
    line = packing_check(8, 10 * GiB, free_bytes=79 * GiB, total_bytes=80 * GiB)
    assert line.startswith("--runs-per-gpu 8: 8 runs x 10.0 GiB") and "use --runs-per-gpu 7 or fewer" in line
    assert packing_check(8, None, 1 * GiB, 80 * GiB) is None  # nothing to judge by: not refused
    assert packing_check(1, 100 * GiB, 1 * GiB, 80 * GiB) is None

    def record(suite, model, reserved):
        return {"key": {"suite": suite, "task": "t", "adapter": "lora", "config_hash": f"h{reserved}", "seed": 1},
                "spec": {"model": model}, "memory": {"cuda_max_reserved_bytes": reserved}}

    from harness.pipeline.plan import GridRequest, plan_grid

    specs = plan_grid(GridRequest(suite="toy", adapters="head", tasks="sign", seeds=(1,), preset="cpu"),
                      cuda_available=False)
    from harness.records import store as store_module

    records = [record("toy", "toy-mlp", 3 * GiB), record("toy", "toy-mlp", 5 * GiB), record("glue", "x", 60 * GiB)]
    monkeypatch.setattr(store_module.ResultStore, "records", lambda self, warn=True: records)
    assert executors.run_memory_estimate(tmp_path, specs) == 5 * GiB
    monkeypatch.setattr(executors, "_cuda_count", lambda: 0)
    assert executors.check_gpu_packing(8, tmp_path, specs) is None  # no CUDA here: nothing to check
