"""`python -m harness report` on a results folder with tuning studies: the sensitivity and expected-max
plots per suite and task (PNG) and the budget tables (CSV), with safe file names."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
from pathlib import Path

import pytest

from harness.cli.main import main
from harness.records.record import dumps
from harness.tuning.plots import safe_name
from tests.record_factory import make_record, write_store
from tests.test_tuning_views import choice, trial, tuned, write_choice

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = PROJECT_ROOT.parent / "shared" / "data"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def tuning_store(root: Path, *, tuned_runs: bool = True) -> None:
    """glue rte and mrpc, lora and full, four trials each (one pruned, one diverged on rte lora); the
    choices; and three tuned seeds of lora on rte (plus an ordinary leaderboard record)."""
    trials = []
    for task in ("rte", "mrpc"):
        for adapter, base in (("lora", 0.60), ("full", 0.65)):
            for number, lr in enumerate((1e-5, 1e-4, 1e-3, 1e-2)):
                trials.append(trial(task, adapter, number, lr, base + 0.02 * number, base + 0.01 * number,
                                    seconds=900.0))
    trials[2] = trial("rte", "lora", 2, 1e-3, 0.5, pruned=True, seconds=100.0)
    trials[3] = trial("rte", "lora", 3, 1e-2, None, status="diverged", seconds=50.0)
    write_store(root / "tuning" / "trials", trials)
    for task in ("rte", "mrpc"):
        for adapter in ("lora", "full"):
            write_choice(root, choice(task, adapter, 1e-4, 0.62, [{"number": 1, "test_score": 0.61}]))
    if tuned_runs:
        write_store(root, [tuned("rte", "lora", s, 1e-4, 0.60 + 0.01 * s) for s in (1, 2, 3)] + [make_record()])


def read_csv(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_text())))


def assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC, path
    assert len(data) > 10_000, (path, len(data))  # axes, lines, legend: not an empty canvas


def test_report_writes_the_plots_and_budget_table_per_suite_and_task(tmp_path):
    tuning_store(tmp_path / "store")
    out = tmp_path / "out"
    assert main(["report", "--results-dir", str(tmp_path / "store"), "--out", str(out)]) == 0
    for task in ("rte", "mrpc"):
        assert_png(out / f"tuning-glue-{task}-lr.png")
        assert_png(out / f"tuning-glue-{task}-expected-max.png")
    assert (out / "glue.csv").is_file()  # the leaderboard tables as before
    rows = {r["adapter"]: r for r in read_csv(out / "tuning-glue.csv")}
    assert set(rows) == {"lora", "full"}
    assert rows["lora"]["studies"] == "2" and rows["lora"]["trials"] == "8"
    assert rows["lora"]["pruned"] == "1" and rows["lora"]["diverged"] == "1"
    assert float(rows["full"]["compute_hours"]) == pytest.approx(2.0)  # 8 trials x 900 s
    assert float(rows["lora"]["lr rte"]) == 1e-4 and float(rows["lora"]["lr mrpc"]) == 1e-4
    assert len(read_csv(out / "tuning-glue-studies.csv")) == 4
    assert len(read_csv(out / "tuning-glue-trials.csv")) == 16


def test_a_folder_with_only_tuning_studies_gets_its_tuning_files(tmp_path, capsys):
    tuning_store(tmp_path / "store", tuned_runs=False)
    out = tmp_path / "out"
    assert main(["report", "--results-dir", str(tmp_path / "store"), "--out", str(out), "--suite", "glue"]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["tuning-glue.csv", "tuning-glue-studies.csv", "tuning-glue-trials.csv"]
        + [f"tuning-glue-{t}-{k}.png" for t in ("rte", "mrpc") for k in ("lr", "expected-max")])
    # without --out: no files, a note, and the usual error (no run record)
    assert main(["report", "--results-dir", str(tmp_path / "store")]) == 2
    assert "pass --out DIR for their plots" in capsys.readouterr().err


def test_names_from_records_are_safe_and_stay_inside_out(tmp_path):
    assert safe_name("rte") == "rte" and safe_name("sst-2_v1.0") == "sst-2_v1.0"
    for bad in ("../../etc", "a/b", "a b", "..", ".hidden", "x\\y", "é", ""):
        name = safe_name(bad)
        assert name and set(name) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-"), bad
        assert ".." not in name and not name.startswith("."), (bad, name)
    assert safe_name("a/b") != safe_name("a_b")  # a changed name carries a hash of the original
    folder = tmp_path / "store" / "tuning" / "trials" / "x" / "y"
    folder.mkdir(parents=True)
    for n, lr in enumerate((1e-4, 1e-3)):  # the names in the record's spec, its file at a plain path
        record = trial("rte", "lora", n, lr, 0.5 + n / 10, 0.5)
        record["spec"].update(suite="../up", task="../../evil task")
        (folder / f"lora-{n}-seed42.json").write_text(dumps(record))
    out = tmp_path / "out"
    assert main(["report", "--results-dir", str(tmp_path / "store"), "--out", str(out)]) == 0
    files = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*.png"))
    assert len(files) == 2 and all(p.parts[0] == "out" and len(p.parts) == 2 for p in files), files
    assert all(p.name.startswith("tuning-") for p in out.iterdir())


def test_report_with_tuning_reads_no_torch(tmp_path):
    tuning_store(tmp_path / "store")
    code = ("import sys\n"
            "class Block:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name.split('.')[0] in ('torch', 'transformers', 'optuna'):\n"
            "            raise ModuleNotFoundError(f'blocked: {name}', name=name)\n"
            "sys.meta_path.insert(0, Block())\n"
            "from harness.cli.main import main\n"
            f"assert main(['report', '--results-dir', {str(tmp_path / 'store')!r}, '--out', {str(tmp_path / 'out')!r}]) == 0\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert_png(tmp_path / "out" / "tuning-glue-rte-lr.png")


@pytest.mark.slow
@pytest.mark.skipif(not DATA_DIR.exists(), reason="no shared data")
def test_a_real_toy_tune_then_report(tmp_path):
    """The harness's own `tune` on the toy suite (two trials, no pruning), then `report`."""
    results = tmp_path / "results"
    assert main(["tune", "--suite", "toy", "--adapters", "head", "--trials", "2", "--sampler", "random",
                 "--pruner", "none", "--data-dir", str(DATA_DIR), "--results-dir", str(results),
                 "--no-progress"]) == 0
    out = tmp_path / "out"
    assert main(["report", "--results-dir", str(results), "--out", str(out)]) == 0
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs and all(n.startswith("tuning-toy-") for n in pngs)
    for name in pngs:
        assert_png(out / name)
    rows = read_csv(out / "tuning-toy.csv")
    assert [r["adapter"] for r in rows] == ["head"] and all(int(r["trials"]) == 2 * int(r["studies"]) for r in rows)


def test_a_study_with_no_scored_trial_yet_gets_a_sensitivity_plot_that_says_so(tmp_path):
    """A grid in progress: two cancelled trials (the real GLUE grid's first state); no expected-max curve."""
    write_store(tmp_path / "store" / "tuning" / "trials",
                [trial("sst2", "lora", n, lr, None, status="cancelled") for n, lr in enumerate((1e-4, 2.5e-4))])
    out = tmp_path / "out"
    assert main(["report", "--results-dir", str(tmp_path / "store"), "--out", str(out)]) == 0
    assert_png(out / "tuning-glue-sst2-lr.png")
    assert not (out / "tuning-glue-sst2-expected-max.png").exists()
    row = read_csv(out / "tuning-glue.csv")[0]
    assert row["trials"] == "2" and row["failed"] == "2" and row["lr sst2"] == ""


def test_a_method_has_one_colour_in_both_plots():
    from harness.tuning.plots import _colors

    assert _colors(["head", "full", "full", "head", "full"]) == _colors(["full", "head"])
