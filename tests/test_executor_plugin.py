"""A new executor is one file (harness/grid/executor.py): one class registered by name, whose ``run``
executes a wave of runs and reports each. This one runs them in this process, in reverse order."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.grid.executor import EXECUTORS, Executor, Layout, Wave, register_executor
from harness.grid.executors import ExecutorConfig, executor_names, layout_line, run_with_executor
from harness.grid.run_grid import run_and_record
from harness.pipeline.plan import GridRequest, plan_grid
from harness.pipeline.runner import ExecutionOptions
from harness.records.store import ResultStore


class ReverseExecutor(Executor):
    order: list[str] = []

    def check(self) -> None:
        if self.config.workers != 1:
            raise HarnessError("--workers does not apply to --executor reverse")

    def layout(self, options: ExecutionOptions, device: str, cuda: bool) -> Layout:
        return Layout(device, "executor reverse (in this process, last run first)", 1, options.threads or 1)

    def run(self, wave: Wave) -> None:
        store = ResultStore(wave.root)
        for spec in reversed(wave.pending):
            result, _ = run_and_record(spec, store, wave.options)
            ReverseExecutor.order.append(spec.task)
            wave.report(result)


@pytest.fixture
def reverse():
    register_executor("reverse")(ReverseExecutor)
    ReverseExecutor.order = []
    yield ReverseExecutor
    EXECUTORS.pop("reverse", None)


def test_a_registered_executor_runs_a_grid_and_reports_each_run(reverse, tmp_path: Path):
    assert "reverse" in executor_names() and {"local", "ray", "slurm"} <= set(executor_names())
    specs = plan_grid(GridRequest(suite="toy", adapters="head", tasks="sign,xor", seeds=(1,), preset="cpu"),
                      cuda_available=False)
    config = ExecutorConfig(kind="reverse")
    options = ExecutionOptions(device="cpu", progress=False, cache=False)
    assert layout_line(config, options).text == "executor reverse (in this process, last run first)"
    lines: list[str] = []
    outcome = run_with_executor(config, specs, ResultStore(tmp_path), options, echo=lines.append)
    assert reverse.order == ["xor", "sign"]  # its own order
    assert outcome.totals_line() == "planned 2, already done 0, ran 2 (success=2)"
    assert sorted(r["key"]["task"] for r in ResultStore(tmp_path).records(warn=False)) == ["sign", "xor"]
    assert len(lines) == 2  # one summary line per finished run, from the driver
    again = run_with_executor(config, specs, ResultStore(tmp_path), options, echo=lines.append)
    assert again.totals_line() == "planned 2, already done 2, ran 0 (none)" and reverse.order == ["xor", "sign"]


def test_executor_options_are_checked_by_the_executor_and_unknown_names_list_the_known(reverse):
    with pytest.raises(HarnessError, match="--workers does not apply to --executor reverse"):
        ExecutorConfig(kind="reverse", workers=2)
    with pytest.raises(HarnessError, match=r"--executor must be one of local, ray, reverse, slurm, got 'nope'"):
        ExecutorConfig(kind="nope")
    with pytest.raises(HarnessError, match="not a subclass of harness.grid.executor.Executor"):
        register_executor("bad")(object)
