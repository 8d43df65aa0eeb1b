"""`python -m harness report` and the tables behind it, on hand-built stores (tests/record_factory.py)."""

from __future__ import annotations

import csv
import io
import json
import math
import os
from pathlib import Path

import pandas as pd
import pytest

from harness import aggregate
from harness import metrics as metric_units
from harness.cli import report as cli  # write_files_atomically
from harness.cli.main import main
from harness.spec import RunSpec
from tests.record_factory import make_record, write_store

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SEEDS = (42, 64, 128)


def glue(adapter: str, task: str, scores: tuple[float, ...], seeds: tuple[int, ...] = SEEDS, **kw) -> list[dict]:
    primary = {"stsb": "pearson", "cola": "mcc"}.get(task, "accuracy")
    options = kw.pop("adapter_options", None if adapter == "lora" else {})
    return [make_record(task=task, adapter=adapter, seed=s, score=v, primary=primary, adapter_options=options, **kw)
            for s, v in zip(seeds, scores)]


def two_task_store() -> list[dict]:
    """rte + stsb, three seeds: full > lora; head incomplete (rte only) with the best rte score."""
    return [
        *glue("lora", "rte", (0.60, 0.62, 0.64)), *glue("lora", "stsb", (0.80, 0.81, 0.82)),
        *glue("full", "rte", (0.70, 0.72, 0.74)), *glue("full", "stsb", (0.85, 0.86, 0.87)),
        *glue("head", "rte", (0.90, 0.91, 0.92)),
    ]


def frame_of(records: list[dict]) -> pd.DataFrame:
    return aggregate.leaderboard(aggregate.load_frame(records))


def read_csv(path: Path) -> pd.DataFrame:
    return pd.read_csv(path)


def test_an_incomplete_configuration_never_ranks_above_a_complete_one():
    wide = aggregate.wide_table(frame_of(two_task_store()), "glue")
    assert list(wide["method"]) == ["full", "lora r8", "head"]
    assert list(wide["complete"]) == [True, True, False] and pd.isna(wide["rank"].iloc[2])
    assert wide.loc[2, "missing"] == "tasks stsb" and pd.isna(wide.loc[2, "average"])
    # a configuration with fewer seeds than requested (3) is incomplete too, and says so
    fewer = [r for r in two_task_store() if not (r["key"]["adapter"] == "full" and r["key"]["seed"] == 128)]
    wide = aggregate.wide_table(frame_of(fewer), "glue")
    full = wide[wide["method"] == "full"].iloc[0]
    assert not full["complete"] and full["missing"] == "seeds rte 2/3, stsb 2/3" and wide.iloc[0]["method"] == "lora r8"


def test_a_smoke_run_and_a_full_run_never_share_a_row_or_an_average():
    records = two_task_store()
    clean = aggregate.wide_table(frame_of(records), "glue")
    smoke = make_record(task="rte", adapter="lora", seed=42, score=0.10,
                        train={"max_steps": 2, "max_train_samples": 32})
    # a smoke run on a task no full run has must not make the full rows incomplete either (alone on its
    # task the store cannot tell it is capped; a new record says so in its caps section)
    other = make_record(task="cola", adapter="lora", seed=42, score=0.10, primary="mcc", train={"max_steps": 2},
                        annotations={"caps": {"below_preset": ["max_steps"]}})
    table = frame_of([*records, smoke, other])
    wide = aggregate.wide_table(table, "glue")
    pd.testing.assert_frame_equal(wide, clean)  # the full table does not move
    limited = aggregate.wide_table(table, "glue", limited=True)
    assert list(limited["method"]) == ["lora r8 · max steps 2", "lora r8 · max steps 2 · train cap 32"]
    assert list(limited["limited_by"]) == ["max_steps", "max_steps,max_train_samples"]
    assert not limited["complete"].any()  # a limited row is judged against every task of the suite
    assert limited.iloc[0]["config_hash"] not in set(wide["config_hash"])


def test_a_changed_training_setting_is_its_own_row_with_a_label_that_says_so():
    records = [*two_task_store(), *glue("lora", "rte", (0.5, 0.5, 0.5), train={"lr": 3e-4}),
               *glue("lora", "stsb", (0.5, 0.5, 0.5), train={"lr": 3e-4})]
    wide = aggregate.wide_table(frame_of(records), "glue")
    assert "lora r8 · lr 0.0003" in set(wide["method"])
    row = wide[wide["method"] == "lora r8"].iloc[0]
    assert row["rte"] == pytest.approx(62.0) and row["rte_n"] == 3  # the lr run is not averaged in


def test_a_copied_record_or_a_backup_folder_changes_neither_n_nor_the_ci(tmp_path):
    store = tmp_path / "store"
    write_store(store, two_task_store())
    before = aggregate.wide_table(frame_of(aggregate_records(store)), "glue")
    original = next((store / "glue" / "rte").glob("lora-*-seed42.json"))
    (original.parent / f"{original.stem} (copy).json").write_bytes(original.read_bytes())
    (store / "backup" / "glue" / "rte").mkdir(parents=True)
    (store / "backup" / "glue" / "rte" / original.name).write_bytes(original.read_bytes())
    frame = aggregate.load_frame(aggregate_records(store))
    assert len(frame.attrs["duplicates"]) == 1 and "(3 records)" in frame.attrs["duplicates"][0]
    after = aggregate.wide_table(aggregate.leaderboard(frame), "glue")
    pd.testing.assert_frame_equal(after, before)


def aggregate_records(store: Path) -> list[dict]:
    from harness.records.store import ResultStore

    return ResultStore(store).records(warn=False)


def test_limited_by_the_preset_the_record_states_never_by_the_rest_of_the_store():
    full = glue("lora", "rte", (0.6,), seeds=(1,), train={"max_eval_samples": 1000}, annotations=EVAL_CAP_PRESET)
    capped = glue("lora", "rte", (0.5,), seeds=(1,), train={"max_eval_samples": 100}, annotations=EVAL_CAP_PRESET)
    frame = aggregate.load_frame([*full, *full_like("head", 1000), *capped])
    assert list(frame.sort_values("score")["limited"]) == [True, False, False]
    # a record that does not state its preset's defaults (version 1, not migrated): nothing is guessed
    # from the records beside it; every cap it sets limits it, and its label says what it does not know
    old = make_record(task="rte", seed=2, score=0.7, train={"max_eval_samples": 1000}, annotated=False)
    row = aggregate.load_frame([*full, old]).sort_values("score").iloc[-1]
    assert row["limited"] and row["label"] == "lora r8 · eval cap 1000 · preset defaults unknown"
    # a new record states its caps: believed even when the store alone could not tell
    lone = make_record(task="rte", seed=1, train={"max_steps": 5},
                       annotations={"caps": {"below_preset": ["max_steps"]},
                                    "preset_defaults": {"train": {"epochs": 1.0, "lr": 1e-3, "limit": None,
                                                                  "max_steps": None}}})
    row = aggregate.load_frame([lone]).iloc[0]
    assert row["limited"] and row["limited_by"] == "max_steps" and row["label"] == "lora r8 · max steps 5"


EVAL_CAP_PRESET = {"preset_defaults": {"train": {"epochs": 1.0, "lr": 1e-3, "limit": None, "max_eval_samples": 1000},
                                       "adapter_options": {"rank": 8, "alpha": 16.0}}}


def full_like(adapter: str, eval_cap: int) -> list[dict]:
    return glue(adapter, "rte", (0.55,), seeds=(1,), train={"max_eval_samples": eval_cap}, annotations=EVAL_CAP_PRESET)


def test_paired_comparison_in_the_table_matches_the_hand_worked_example():
    # lora rte 60, 62, 64 %; full 70, 72, 74 %: d = 10 on every seed -> delta 10, CI [10, 10], p = NaN
    # (no variance: no t-test), so tied by the rule. full stsb 85, 86, 87 vs lora 80, 81, 82: the same shift of 5.
    # head rte 90, 91, 92 vs 60, 62, 64: d = 30, 29, 28 (mean 29, sd 1, t = 50.2, p = 1 - t/sqrt(2+t^2)).
    comparison = aggregate.compare_to_baseline(frame_of(two_task_store()), "glue", "lora")
    by = {(r["method"], r["task"]): r for _, r in comparison.iterrows()}
    full_rte = by[("full", "rte")]
    assert full_rte["n_pairs"] == 3 and full_rte["delta"] == pytest.approx(10.0)
    assert full_rte["ci_low"] == pytest.approx(10.0) and full_rte["verdict"] == "tied"
    assert math.isnan(full_rte["p_value"])
    head = by[("head", "rte")]
    t = 29 / (1 / 3**0.5)
    assert head["delta"] == pytest.approx(29.0) and head["p_value"] == pytest.approx(1 - t / (2 + t * t) ** 0.5)
    assert head["p_improvement"] == 1.0
    assert ("full", "average") in by and ("head", "average") not in by  # head lacks stsb
    assert by[("full", "average")]["delta"] == pytest.approx(7.5)


def test_units_appear_in_every_output(tmp_path):
    records = [*two_task_store(), make_record(suite="coco-retrieval", task="coco", score=209.0, primary="rsum"),
               make_record(suite="mt-bench", task="alpaca", score=5.03, primary="overall")]
    store = tmp_path / "store"
    write_store(store, records)
    out = tmp_path / "tables"
    assert main(["report", "--results-dir", str(store), "--out", str(out)]) == 0
    glue_csv = read_csv(out / "glue.csv")
    assert set(glue_csv["unit"]) == {"rte: accuracy (%); stsb: pearson (x100)"}
    assert glue_csv.loc[glue_csv["method"] == "lora r8", "rte"].item() == pytest.approx(62.0)  # percent
    assert "accuracy (%)" in set(read_csv(out / "glue-vs-lora.csv")["unit"])
    md = (out / "glue.md").read_text()
    assert "RTE accuracy (%)" in md and "STS-B pearson (x100)" in md and "Avg. (points)" in md
    tex = (out / "glue.tex").read_text()
    assert r"\caption{" in tex and "RTE: accuracy (\\%)" in tex and tex.isascii()
    coco = read_csv(out / "coco-retrieval.csv")
    assert coco["coco"].item() == pytest.approx(209.0) and "rsum (sum of %)" in coco["unit"].item()
    assert "Alpaca overall (rating 1-10)" in (out / "mt-bench.md").read_text()
    page = (out / "leaderboard.md").read_text()
    assert page.index("## glue") < page.index("## coco-retrieval") < page.index("## mt-bench")


def test_report_csv_columns_bold_best_and_short_names(tmp_path):
    store = tmp_path / "store"
    write_store(store, two_task_store())
    out = tmp_path / "tables"
    assert main(["report", "--results-dir", str(store), "--out", str(out), "--format", "csv,md,latex"]) == 0
    wide = read_csv(out / "glue.csv")
    for column in ("method", "config_hash", "complete", "n_seeds", "rte", "stsb", "average", "average_ci_low",
                   "average_ci_high", "adapter_params", "peak_memory_mib"):
        assert column in wide.columns
    assert list(wide["n_seeds"]) == [3, 3, 3]
    vs = read_csv(out / "glue-vs-lora.csv")
    for column in ("method", "task", "n_pairs", "delta", "ci_low", "ci_high", "p_value", "p_improvement"):
        assert column in vs.columns
    assert read_csv(out / "glue-limited.csv").empty
    md = (out / "glue.md").read_text()
    full_line = next(line for line in md.splitlines() if line.startswith("| 1 | Full FT | "))
    # mean ± sample sd of 70, 72, 74 (the Student-t interval, [67.03, 76.97], stays in the CSV); the
    # difference to lora is a constant +10 (no variance, no p-value): tied by the rule
    assert "| **72.00 ± 2.00** ≈ |" in full_line  # best complete rte
    full_csv = wide[wide["adapter"] == "full"].iloc[0]
    assert (full_csv["rte_ci_low"], full_csv["rte_ci_high"]) == (pytest.approx(67.03, abs=0.005),
                                                                 pytest.approx(76.97, abs=0.005))
    head_line = next(line for line in md.splitlines() if "| Head only |" in line)
    assert "**" not in head_line.split("|")[3]  # head's 91 % is incomplete: never the bold best
    assert r"\textbf{" in (out / "glue.tex").read_text()


def test_a_killed_report_leaves_the_old_tables_intact(tmp_path, monkeypatch):
    store = tmp_path / "store"
    write_store(store, two_task_store())
    out = tmp_path / "tables"
    assert main(["report", "--results-dir", str(store), "--out", str(out)]) == 0
    old = {p.name: p.read_bytes() for p in out.iterdir()}
    write_store(store, glue("lora2", "rte", (0.5, 0.5, 0.5)))  # the next report would change the tables
    real_replace, calls = os.replace, []

    def dying_replace(src, dst):
        calls.append(dst)
        if len(calls) == 3:
            raise KeyboardInterrupt  # killed between two files
        real_replace(src, dst)

    monkeypatch.setattr(cli.os, "replace", dying_replace)
    with pytest.raises(KeyboardInterrupt):
        cli.write_files_atomically(out, aggregate.build_report(aggregate.load_frame(aggregate_records(store))))
    monkeypatch.setattr(cli.os, "replace", real_replace)
    assert sorted(p.name for p in out.iterdir()) == sorted(old)  # no temporary file left behind
    changed = [name for name in old if (out / name).read_bytes() != old[name]]
    assert len(changed) <= 2  # the two files renamed before the kill are whole new ones ...
    for name in old:
        text = (out / name).read_text()
        assert text.endswith("\n")
        if name.endswith(".csv"):
            list(csv.reader(io.StringIO(text)))  # ... and every file parses whole
    assert (out / "glue.md").read_bytes() == old["glue.md"]


def test_a_missing_or_empty_results_dir_exits_2_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "tables"
    out.mkdir()
    (out / "glue.csv").write_text("good table\n")
    assert main(["report", "--results-dir", str(tmp_path / "nope"), "--out", str(out)]) == 2
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "foreign.json").write_text("{}")
    assert main(["report", "--results-dir", str(tmp_path / "empty"), "--out", str(out)]) == 2
    assert main(["report", "--results-dir", str(tmp_path / "empty"), "--format", "pdf"]) == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and "holds no run record" in err and "valid formats" in err
    assert (out / "glue.csv").read_text() == "good table\n" and sorted(os.listdir(out)) == ["glue.csv"]


def test_one_seed_cells_say_so_and_never_none():
    wide = aggregate.wide_table(frame_of(glue("lora", "rte", (0.6,), seeds=(1,))), "glue")
    shown, _ = aggregate.wide_display(wide)
    assert shown.iloc[0]["rte accuracy (%)"] == "60.00 (1 seed)"
    assert "None" not in aggregate.wide_markdown(wide)


def test_an_undeclared_metric_is_labelled_unknown_and_not_scaled():
    record = make_record(suite="my-suite", task="t", score=0.5, primary="zeta")
    row = aggregate.load_frame([record]).iloc[0]
    assert row["unit"] == "unknown" and row["scale"] == 1.0
    shown, _ = aggregate.wide_display(aggregate.wide_table(frame_of([record]), "my-suite"))
    assert "t zeta (unit unknown)" in shown.columns and shown.iloc[0]["t zeta (unit unknown)"] == "0.50 (1 seed)"
    # a record that carries its unit is read by it
    declared = make_record(suite="my-suite", task="t", score=0.5, primary="zeta",
                           annotations={"metrics": {"unit": "fraction", "higher_is_better": True}})
    assert aggregate.load_frame([declared]).iloc[0]["scale"] == 100.0


BUILTIN_SUITES = ("glue", "instructeval", "mt-bench", "coco-retrieval", "rscd")


def test_every_builtin_suite_declares_its_primary_metrics_with_a_unit():
    from harness.registry import SUITES

    for name in BUILTIN_SUITES:
        suite = SUITES.get(name)()
        assert suite.metrics and all(isinstance(m, metric_units.MetricSpec) for m in suite.metrics)
        for task in suite.tasks:
            spec = suite.metric(suite.primary_metric(task))
            assert spec.unit in metric_units.UNITS and spec.primary


def test_the_papers_units_are_the_suites_declarations():
    """The units the tables use for numbers without a record (harness/aggregate/paper_units.py) are those
    the suites declare, and every metric of a reported table or a sub-metric column a suite declares is
    among them (else a reported number would be scaled by its row's own scale, not its unit's)."""
    from harness.aggregate.paper_format import SUB_METRICS
    from harness.aggregate.paper_units import PAPER_METRIC_UNITS
    from harness.registry import SUITES

    declared = {name: {m.name: m.unit for m in SUITES.get(name)().metrics} for name in BUILTIN_SUITES}
    for suite, units in PAPER_METRIC_UNITS.items():
        assert all(declared[suite].get(metric) == unit for metric, unit in units.items()), suite
    used = {(s, m) for s, metrics in SUB_METRICS.items() for m, _header in metrics}
    for path in (Path(__file__).resolve().parents[1] / "results" / "reference").glob("*.csv"):
        used |= {(row["suite"], row["metric"]) for row in csv.DictReader(path.open(encoding="utf-8"))}
    for suite, metric in used:
        if metric in declared.get(suite, {}):
            assert PAPER_METRIC_UNITS[suite].get(metric) == declared[suite][metric], (suite, metric)


def test_glue_refuses_limit_at_plan_time():
    from harness.errors import HarnessError
    from harness.pipeline.plan import GridRequest, plan_grid

    with pytest.raises(HarnessError, match="does not use --limit"):
        plan_grid(GridRequest(suite="glue", tasks="rte", adapters="lora", train_overrides={"limit": 5}),
                  cuda_available=False)
    specs = plan_grid(GridRequest(suite="instructeval", adapters="lora", train_overrides={"limit": 5}),
                      cuda_available=False)
    assert specs and specs[0].train.limit == 5  # instructeval honours it


def test_new_records_carry_preset_defaults_caps_and_units_outside_the_hash():
    from harness.pipeline.plan import GridRequest, plan_grid
    from harness.pipeline.run_record import base_record, metric_annotations

    spec = plan_grid(GridRequest(suite="glue", tasks="rte", adapters="full", seeds=(1,),
                                 train_overrides={"max_steps": 2, "lr": 3e-4}), cuda_available=False)[0]
    record = base_record(spec)
    assert record["preset_defaults"]["train"]["lr"] == 5e-5  # full fine-tuning's cpu lr, not the suite's
    assert record["preset_defaults"]["train"]["max_steps"] is None
    assert record["caps"]["below_preset"] == ["max_steps"] and record["caps"]["applied"]["max_steps"] == 2
    assert "rte" in record["preset_defaults"]["suite_tasks"]
    assert metric_annotations(spec, "accuracy")["unit"] == "fraction"
    assert RunSpec.from_dict(record["spec"]).config_hash == record["key"]["config_hash"]
    record.update(status="success", metrics={"primary": "accuracy", "score": 0.6, **metric_annotations(spec, "accuracy")})
    row = aggregate.load_frame([record]).iloc[0]
    assert row["label"] == "full · lr 0.0003 · max steps 2" and row["limited"]


def test_every_shipped_record_recomputes_its_own_config_hash():
    paths = sorted((PROJECT_ROOT / "results").rglob("*.json"))
    assert paths, "results/ holds the shipped records"
    for path in paths:
        record = json.loads(path.read_text(encoding="utf-8"))
        if record.get("kind") == "tuning-choice":  # results/tuning/choices: what a study chose, no run
            continue
        spec = RunSpec.from_dict(record["spec"])
        assert spec.config_hash == record["key"]["config_hash"], path
        assert path.name == f"{record['key']['adapter']}-{spec.config_hash}-seed{spec.seed}.json"


def test_a_smoke_run_added_to_the_shipped_store_moves_no_full_cell(tmp_path):
    # the example: one smoke run of LoRA on RTE used to move LoRA's RTE cell and GLUE average
    import copy
    import shutil

    from harness.records.store import ResultStore

    store = tmp_path / "store"
    shutil.copytree(PROJECT_ROOT / "results" / "glue", store / "glue")
    before = aggregate.wide_table(frame_of(aggregate_records(store)), "glue")
    # the preset's LoRA (the configuration shipped with three seeds; reproduce rows add other LoRAs)
    default_lora = next((store / "glue" / "rte").glob("lora-*-seed128.json")).name.replace("seed128", "seed42")
    shipped = json.loads((store / "glue" / "rte" / default_lora).read_text())
    smoke = copy.deepcopy(shipped)
    smoke["spec"]["train"].update(max_steps=2, max_train_samples=32)
    spec = RunSpec.from_dict(smoke["spec"])
    smoke["key"]["config_hash"], smoke["run_id"] = spec.config_hash, spec.run_id
    smoke["metrics"]["score"] = 0.40
    ResultStore(store).write(smoke)
    table = frame_of(aggregate_records(store))
    pd.testing.assert_frame_equal(aggregate.wide_table(table, "glue"), before)
    limited = aggregate.wide_table(table, "glue", limited=True)
    assert list(limited["method"]) == ["lora r8 · max steps 2 · train cap 32"] and not limited["complete"].any()


def test_report_reads_the_store_without_torch(tmp_path):
    import subprocess
    import sys

    write_store(tmp_path / "store", two_task_store())
    # torch and transformers made unimportable: the leaderboard tables are pure pandas/scipy; only the
    # reproduce-<table>.csv files (which plan the paper tables' rows through the suites) need torch
    code = ("import sys\n"
            "class Block:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name.split('.')[0] in ('torch', 'transformers'):\n"
            "            raise ModuleNotFoundError(f'blocked: {name}', name=name)\n"
            "sys.meta_path.insert(0, Block())\n"
            "from harness.cli.main import main\n"
            f"assert main(['report', '--results-dir', {str(tmp_path / 'store')!r}, '--out', {str(tmp_path / 'out')!r}]) == 0\n"
            "assert 'torch' not in sys.modules\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=120)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert (tmp_path / "out" / "glue.csv").is_file()
    assert "no reproduce-<table>.csv written" in done.stderr


def test_a_capped_spec_is_limited_even_when_its_caps_section_says_otherwise(tmp_path):
    # a record copied from a full run (caps.below_preset == []) with a capped spec: the spec decides
    import copy

    from harness.records.store import ResultStore

    full = next(p for p in sorted((PROJECT_ROOT / "results" / "glue" / "rte").glob("*.json"))
                if json.loads(p.read_text()).get("caps", {}).get("below_preset") == [])
    record = json.loads(full.read_text())
    smoke = copy.deepcopy(record)
    smoke["spec"]["train"].update(max_steps=2)
    spec = RunSpec.from_dict(smoke["spec"])
    smoke["key"]["config_hash"], smoke["run_id"] = spec.config_hash, spec.run_id
    ResultStore(tmp_path).write(record)
    ResultStore(tmp_path).write(smoke)
    table = frame_of(aggregate_records(tmp_path))
    assert list(aggregate.wide_table(table, "glue", limited=True)["method"]) != []
    assert len(aggregate.wide_table(table, "glue")) == 1  # the full run only
