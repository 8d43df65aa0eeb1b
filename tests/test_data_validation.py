"""Malformed data files: every row of the train and dev splits a run reads is validated once, when the
data is read at plan time, and the first bad row is one error line naming the file, the line number and
what is wrong, before any model loads. GLUE TSVs row by row; the other suites' local readers (COCO
captions, RSCD folders, Alpaca JSON, MMLU/BBH/DROP/HumanEval/MT-Bench question files) by structure."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.suite import DataSource
from suites import glue
from suites.glue import TASKS, Glue, offline_splits

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
    glue._SPLIT_CACHE.clear()
    yield
    glue._SPLIT_CACHE.clear()


@pytest.mark.parametrize("case_id", sorted(GLUE_CASES))
def test_a_malformed_glue_file_is_one_error_naming_file_and_line(case_id: str, tmp_path: Path, shared_data: Path):
    task, name, corrupt, message, line = GLUE_CASES[case_id]
    folder = _copy_task(shared_data, tmp_path, task, FILES[task])
    if task != "qnli":  # the good copy passes (a 11-row QNLI dev is too small by itself)
        Glue().check_data(task, DataSource(tmp_path))
    corrupt(folder / name)
    glue._SPLIT_CACHE.clear()
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

    monkeypatch.setattr(glue, "read_tsv_lines", counting)
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
    from harness import runner
    from harness.cli import main

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
    glue._SPLIT_CACHE.clear()
    a = offline_splits(TASKS["rte"], shared_data / "glue")[0]
    b = offline_splits(TASKS["rte"], shared_data / "glue")[0]
    assert a is b  # one parsed copy per process; runs subsample into new lists and never mutate it
