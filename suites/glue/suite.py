"""GLUE: SST-2, MRPC, CoLA, QNLI, RTE, STS-B (QQP and MNLI when their data is present).

Online the tasks come from the hub (``nyu-mll/glue``); offline from ``<data root>/glue`` in the original
GLUE TSV layout (as ``download_glue_data.py`` writes it). Metrics are computed with scikit-learn/scipy:
accuracy everywhere, Matthews correlation for CoLA, Pearson and Spearman for STS-B, F1 too for MRPC/QQP.
The papers report the best dev epoch; we record that (``selection: best-dev-epoch``) and the final epoch.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.batching import compile_pad_multiple, length_grouped_batches, subsample
from harness.errors import HarnessError
from harness.metrics import MetricSpec
from harness.models import find_model_entry, get_model_entry, hub_offline
from harness.registry import register_suite
from harness.spec import TrainConfig
from harness.suite import DataSource, LoadedModel, RunContext, Suite, TaskData
from harness.validation import carve
from suites._shared.models import model_source, offline_config
from suites.glue.batches import Encoded, collate, encode, glue_metrics, head_module_names
from suites.glue.data import (
    CORE_TASKS,
    CPU_TRAIN,
    CPU_TRAIN_BY_TASK,
    HOW_TO_GET_GLUE,
    PAPER_EPOCHS,
    PAPER_LR,
    TASKS,
    check_offline_splits,
    hub_splits,
    offline_splits,
)

if TYPE_CHECKING:
    from torch import nn

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


