"""`harness reproduce TABLE` runs its rows through the same grid as `harness run`: the same header,
estimate and ``[i/N] ... | ETA`` line per finished run, the same totals line and the same exit code (1
when a run of this invocation is not done). On a table of the toy suite with a fault per task
(tests/toy_faults.py), in-process through ``harness.cli.main.main``."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from harness.cli import reproduce as cli_reproduce
from harness.cli.main import main
from harness.papers.table_types import PaperTable, TableRow


def _table(tasks: tuple[str, ...]) -> PaperTable:
    return PaperTable(
        name="toy-t1", paper="a toy paper", where="Table 1", title="the toy suite's faults",
        reference_file="toy.csv", suites=("toy-faults",), models=("toy-mlp",), reference_models=("MLP",),
        tasks=tasks, seeds=(1,), targets="attention-qv", protocol="the toy suite's own",
        rows=(TableRow("Head only", "head"),),
    )


@pytest.fixture
def toy_table(monkeypatch):
    module = importlib.import_module("tests.toy_faults")  # registers the suite
    holder: dict[str, PaperTable] = {}
    monkeypatch.setattr(cli_reproduce, "validate_tables", lambda: None)
    monkeypatch.setattr(cli_reproduce, "get_table", lambda name: holder[name])
    yield lambda tasks: holder.__setitem__("toy-t1", _table(tasks))
    module.unregister()


def _reproduce(tmp_path: Path, *extra: str) -> list[str]:
    return ["reproduce", "toy-t1", "--preset", "cpu", "--device", "cpu", "--no-progress",
            "--results-dir", str(tmp_path / "results"), *extra]


def test_reproduce_talks_like_run_and_exits_1_on_a_failed_run(toy_table, tmp_path: Path, capsys):
    toy_table(("ok", "boom"))
    assert main(_reproduce(tmp_path)) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("grid:") and "2 runs" in out[0], out[0]
    assert out[1].startswith("estimated grid time:")
    finished = [line for line in out if line.startswith("[")]
    assert [line[:5] for line in finished] == ["[1/2]", "[2/2]"]
    assert all("| elapsed" in line and "results" in line for line in finished), finished
    assert "ran 2 (failed=1, success=1); 1 of them not done: exit code 1" in out[-1]

    assert main(_reproduce(tmp_path)) == 1  # the failed run is rerun; the other is done
    assert "already done 1, ran 1 (failed=1)" in capsys.readouterr().out


def test_reproduce_of_runs_that_all_end_done_exits_0(toy_table, tmp_path: Path, capsys):
    toy_table(("ok", "nan"))  # diverged is a result about the method, a done status
    assert main(_reproduce(tmp_path, "--workers", "auto")) == 0
    captured = capsys.readouterr()
    assert "--workers auto:" in captured.err
    assert "ran 2 (diverged=1, success=1)" in captured.out.splitlines()[-1]


def test_reproduce_dry_run_prints_the_estimated_time(toy_table, tmp_path: Path, capsys):
    toy_table(("ok",))
    assert main(_reproduce(tmp_path, "--dry-run")) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("estimated grid time: unknown")
    assert main(_reproduce(tmp_path)) == 0
    capsys.readouterr()
    assert main(_reproduce(tmp_path, "--dry-run", "--force")) == 0  # now one comparable record times it
    last = capsys.readouterr().out.splitlines()[-1]
    assert last.startswith("estimated grid time: ") and "unknown" not in last, last
