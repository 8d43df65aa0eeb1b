"""Malformed data files: every row of the train and dev splits a run reads is validated once, when the
data is read at plan time, and the first bad row is one error line naming the file, the line number and
what is wrong, before any model loads. GLUE TSVs row by row; the other suites' local readers (COCO
captions, RSCD folders, Alpaca JSON, MMLU/BBH/DROP/HumanEval/MT-Bench question files) by structure."""

from __future__ import annotations

import gzip
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from harness import datafiles
from harness.errors import HarnessError
from harness.suite import DataSource
from suites import glue
from suites.glue import TASKS, Glue, offline_splits
from suites.glue import data as glue_data

ROWS = 12  # lines copied from the real files (header included)


def _copy_task(shared: Path, root: Path, task: str, files: tuple[str, ...]) -> Path:
    src, dst = shared / "glue" / TASKS[task].folder, root / "glue" / TASKS[task].folder
    dst.mkdir(parents=True)
    for name in files:
        lines = (src / name).read_bytes().splitlines(keepends=True)
        (dst / name).write_bytes(b"".join(lines[:ROWS]))
    return dst


def _replace_line(path: Path, line: int, text: str | bytes) -> None:
    lines = path.read_bytes().splitlines(keepends=True)
    lines[line - 1] = (text.encode() if isinstance(text, str) else text) + b"\n"
    path.write_bytes(b"".join(lines))


def _set_field(path: Path, line: int, column: int, value: str) -> None:
    lines = path.read_bytes().decode("utf-8-sig").splitlines()
    fields = lines[line - 1].split("\t")
    fields[column] = value
    lines[line - 1] = "\t".join(fields)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _truncate_last_row(path: Path) -> None:
    data = path.read_bytes().rstrip(b"\n")
    cut = data.rfind(b"\t")  # a download cut off inside the last row: its last field is gone
    path.write_bytes(data[:cut])


SST_LABEL, STSB_SCORE, RTE_LABEL, COLA_LABEL, MRPC_QUALITY = 1, 9, 3, 1, 0  # column indices


# (task, file to break, how, the message, the line it names)
GLUE_CASES: dict[str, tuple[str, str, Callable[[Path], None], str, int | None]] = {
    "sst2-empty-dev": ("sst2", "dev.tsv", lambda p: p.write_bytes(b""), "is empty", None),
    "sst2-header-only-dev": ("sst2", "dev.tsv", lambda p: p.write_text("sentence\tlabel\n"), "has a header but no examples", None),
    "sst2-blank-lines-only": ("sst2", "train.tsv", lambda p: p.write_text("\n\n\n"), "is empty", None),
    "sst2-truncated-dev": ("sst2", "dev.tsv", _truncate_last_row, "1 tab-separated field(s), the header has 2", ROWS),
    "sst2-binary-train": ("sst2", "train.tsv", lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4),
                          "not UTF-8 text (byte 0x89)", 1),
    "sst2-nul-bytes": ("sst2", "dev.tsv", lambda p: _replace_line(p, 4, b"a\x00b\t1"), "a NUL byte: this is a binary file", 4),
    "sst2-latin1-dev": ("sst2", "dev.tsv", lambda p: _replace_line(p, 6, "caf\xe9 au lait\t1".encode("latin-1")),
                        "line 6: not UTF-8 text (byte 0xe9)", 6),
    "sst2-label-2": ("sst2", "dev.tsv", lambda p: _set_field(p, 3, SST_LABEL, "2"), "label '2' is not one of 0, 1", 3),
    "sst2-label-minus-1": ("sst2", "train.tsv", lambda p: _set_field(p, 5, SST_LABEL, "-1"), "label '-1' is not one of 0, 1", 5),
    "sst2-label-1.0": ("sst2", "dev.tsv", lambda p: _set_field(p, 2, SST_LABEL, "1.0"), "label '1.0' is not one of 0, 1", 2),
    "sst2-label-empty": ("sst2", "dev.tsv", lambda p: _set_field(p, 7, SST_LABEL, ""), "label '' is not one of 0, 1", 7),
    "sst2-label-word": ("sst2", "dev.tsv", lambda p: _set_field(p, 7, SST_LABEL, "positive"), "label 'positive'", 7),
    "sst2-short-row": ("sst2", "dev.tsv", lambda p: _replace_line(p, 5, "just a sentence"), "1 tab-separated field(s)", 5),
    "sst2-long-row": ("sst2", "dev.tsv", lambda p: _replace_line(p, 5, "a\tb\t1"), "3 tab-separated field(s), the header has 2", 5),
    "stsb-score-abc": ("stsb", "dev.tsv", lambda p: _set_field(p, 4, STSB_SCORE, "abc"), "score 'abc' is not a number", 4),
    "stsb-score-99": ("stsb", "train.tsv", lambda p: _set_field(p, 8, STSB_SCORE, "99"), "score '99' is outside 0-5", 8),
    "stsb-score-nan": ("stsb", "dev.tsv", lambda p: _set_field(p, 2, STSB_SCORE, "nan"), "score 'nan' is outside 0-5", 2),
    "stsb-score-inf": ("stsb", "dev.tsv", lambda p: _set_field(p, 2, STSB_SCORE, "inf"), "score 'inf' is outside 0-5", 2),
    "stsb-score-negative": ("stsb", "dev.tsv", lambda p: _set_field(p, 3, STSB_SCORE, "-0.5"), "score '-0.5' is outside", 3),
    "stsb-short-row": ("stsb", "dev.tsv", lambda p: _replace_line(p, 9, "a\tb\tc"), "3 tab-separated field(s), the header has 10", 9),
    "rte-label-unknown": ("rte", "dev.tsv", lambda p: _set_field(p, 3, RTE_LABEL, "maybe"),
                          "label 'maybe' is not one of entailment, not_entailment", 3),
    "rte-truncated-train": ("rte", "train.tsv", _truncate_last_row, "3 tab-separated field(s), the header has 4", ROWS),
    "cola-label-2": ("cola", "train.tsv", lambda p: _set_field(p, 2, COLA_LABEL, "2"), "label '2' is not one of 0, 1", 2),
    "cola-short-row": ("cola", "dev.tsv", lambda p: _replace_line(p, 3, "src\t1\ta sentence"),
                       "3 tab-separated field(s), CoLA rows have 4", 3),
    "mrpc-quality-word": ("mrpc", "dev.tsv", lambda p: _set_field(p, 2, MRPC_QUALITY, "yes"), "label 'yes' is not one of 0, 1", 2),
    "mrpc-canonical-train-bad": ("mrpc", "msr_paraphrase_train.txt", lambda p: _set_field(p, 5, MRPC_QUALITY, "5"),
                                 "label '5' is not one of 0, 1", 5),
    "mrpc-dev-ids-short": ("mrpc", "dev_ids.tsv", lambda p: _replace_line(p, 2, "12345"), "1 tab-separated field(s), expected 2", 2),
    "qnli-tiny-dev-without-train": ("qnli", "dev.tsv", lambda p: None, "too few to hold out 2000", None),
}
FILES = {"sst2": ("train.tsv", "dev.tsv"), "stsb": ("train.tsv", "dev.tsv"), "rte": ("train.tsv", "dev.tsv"),
         "cola": ("train.tsv", "dev.tsv"), "mrpc": ("dev.tsv", "dev_ids.tsv", "msr_paraphrase_train.txt"),
         "qnli": ("dev.tsv",)}


@pytest.fixture(autouse=True)
def _fresh_cache():
    datafiles.clear_cache()
    yield
    datafiles.clear_cache()


@pytest.mark.parametrize("case_id", sorted(GLUE_CASES))
def test_a_malformed_glue_file_is_one_error_naming_file_and_line(case_id: str, tmp_path: Path, shared_data: Path):
    task, name, corrupt, message, line = GLUE_CASES[case_id]
    folder = _copy_task(shared_data, tmp_path, task, FILES[task])
    if task != "qnli":  # the good copy passes (a 11-row QNLI dev is too small by itself)
        Glue().check_data(task, DataSource(tmp_path))
    corrupt(folder / name)
    datafiles.clear_cache()
    with pytest.raises(HarnessError) as caught:
        Glue().check_data(task, DataSource(tmp_path))
    text = str(caught.value)
    assert "\n" not in text and message in text, text
    assert str(folder / name) in text
    if line is not None:
        assert f"{folder / name}, line {line}: " in text


def test_the_real_glue_files_pass_every_row(shared_data: Path):
    for task in ("sst2", "mrpc", "cola", "qnli", "rte", "stsb"):
        Glue().check_data(task, DataSource(shared_data))
        train, dev, _ = offline_splits(TASKS[task], shared_data / "glue")
        labels = {e.label for e in train + dev}
        if task == "stsb":
            assert min(labels) >= 0.0 and max(labels) <= 5.0
        else:
            assert labels == {0, 1}, task


def test_each_file_is_read_once_per_process(shared_data: Path, monkeypatch):
    reads: list[str] = []
    original = glue.read_tsv_lines

    def counting(path):
        reads.append(Path(path).name)
        return original(path)

    monkeypatch.setattr(glue_data, "read_tsv_lines", counting)
    for _ in range(3):  # the plan-time check, then two runs' load_data
        Glue().check_data("rte", DataSource(shared_data))
        offline_splits(TASKS["rte"], shared_data / "glue")
    assert sorted(reads) == ["dev.tsv", "train.tsv"]


def test_a_changed_file_is_read_again(tmp_path: Path, shared_data: Path):
    folder = _copy_task(shared_data, tmp_path, "sst2", FILES["sst2"])
    Glue().check_data("sst2", DataSource(tmp_path))
    _set_field(folder / "dev.tsv", 2, SST_LABEL, "7")  # new size: a new identity
    with pytest.raises(HarnessError, match="line 2: label '7'"):
        Glue().check_data("sst2", DataSource(tmp_path))


def test_a_malformed_file_fails_the_cli_before_any_model_loads(tmp_path: Path, shared_data: Path, monkeypatch, capsys):
    from harness.cli.main import main
    from harness.pipeline import runner

    def forbidden(*a, **k):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(Glue, "load_model", forbidden)
    monkeypatch.setattr(runner, "execute_run", forbidden)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    folder = _copy_task(shared_data, tmp_path, "stsb", FILES["stsb"])
    _set_field(folder / "dev.tsv", 5, STSB_SCORE, "nan")
    code = main(["run", "--suite", "glue", "--tasks", "stsb", "--adapters", "lora,dora", "--seeds", "1,2",
                 "--data-dir", str(tmp_path), "--results-dir", str(tmp_path / "results")])
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(errors) == 1, err
    assert f"{folder / 'dev.tsv'}, line 5: score 'nan' is outside 0-5" in errors[0]


def test_glue_data_cache_is_shared_by_copies(shared_data: Path):
    datafiles.clear_cache()
    a = offline_splits(TASKS["rte"], shared_data / "glue")[0]
    b = offline_splits(TASKS["rte"], shared_data / "glue")[0]
    assert a is b  # one parsed copy per process; runs subsample into new lists and never mutate it


# ---- the other suites' local files: structure validated at plan time, one line -------------------------


def _mirror(shared: Path, tmp: Path, rel: str) -> Path:
    """A data root in ``tmp`` that links every entry of ``shared`` except the path ``rel``, which is a real
    copy (its parent folders real too, their other entries linked): break it without touching the data."""
    parts = Path(rel).parts
    src, dst = shared, tmp
    dst.mkdir(exist_ok=True)
    for depth, part in enumerate(parts):
        for entry in src.iterdir():
            if entry.name != part and not (dst / entry.name).exists():
                (dst / entry.name).symlink_to(entry)
        src, dst = src / part, dst / part
        if depth == len(parts) - 1:
            shutil.copyfile(src, dst)
        else:
            dst.mkdir()
    return dst


def _jsonl_line(path: Path, line: int, text: str) -> None:
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[line - 1] = text
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _edit_json(path: Path, edit: Callable[[dict], object]) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    data = edit(data) or data
    path.write_text(json.dumps(data), encoding="utf-8")


def _edit_jsonl(path: Path, line: int, edit: Callable[[dict], None]) -> None:
    lines = path.read_text(encoding="utf-8").splitlines()
    record = json.loads(lines[line - 1])
    edit(record)
    lines[line - 1] = json.dumps(record)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _gzip_edit(path: Path, edit: Callable[[list[str]], list[str]]) -> None:
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        lines = fh.read().splitlines()
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        fh.write("\n".join(edit(lines)) + "\n")


def _set(record: dict, key: str, value: object) -> None:
    record[key] = value


def _drop(record: dict, key: str) -> None:
    record.pop(key)


COCO_TRAIN = "coco/coco_mini/annotations/captions_train2017.json"
ALPACA = "alpaca/seed_tasks.jsonl"
QUESTIONS = "mtbench/mt_bench/question.jsonl"
MMLU_DEV = "mmlu/dev/anatomy_dev.csv"
BBH = "bbh/bbh/boolean_expressions.json"
BBH_COT = "bbh/cot-prompts/navigate.txt"
DROP = "drop/drop_v0_dev.jsonl.gz"
HUMANEVAL = "humaneval/HumanEval.jsonl.gz"
BINARY = b"\x89PNG\r\n\x1a\n\x00\xff" * 64

# (suite, file, how to break it, the message)
SUITE_CASES: dict[str, tuple[str, str, Callable[[Path], None], str]] = {
    "coco-binary": ("coco-retrieval", COCO_TRAIN, lambda p: p.write_bytes(BINARY), "not UTF-8 text"),
    "coco-torn": ("coco-retrieval", COCO_TRAIN, lambda p: p.write_bytes(p.read_bytes()[:500]), "not JSON at line"),
    "coco-deeply-nested": ("coco-retrieval", COCO_TRAIN, lambda p: p.write_text("[" * 100000 + "]" * 100000),
                           "JSON nested too deeply"),
    "coco-a-list": ("coco-retrieval", COCO_TRAIN, lambda p: p.write_text("[]"), "top level: expected a JSON object"),
    "coco-no-annotations": ("coco-retrieval", COCO_TRAIN, lambda p: _edit_json(p, lambda d: _drop(d, "annotations")),
                            "top level: missing 'annotations'"),
    "coco-caption-number": ("coco-retrieval", COCO_TRAIN,
                            lambda p: _edit_json(p, lambda d: _set(d["annotations"][3], "caption", 7)),
                            "annotations[3]: 'caption' must be str, got 7"),
    "coco-image-id-text": ("coco-retrieval", COCO_TRAIN, lambda p: _edit_json(p, lambda d: _set(d["images"][1], "id", "x")),
                           "images[1]: 'id' must be int"),
    "coco-image-not-object": ("coco-retrieval", COCO_TRAIN, lambda p: _edit_json(p, lambda d: _set(d, "images", [1])),
                              "images[0]: expected a JSON object, got int"),
    "alpaca-torn-line": ("instructeval", ALPACA, lambda p: _jsonl_line(p, 3, '{"instruction": "x", "inst'),
                         "seed_tasks.jsonl, line 3: not JSON"),
    "alpaca-record-a-list": ("instructeval", ALPACA, lambda p: _jsonl_line(p, 2, "[1, 2]"),
                             "line 2: an Alpaca record must be a JSON object, got list"),
    "alpaca-no-instances": ("instructeval", ALPACA, lambda p: _edit_jsonl(p, 4, lambda r: _set(r, "instances", [])),
                            "line 4: 'instances' must be a non-empty list"),
    "alpaca-output-number": ("mt-bench", ALPACA, lambda p: _edit_jsonl(p, 5, lambda r: _set(r, "instances", [{"output": 3}])),
                             "line 5 instance 0: 'output' must be text, got 3"),
    "alpaca-instruction-list": ("instructeval", ALPACA, lambda p: _edit_jsonl(p, 1, lambda r: _set(r, "instruction", ["a"])),
                                "line 1: 'instruction' must be text"),
    "alpaca-binary": ("instructeval", ALPACA, lambda p: p.write_bytes(BINARY), "not UTF-8 text"),
    "alpaca-empty": ("instructeval", ALPACA, lambda p: p.write_text(""), "holds no Alpaca examples"),
    "alpaca-deeply-nested": ("instructeval", ALPACA, lambda p: p.write_text("[" * 100000 + "]" * 100000),
                             "nested too deeply"),
    "mtbench-question-no-turns": ("mt-bench", QUESTIONS, lambda p: _edit_jsonl(p, 5, lambda r: _drop(r, "turns")),
                                  "question.jsonl line 5: not an MT-Bench question"),
    "mtbench-question-torn": ("mt-bench", QUESTIONS, lambda p: _jsonl_line(p, 1, '{"question_id": 81, "cat'),
                              "question.jsonl line 1 is not JSON"),
    "mtbench-question-id-text": ("mt-bench", QUESTIONS, lambda p: _edit_jsonl(p, 2, lambda r: _set(r, "question_id", "x")),
                                 "line 2: not an MT-Bench question (ValueError"),
    "mtbench-questions-binary": ("mt-bench", QUESTIONS, lambda p: p.write_bytes(BINARY), "not UTF-8 text"),
    "mtbench-judge-prompt-field": ("mt-bench", "mtbench/judge_prompts.jsonl",
                                   lambda p: _edit_jsonl(p, 2, lambda r: _drop(r, "prompt_template")),
                                   "judge_prompts.jsonl, record 2: missing 'prompt_template'"),
    "mtbench-reference-no-choices": ("mt-bench", "mtbench/mt_bench/reference_answer/gpt-4.jsonl",
                                     lambda p: _edit_jsonl(p, 1, lambda r: _set(r, "choices", [])),
                                     "gpt-4.jsonl, record 1: 'choices' is empty"),
    "mmlu-answer-7": ("instructeval", MMLU_DEV, lambda p: _csv_field(p, 3, -1, "7"), "anatomy_dev.csv, line 3: answer must be 0-3"),
    "mmlu-answer-word": ("instructeval", MMLU_DEV, lambda p: _csv_field(p, 2, -1, "B"), "not an MMLU CSV (question,choice0..3,answer) (ValueError"),
    "mmlu-short-row": ("instructeval", MMLU_DEV, lambda p: p.write_text("question,choice0,choice1,choice2,choice3,answer\nq,a,b\n"),
                       "not an MMLU CSV (question,choice0..3,answer) (TypeError"),
    "mmlu-latin1": ("instructeval", MMLU_DEV, lambda p: p.write_bytes(p.read_bytes() + "caf\xe9,a,b,c,d,1\n".encode("latin-1")),
                    "not UTF-8 text"),
    "bbh-no-examples": ("instructeval", BBH, lambda p: _edit_json(p, lambda d: _drop(d, "examples")),
                        "boolean_expressions.json, top level: missing 'examples'"),
    "bbh-target-number": ("instructeval", BBH, lambda p: _edit_json(p, lambda d: _set(d["examples"][2], "target", 1)),
                          "examples[2]: 'target' must be str"),
    "bbh-cot-without-answers": ("instructeval", BBH_COT, lambda p: p.write_text("-----\nTask.\n\nQ: a?\nA: no idea.\n"),
                                "navigate.txt: not a BBH chain-of-thought prompt file (ValueError"),
    "drop-truncated-gzip": ("instructeval", DROP, lambda p: p.write_bytes(p.read_bytes()[:5000]), "cannot read"),
    "drop-not-gzip": ("instructeval", DROP, lambda p: p.write_text('{"context": "x"}\n'), "cannot read"),
    "drop-missing-field": ("instructeval", DROP, lambda p: _gzip_edit(p, lambda ls: ['{"context": "x"}', *ls[1:]]),
                           "not simple-evals DROP JSON lines (context, ref_text), gzipped (KeyError"),
    "humaneval-missing-test": ("instructeval", HUMANEVAL,
                               lambda p: _gzip_edit(p, lambda ls: [json.dumps({**json.loads(ls[0]), "test": None}), *ls[1:]]),
                               "HumanEval.jsonl.gz, line 1: 'test' must be str"),
}


def _csv_field(path: Path, line: int, column: int, value: str) -> None:
    import csv
    import io

    rows = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8"))))
    rows[line - 1][column] = value
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    path.write_text(out.getvalue(), encoding="utf-8")


@pytest.fixture
def _fresh_file_cache():
    from harness import datafiles

    datafiles.clear_cache()
    yield
    datafiles.clear_cache()


@pytest.mark.parametrize("case_id", sorted(SUITE_CASES))
def test_a_malformed_suite_file_is_one_error_naming_it(case_id: str, tmp_path: Path, shared_data: Path,
                                                       _fresh_file_cache):
    from harness.registry import SUITES

    suite_name, rel, corrupt, message = SUITE_CASES[case_id]
    root = tmp_path / "data"
    target = _mirror(shared_data, root, rel)
    suite = SUITES.get(suite_name)()
    task = suite.default_tasks("cpu")[0]
    suite.check_data(task, DataSource(root))  # the intact copy passes
    corrupt(target)
    with pytest.raises(HarnessError) as caught:
        suite.check_data(task, DataSource(root))
    text = str(caught.value)
    assert "\n" not in text and message in text, text
    assert str(target) in text


def test_rscd_folders_without_labelled_images_fail_at_plan_time(tmp_path: Path, _fresh_file_cache):
    from suites.rscd import Rscd

    for split in ("train", "vali_20k"):
        (tmp_path / "rscd" / split).mkdir(parents=True)
        (tmp_path / "rscd" / split / "notes.txt").write_text("no images")
        (tmp_path / "rscd" / split / "holiday.jpg").write_bytes(b"\xff\xd8")  # an image name with no RSCD label
    with pytest.raises(HarnessError, match=r"train has no labelled RSCD images of mode 'easy' \(0 labelled, 1 with"):
        Rscd().check_data("easy", DataSource(tmp_path))


def test_the_real_files_of_every_suite_pass(shared_data: Path, _fresh_file_cache):
    from harness.registry import SUITES

    for name in ("coco-retrieval", "instructeval", "mt-bench"):
        suite = SUITES.get(name)()
        suite.check_data(suite.default_tasks("cpu")[0], DataSource(shared_data))
