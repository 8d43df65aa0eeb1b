"""GLUE: SST-2, MRPC, CoLA, QNLI, RTE, STS-B (QQP and MNLI when their data is present).

Online the tasks come from the hub (``nyu-mll/glue``); offline from ``<data root>/glue`` in the original
GLUE TSV layout (as ``download_glue_data.py`` writes it). Metrics are computed with scikit-learn/scipy:
accuracy everywhere, Matthews correlation for CoLA, Pearson and Spearman for STS-B, F1 too for MRPC/QQP.
The papers report the best dev epoch; we record that (``selection: best-dev-epoch``) and the final epoch.
"""

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
from harness.batching import compile_pad_multiple, length_grouped_batches, subsample
from harness.errors import HarnessError
from harness.metrics import MetricSpec
from harness.models import find_model_entry, get_model_entry, hub_offline
from harness.registry import register_suite
from harness.spec import TrainConfig
from harness.suite import DataSource, LoadedModel, RunContext, Suite, TaskData
from harness.validation import carve
from suites._shared.models import model_source, offline_config

if TYPE_CHECKING:
    from torch import nn

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


# ------------------------------------------------------------------------------------------------------
# metrics
# ------------------------------------------------------------------------------------------------------


def glue_metrics(task: str, predictions: list[float], labels: list[float]) -> dict[str, float]:
    from scipy.stats import pearsonr, spearmanr
    from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

    if TASKS[task].num_labels == 1:
        return {"pearson": float(pearsonr(predictions, labels)[0]), "spearman": float(spearmanr(predictions, labels)[0])}
    preds = [int(p) for p in predictions]
    gold = [int(x) for x in labels]
    out = {"accuracy": float(accuracy_score(gold, preds))}
    if task == "cola":
        out["mcc"] = float(matthews_corrcoef(gold, preds))
    if task in ("mrpc", "qqp"):
        out["f1"] = float(f1_score(gold, preds))
    return out


# ------------------------------------------------------------------------------------------------------
# batching
# ------------------------------------------------------------------------------------------------------


@dataclass
class Encoded:
    input_ids: list[list[int]]
    token_type_ids: list[list[int]] | None
    labels: list[float | int]


def encode(tokenizer: Any, examples: list[Example], max_length: int) -> Encoded:
    a = [e.text_a for e in examples]
    b = [e.text_b for e in examples]
    enc = tokenizer(a, b if all(x is not None for x in b) else None, truncation=True, max_length=max_length)
    return Encoded(enc["input_ids"], enc.get("token_type_ids"), [e.label for e in examples])


def bucket_width(width: int, multiple: int | None, cap: int) -> int:
    """The padded width of a batch whose longest example has ``width`` tokens: rounded up to a multiple
    of ``multiple`` (compiled runs: a handful of shapes, so torch.compile compiles a bounded number of
    times per run instead of once per length), never above ``cap`` (the run's max_length) unless the
    batch itself is wider; ``multiple`` None: the batch's own width (eager runs pad nothing extra)."""
    if not multiple or multiple <= 1:
        return width
    return max(width, min(-(-width // multiple) * multiple, cap))


def collate(enc: Encoded, idx: list[int], pad_id: int, device: Any, regression: bool,
            pad_multiple: int | None = None, max_width: int = 0) -> dict[str, Any]:
    """One padded batch; ``pad_multiple`` (compiled runs) rounds the width up (bucket_width)."""
    import torch

    width = bucket_width(max(len(enc.input_ids[i]) for i in idx), pad_multiple, max_width)
    ids = torch.full((len(idx), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(idx), width), dtype=torch.long)
    types = torch.zeros((len(idx), width), dtype=torch.long) if enc.token_type_ids is not None else None
    for row, i in enumerate(idx):
        seq = enc.input_ids[i]
        ids[row, : len(seq)] = torch.tensor(seq)
        mask[row, : len(seq)] = 1
        if types is not None:
            types[row, : len(seq)] = torch.tensor(enc.token_type_ids[i])
    labels = torch.tensor([enc.labels[i] for i in idx], dtype=torch.float if regression else torch.long)
    batch = {"input_ids": ids.to(device), "attention_mask": mask.to(device), "labels": labels.to(device)}
    if types is not None:
        batch["token_type_ids"] = types.to(device)
    batch["num_samples"] = len(idx)
    return batch


def head_module_names(model: nn.Module) -> tuple[str, ...]:
    """Everything outside the backbone (classifier, ...) plus the backbone's pooler: trained in full
    and counted apart, as the papers do."""
    prefix = model.base_model_prefix
    names = [name for name, child in model.named_children() if name != prefix and any(True for _ in child.parameters())]
    backbone = getattr(model, prefix, None)
    if backbone is not None and getattr(backbone, "pooler", None) is not None:
        names.append(f"{prefix}.pooler")
    return tuple(names)


# ------------------------------------------------------------------------------------------------------
# the suite
# ------------------------------------------------------------------------------------------------------


@register_suite("glue")
class Glue(Suite):
    description = "GLUE dev sets (SST-2, MRPC, CoLA, QNLI, RTE, STS-B; QQP and MNLI when present)"
    family = "encoder"
    tasks = tuple(TASKS)
    selection = "best-dev-epoch"
    share_task_data = True  # tokenized examples are only read during a run
    # LoRA's GLUE protocol (Hu et al., 2021): RTE, MRPC and STS-B start from the MNLI-trained adapter
    warm_start_tasks = {"mnli": ("rte", "mrpc", "stsb")}
    metrics = (  # names, units, directions: harness/metrics.py
        MetricSpec("accuracy", "fraction", primary=True),
        MetricSpec("f1", "fraction"),
        MetricSpec("mcc", "coefficient", primary=True, description="Matthews correlation (CoLA)"),
        MetricSpec("pearson", "coefficient", primary=True, description="Pearson correlation (STS-B)"),
        MetricSpec("spearman", "coefficient", description="Spearman correlation (STS-B)"),
    )

    def default_tasks(self, preset: str) -> list[str]:
        return list(CORE_TASKS) if preset == "cpu" else list(TASKS)

    def task_available(self, task: str, data: DataSource) -> bool:
        if not data.offline:
            return True
        assert data.root is not None
        return (data.root / "glue" / TASKS[task].folder).is_dir()

    def default_model(self, preset: str) -> str:
        return "minilm-l6" if preset == "cpu" else "roberta-base"

    def check_model(self, model: str) -> None:
        entry = find_model_entry(model)
        if entry is not None and entry.family != self.family:
            raise HarnessError(f"model '{model}' is a {entry.family} model; suite 'glue' needs an encoder")
        if entry is None and not Path(model).is_dir() and hub_offline():
            get_model_entry(model)  # raises with the closest catalogue name

    def default_adapter_options(self, model: str) -> dict[str, Any]:
        entry = find_model_entry(model)
        if entry is not None and entry.name == "deberta-v3-base":
            return {"targets": ("query_proj", "value_proj")}
        return {"targets": ("query", "value")}

    def train_config(self, preset: str, task: str, model: str) -> TrainConfig:
        if preset == "cpu":
            return CPU_TRAIN_BY_TASK.get(task, CPU_TRAIN)
        return TrainConfig(
            epochs=PAPER_EPOCHS[task], lr=PAPER_LR[task], batch_size=16, eval_batch_size=64, max_length=512,
            warmup_ratio=0.06, weight_decay=0.1,
        )

    def check_data(self, task: str, data: DataSource) -> None:
        if not data.offline:
            return
        glue = data.folder("glue", HOW_TO_GET_GLUE)
        t = TASKS[task]
        folder = glue / t.folder
        if not folder.is_dir():
            raise HarnessError(f"GLUE task folder {folder} is missing; {HOW_TO_GET_GLUE}")
        if not (folder / t.dev_file).is_file():
            raise HarnessError(f"{folder / t.dev_file} is missing (dev split of {task}); {HOW_TO_GET_GLUE}")
        has_train = (folder / "train.tsv").is_file() or (task == "mrpc" and (folder / "msr_paraphrase_train.txt").is_file())
        if not has_train and task != "qnli":
            raise HarnessError(f"{folder / 'train.tsv'} is missing (train split of {task}); {HOW_TO_GET_GLUE}")
        # every row of the splits a run reads, validated here before a model loads (kept for the runs
        # when small; streamed, keeping nothing, when large)
        check_offline_splits(t, glue)

    def primary_metric(self, task: str) -> str:
        return TASKS[task].primary

    # ---- models ----------------------------------------------------------------------------------
    def load_model(self, model_name: str, task: str, ctx: RunContext) -> LoadedModel:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer
        from transformers.utils import logging as hf_logging

        source, info = model_source(model_name)
        t = TASKS[task]
        hf_logging.set_verbosity_error()  # "newly initialised classifier" is expected, not news
        kwargs: dict[str, Any] = {"num_labels": t.num_labels}
        if t.num_labels == 1:
            kwargs["problem_type"] = "regression"
        model = AutoModelForSequenceClassification.from_pretrained(source, **kwargs)
        tokenizer = AutoTokenizer.from_pretrained(source)
        info["model"] = model_name
        info["task"] = task
        info["architecture"] = type(model).__name__
        return LoadedModel(model=model, family="encoder", head_modules=head_module_names(model), tokenizer=tokenizer,
                           info=info, task_type="SEQ_CLS")

    def meta_model(self, model: str, task: str) -> tuple[nn.Module, tuple[str, ...]] | None:
        import torch
        from transformers import AutoModelForSequenceClassification

        config = offline_config(model)
        if config is None:
            return None
        config.num_labels = TASKS[task].num_labels
        with torch.device("meta"):
            skeleton = AutoModelForSequenceClassification.from_config(config)
        return skeleton, head_module_names(skeleton)

    # ---- data ------------------------------------------------------------------------------------
    def load_data(self, task: str, loaded: LoadedModel, train: TrainConfig, ctx: RunContext) -> TaskData:
        t = TASKS[task]
        if ctx.data.offline:
            assert ctx.data.root is not None
            train_ex, eval_ex, info = offline_splits(t, ctx.data.folder("glue", HOW_TO_GET_GLUE))
        else:
            train_ex, eval_ex, info = hub_splits(t)
        info["train_available"] = len(train_ex)
        info["eval_available"] = len(eval_ex)
        # the validation split first (the same for every seed and method), then the training subsample
        # from the rest: no validation example is ever trained on
        train_ex, val_ex = carve(train_ex, train.validation, f"{self.name}/{task}",
                                 identity=lambda e: (e.text_a, e.text_b))
        train_ex = subsample(train_ex, train.max_train_samples, ctx.seed)
        eval_ex = subsample(eval_ex, train.max_eval_samples, 0)  # same eval subset for every seed
        # --max-eval-samples caps the validation passes too (smoke runs); the carve above, and so the
        # training data, does not depend on it
        val_ex = subsample(val_ex, train.max_eval_samples, 0)
        info["train_examples"] = len(train_ex)
        info["eval_examples"] = len(eval_ex)
        if val_ex:
            info["validation_examples"] = len(val_ex)
            info["validation_split"] = "held out of train"
        info.setdefault("eval_split", "dev" if t.name != "mnli" else "dev_matched")
        tok = loaded.tokenizer
        info["pad_token_id"] = tok.pad_token_id or 0
        return TaskData(
            train=encode(tok, train_ex, train.max_length),
            eval=encode(tok, eval_ex, train.max_length),
            validation=encode(tok, val_ex, train.max_length) if val_ex else None,
            info=info,
        )

    def num_train_batches(self, data: TaskData, train: TrainConfig) -> int:
        return math.ceil(len(data.train.labels) / train.batch_size)

    def train_batches(self, data: TaskData, train: TrainConfig, epoch: int, ctx: RunContext) -> Iterator[dict]:
        enc: Encoded = data.train
        rng = random.Random(ctx.seed * 1000 + epoch)
        lengths = [len(x) for x in enc.input_ids]
        pad = data.info["pad_token_id"]
        regression = isinstance(enc.labels[0], float)
        multiple = compile_pad_multiple() if train.compile else None
        for idx in length_grouped_batches(lengths, train.batch_size, rng):
            yield collate(enc, idx, pad, ctx.device, regression, multiple, train.max_length)

    def evaluate(self, model: nn.Module, data: TaskData, loaded: LoadedModel, train: TrainConfig,
                 ctx: RunContext) -> dict[str, float]:
        from tqdm.auto import tqdm

        enc: Encoded = data.eval
        pad = loaded.tokenizer.pad_token_id or 0
        regression = isinstance(enc.labels[0], float)
        order = sorted(range(len(enc.labels)), key=lambda i: len(enc.input_ids[i]))
        multiple = compile_pad_multiple() if train.compile else None
        predictions: dict[int, float] = {}
        chunks = [order[i : i + train.eval_batch_size] for i in range(0, len(order), train.eval_batch_size)]
        # disable=None: no bar without a terminal; --no-progress (ctx.progress False) silences it always
        for idx in tqdm(chunks, desc="eval", leave=False, disable=None if ctx.progress else True):
            batch = collate(enc, idx, pad, ctx.device, regression, multiple, train.max_length)
            batch.pop("num_samples")
            batch.pop("labels")
            logits = model(**batch).logits
            values = logits.squeeze(-1) if regression else logits.argmax(-1)
            for i, v in zip(idx, values.tolist()):
                predictions[i] = v
        preds = [predictions[i] for i in range(len(enc.labels))]
        ctx.predictions.update(predictions=preds, labels=list(enc.labels))  # the side channel (harness/records/predictions.py)
        return glue_metrics(loaded.info["task"], preds, list(enc.labels))


