"""Your runs go to your own store (runs/), never into the shipped reference store results/ (issue 34)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from harness.cli.main import main
from harness.records.stores import SHIPPED_RESULTS_DIR

PROJECT_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def fresh_clone_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HARNESS_RESULTS_DIR", raising=False)
    return tmp_path


def _shipped_files() -> set[str]:
    return {str(p) for p in SHIPPED_RESULTS_DIR.rglob("*") if p.is_file()}


def test_run_writes_to_runs_not_to_the_shipped_store(fresh_clone_cwd, capsys):
    before = _shipped_files()
    assert main(["run", "--suite", "toy", "--adapters", "head", "--seeds", "1", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "0 already done" in out or "1 to run" in out or "[1/1]" in out, out
    records = list((fresh_clone_cwd / "runs" / "toy").rglob("*.json"))
    assert len(records) == 2  # the toy suite's two tasks
    assert _shipped_files() == before


def test_the_main_jobs_dry_run_has_work_to_do_in_a_fresh_clone(fresh_clone_cwd, capsys):
    data = PROJECT_ROOT.parent / "shared" / "data"
    assert main(["run", "--suite", "glue", "--adapters", "lora,head", "--tasks", "rte", "--preset", "cpu",
                 "--data-dir", str(data), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "already done" not in out or "0 already done" in out, out
    assert "runs" in out


def test_env_still_overrides(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HARNESS_RESULTS_DIR", str(tmp_path / "elsewhere"))
    assert main(["run", "--suite", "toy", "--adapters", "head", "--seeds", "1", "--no-progress"]) == 0
    assert list((tmp_path / "elsewhere" / "toy").rglob("*.json"))
    assert not (tmp_path / "runs").exists()


def test_report_reads_your_store_and_the_shipped_one_with_a_store_column(fresh_clone_cwd, capsys):
    assert main(["report"]) == 2  # no runs of your own yet: one error line with the way out
    assert "--with-shipped" in capsys.readouterr().err
    assert main(["report", "--with-shipped", "--suite", "glue", "--out", "t1"]) == 0  # the shipped store alone
    rows = list(csv.DictReader(io.StringIO((fresh_clone_cwd / "t1" / "glue.csv").read_text())))
    assert rows and {r["store"] for r in rows} == {"shipped"}
    assert main(["run", "--suite", "toy", "--adapters", "head", "--seeds", "1", "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["report", "--with-shipped", "--out", "t2"]) == 0
    long = list(csv.DictReader(io.StringIO((fresh_clone_cwd / "t2" / "leaderboard.csv").read_text())))
    stores = {r["suite"]: r["store"] for r in long}
    assert stores["toy"] == "runs" and stores["glue"] == "shipped"
    assert main(["report", "--results-dir", "runs", "--results-dir", str(SHIPPED_RESULTS_DIR), "--out", "t3"]) == 0
    assert (fresh_clone_cwd / "t3" / "toy.csv").read_text() == (fresh_clone_cwd / "t2" / "toy.csv").read_text()
