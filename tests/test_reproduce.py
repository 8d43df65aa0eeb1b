"""``harness reproduce``: the paper tables as data, their dry runs against the papers' parameter counts,
the cpu preset, bad input, and the reported-beside-reproduced report."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.cli.main import main
from harness.errors import HarnessError
from harness.papers.dry_run import dry_run_rows
from harness.papers.reproduce import (
    check_reachable,
    plan_table,
    reproduction_files,
    reproduction_rows,
)
from harness.papers.tables import TABLE_NAMES, TABLES, as_printed, get_table, rounds_to, validate_tables

ISSUE_TABLES = ("msplora-t1", "msplora-t2", "lora2-t1", "lora2-t4", "sera-t1", "sera-t2", "sera-t3", "sera-t4",
                "sera-f2")


def test_the_nine_tables_validate_against_the_reference_csvs():
    assert TABLE_NAMES == ISSUE_TABLES
    validate_tables()  # adapters, suites, roles, tasks known; every row finds its reported numbers


def test_printed_counts_round_as_the_paper_prints_them():
    assert rounds_to(135_168, "0.135M") and as_printed(135_168, "0.135M") == "0.135M"
    assert rounds_to(3_171_840, "3M") and not rounds_to(3_171_840, "3.0M")  # 3.2M at one decimal
    assert not rounds_to(1_336_896, "1.33M")
    assert rounds_to(37_440, "37.4K") and rounds_to(7_000_000_000, "7B")
    with pytest.raises(HarnessError, match="not like"):
        rounds_to(1, "0.1 M")


@pytest.mark.parametrize("name", ISSUE_TABLES)
def test_dry_run_counts_match_the_papers(name):
    """Every row with a printed count: ours prints the same, or the row says why it cannot."""
    rows = dry_run_rows(get_table(name))
    assert rows
    for row in rows:
        if row["status"] == "reported only":
            assert row["adapter"] is None and row["runs"] == 0
            continue
        assert row["runs"] > 0 and row["trainable_params"] is not None, row["key"]
        if row["reported_params"]:
            assert row["params_match"] or row["params_mismatch"], (row["key"], row["model"],
                                                                   row["trainable_params"], row["reported_params"])
            if row["params_mismatch"]:
                assert not row["params_match"], f"{row['key']}: the mismatch note is stale"


def test_sera_t3_bottleneck_rows_and_run_count():
    rows = {(r["key"], r["reported_params"]): r for r in dry_run_rows(get_table("sera-t3"))}
    assert rows[("Adpt^P [3M]", "3M")]["params_match"] and rows[("Adpt^P [0.8M]", "0.8M")]["params_match"]
    assert rows[("Adpt^H [6M]", "6M")]["params_match"] and rows[("Adpt^H [0.8M]", "0.8M")]["params_match"]
    assert sum(r["runs"] for r in rows.values()) == 10 * 6 * 5  # ten rows, six tasks, five seeds


def test_dry_run_json_from_the_command_line(capsys):
    assert main(["reproduce", "sera-t4", "--dry-run", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["row"] for r in rows] == [f"SeRA (r={r})" for r in (8, 16, 32, 64, 128, 256)]
    for r in rows:
        assert {"table", "row", "adapter", "model", "tasks", "seeds", "trainable_params", "reported_params"} <= set(r)
        assert r["model"] == "roberta-large" and r["tasks"] == ["rte"] and len(r["seeds"]) == 5
        assert r["params_match"], r


def test_cpu_preset_runs_the_same_rows_on_the_embedded_model(capsys):
    table = get_table("msplora-t1")
    planned = plan_table(table, "cpu")
    assert {p.model for p in planned} == {"minilm-l6"}
    assert sum(len(p.specs) for p in planned) == 7 * 6  # seven runnable rows, six tasks, one cpu seed
    lily = next(p for p in planned if p.row.adapter == "lily")
    assert lily.specs[0].adapter_options["rank"] == 32 and lily.specs[0].preset == "cpu"
    assert main(["reproduce", "msplora-t1", "--dry-run", "--preset", "cpu"]) == 0
    assert "NOT the paper's model" in capsys.readouterr().out


def test_unknown_table_names_the_closest(capsys):
    assert main(["reproduce", "sera-t5", "--dry-run"]) != 0
    err = capsys.readouterr().err
    assert "sera-t5" in err and "sera-t4" in err


def test_list(capsys):
    assert main(["reproduce", "--list"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in ISSUE_TABLES)


def test_unreachable_model_fails_before_training(monkeypatch):
    import huggingface_hub

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda *a, **k: None)
    planned = [p for p in plan_table(get_table("msplora-t2")) if p.row.adapter == "lora"]
    with pytest.raises(HarnessError, match=r"llama2-7b.*meta-llama/Llama-2-7b-hf.*huggingface-cli"):
        check_reachable(planned)


def write_reproduction_tables(records, out):
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in reproduction_files(records).items():
        (out / name).write_text(text)
        written.append(out / name)
    return written


def _record(spec, value):
    # the units the runner writes into every record (harness.metrics.record_fields): the tables scale by them
    from harness.metrics import record_fields
    from harness.registry import SUITES

    units = record_fields(SUITES.get(spec.suite).metrics, "accuracy", spec.suite)
    return {"key": {"suite": spec.suite, "config_hash": spec.config_hash}, "spec": spec.to_dict(), "status": "success",
            "metrics": {**units, "primary": "accuracy", "best": {"accuracy": value}, "final": {"accuracy": value}}}


def test_report_puts_reproduced_beside_reported(tmp_path):
    table = get_table("sera-t4")
    planned = plan_table(table)
    r8 = next(p for p in planned if p.row.label == "SeRA (r=8)")
    values = [0.84, 0.85, 0.86, 0.855, 0.845]
    records = [_record(s, v) for s, v in zip(r8.specs, values)]
    # a record of another configuration (r=16) must not be counted as r=8
    r16 = next(p for p in planned if p.row.label == "SeRA (r=16)")
    records.append(_record(r16.specs[0], 0.10))
    rows = reproduction_rows(table, records, "paper", planned)
    by_row = {r["row"]: r for r in rows}
    assert by_row["SeRA (r=8)"]["n"] == 5 and by_row["SeRA (r=16)"]["n"] == 1
    row = by_row["SeRA (r=8)"]
    assert row["reported"] == 85.5 and row["reproduced_mean"] == pytest.approx(85.0)
    assert row["difference"] == pytest.approx(-0.5) and row["reported_in_ci"] is True
    written = [p for p in write_reproduction_tables(records, tmp_path)
               if p.suffix == ".csv" and not p.name.endswith("-agreement.csv")]
    # SeRA r=8 on RTE under sera-t3's protocol is the same run (same config hash): it counts there too
    assert [p.name for p in written] == ["reproduce-sera-t3.csv", "reproduce-sera-t4.csv"]
    assert (tmp_path / "reproduce-plans.jsonl").is_file() and (tmp_path / "reproduce-sera-t4.md").is_file()
    with open(written[1], newline="") as fh:
        lines = list(csv.DictReader(fh))
    assert {line["row"] for line in lines} == {"SeRA (r=8)", "SeRA (r=16)"}
    # the app's tab reads those files without torch or the runner
    from app.reproduction import load_reproduction

    frames = load_reproduction(tmp_path)
    assert list(frames) == ["sera-t3", "sera-t4"] and len(frames["sera-t4"]) == 2


def test_app_reproduction_does_not_import_torch():
    code = ("import sys; import app.reproduction, harness.papers.tables; "
            "assert 'torch' not in sys.modules and 'harness.pipeline.runner' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])


def test_every_table_lists_its_protocol_and_flags():
    for table in TABLES:
        assert table.protocol and table.seeds and table.tasks
        assert all(r.adapter or r.note for r in table.rows), table.name  # reported-only rows say why


def test_cpu_records_are_reported_as_cpu_and_marked():
    planned = plan_table(get_table("sera-t4"), "cpu")
    spec = next(p for p in planned if p.row.label == "SeRA (r=8)").specs[0]
    record = _record(spec, 0.6)
    rows = reproduction_rows(get_table("sera-t4"), [record], "cpu")
    assert len(rows) == 1 and rows[0]["preset"] == "cpu" and rows[0]["model"] == "minilm-l6"
    assert "model differs" in rows[0]["note"] and rows[0]["n"] == 1
    assert reproduction_rows(get_table("sera-t4"), [record], "paper") == []  # never mixed into the paper rows


def test_row_selection_and_unknown_row(capsys):
    assert main(["reproduce", "sera-t1", "--dry-run", "--json", "--row", "FT"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["row"], r["model"]) for r in rows] == [("FT", "clip-vit-b32"), ("FT", "clip-vit-l14")]
    assert main(["reproduce", "sera-t4", "--dry-run", "--row", "SeRA (r=9)"]) != 0
    assert "did you mean 'SeRA (r=8)'" in capsys.readouterr().err


def test_app_shows_the_reproduction_tab(tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from tests.record_factory import grid_records, write_store

    planned = plan_table(get_table("sera-t4"))
    r8 = next(p for p in planned if p.row.label == "SeRA (r=8)")
    # the tab computes from the store: full records whose key and spec are those of SeRA r=8's runs
    matching = []
    for spec, base in zip(r8.specs[:3], grid_records()):
        record = {**base, "spec": spec.to_dict(), "run_id": spec.run_id,
                  "key": {**base["key"], "task": spec.task, "adapter": spec.adapter, "seed": spec.seed,
                          "config_hash": spec.config_hash}}
        record["metrics"] = {**base["metrics"], "best": {"accuracy": 0.80}, "final": {"accuracy": 0.80}}
        matching.append(record)
    write_store(tmp_path, [*grid_records(), *matching])
    # the last report's files hold an older value (0.10): the tab must show the store's (80.0)
    write_reproduction_tables([_record(s, 0.10) for s in r8.specs[:3]], tmp_path / "tables")
    monkeypatch.setenv("HARNESS_RESULTS_DIR", str(tmp_path))
    monkeypatch.delenv("HARNESS_TABLES_DIR", raising=False)
    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app" / "leaderboard.py"),
                           default_timeout=60).run()
    assert not at.exception, [e.value for e in at.exception]
    tab = next(t for t in at.tabs if t.label == "Reproduction")
    assert any("sera-t4" in s.value for s in tab.subheader)
    shown = next(d.value for d in tab.dataframe if "row" in d.value.columns and "sera-t4" in set(d.value["table"]))
    assert set(shown["row"]) == {"SeRA (r=8)"} and (shown["reported_in_ci"] == False).all()  # noqa: E712
    assert list(shown["reproduced_mean"]) == [80.0]


def test_bad_table_entries_fail_with_one_line():
    from harness.papers.tables import PaperTable, TableRow

    with pytest.raises(HarnessError, match="unknown target role 'q-and-v'"):
        TableRow("LoRA", "lora", targets="q-and-v")
    with pytest.raises(HarnessError, match="reported-only row must say why"):
        TableRow("SoRA", None)
    with pytest.raises(HarnessError, match="not like 0.135M"):
        TableRow("LoRA", "lora", params="0,3M")
    with pytest.raises(HarnessError, match="one length"):
        PaperTable(name="x", paper="p", where="Table 1", title="t", reference_file="msplora.csv", suites=("glue",),
                   models=("roberta-base",), reference_models=(), tasks=("rte",), seeds=(1,),
                   targets="attention-qv", protocol="p", rows=(TableRow("LoRA", "lora"),))
    bad = PaperTable(name="x", paper="p", where="Table 1", title="t", reference_file="msplora.csv", suites=("glue",),
                     models=("roberta-base",), reference_models=("roberta-base",), tasks=("rte",), seeds=(1,),
                     targets="attention-qv", protocol="p", rows=(TableRow("LoRA (r=3)", "lora"),))
    with pytest.raises(HarnessError, match="row 'LoRA \\(r=3\\)'.*no reported number"):
        validate_tables((bad,))


def test_the_paper_tables_roles_are_the_target_roles():
    """paper_table_types keeps the role names as strings (torch-free for the app): they must be
    harness.targets' roles, in its order."""
    from harness.papers.table_types import ROLES
    from harness.targets import TARGET_ROLES

    assert ROLES == tuple(TARGET_ROLES)


def test_each_row_is_compared_with_the_tables_own_lora_row_paper_and_ours():
    table = get_table("msplora-t1")
    planned = plan_table(table)
    lora = next(p for p in planned if p.row.adapter == "lora")
    msp = next(p for p in planned if p.row.adapter == "msplora")
    lora_rte = [s for s in lora.specs if s.task == "rte"]
    msp_rte = [s for s in msp.specs if s.task == "rte"]
    assert len(lora_rte) >= 3 and [s.seed for s in lora_rte] == [s.seed for s in msp_rte]
    # ours: msplora - lora = 2, 3, 4 points on the shared seeds -> +3 [0.52, 5.48] (Student t, 2 df)
    records = [_record(s, v) for s, v in zip(lora_rte[:3], (0.70, 0.71, 0.72))]
    records += [_record(s, v) for s, v in zip(msp_rte[:3], (0.72, 0.74, 0.76))]
    rows = reproduction_rows(table, records, "paper", planned)
    row = next(r for r in rows if r["row"] == msp.row.label and r["task"] == "rte")
    lora_row = next(r for r in rows if r["row"] == lora.row.label and r["task"] == "rte")
    assert row["lora_row"] == lora.row.label and lora_row["reported_vs_lora"] is None
    assert row["reported_vs_lora"] == pytest.approx(row["reported"] - lora_row["reported"])
    assert row["ours_vs_lora"] == pytest.approx(3.0) and row["ours_vs_lora_n"] == 3
    assert row["ours_vs_lora_ci_low"] == pytest.approx(3 - 4.302653 / 3**0.5, abs=1e-3)
    assert row["same_direction"] == (row["reported_vs_lora"] > 0)
    files = reproduction_files(records)
    md = files["reproduce-msplora-t1.md"]
    assert "paper \\| ours" not in md and "**paper | ours**" in md and "difference to the LoRA row" in md


def test_rank_agreement_is_kendalls_tau_with_a_bootstrap_interval():
    from harness.papers.reproduce import rank_agreement

    def row(name, reported, ours, task="rte"):
        return {"table": "t", "preset": "cpu", "model": "m", "paper_model": "p", "row": name, "task": task,
                "metric": "accuracy", "reported": reported, "reproduced_mean": ours, "_seeds": {1: ours}}

    # paper orders a < b < c, ours a < c < b: 2 concordant pairs, 1 discordant -> tau = 1/3
    rows = [row("a", 1.0, 1.0), row("b", 2.0, 3.0), row("c", 3.0, 2.0)]
    (result,) = rank_agreement(rows, n_resamples=200)
    assert result["kendall_tau"] == pytest.approx(1 / 3, abs=1e-4) and result["n_methods"] == 3
    assert result["tau_ci_low"] <= result["kendall_tau"] <= result["tau_ci_high"]
    assert "seeds not resampled" in result["interval"]
    (short,) = rank_agreement(rows[:2], n_resamples=10)
    assert short["kendall_tau"] is None
