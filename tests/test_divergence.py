"""Divergence as a user means it (issue 36, class 2): a loss that stops being finite, a loss that
explodes far above its start, a primary metric that comes out undefined. Each is recorded as
``diverged`` with its ``error.reason``, kept as a result (resume skips it) and counted as diverged in
the tables. The grids run ``toy-faults`` (tests/toy_faults.py: tasks ``explode`` and ``undefined``)."""

from __future__ import annotations

import importlib
import math
from pathlib import Path

import pytest

from harness.pipeline.loss_log import (
    DIVERGENCE_FACTOR,
    DIVERGENCE_WINDOW,
    EXPLODED,
    NON_FINITE,
    UNDEFINED_METRIC,
    DivergedError,
    LossLog,
    explosion,
)
from harness.records.store import ResultStore

PLUGIN = "tests.toy_faults"


@pytest.fixture(scope="module")
def fake():
    module = importlib.import_module(PLUGIN)
    yield module
    module.unregister()


def _feed(log: LossLog, values: list[float]) -> None:
    import torch

    for step, value in enumerate(values):
        log.append(torch.tensor(value) if log.on_device else value, step)
    log.flush()


@pytest.mark.parametrize("on_device", [False, True], ids=["cpu-per-step", "device-blocks"])
def test_a_loss_far_above_its_start_is_divergence_on_both_paths(on_device: bool):
    # 0.69 for the warm-up, then six million (the --lr 2e5 RTE run of the issue): diverged, not success
    losses = [0.69] * (2 * DIVERGENCE_WINDOW) + [6e6] * DIVERGENCE_WINDOW
    with pytest.raises(DivergedError) as caught:
        _feed(LossLog(on_device=on_device), losses)
    assert caught.value.reason == EXPLODED
    assert "loss exploded" in str(caught.value) and f"{DIVERGENCE_FACTOR:g}x its start" in str(caught.value)
    # the smoothed loss crossed the limit at the first exploding step already (6e6 / 10 > 6.9)
    assert caught.value.step == 2 * DIVERGENCE_WINDOW


@pytest.mark.parametrize("on_device", [False, True], ids=["cpu-per-step", "device-blocks"])
def test_a_non_finite_loss_is_divergence_with_its_reason(on_device: bool):
    with pytest.raises(DivergedError) as caught:
        _feed(LossLog(on_device=on_device), [0.7, 0.6, math.nan, 0.5])
    assert (caught.value.reason, caught.value.step) == (NON_FINITE, 2)


@pytest.mark.parametrize("losses", [
    [0.69 - 0.01 * i for i in range(60)],  # a loss that falls
    [0.69] * 60,  # flat
    [0.69] * 20 + [0.69 * 8] * 40,  # up 8x: below the factor
    [0.001] * 20 + [0.02] * 40,  # from near 0: 20x, but below the floor's limit (10 x 0.1)
    [5.0] * 5 + [1e4] * 5,  # an explosion before the warm-up ended: not judged yet
], ids=["falling", "flat", "below-factor", "near-zero-start", "before-warm-up"])
def test_what_is_not_divergence(losses: list[float]):
    for on_device in (False, True):
        _feed(LossLog(on_device=on_device), losses)
    assert explosion(losses) is None


def test_the_factor_is_declared_and_can_be_changed():
    losses = [1.0] * 20 + [3.0] * 10
    assert explosion(losses) is None
    assert explosion(losses, factor=2.0).reason == EXPLODED


def _plan(tasks: str):
    from harness.pipeline.plan import GridRequest, plan_grid

    return plan_grid(GridRequest(suite="toy-faults", adapters="head", tasks=tasks, seeds=(1,), preset="cpu"),
                     cuda_available=False)


def test_exploded_and_undefined_runs_are_recorded_diverged_kept_and_counted(fake, tmp_path: Path):
    from harness import aggregate
    from harness.grid.run_grid import run_grid
    from harness.pipeline.runner import ExecutionOptions

    specs = _plan("explode,undefined,nan,ok")
    store = ResultStore(tmp_path)
    lines: list[str] = []
    outcome = run_grid(specs, store, ExecutionOptions(device="cpu", progress=False), echo=lines.append)
    records = {r["key"]["task"]: r for r in store.records(warn=False)}
    assert records["explode"]["status"] == "diverged"
    assert records["explode"]["error"]["reason"] == EXPLODED
    assert "loss exploded" in records["explode"]["error"]["message"]
    assert records["explode"]["loss_curve"]  # the losses up to the explosion are kept
    assert records["undefined"]["status"] == "diverged"
    assert records["undefined"]["error"]["reason"] == UNDEFINED_METRIC
    assert "undefined metric: accuracy is nan" in records["undefined"]["error"]["message"]
    assert "metrics" in records["undefined"]  # a result: what was measured stays in the record
    assert records["nan"]["error"]["reason"] == NON_FINITE
    assert records["ok"]["status"] == "success"
    # diverged is done: the exit code is 0 and resume skips them, never reruns them
    assert outcome.exit_code == 0 and outcome.by_status == {"diverged": 3, "success": 1}
    again = run_grid(specs, store, ExecutionOptions(device="cpu", progress=False), echo=lines.append)
    assert (again.skipped, again.ran) == (4, 0)
    # the tables show them as diverged
    table = aggregate.leaderboard(aggregate.load_frame(store.records(warn=False)))
    by_task = {row["task"]: row for _, row in table.iterrows()}
    for task in ("explode", "undefined", "nan"):
        assert by_task[task]["n_diverged"] == 1 and "diverged×1" in by_task[task]["statuses"]
        assert by_task[task]["n_seeds"] == 0


@pytest.mark.parametrize("score", [None, math.nan, math.inf, "0.5"])
def test_an_undefined_primary_metric_is_divergence(score):
    from harness.pipeline.runner import undefined_metric

    with pytest.raises(DivergedError) as caught:
        undefined_metric({"metrics": {"primary": "pearson", "score": score, "selection": "best-dev-epoch"}})
    assert caught.value.reason == UNDEFINED_METRIC and "pearson" in str(caught.value)
    undefined_metric({"metrics": {"primary": "pearson", "score": 0.0}})  # a defined score passes
