"""Every configuration a paper table runs (harness.papers.tables: one per distinct adapter and options)
trains: built, attached to a small BERT, and stepped through a whole short schedule with the training
hooks the runner calls (``extra_loss``, ``on_step_end``), so that a row whose options break at training
time fails here and not hours into ``reproduce`` (msplora-t1's AdaLoRA row, init_rank == rank, did:
peft's allocator asked for the 0th smallest importance score). Targets are the model's attention q,v,
as the tables' roles resolve for BERT."""

from __future__ import annotations

import math

import pytest
import torch

from harness.papers.tables import TABLES
from tests.adapter_testkit import adapter_params, apply_adapter, make, train_steps
from tests.tiny_models import tiny_bert

HIDDEN = 256  # wide enough for the largest rank a table asks (SeRA r=256) on a 256 x 256 projection
STEPS = 12


def _configs() -> list[tuple[str, dict]]:
    seen: dict[tuple, tuple[str, dict]] = {}
    for table in TABLES:
        for row in table.rows:
            if row.adapter and row.adapter != "zero-shot":  # zero-shot trains nothing
                key = (row.adapter, tuple(sorted((k, repr(v)) for k, v in row.options.items())))
                seen.setdefault(key, (row.adapter, dict(row.options)))
    return sorted(seen.values(), key=lambda c: (c[0], sorted(c[1].items())))


CONFIGS = _configs()


def test_the_configurations_cover_every_runnable_row():
    adapters = {row.adapter for t in TABLES for row in t.rows if row.adapter and row.adapter != "zero-shot"}
    assert {name for name, _ in CONFIGS} == adapters and len(CONFIGS) >= 30


@pytest.mark.parametrize(("name", "options"), CONFIGS,
                         ids=[f"{n}-" + ",".join(f"{k}={v}" for k, v in sorted(o.items())) for n, o in CONFIGS])
def test_every_paper_row_configuration_trains_a_whole_schedule(name: str, options: dict):
    torch.manual_seed(0)
    adapter = make(name, **({"targets": ["query", "value"]} if "targets" in _fields(name) else {}), **options)
    model, _, head_ids = apply_adapter(adapter, tiny_bert(4, HIDDEN, 2 * HIDDEN, heads=4), total_steps=STEPS)
    if adapter.trains_head:  # as the runner does (harness.pipeline.train): the task head trains beside the adapter
        for p in model.parameters():
            if id(p) in head_ids:
                p.requires_grad_(True)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    assert params, f"{name} {options}: nothing to train"
    losses = train_steps(adapter, model, STEPS, lr=1e-3)
    assert all(math.isfinite(x) for x in losses), f"{name} {options}: losses {losses}"
    trained = adapter_params(model, head_ids)
    assert name in ("head", "full", "bitfit") or trained, f"{name} {options}: no adapter parameters"
    adapter.summary(model)  # the record's adapter section is built from the trained model


def _fields(name: str) -> set[str]:
    import dataclasses

    from harness.registry import ADAPTERS

    return {f.name for f in dataclasses.fields(ADAPTERS.get(name).config_cls)}
