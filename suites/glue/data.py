"""GLUE's tasks and data: the task table and budgets, the original TSVs read offline (each malformed line one
error naming file and line, large files checked streaming), the canonical MRPC split, and the hub's splits online."""

from __future__ import annotations

import codecs
import csv
import itertools
import math
import os
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness import datafiles
from harness.errors import HarnessError
from harness.models import hub_offline
from harness.spec import TrainConfig

if TYPE_CHECKING:
    pass


HOW_TO_GET_GLUE = (
    "get the GLUE TSVs (e.g. `python download_glue_data.py --data_dir <root>/glue` from the GLUE baseline "
    "repository, or copy ../shared/data/glue) or run online without --data-dir to load nyu-mll/glue from the hub"
)


@dataclass(frozen=True)
class GlueTask:
    name: str  # hub config name
    folder: str  # original GLUE folder
    num_labels: int  # 1 = regression
    primary: str
    text_columns: tuple[str, ...]  # hub column names
    label_names: tuple[str, ...] = ()  # TSV label strings in hub order (empty: ints in the TSV)
    dev_file: str = "dev.tsv"
    hub_eval_split: str = "validation"


TASKS: dict[str, GlueTask] = {
    t.name: t
    for t in (
        GlueTask("sst2", "SST-2", 2, "accuracy", ("sentence",)),
        GlueTask("mrpc", "MRPC", 2, "accuracy", ("sentence1", "sentence2")),
        GlueTask("cola", "CoLA", 2, "mcc", ("sentence",)),
        GlueTask("qnli", "QNLI", 2, "accuracy", ("question", "sentence"), ("entailment", "not_entailment")),
        GlueTask("rte", "RTE", 2, "accuracy", ("sentence1", "sentence2"), ("entailment", "not_entailment")),
        GlueTask("stsb", "STS-B", 1, "pearson", ("sentence1", "sentence2")),
        GlueTask("qqp", "QQP", 2, "accuracy", ("question1", "question2")),
        GlueTask(
            "mnli", "MNLI", 3, "accuracy", ("premise", "hypothesis"), ("entailment", "neutral", "contradiction"),
            dev_file="dev_matched.tsv", hub_eval_split="validation_matched",
        ),
    )
}
CORE_TASKS = ("sst2", "mrpc", "cola", "qnli", "rte", "stsb")

# The MSPLoRA GLUE protocol, which is LoRA's RoBERTa-base protocol (Hu et al. 2021, Table 9: AdamW,
# linear schedule, warm-up ratio 0.06, batch 16, max length 512; per-task epochs and learning rates).
PAPER_EPOCHS = {"mnli": 30, "sst2": 60, "mrpc": 30, "cola": 80, "qnli": 25, "qqp": 25, "rte": 80, "stsb": 40}
PAPER_LR = {"mnli": 5e-4, "sst2": 5e-4, "mrpc": 4e-4, "cola": 4e-4, "qnli": 4e-4, "qqp": 5e-4, "rte": 5e-4, "stsb": 4e-4}

# cpu preset: a budget that fits a laptop (about a minute per run on 2 cores with MiniLM-L6).
# Epochs (and tuned hyperparameters) are selected on 500 training examples held out of every task
# (harness/validation.py); the dev split, GLUE's test split here, is only scored.
CPU_TRAIN = TrainConfig(
    epochs=3, lr=1e-3, batch_size=32, eval_batch_size=128, max_length=128, warmup_ratio=0.06,
    weight_decay=0.0, max_train_samples=2000, max_eval_samples=1000, validation=500,
)

# CoLA's short sentences make its steps cheap, and 2,000 examples are too few for MiniLM to leave the
# majority class (measured: MCC 0.000 with 2,000, 0.193 with all 8,551 training sentences, lora, seed 42).
CPU_TRAIN_BY_TASK = {"cola": replace(CPU_TRAIN, max_train_samples=None)}

# When QNLI's train split is absent offline (as in ../shared/data), we train on a fixed part of the dev
# split and evaluate on the rest; the record says so (data_info.note). The split does not depend on the
# run seed, so every adapter sees the same held-out examples.
QNLI_HELDOUT = 2000


@dataclass
class Example:
    text_a: str
    text_b: str | None
    label: float | int


# ------------------------------------------------------------------------------------------------------
# offline readers (original GLUE TSVs)
# ------------------------------------------------------------------------------------------------------


# (text_a, text_b or None, label) column names of the tasks whose TSVs have a header (CoLA has none)
COLUMNS: dict[str, tuple[str, str | None, str]] = {
    "sst2": ("sentence", None, "label"),
    "mrpc": ("#1 String", "#2 String", "Quality"),
    "qqp": ("question1", "question2", "is_duplicate"),
    "qnli": ("question", "sentence", "label"),
    "stsb": ("sentence1", "sentence2", "score"),
    "mnli": ("sentence1", "sentence2", "gold_label"),
    "rte": ("sentence1", "sentence2", "label"),
}
STSB_RANGE = (0.0, 5.0)  # STS-B similarity scores
COLA_FIELDS = 4  # source, label, original label, sentence
# Parsed and validated splits are cached by file identity (path, size, mtime) in harness.datafiles: the
# plan-time check reads each file once and every run of the process reuses the result.


def _at(path: Path, line: int, what: str) -> HarnessError:
    return HarnessError(f"{path}, line {line}: {what}")


def iter_tsv_lines(path: Path) -> Iterator[tuple[int, list[str]]]:
    """The rows of a GLUE TSV with their 1-based line numbers, blank lines dropped, read line by line
    (memory bounded by the longest line, not the file). GLUE TSVs use no quoting (quotes are literal
    text); MRPC's BOM is stripped. A file that is not UTF-8 text (Latin-1, binary) is a one-line error
    naming the line."""
    try:
        fh = open(path, "rb")  # noqa: SIM115 - closed by the with below, after the checks' errors
    except OSError as exc:
        raise HarnessError(f"cannot read {path}: {exc.strerror or exc}") from None

    def decoded() -> Iterator[str]:
        for number, raw in enumerate(fh, start=1):
            if number == 1 and raw.startswith(codecs.BOM_UTF8):
                raw = raw[len(codecs.BOM_UTF8):]
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise _at(path, number, f"not UTF-8 text (byte 0x{raw[exc.start]:02x}); GLUE TSVs are UTF-8: re-encode "
                                        "the file (e.g. iconv -f latin1 -t utf-8)") from None
            if "\0" in text:
                raise _at(path, number, "a NUL byte: this is a binary file, not a TSV")
            yield text

    with fh:
        reader = csv.reader(decoded(), delimiter="\t", quoting=csv.QUOTE_NONE)
        try:
            for row in reader:
                if row:
                    yield reader.line_num, row
        except csv.Error as exc:
            raise _at(path, reader.line_num, f"unreadable row ({exc})") from None
        except OSError as exc:
            raise HarnessError(f"cannot read {path}: {exc.strerror or exc}") from None


def read_tsv_lines(path: Path) -> list[tuple[int, list[str]]]:
    """Every row of a GLUE TSV at once (see iter_tsv_lines)."""
    return list(iter_tsv_lines(path))


def read_tsv(path: Path, *, header: bool = True) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of a GLUE TSV, without line numbers (see read_tsv_lines)."""
    rows = [r for _, r in read_tsv_lines(path)]
    if header:
        if not rows:
            raise HarnessError(f"{path} is empty (expected a header line)")
        return rows[0], rows[1:]
    return [], rows


def _column(header: list[str], name: str, path: Path) -> int:
    try:
        return header.index(name)
    except ValueError:
        raise HarnessError(f"{path}: expected a column '{name}' in the header, found {header}") from None


def parse_label(task: GlueTask, raw: str, path: Path, line: int) -> float | int:
    """A label of the task's label set, or a one-line error naming the file and line: class ids are the
    exact strings 0..n-1 (not 2, -1 or 1.0), STS-B scores finite numbers in 0-5."""
    if task.num_labels == 1:
        try:
            value = float(raw)
        except ValueError:
            raise _at(path, line, f"score {raw!r} is not a number (STS-B scores are {STSB_RANGE[0]:g}-{STSB_RANGE[1]:g})") from None
        if not (math.isfinite(value) and STSB_RANGE[0] <= value <= STSB_RANGE[1]):
            raise _at(path, line, f"score {raw!r} is outside {STSB_RANGE[0]:g}-{STSB_RANGE[1]:g}")
        return value
    names = task.label_names or tuple(str(i) for i in range(task.num_labels))
    if raw not in names:
        raise _at(path, line, f"label {raw!r} is not one of {', '.join(names)} ({task.name})")
    return names.index(raw)


def split_examples(task: GlueTask, path: Path, rows: Iterable[tuple[int, list[str]]]) -> Iterator[Example]:
    """The examples of a split's rows, each validated as it is read: column count, label in the task's
    label set. The first bad row is a one-line HarnessError with the file and line number. QQP alone
    keeps its historical leniency: rows of the wrong width are skipped (the GLUE release has a few torn
    QQP rows)."""
    rows = iter(rows)
    first = next(rows, None)
    if first is None:
        raise HarnessError(f"{path} is empty (expected the {task.name} split in the GLUE TSV layout)")
    if task.name == "cola":  # no header: source, label, original label, sentence
        for line, r in itertools.chain([first], rows):
            if len(r) != COLA_FIELDS:
                raise _at(path, line, f"{len(r)} tab-separated field(s), CoLA rows have {COLA_FIELDS} "
                                      "(source, label, original label, sentence)")
            yield Example(r[3], None, parse_label(task, r[1], path, line))
        return
    _, header = first
    names = COLUMNS[task.name]
    a, lab = _column(header, names[0], path), _column(header, names[2], path)
    b = _column(header, names[1], path) if names[1] is not None else None
    body = good = 0
    for line, r in rows:
        body += 1
        if len(r) != len(header):
            if task.name == "qqp":
                continue
            raise _at(path, line, f"{len(r)} tab-separated field(s), the header has {len(header)} (a short or torn row)")
        good += 1
        yield Example(r[a], r[b] if b is not None else None, parse_label(task, r[lab], path, line))
    if not body:
        raise HarnessError(f"{path} has a header but no examples")
    if not good:
        raise HarnessError(f"{path} has no well-formed examples")


def read_split(task: GlueTask, path: Path) -> list[Example]:
    """Every row of a split, validated (split_examples), as a list."""
    return list(split_examples(task, path, read_tsv_lines(path)))


# The plan-time check of a file larger than this validates it streaming, keeping nothing (memory bounded
# by one line, not by the file: a 1 GB train.tsv took 9.7 GB and 193 s to dry-run); a smaller file is
# parsed once and kept for the runs of the process (harness.datafiles). Env HARNESS_DATA_STREAM_MB.
STREAM_CHECK_BYTES = int(float(os.environ.get("HARNESS_DATA_STREAM_MB", "64")) * 2**20)


def check_split(task: GlueTask, path: Path) -> int:
    """Validate a split for the plan; its number of examples. Large files stream (STREAM_CHECK_BYTES)."""
    if path.stat().st_size <= STREAM_CHECK_BYTES:
        return len(cached_split(task, path))
    return sum(1 for _ in split_examples(task, path, iter_tsv_lines(path)))


def cached_split(task: GlueTask, path: Path) -> list[Example]:
    return datafiles.cached((path,), task.name, lambda: read_split(task, path))


def read_mrpc_canonical_train(folder: Path) -> list[Example] | None:
    """MRPC train rebuilt as download_glue_data.py does: msr_paraphrase_train.txt minus the dev ids.
    (Some copies of train.tsv lack a row; the rebuilt split has the canonical 3668.)"""
    msr, dev_ids = folder / "msr_paraphrase_train.txt", folder / "dev_ids.tsv"
    if not (msr.is_file() and dev_ids.is_file()):
        return None
    return datafiles.cached((msr, dev_ids), "mrpc-canonical", lambda: _read_mrpc_canonical(msr, dev_ids))


def _read_mrpc_canonical(msr: Path, dev_ids: Path) -> list[Example]:
    return list(_mrpc_canonical(msr, dev_ids, read_tsv_lines(msr)))


def _mrpc_canonical(msr: Path, dev_ids: Path, msr_rows: Iterable[tuple[int, list[str]]]) -> Iterator[Example]:
    dev = set()
    for line, r in read_tsv_lines(dev_ids):
        if len(r) != 2:
            raise _at(dev_ids, line, f"{len(r)} tab-separated field(s), expected 2 (#1 ID, #2 ID)")
        dev.add((r[0], r[1]))
    rows = iter(msr_rows)
    first = next(rows, None)
    if first is None:
        raise HarnessError(f"{msr} is empty")
    _, header = first
    q, i1, i2 = _column(header, "Quality", msr), _column(header, "#1 ID", msr), _column(header, "#2 ID", msr)
    a, b = _column(header, "#1 String", msr), _column(header, "#2 String", msr)
    kept = 0
    for line, r in rows:
        if len(r) != len(header):
            raise _at(msr, line, f"{len(r)} tab-separated field(s), the header has {len(header)} (a short or torn row)")
        if (r[i1], r[i2]) not in dev:
            kept += 1
            yield Example(r[a], r[b], parse_label(TASKS["mrpc"], r[q], msr, line))
    if not kept:
        raise HarnessError(f"{msr} has no training examples once the dev ids are removed")


def task_paths(task: GlueTask, root: Path) -> tuple[Path, Path]:
    """A task's folder and dev file under the GLUE root, or the one-line error that says what is missing."""
    folder = root / task.folder
    if not folder.is_dir():
        raise HarnessError(f"GLUE task folder {folder} is missing; {HOW_TO_GET_GLUE}")
    dev_path = folder / task.dev_file
    if not dev_path.is_file():
        raise HarnessError(f"{dev_path} is missing (the dev split of {task.name}); {HOW_TO_GET_GLUE}")
    return folder, dev_path


def check_offline_splits(task: GlueTask, root: Path) -> None:
    """offline_splits' checks, every row validated, with memory bounded whatever the files' sizes."""
    folder, dev_path = task_paths(task, root)
    dev = check_split(task, dev_path)
    msr, dev_ids = folder / "msr_paraphrase_train.txt", folder / "dev_ids.tsv"
    if task.name == "mrpc" and msr.is_file() and dev_ids.is_file():
        if msr.stat().st_size <= STREAM_CHECK_BYTES:
            read_mrpc_canonical_train(folder)
        else:
            for _ in _mrpc_canonical(msr, dev_ids, iter_tsv_lines(msr)):
                pass
        return
    if (folder / "train.tsv").is_file():
        check_split(task, folder / "train.tsv")
        return
    if task.name == "qnli":
        if dev <= QNLI_HELDOUT:
            raise HarnessError(f"{dev_path} has {dev} examples: too few to hold out {QNLI_HELDOUT} for "
                               f"evaluation and train on the rest (train.tsv is missing); {HOW_TO_GET_GLUE}")
        return
    raise HarnessError(f"{folder / 'train.tsv'} is missing (the train split of {task.name}); {HOW_TO_GET_GLUE}")


def offline_splits(task: GlueTask, root: Path) -> tuple[list[Example], list[Example], dict[str, Any]]:
    folder, dev_path = task_paths(task, root)
    dev = cached_split(task, dev_path)
    info: dict[str, Any] = {"source": str(folder)}
    train_path = folder / "train.tsv"
    if task.name == "mrpc" and (rebuilt := read_mrpc_canonical_train(folder)) is not None:
        info["train_source"] = "msr_paraphrase_train.txt minus dev_ids.tsv (canonical split)"
        return rebuilt, dev, info
    if train_path.is_file():
        return cached_split(task, train_path), dev, info
    if task.name == "qnli":
        if len(dev) <= QNLI_HELDOUT:
            raise HarnessError(f"{dev_path} has {len(dev)} examples: too few to hold out {QNLI_HELDOUT} for "
                               f"evaluation and train on the rest (train.tsv is missing); {HOW_TO_GET_GLUE}")
        order = list(range(len(dev)))
        random.Random(0).shuffle(order)
        held, rest = order[:QNLI_HELDOUT], order[QNLI_HELDOUT:]
        info["note"] = (
            f"QNLI train.tsv is missing locally: trained on {len(rest)} dev examples and evaluated on the other "
            f"{len(held)} (fixed split, seed 0); not comparable with scores on the full dev set"
        )
        info["eval_split"] = "dev-heldout"
        return [dev[i] for i in rest], [dev[i] for i in held], info
    raise HarnessError(f"{train_path} is missing (the train split of {task.name}); {HOW_TO_GET_GLUE}")


def hub_splits(task: GlueTask) -> tuple[list[Example], list[Example], dict[str, Any]]:
    from datasets import load_dataset

    if hub_offline():
        raise HarnessError(f"HF_HUB_OFFLINE is set and no --data-dir was given: cannot load GLUE {task.name}; {HOW_TO_GET_GLUE}")
    try:
        ds = load_dataset("nyu-mll/glue", task.name)
    except Exception as exc:  # network errors come in many types
        raise HarnessError(f"could not load nyu-mll/glue/{task.name} from the hub ({type(exc).__name__}); {HOW_TO_GET_GLUE}") from None

    def convert(split: Any) -> list[Example]:
        cols = task.text_columns
        return [
            Example(row[cols[0]], row[cols[1]] if len(cols) > 1 else None, row["label"])
            for row in split
        ]

    return convert(ds["train"]), convert(ds[task.hub_eval_split]), {"source": "hub:nyu-mll/glue"}
