"""The leaderboard's data layer: pure pandas, no Streamlit, no torch."""

from __future__ import annotations

import math
import statistics
import sys
from pathlib import Path

import pandas as pd
import pytest

from harness import aggregate
from tests.record_factory import grid_records, make_record, write_store

REFERENCE_DIR = Path(__file__).resolve().parents[1] / "results" / "reference"


def _frame(records=None):
    return aggregate.load_frame(grid_records() if records is None else records)


def _row(table, **match):
    mask = pd.Series(True, index=table.index)
    for column, value in match.items():
        mask &= table[column] == value
    rows = table[mask]
    assert len(rows) == 1, f"expected one row for {match}, got {len(rows)}"
    return rows.iloc[0]


def test_flat_frame_has_one_row_per_record_with_every_status():
    records = grid_records()
    frame = _frame(records)
    assert len(frame) == len(records)
    assert list(frame.columns) == list(aggregate.FRAME_COLUMNS)
    assert set(frame["status"]) == {"success", "failed", "diverged"}
    failed = frame[frame["status"] == "failed"].iloc[0]
    assert math.isnan(failed["score"]) and "RuntimeError" in failed["error"]
    assert frame["memory_estimated"].dropna().all()  # every factory run is on CPU


def test_empty_inputs_give_empty_tables_with_columns():
    frame = aggregate.load_frame([])
    assert frame.empty and list(frame.columns) == list(aggregate.FRAME_COLUMNS)
    table = aggregate.leaderboard(frame)
    assert table.empty and "score_mean" in table.columns
    assert aggregate.suite_average(table).empty
    assert aggregate.to_markdown(table) == "_no results_"
    assert aggregate.paper_table(table).empty


def test_leaderboard_mean_std_over_seeds_and_failures_counted():
    table = aggregate.leaderboard(_frame())
    lora = _row(table, task="rte", adapter="lora", limited=False)
    expected = [0.62, 0.66, 0.64]  # seeds 1, 2 and the dirty seed 4; the failed seed 3 has no score
    assert lora["score_mean"] == pytest.approx(statistics.mean(expected))
    assert lora["score_std"] == pytest.approx(statistics.stdev(expected))
    assert (lora["n_seeds"], lora["n_runs"], lora["n_failed"]) == (3, 4, 1)
    assert lora["git_dirty"] is True or lora["git_dirty"] == True  # noqa: E712 (numpy bool)
    full = _row(table, task="stsb", adapter="full")
    assert (full["n_seeds"], full["n_diverged"]) == (2, 1)
    assert "diverged×1" in full["statuses"] and "success×2" in full["statuses"]
    assert lora["params_adapter"] == 73_728 and lora["memory_estimated"]


def test_limited_runs_are_a_group_of_their_own():
    table = aggregate.leaderboard(_frame())
    limited = _row(table, task="rte", adapter="lora", limited=True)
    assert limited["score_mean"] == pytest.approx(0.50) and limited["n_seeds"] == 1
    assert math.isnan(limited["score_std"])  # one seed: no spread to report
    averages = aggregate.suite_average(table)
    assert set(averages[averages["adapter"] == "lora"]["limited"]) == {False, True}


def test_a_group_where_every_seed_failed_stays_visible():
    records = [make_record(adapter="lora", seed=s, status="failed") for s in (1, 2)]
    table = aggregate.leaderboard(_frame(records))
    assert len(table) == 1
    row = table.iloc[0]
    assert math.isnan(row["score_mean"]) and row["n_failed"] == 2 and row["n_seeds"] == 0
    assert "failed" in aggregate.to_markdown(table)


def test_suite_average_is_the_mean_of_task_means_and_marks_incomplete_suites():
    table = aggregate.leaderboard(_frame())
    averages = aggregate.suite_average(table)
    head = _row(averages, adapter="head", limited=False)
    assert head["score_avg"] == pytest.approx((0.56 + 0.56) / 2)
    assert head["n_tasks"] == 2 and head["complete"]
    limited = _row(averages, adapter="lora", limited=True)
    assert limited["n_tasks"] == 1 and limited["n_suite_tasks"] == 1 and limited["complete"]
    # drop stsb for head: its average covers one of two tasks and says so
    partial = aggregate.suite_average(table[~((table["adapter"] == "head") & (table["task"] == "stsb"))])
    head_partial = _row(partial, adapter="head", limited=False)
    assert head_partial["n_tasks"] == 1 and not head_partial["complete"]


def test_pareto_front_by_definition():
    points = pd.DataFrame({"cost": [1, 2, 3, 2, 5, None], "score": [0.5, 0.7, 0.6, 0.7, 0.9, 0.99]})
    front = aggregate.pareto_front(points, "cost", "score")
    # (3, 0.6) is dominated by (2, 0.7); equal points both stay; the NaN cost never counts.
    assert front.tolist() == [True, True, False, True, True, False]


def test_pareto_front_on_leaderboard_params_and_memory():
    table = aggregate.leaderboard(_frame())
    rte = table[(table["task"] == "rte") & ~table["limited"]]
    by_params = dict(zip(rte["adapter"], aggregate.pareto_front(rte, "params_adapter", "score_mean")))
    # head (0 params, 0.56) and lora (73k, 0.64) and full (22M, 0.69) each buy score with cost
    assert by_params == {"head": True, "lora": True, "full": True}
    # CPU runs: the memory is the estimate (its own column; no measured peak)
    assert rte["peak_memory_bytes"].isna().all() and rte["estimate_memory_bytes"].notna().all()
    slow = rte.assign(estimate_memory_bytes=[3e9 if a == "lora" else m
                                             for a, m in zip(rte["adapter"], rte["estimate_memory_bytes"])])
    by_memory = dict(zip(slow["adapter"], aggregate.pareto_front(slow, "estimate_memory_bytes", "score_mean")))
    assert by_memory["lora"] is False or by_memory["lora"] == False  # noqa: E712 (numpy bool)


def test_markdown_and_latex_exports():
    table = aggregate.leaderboard(_frame())
    markdown = aggregate.to_markdown(table)
    lines = markdown.splitlines()
    assert lines[0].startswith("| suite | task | adapter")
    assert len(lines) == 2 + len(table)
    assert "64.00±2.00" in markdown  # lora rte: mean 0.64, std 0.02, in percent
    assert "(CPU est.)" in markdown and "dirty tree" in markdown and "limited" in markdown
    paper = aggregate.paper_table(table)
    assert list(paper.columns) == ["Method", "Params", "rte", "stsb", "Avg."]
    head = paper[paper["Method"] == "head"].iloc[0]
    assert head["Avg."] == "56.00"
    latex = aggregate.to_latex(table, caption="GLUE dev, cpu preset")
    assert r"\toprule" in latex and r"\bottomrule" in latex and r"$\pm$" in latex
    assert latex.count(r"\\") == len(paper) + 1
    assert "lora r8 $\\cdot$ limit 8 [limited]" in latex


def test_markdown_escapes_pipes():
    text = aggregate.to_markdown(pd.DataFrame({"a": ["x|y"], "b": [1]}))
    assert "x\\|y" in text


def test_run_detail_frames_from_analysis():
    record = make_record()
    sv = aggregate.singular_values_frame(record)
    assert len(sv) == 4 * 8 and sv["index"].min() == 1
    m_eff = aggregate.m_eff_frame(record)
    assert set(m_eff["k"]) == {1, 2, 4, 8}
    matrices = dict(aggregate.analysis_matrices(record))
    assert set(matrices) == {"inter_layer_kl.query", "lora2_ranks"}
    ranks = matrices["lora2_ranks"]
    assert ranks[(ranks["row"] == "1") & (ranks["col"] == "query")]["value"].item() == 4
    loss = aggregate.loss_curve_frame(record)
    assert loss["step"].tolist() == [1, 2, 3, 4]
    assert set(sv["component"]) == {"query L0 lora", "value L0 lora", "query L1 lora", "value L1 lora"}
    failed = make_record(status="failed")
    assert aggregate.singular_values_frame(failed).empty and aggregate.analysis_matrices(failed) == []


def test_reference_loader_reads_valid_rows_and_reports_bad_ones(tmp_path):
    header = ",".join(aggregate.REFERENCE_COLUMNS)
    (tmp_path / "paper.csv").write_text(
        header + "\n"
        "P,Table 1,roberta-base,glue,rte,lora,LoRA,accuracy,86.6,percent,300000,https://example.org/p,\n"
        "P,Table 1,roberta-base,glue,rte,lora,LoRA,accuracy,not-a-number,percent,,https://example.org/p,\n"
        "P,Table 1,roberta-base,glue,rte,lora,LoRA,accuracy,0.9,permille,,https://example.org/p,\n",
        encoding="utf-8",
    )
    (tmp_path / "foreign.csv").write_text("a,b\n1,2\n", encoding="utf-8")
    frame, skipped = aggregate.load_reference(tmp_path)
    assert len(frame) == 1
    assert frame["score"].iloc[0] == pytest.approx(0.866) and frame["source_kind"].iloc[0] == "reported"
    reasons = " ".join(why for _, why in skipped)
    assert "not a number" in reasons and "scale" in reasons and "missing columns" in reasons
    assert len(skipped) == 3


def test_shipped_reference_files_are_valid_and_cite_a_source():
    frame, skipped = aggregate.load_reference(REFERENCE_DIR)
    assert skipped == []
    assert frame["source"].str.startswith("http").all()


# One CSV per paper the issue names (MSPLoRA Tables 1-2, SeRA Tables 1-3, LoRA² Table 1), and the
# paper name each file's rows carry. results/reference/README.md says which tables are still missing.
REFERENCE_PAPERS = {"msplora.csv": "MSPLoRA", "sera.csv": "SeRA", "lora2.csv": "LoRA²"}
REGISTERED_SUITES = ("glue", "instructeval", "mt-bench", "coco-retrieval", "rscd")


def test_shipped_reference_covers_the_three_papers_with_our_names():
    import csv

    for name, paper in REFERENCE_PAPERS.items():
        path = REFERENCE_DIR / name
        assert path.is_file(), f"{name} is missing from results/reference"
        with open(path, encoding="utf-8", newline="") as fh:
            reader = csv.DictReader(fh)
            assert tuple(reader.fieldnames or ()) == aggregate.REFERENCE_COLUMNS, name
            rows = list(reader)
        assert all(row["paper"].startswith(paper) for row in rows), f"{name} holds another paper's rows"
    frame, skipped = aggregate.load_reference(REFERENCE_DIR)
    assert skipped == []
    # a row is shown under the suite whose name it carries, so only registered names may appear
    assert set(frame["suite"]) <= set(REGISTERED_SUITES)
    assert set(frame["scale"]) <= set(aggregate.REFERENCE_SCALES)
    assert frame["table"].str.startswith(("Table", "Figure")).all()
    assert (frame["source_kind"] == "reported").all()


def test_reference_rows_never_enter_our_aggregates(tmp_path):
    import shutil

    records = grid_records()
    plain = aggregate.leaderboard(aggregate.load_frame(records))
    # the shipped CSVs plus one row that matches a group of ours exactly, put inside the result store
    reference = tmp_path / "store" / "reference"
    reference.mkdir(parents=True)
    for path in REFERENCE_DIR.glob("*.csv"):
        shutil.copy(path, reference / path.name)
    (reference / "probe.csv").write_text(
        ",".join(aggregate.REFERENCE_COLUMNS) + "\n"
        "Probe,Table 1,tiny,glue,rte,lora,LoRA,accuracy,99.9,percent,73728,https://example.org/p,\n",
        encoding="utf-8",
    )
    store = write_store(tmp_path / "store", records)
    loaded = store.load(warn=False)
    assert len(loaded.records) == len(records) and loaded.skipped == []  # the store never reads CSVs
    table = aggregate.leaderboard(aggregate.load_frame(loaded.records))
    pd.testing.assert_frame_equal(table, plain)
    assert (table["source"] == "ours").all()
    pd.testing.assert_frame_equal(aggregate.suite_average(table), aggregate.suite_average(plain))
    ref, skipped = aggregate.load_reference(reference)
    assert skipped == [] and (ref["source_kind"] == "reported").all()
    assert 0.999 in set(ref["score"].round(3)) and not (table["score_mean"].round(3) == 0.999).any()


def test_store_roundtrip_with_a_foreign_file(tmp_path):
    store = write_store(tmp_path, grid_records()[:3])
    (tmp_path / "glue" / "notes.json").write_text('{"hello": "world"}', encoding="utf-8")
    loaded = store.load(warn=False)
    assert len(loaded.records) == 3 and len(loaded.skipped) == 1
    assert len(aggregate.leaderboard(aggregate.load_frame(loaded.records))) == 2


def test_aggregate_does_not_import_torch_or_streamlit():
    import subprocess

    code = ("import sys, harness.aggregate, harness.records.store, harness.records.record; "
            "bad = [m for m in ('torch', 'streamlit', 'harness.pipeline.runner') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0, done.stdout + done.stderr


def test_final_ranks_carried_by_components_become_a_layer_by_module_matrix():
    record = make_record()
    for c, rank in zip(record["analysis"]["components"], (3, 1, 0, 2)):
        c["final_rank"] = rank
    matrices = dict(aggregate.analysis_matrices(record))
    ranks = matrices["final rank per layer and module"]
    assert len(ranks) == 4
    assert ranks[(ranks["row"] == "1") & (ranks["col"] == "query")]["value"].item() == 0


def test_rsum_and_mt_bench_ratings_are_not_shown_as_percent():
    # a COCO rsum (already a sum of percentages) and an MT-Bench 1-10 rating print as reported, in the
    # leaderboard and in the papers' layout, while a GLUE accuracy fraction prints in percent
    records = [
        make_record(suite="coco-retrieval", task="coco", score=209.18, primary="rsum"),
        make_record(suite="mt-bench", task="alpaca", score=5.03, primary="overall"),
        make_record(suite="glue", task="rte", score=0.64, primary="accuracy"),
    ]
    table = aggregate.leaderboard(_frame(records))
    shown = aggregate.display_table(table).set_index("suite")["score"].to_dict()
    assert shown == {"coco-retrieval": "209.18", "mt-bench": "5.03", "glue": "64.00"}
    coco = aggregate.paper_table(table[table["suite"] == "coco-retrieval"]).iloc[0]
    assert coco["coco"] == "209.18" and coco["Avg."] == "209.18"


def test_measured_and_estimated_memory_never_share_a_column():
    from tests.record_factory import make_record

    cpu = make_record(adapter="lora", seed=1, peak_bytes=1 * 2**30)  # on the CPU: the estimate
    gpu = make_record(adapter="lora", seed=2, peak_bytes=5 * 2**30, device="cuda")  # measured
    gpu["memory"]["estimate_bytes"] = 3 * 2**30
    frame = aggregate.load_frame([cpu, gpu])
    row = aggregate.leaderboard(frame).iloc[0]
    # one configuration, one seed on each device: the measured 5 GiB is never averaged with an estimate
    assert row["peak_memory_bytes"] == 5 * 2**30 and not row["memory_estimated"]
    assert row["estimate_memory_bytes"] == 2 * 2**30  # (1 + 3) / 2: estimates with estimates
    wide = aggregate.wide_table(aggregate.leaderboard(frame), "glue")
    assert wide.iloc[0]["peak_memory_mib"] == 5 * 1024 and wide.iloc[0]["cpu_estimate_mib"] == 2 * 1024
