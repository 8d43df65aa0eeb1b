"""GLUE's metrics and batches: scikit-learn/scipy metrics per task, tokenised examples, padded (optionally
bucketed) batches, the task head's module names."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from suites.glue.data import TASKS, Example

if TYPE_CHECKING:
    from torch import nn


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
