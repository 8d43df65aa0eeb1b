"""The leaderboard app under Streamlit's own test harness (streamlit.testing.v1.AppTest)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from harness import aggregate
from harness.cli.main import main as harness_main
from tests.record_factory import grid_records, make_record, write_store

PROJECT_ROOT = Path(__file__).resolve().parents[1]
APP = PROJECT_ROOT / "app" / "leaderboard.py"
DATA_DIR = PROJECT_ROOT.parent / "shared" / "data"


def render(results_dir: Path, monkeypatch: pytest.MonkeyPatch, reference_dir: Path | None = None) -> AppTest:
    monkeypatch.setenv("HARNESS_RESULTS_DIR", str(results_dir))
    if reference_dir is not None:
        monkeypatch.setenv("HARNESS_REFERENCE_DIR", str(reference_dir))
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def count(at: AppTest, element_type: str) -> int:
    def walk(node) -> int:
        own = 1 if getattr(node, "type", None) == element_type else 0
        children = getattr(node, "children", None) or {}
        return own + sum(walk(child) for child in children.values())

    return walk(at._tree)


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def real_store(tmp_path_factory) -> Path:
    """A store written by the harness itself: a real cpu-preset run, cut to a few steps to stay fast."""
    root = tmp_path_factory.mktemp("real-store")
    argv = ["run", "--suite", "glue", "--preset", "cpu", "--tasks", "rte", "--adapters", "lora,head",
            "--seeds", "1", "--max-steps", "2", "--max-train-samples", "32", "--max-eval-samples", "32",
            "--data-dir", str(DATA_DIR), "--results-dir", str(root), "--no-progress"]
    assert harness_main(argv) == 0
    assert len(list(root.rglob("*.json"))) == 2
    return root


def frame_with(at: AppTest, column: str, nth: int = 0):
    """The nth dataframe on the page that has ``column`` (the tables are told apart by their columns)."""
    frames = [d.value for d in at.dataframe if column in d.value.columns]
    assert len(frames) > nth, f"no dataframe #{nth} with column {column!r}"
    return frames[nth]


def markdown_texts(at: AppTest) -> str:
    """Everything Streamlit renders as Markdown: markdown, captions, headers, alerts."""
    parts = [e.value for kind in ("markdown", "caption", "subheader", "title", "warning", "error", "info", "success")
             for e in getattr(at, kind)]
    return "\n".join(str(p) for p in parts)


def seeded_store(root: Path) -> None:
    """GLUE rte+stsb with lora, full and head on three seeds, a COCO record, one limited smoke run."""
    # full - lora = 10, 10.5, 9.5 points: distinguishable after Holm (a constant shift would have no p-value)
    scores = {"lora": (0.60, 0.62, 0.64), "full": (0.70, 0.725, 0.735), "head": (0.59, 0.63, 0.62)}
    records = []
    for adapter, values in scores.items():
        for task in ("rte", "stsb"):
            for seed, score in zip((42, 64, 128), values):
                records.append(make_record(task=task, adapter=adapter, seed=seed, score=score,
                                           primary="pearson" if task == "stsb" else "accuracy",
                                           adapter_options=None if adapter == "lora" else {}))
    records.append(make_record(suite="coco-retrieval", task="coco", score=209.0, primary="rsum"))
    records.append(make_record(task="rte", adapter="lora", seed=42, score=0.5, limit=8))
    write_store(root, records)


def test_empty_store_shows_a_helpful_empty_state(tmp_path, monkeypatch):
    at = render(tmp_path / "nothing-here", monkeypatch, reference_dir=tmp_path / "no-reference")
    infos = " ".join(i.value for i in at.info)
    assert "No run records" in infos
    assert any("python -m harness run" in c.value for c in at.code)
    assert not at.warning and count(at, "dataframe") == 0


def test_real_cpu_preset_run_renders_every_page(real_store, monkeypatch):
    before = snapshot(real_store)
    at = render(real_store, monkeypatch)
    assert [t.label for t in at.tabs][:5] == ["Leaderboard", "Pareto", "Run detail", "Reported (papers)", "Export"]
    # --max-steps 2 --max-train-samples 32 --max-eval-samples 32: below the preset's caps, so limited
    limited = frame_with(at, "limited by")
    assert set(limited["method"].str.split().str[0]) == {"lora", "head"}
    assert limited["limited by"].str.contains("max_steps").all()
    board = frame_with(at, "config hash")
    assert set(board["method"].str.split().str[0]) == {"lora", "head"} and (board["seeds"] == 1).all()
    # the CI machine has no GPU: estimates, in their own column; no measured peak is claimed
    assert board["memory MiB (CPU estimate)"].notna().all() and board["peak memory MiB (GPU measured)"].isna().all()
    assert (board["unit"] == "%").all()  # RTE accuracy, declared a fraction, shown in percent
    # only limited runs of one of GLUE's six tasks: no complete row, so no Pareto of the suite average
    # no complete row (limited runs of one of six tasks): the Pareto tab opens on that task, not on an
    # empty suite average (issue 34)
    assert at.selectbox(key="pareto-target").value != "average"
    at.selectbox(key="pareto-target").set_value("rte").run()
    assert count(at, "vega_lite_chart") >= 2  # the Pareto plot of RTE and the loss curve
    lora_run = next(r for r in at.selectbox(key="detail-run").options if "/lora/" in r)
    at.selectbox(key="detail-run").set_value(lora_run).run()
    assert not at.exception
    # Pareto, loss curve, singular values, M_eff-k: the record's SVD analysis is drawn
    assert count(at, "vega_lite_chart") >= 4
    assert snapshot(real_store) == before  # the app never writes


def test_leaderboard_opens_on_glue_with_cis_and_tie_marks(tmp_path, monkeypatch):
    seeded_store(tmp_path)
    at = render(tmp_path, monkeypatch)
    assert at.subheader[0].value == "Suite: glue"  # GLUE first, then the others
    wide = frame_with(at, "#")
    assert list(wide["method"])[:3] == ["full", "lora r8", "head"]  # complete rows ranked by average
    rte = next(c for c in wide.columns if c.startswith("rte"))
    assert rte == "rte accuracy (%)"
    full_rte = wide.loc[wide["method"] == "full", rte].item()
    assert full_rte.startswith("72.00 [") and "n=3" in full_rte and full_rte.endswith("▲")
    assert wide.loc[wide["method"] == "head", rte].item().endswith("≈")  # adjusted p >= 0.05
    assert "limit" not in " ".join(wide["method"])  # the smoke run is not in the ranked table
    vs = frame_with(at, "P(better)")
    # a tie says what the seeds could have detected
    assert {v.split(":")[0] for v in vs["verdict"]} <= {"better", "worse", "tied", "n/a"}
    coco = frame_with(at, "coco rsum (sum of %)")  # COCO's recall sum as reported, not as a percent
    assert coco.iloc[0]["coco rsum (sum of %)"] == pytest.approx(209.0)  # the sortable ranked table
    coco = frame_with(at, "coco rsum (sum of %)", nth=1)  # the cells as the report prints them
    assert coco.iloc[0]["coco rsum (sum of %)"] == "209.00 (1 seed)"


def test_factory_grid_tables_filters_and_analysis(tmp_path, monkeypatch):
    write_store(tmp_path, grid_records())
    at = render(tmp_path, monkeypatch)
    board = frame_with(at, "config hash")
    lora_rte = board[(board["method"] == "lora r8") & (board["task"] == "rte")].iloc[0]
    assert lora_rte["score"] == pytest.approx(64.0) and lora_rte["failed"] == 1 and lora_rte["dirty tree"]
    assert board["diverged"].sum() == 1
    assert "dirty tree" in " ".join(t.value for t in at.text)
    at.multiselect(key="filter-adapter").set_value(["lora", "head"]).run()
    assert set(frame_with(at, "config hash")["method"].str.split().str[0]) == {"lora", "head"}
    at.checkbox(key="filter-limited").uncheck().run()
    assert (frame_with(at, "config hash")["limited by"] == "").all()
    run_id = next(r for r in at.selectbox(key="detail-run").options if "/lora/" in r and r.endswith("seed1"))
    at.selectbox(key="detail-run").set_value(run_id).run()
    # loss, singular values, M_eff-k, KL heatmap, LoRA² rank heatmap; no Pareto of the average: lora has
    # 3 seeds on rte, so a row needs 3 on stsb too, and none is complete: the Pareto tab plots a task instead
    assert count(at, "vega_lite_chart") == 6
    assert at.selectbox(key="pareto-target").value != "average"
    failed_id = next(r for r in at.selectbox(key="detail-run").options if r.endswith("seed3") and "/lora/" in r)
    at.selectbox(key="detail-run").set_value(failed_id).run()
    assert any("RuntimeError" in c.value for c in at.code)
    codes = " ".join(c.value for c in at.code)
    assert r"\toprule" in codes and "| # | Method |" in codes


def test_markdown_in_a_record_is_shown_literally(tmp_path, monkeypatch):
    evil = "![x](http://host/p.png)"
    record = make_record(adapter=evil, task=f"rte{evil}", status="failed")
    record["error"]["message"] = f"boom {evil} **bold** <img src=http://host/q.png>"
    ok = make_record(adapter=evil, seed=2, adapter_options={"rank": 8, "note": "[link](http://host/l)"})
    write_store(tmp_path, [record, ok])
    at = render(tmp_path, monkeypatch)
    rendered = markdown_texts(at)
    # wherever Streamlit reads Markdown, the record's strings arrive escaped (no image, link or tag)
    assert "](http" not in rendered and "<img" not in rendered
    at.selectbox(key="detail-run").set_value(next(r for r in at.selectbox(key="detail-run").options
                                                  if r.endswith("seed1"))).run()
    assert not at.exception
    assert any(evil in c.value and "<img src=http://host/q.png>" in c.value for c in at.code)  # literal text
    rendered = markdown_texts(at)
    assert "](http" not in rendered and "<img" not in rendered
    assert any(evil in " ".join(map(str, frame_with(at, "config hash")["method"])) for _ in [0])


def test_malformed_and_foreign_json_are_skipped_with_a_warning(tmp_path, monkeypatch):
    write_store(tmp_path, [make_record(adapter="lora"), make_record(adapter="head", adapter_options={})])
    folder = tmp_path / "glue" / "rte"
    (folder / "truncated.json").write_text('{"schema_version": 1, "run_id": ', encoding="utf-8")
    (folder / "foreign.json").write_text(json.dumps({"name": "some other tool's file"}), encoding="utf-8")
    (tmp_path / "list.json").write_text("[1, 2, 3]", encoding="utf-8")
    future = make_record(adapter="full", adapter_options={})
    future["schema_version"] = 99
    (folder / "future.json").write_text(json.dumps(future), encoding="utf-8")
    (folder / "binary.json").write_bytes(b"\xff\xfe\x00garbage")
    at = render(tmp_path, monkeypatch)
    assert "Skipped 5" in " ".join(w.value for w in at.warning)
    files = " ".join(frame_with(at, "why")["file"])
    for name in ("truncated.json", "foreign.json", "list.json", "future.json", "binary.json"):
        assert name in files
    assert set(frame_with(at, "config hash")["method"].str.split().str[0]) == {"lora", "head"}


def test_a_copied_record_is_counted_once_and_warned_about(tmp_path, monkeypatch):
    seeded_store(tmp_path)
    original = next((tmp_path / "glue" / "rte").glob("lora-*-seed42.json"))
    (original.parent / (original.stem + " (copy).json")).write_bytes(original.read_bytes())
    backup = tmp_path / "backup" / "glue" / "rte"
    backup.mkdir(parents=True)
    (backup / original.name).write_bytes(original.read_bytes())
    at = render(tmp_path, monkeypatch)
    assert any("recorded more than once" in w.value for w in at.warning)
    wide = frame_with(at, "#")
    assert "n=3" in wide.loc[wide["method"] == "lora r8", "rte accuracy (%)"].item()


def test_reported_rows_are_shown_apart_and_never_averaged(tmp_path, monkeypatch):
    seeded_store(tmp_path / "store")
    reference = tmp_path / "reference"
    reference.mkdir()
    (reference / "paper.csv").write_text(
        ",".join(aggregate.REFERENCE_COLUMNS) + "\n"
        "Test paper,Table 1,roberta-base,glue,rte,lora,LoRA,accuracy,99.0,percent,294912,https://example.org/t1,\n",
        encoding="utf-8",
    )
    at = render(tmp_path / "store", monkeypatch, reference_dir=reference)
    reported = frame_with(at, "paper")
    assert (reported["source"] == "reported").all() and reported["value as printed"].iloc[0] == pytest.approx(99.0)
    wide = frame_with(at, "#")
    lora = wide[wide["method"] == "lora r8"].iloc[0]
    assert lora["average (points)"].startswith("62.00 [")  # (62 + 62) / 2, the reported 99 never enters
    at.selectbox(key="pareto-target").set_value("rte").run()
    assert not at.exception  # the reported point is drawn as its own marker on the parameter axis


def test_pareto_offers_averages_tasks_and_three_axes(tmp_path, monkeypatch):
    seeded_store(tmp_path)
    at = render(tmp_path, monkeypatch)
    assert at.selectbox(key="pareto-target").options[0] == "suite average (complete rows)"
    assert list(at.radio(key="pareto-axis").options) == [
        "adapter parameters", "peak memory (GPU measured)", "memory (CPU estimate)", "train time"]
    for axis in ("peak memory (GPU measured)", "memory (CPU estimate)", "train time"):
        at.radio(key="pareto-axis").set_value(axis).run()
        assert not at.exception
    at.selectbox(key="pareto-target").set_value("stsb").run()
    assert not at.exception and count(at, "vega_lite_chart") >= 1


def test_the_store_is_chosen_from_configured_ones_only(tmp_path, monkeypatch):
    seeded_store(tmp_path / "a")
    write_store(tmp_path / "b", [make_record(adapter="lora")])
    monkeypatch.setenv("HARNESS_RESULTS_DIRS", f"{tmp_path / 'a'}{os.pathsep}{tmp_path / 'b'}")
    monkeypatch.delenv("HARNESS_RESULTS_DIR", raising=False)
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    assert not at.exception and [t.key for t in at.text_input] == ["filter-query"]  # no free-text path
    assert list(at.selectbox(key="results-dir").options) == [str(tmp_path / "a"), str(tmp_path / "b"), "all of them"]
    at.selectbox(key="results-dir").set_value(str(tmp_path / "b")).run()
    assert len(frame_with(at, "config hash")) == 1
    at.selectbox(key="results-dir").set_value("all of them").run()  # both, each run naming its store
    assert not at.exception
    assert set(at.multiselect(key="filter-store").options) == {str(tmp_path / "a"), str(tmp_path / "b")}
    at.multiselect(key="filter-store").set_value([str(tmp_path / "b")]).run()
    assert len(frame_with(at, "config hash")) == 1


def test_default_stores_are_yours_then_the_shipped_one(tmp_path, monkeypatch):
    sys.path.insert(0, str(PROJECT_ROOT))
    from app.leaderboard import configured_stores

    monkeypatch.chdir(tmp_path)
    shipped = str(PROJECT_ROOT / "results")
    assert configured_stores([], {}) == [shipped]  # a fresh clone: only the shipped reference store
    (tmp_path / "runs").mkdir()
    assert configured_stores([], {}) == [str(tmp_path / "runs"), shipped]
    assert configured_stores(["--results-dir", "x"], {}) == ["x"]


def test_a_pandas_query_filters_the_runs(tmp_path, monkeypatch):
    write_store(tmp_path, [make_record(adapter="lora"), make_record(adapter="head", adapter_options={})])
    at = render(tmp_path, monkeypatch)
    at.text_input(key="filter-query").set_value("adapter == 'head'").run()
    assert not at.exception and set(frame_with(at, "config hash")["method"]) == {"head"}
    at.text_input(key="filter-query").set_value("no such column > 1").run()
    assert not at.exception and at.sidebar.error  # said, not raised; everything shown


def test_new_records_show_up_on_the_next_rerun(tmp_path, monkeypatch):
    write_store(tmp_path, [make_record(adapter="lora")])
    at = render(tmp_path, monkeypatch)
    assert set(frame_with(at, "config hash")["method"]) == {"lora r8"}
    write_store(tmp_path, [make_record(adapter="head", adapter_options={})])
    at.run()
    assert not at.exception and set(frame_with(at, "config hash")["method"]) == {"lora r8", "head"}


def test_shipped_results_folder_renders(monkeypatch):
    """Whatever results/ holds in this checkout (the committed cpu-preset grid, or nothing yet)."""
    at = render(PROJECT_ROOT / "results", monkeypatch)
    skipped = [w.value for w in at.warning if "Skipped" in w.value]
    assert not skipped, skipped  # every JSON file committed under results/ is a record we can read
    if at.subheader:
        assert at.subheader[0].value == "Suite: glue"


def test_app_does_not_import_torch_or_the_runner(tmp_path):
    write_store(tmp_path, grid_records())
    code = (
        "import os, sys\n"
        f"os.environ['HARNESS_RESULTS_DIR'] = {str(tmp_path)!r}\n"
        "from streamlit.testing.v1 import AppTest\n"
        f"at = AppTest.from_file({str(APP)!r}, default_timeout=60).run()\n"
        "assert not at.exception, at.exception\n"
        "bad = [m for m in ('torch', 'harness.pipeline.runner', 'transformers') if m in sys.modules]\n"
        "sys.exit(f'imported {bad}' if bad else 0)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_heatmaps_are_square_with_axis_titles_and_singular_values_use_a_log_axis():
    from app import charts
    from tests.record_factory import sample_analysis

    record = make_record(analysis=sample_analysis())
    matrices = dict(aggregate.analysis_matrices(record))
    kl = charts.heatmap(matrices["inter_layer_kl.query"], "KL").to_dict()
    assert kl["width"] == kl["height"]  # 2 x 2 layers: a square
    assert kl["encoding"]["x"]["title"] == "layer" and kl["encoding"]["y"]["title"] == "layer"
    ranks = charts.heatmap(matrices["final rank per layer and module"] if "final rank per layer and module"
                           in matrices else matrices["lora2_ranks"], "ranks").to_dict()
    assert ranks["encoding"]["x"]["title"] and ranks["encoding"]["y"]["title"]
    m_eff = charts.m_eff_chart(aggregate.m_eff_frame(record)).to_dict()
    # square cells: 4 values of k by 4 components
    assert m_eff["width"] == m_eff["height"] == 4 * charts.CELL
    assert m_eff["encoding"]["y"]["title"] and m_eff["encoding"]["x"]["title"]
    singular = charts.singular_values_chart(aggregate.singular_values_frame(record)).to_dict()
    # a symlog axis drew these values (all below 1) as a flat strip; a log axis spreads them
    assert singular["encoding"]["y"]["scale"]["type"] == "log" and singular["height"] >= 300


def test_pareto_chart_labels_points_draws_ci_bars_and_reported_markers():
    import pandas as pd

    from app import charts

    points = pd.DataFrame({"label": ["lora r8", "full", "head"], "score": [62.0, 72.0, 55.0],
                           "ci_low": [60.0, 70.0, float("nan")], "ci_high": [64.0, 74.0, float("nan")],
                           "n": [3, 3, 1], "params": [73_728, 22_000_000, 0], "memory_mib": [900, 1500, 600],
                           "train_seconds": [10.0, 30.0, 5.0], "higher_is_better": [True, True, True]})
    reported = pd.DataFrame({"method": ["LoRA"], "paper": ["P"], "model": ["roberta-base"], "score": [86.0],
                             "params": [294_912.0], "source": ["https://example.org"]})
    spec = charts.pareto_chart(points, "adapter parameters", "rte accuracy (%)", reported).to_dict()
    marks = [layer["mark"]["type"] if isinstance(layer["mark"], dict) else layer["mark"] for layer in spec["layer"]]
    assert marks == ["line", "rule", "point", "text", "point", "text"]  # front, CI bars, points, labels, reported
    assert spec["layer"][3]["encoding"]["text"]["field"] == "label"
    assert spec["layer"][1]["encoding"]["y2"]["field"] == "ci_high"
    front = charts.pareto_points(points, "adapter parameters")
    assert set(front.loc[front["on_front"], "label"]) == {"head", "lora r8", "full"}
    cheap = charts.pareto_points(points, "train time")
    assert cheap["cost"].tolist() == [10.0, 30.0, 5.0]


def test_the_tuning_tab_plots_each_task_and_the_budget(tmp_path, monkeypatch):
    from tests.test_tuning_report import tuning_store

    tuning_store(tmp_path)  # glue rte + mrpc, lora + full, 4 trials each, three tuned lora seeds on rte
    at = render(tmp_path, monkeypatch)
    tab = next(t for t in at.tabs if t.label == "Tuning")
    assert len(tab.get("vega_lite_chart")) == 4  # per task: sensitivity and expected max
    # record strings are escaped for Markdown (views.plain)
    assert [h.value for h in tab.subheader][:2] == ["glue \\/ mrpc", "glue \\/ rte"]
    budget = [d.value for d in tab.dataframe if "lr rte" in d.value.columns]
    assert len(budget) == 1 and sorted(budget[0]["method"]) == ["full", "lora"]
    assert budget[0].set_index("method").loc["lora", "trials"] == 8


def test_the_tuning_tab_says_how_to_tune_when_there_is_nothing(tmp_path, monkeypatch):
    write_store(tmp_path, grid_records())
    at = render(tmp_path, monkeypatch)
    tab = next(t for t in at.tabs if t.label == "Tuning")
    assert "No tuning studies" in tab.info[0].value and "harness tune" in tab.code[0].value


def test_tuning_charts_use_a_log_rate_axis_and_mark_the_tuned_seeds():
    from app import charts
    from harness.aggregate import tuning_views as tv
    from tests.test_tuning_views import lora_trials, tuned

    trials = tv.sensitivity_frame(lora_trials())
    seeds = tv.tuned_seeds_frame([tuned("rte", "lora", 1, 1e-3, 0.63)])
    spec = charts.lr_sensitivity_chart(trials, seeds, "accuracy (%)").to_dict()
    assert spec["layer"][0]["encoding"]["x"]["scale"]["type"] == "log"
    assert spec["layer"][-1]["mark"]["shape"] == "diamond"  # the tuned seed
    curve = charts.expected_max_chart(tv.expected_max_frame(trials), "expected max (%)").to_dict()
    assert [layer["mark"]["type"] for layer in curve["layer"]] == ["area", "line"]


def test_the_ranked_table_is_numeric_with_key_and_costs_first(tmp_path, monkeypatch):
    seeded_store(tmp_path)
    at = render(tmp_path, monkeypatch)
    ranked = frame_with(at, "rank")
    assert list(ranked.columns[:4]) == ["rank", "method", "average (points)", "vs lora"]
    assert ranked.columns.get_loc("adapter params") < ranked.columns.get_loc("rte accuracy (%)")
    assert ranked.columns.get_loc("train s") < ranked.columns.get_loc("rte accuracy (%)")
    for column in ("average (points)", "adapter params", "train s", "rte accuracy (%)"):
        assert pd.api.types.is_numeric_dtype(ranked[column]), column  # sorts as numbers
    assert list(ranked["method"])[:3] == ["full", "lora r8", "head"]
    assert ranked.loc[ranked["method"] == "full", "rte accuracy (%)"].item() == pytest.approx(72.0)
    from app.views import wide_numeric
    from harness.records.store import ResultStore

    table = aggregate.leaderboard(aggregate.load_frame(ResultStore(tmp_path).load(warn=False).records))
    wide = aggregate.wide_table(table, "glue")
    _, cells = wide_numeric(wide, aggregate.compare_to_baseline(table, "glue", "lora"), "lora")
    assert "better" in cells.values()  # full's RTE: coloured green


def test_pareto_takes_any_two_axes(tmp_path, monkeypatch):
    seeded_store(tmp_path)
    at = render(tmp_path, monkeypatch)
    assert list(at.radio(key="pareto-y-axis").options)[0] == "score"
    at.radio(key="pareto-y-axis").set_value("train time").run()
    assert not at.exception and count(at, "vega_lite_chart") >= 1
    at.radio(key="pareto-y-axis").set_value("adapter parameters").run()  # the same as x: said, not drawn
    assert not at.exception and any("two different axes" in i.value for i in at.info)
    at.toggle(key="pareto-label-all").set_value(True).run()
    assert not at.exception


def test_run_detail_filters_the_picker_and_overlays_curves(tmp_path, monkeypatch):
    seeded_store(tmp_path)
    at = render(tmp_path, monkeypatch)
    everything = len(at.selectbox(key="detail-run").options)
    at.selectbox(key="detail-adapter").set_value("lora").run()
    runs = list(at.selectbox(key="detail-run").options)
    assert 0 < len(runs) < everything and all("lora" in r for r in runs)
    before = count(at, "vega_lite_chart")
    at.multiselect(key="detail-compare").set_value(runs[:2]).run()
    assert not at.exception and count(at, "vega_lite_chart") >= before + 1


def test_usage_statistics_are_off():
    text = (PROJECT_ROOT / ".streamlit" / "config.toml").read_text()
    assert "gatherUsageStats = false" in text


def test_a_store_with_some_tasks_only_opens_the_pareto_on_a_task(tmp_path, monkeypatch):
    # lora on RTE, head on SST-2: no row has every task, so no average to plot
    write_store(tmp_path, [make_record(adapter="lora"), make_record(adapter="head", task="sst2", adapter_options={})])
    at = render(tmp_path, monkeypatch)
    assert at.selectbox(key="pareto-target").value == "rte"
    assert count(at, "vega_lite_chart") >= 1 and not any("No configuration has a score" in i.value for i in at.info)
