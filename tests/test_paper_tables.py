"""Paper-ready tables (issue 33, item 8): display names, compact cells, tie-aware ranks, one-seed rows never
ranked, sub-metric columns, and LaTeX that compiles and fits a page without \\resizebox."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from harness import aggregate
from harness.aggregate.paper_format import method_name, paper_rows, tie_ranks
from harness.records.store import ResultStore
from tests.record_factory import make_record

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DISPLAY_NAMES = {
    "lora": "LoRA", "dora": "DoRA", "pissa": "PiSSA", "adalora": "AdaLoRA", "vera": "VeRA", "lily": "Lily",
    "lorafa": "LoRA-FA", "melora": "MELoRA", "moslora": "MoSLoRA", "dylora": "DyLoRA", "bitfit": "BitFit",
    "adapter-h": "Adapterᴴ", "adapter-p": "Adapterᴾ", "full": "Full FT", "head": "Head only",
    "zero-shot": "Zero-shot", "msplora": "MSPLoRA", "lora2": "LoRA²", "sera": "SeRA",
}


def test_every_builtin_adapter_declares_its_display_name():
    from harness.registry import ADAPTERS

    ADAPTERS.discover()
    for name, shown in DISPLAY_NAMES.items():
        cls = ADAPTERS.get(name)
        assert vars(cls).get("display_name") == shown, name  # declared by the class itself, not inherited


def test_an_adapter_without_a_display_name_is_shown_by_its_registry_name():
    from adapters.lora import LoRA
    from harness.adapter import Adapter
    from harness.registry import ADAPTERS, register_adapter

    @register_adapter("my-lora-variant")
    class MyVariant(LoRA):
        pass

    try:
        assert MyVariant.display_name == "my-lora-variant" and LoRA.display_name == "LoRA"
        assert Adapter.display_name == ""
    finally:
        ADAPTERS.unregister("my-lora-variant")


def test_method_names_read_like_a_paper():
    assert method_name("lora2 r8", "lora2", DISPLAY_NAMES) == "LoRA² (r=8)"
    assert method_name("adapter-h · bottleneck 64", "adapter-h", DISPLAY_NAMES) == "Adapterᴴ (b=64)"
    assert method_name("sera r16 · alpha 32", "sera", DISPLAY_NAMES) == "SeRA (r=16, α=32)"
    assert method_name("full", "full", DISPLAY_NAMES) == "Full FT"
    assert method_name("lora r8", "lora", {}) == "lora r8"  # no display names (no torch): the id


def one_task_store(suite: str, primary: str, scores: dict[str, list[float]], **metrics) -> list[dict]:
    records = []
    for adapter, values in scores.items():
        for seed, value in enumerate(values, start=1):
            record = make_record(suite=suite, task="alpaca", adapter=adapter, seed=seed, score=value, primary=primary,
                                 adapter_options={} if adapter != "lora" else None)
            record["metrics"]["best"].update(metrics)
            records.append(record)
    return records


def wide_of(records: list[dict], suite: str):
    table = aggregate.leaderboard(aggregate.load_frame(records))
    return aggregate.wide_table(table, suite), table


def test_one_seed_rows_are_never_ranked_nor_bold_in_any_suite():
    # INSTRUCTEVAL as shipped: one seed per row, five rows at 33.00
    scores = {a: [0.33] for a in ("lora2", "msplora", "sera", "vera", "zero-shot")} | {"dora": [0.3365]}
    records = one_task_store("instructeval", "average", scores, mmlu=0.31, bbh=0.40, drop=0.27)
    wide, table = wide_of(records, "instructeval")
    assert tie_ranks(wide) == [""] * len(wide)
    headers, rows, ranked = paper_rows(wide, None, table=table, suite="instructeval")
    assert ranked == 0 and not any(c.bold for row in rows for c in row)
    assert all(row[-1].text == "one seed" for row in rows)
    md = aggregate.build_report(aggregate.load_frame(records))["instructeval.md"]
    assert "**" not in md.split("| # |", 1)[1].split("\n\n", 1)[0]


def test_tied_averages_share_a_rank():
    scores = {"lora": [0.30, 0.36], "sera": [0.33, 0.33], "vera": [0.32, 0.34], "dora": [0.40, 0.42],
              "bitfit": [0.10, 0.12]}
    wide, _ = wide_of(one_task_store("mt-bench", "overall", scores), "mt-bench")
    ranks = dict(zip(wide["adapter"], tie_ranks(wide)))
    assert ranks == {"dora": "1", "lora": "=2", "sera": "=2", "vera": "=2", "bitfit": "5"}
    csv = aggregate.build_report(aggregate.load_frame(one_task_store("mt-bench", "overall", scores)))["mt-bench.csv"]
    assert "rank_tied" in csv.splitlines()[0]


def test_sub_metric_columns_where_the_records_have_them():
    instruct = one_task_store("instructeval", "average", {"lora": [0.33, 0.35]}, mmlu=0.31, bbh=0.40, drop=0.27,
                              humaneval=0.05, drop_em=0.0)
    coco = one_task_store("coco-retrieval", "rsum", {"lora": [209.0, 211.0]},
                          **{f"{d}_r{k}": 10.0 * k for d in ("i2t", "t2i") for k in (1, 5, 10)})
    mt = one_task_store("mt-bench", "overall", {"lora": [5.0, 5.5]}, turn1=5.25, turn2=5.0)
    for record in coco:
        record["key"]["task"] = record["spec"]["task"] = "coco"
    files = aggregate.build_report(aggregate.load_frame([*instruct, *coco, *mt]))
    header = next(line for line in files["instructeval.md"].splitlines() if line.startswith("| # |"))
    assert [h for h in ("MMLU (%)", "BBH (%)", "DROP (%)", "HumanEval (%)") if h in header] == \
        ["MMLU (%)", "BBH (%)", "DROP (%)", "HumanEval (%)"] and "drop_em" not in header
    assert "| **31.00 ± 0.00** | **40.00 ± 0.00** | **27.00 ± 0.00** | **5.00 ± 0.00** | **34.00 ± 1.41** |" in \
        files["instructeval.md"]
    coco_header = next(line for line in files["coco-retrieval.md"].splitlines() if line.startswith("| # |"))
    for direction in ("I→T", "T→I"):
        for k in (1, 5, 10):
            assert f"{direction} R@{k} (%)" in coco_header
    assert r"\multicolumn{3}{c}{I$\rightarrow$T}" in files["coco-retrieval.tex"]
    assert "Turn 1 (rating 1-10)" in files["mt-bench.md"] and "Turn 2 (rating 1-10)" in files["mt-bench.md"]
    # a suite whose records lack a sub-metric has no column for it
    bare = aggregate.build_report(aggregate.load_frame(one_task_store("instructeval", "average", {"lora": [0.3]})))
    assert "MMLU" not in bare["instructeval.md"]


def shipped_report() -> dict[str, str]:
    from harness.cli.report import display_names

    loaded = ResultStore(PROJECT_ROOT / "results").load(warn=False)
    return aggregate.build_report(aggregate.load_frame(loaded.records), display_names=display_names())


def test_shipped_tables_are_compact_and_named():
    files = shipped_report()
    glue = files["glue.md"]
    assert "lora2 r8" not in glue and "| 4 | LoRA² (r=8) |" in glue
    assert "Adapterᴴ (b=64)" in glue and " ± " in glue and " n=3" not in glue
    tex = files["glue.tex"]
    assert r"\resizebox" not in tex and r"\toprule" in tex and r"\bottomrule" in tex and tex.isascii()
    assert "[" not in tex.split(r"\midrule", 1)[1]  # no interval in a LaTeX cell: they are in the CSV
    assert "glue.csv" in files and "average_ci_low" in files["glue.csv"].splitlines()[0]


@pytest.mark.skipif(shutil.which("pdflatex") is None,
                    reason="no TeX engine here: pdflatex is missing (apt-get install texlive-latex-base "
                           "texlive-latex-recommended; .ci/run installs them)")
def test_shipped_latex_tables_compile_and_fit_a_page(tmp_path):
    files = shipped_report()
    names = sorted(n for n in files if n.endswith(".tex"))
    assert {"glue.tex", "instructeval.tex", "mt-bench.tex", "coco-retrieval.tex"} <= set(names)
    body = "\n".join(files[n] for n in names)
    # an A4 page with one-inch margins (452 pt of text width); the tables declare booktabs and amssymb
    (tmp_path / "doc.tex").write_text(
        "\\documentclass{article}\n\\usepackage[a4paper,margin=1in]{geometry}\n\\usepackage{booktabs,amssymb,array}\n"
        "\\begin{document}\n" + body + "\n\\end{document}\n", encoding="utf-8")
    done = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "-no-shell-escape", "doc.tex"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=180)
    log = (tmp_path / "doc.log").read_text(errors="replace")
    assert done.returncode == 0, done.stdout[-3000:]
    assert not re.search(r"Overfull \\hbox", log), re.findall(r"Overfull \\hbox.*", log)
