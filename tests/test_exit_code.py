"""`harness run` exits 1 when any run of the grid did not end done (failed, cancelled, lost) and says so in
its last line; diverged and oom are results about the method (done statuses) and exit 0, as does a grid
whose runs all succeeded or were already done. In-process through ``harness.cli.main.main``."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from harness.cli.main import main
from harness.grid.run_grid import GridOutcome

SUITE = "toy-faults"  # tests/toy_faults.py: the toy suite with a fault per task (boom fails, nan diverges)


@pytest.fixture
def exit_suite():
    module = importlib.import_module("tests.toy_faults")  # registers the suite
    yield
    module.unregister()


def _run(tmp_path: Path, tasks: str) -> list[str]:
    return ["run", "--suite", SUITE, "--tasks", tasks, "--adapters", "head",
            "--preset", "cpu", "--seeds", "1", "--device", "cpu", "--no-progress", "--results-dir",
            str(tmp_path / "results")]


def test_a_grid_with_a_failed_run_exits_1_and_says_so(exit_suite, tmp_path: Path, capsys):
    assert main(_run(tmp_path, "ok,boom")) == 1
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert "ran 2 (failed=1, success=1); 1 of them not done: exit code 1 (the same command reruns them)" in last
    assert main(_run(tmp_path, "ok,boom")) == 1  # the failed run is rerun, and fails again
    assert "already done 1, ran 1 (failed=1)" in capsys.readouterr().out


def test_a_grid_where_every_run_failed_exits_1(exit_suite, tmp_path: Path, capsys):
    assert main(_run(tmp_path, "boom")) == 1
    assert "1 of them not done" in capsys.readouterr().out


def test_success_and_diverged_exit_0(exit_suite, tmp_path: Path, capsys):
    assert main(_run(tmp_path, "ok,nan")) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert "ran 2 (diverged=1, success=1)" in last and "not done" not in last
    assert main(_run(tmp_path, "ok,nan")) == 0  # all done: nothing ran
    assert "already done 2, ran 0" in capsys.readouterr().out


@pytest.mark.parametrize(("statuses", "lost", "unfinished"), [
    ({"success": 3}, 0, 0), ({"diverged": 1, "oom": 1}, 0, 0), ({"failed": 2, "success": 1}, 0, 2),
    ({"cancelled": 1}, 0, 1), ({"success": 1}, 2, 2),
])
def test_unfinished_counts_failed_cancelled_and_lost(statuses: dict[str, int], lost: int, unfinished: int):
    outcome = GridOutcome(planned=5, by_status=dict(statuses), lost=lost)
    assert outcome.unfinished == unfinished
    assert ("not done: exit code 1" in outcome.totals_line()) == bool(unfinished)
