"""--compile (issue 38): a bounded set of padded widths (GLUE rounds a compiled run's padded length up
to a multiple), padding that changes nothing but the shape, the compile counts in the record, and a
run compiled with inductor that computes what the eager run does."""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest
import torch

from harness.spec import RunSpec, TrainConfig
from harness.suite import DataSource, RunContext, TaskData
from suites.glue import CPU_TRAIN, Encoded, Glue, bucket_width, collate
from tests.tiny_models import tiny_bert


def test_bucket_width_rounds_up_to_the_multiple_within_the_cap():
    assert [bucket_width(w, 32, 128) for w in (1, 31, 32, 33, 97, 128)] == [32, 32, 32, 64, 128, 128]
    assert bucket_width(100, 32, 100) == 100  # never above max_length ...
    assert bucket_width(130, 32, 128) == 130  # ... unless the batch itself is wider
    assert [bucket_width(w, None, 128) for w in (3, 77)] == [3, 77]  # eager: the batch's own width
    assert bucket_width(5, 1, 128) == 5


def _encoded(n: int = 40, seed: int = 0, vocab: int = 64, longest: int = 30) -> Encoded:
    rng = random.Random(seed)
    ids = [[1] + [rng.randrange(2, vocab) for _ in range(rng.randint(1, longest - 2))] + [2] for _ in range(n)]
    return Encoded(ids, [[0] * len(x) for x in ids], [rng.randrange(2) for _ in range(n)])


def test_bucketed_padding_leaves_the_logits_alone():
    model = tiny_bert(max_positions=64)
    enc = _encoded()
    idx = list(range(len(enc.labels)))
    plain = collate(enc, idx, 0, "cpu", False)
    padded = collate(enc, idx, 0, "cpu", False, pad_multiple=16, max_width=64)
    assert padded["input_ids"].shape[1] == 32 and plain["input_ids"].shape[1] < 32
    for batch in (plain, padded):
        batch.pop("num_samples")
    with torch.inference_mode():
        a, b = model(**plain).logits, model(**padded).logits
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_glue_pads_to_the_multiple_only_when_compiling():
    suite = Glue()
    enc = _encoded(n=200, longest=90)
    data = TaskData(train=enc, eval=enc, info={"pad_token_id": 0})
    ctx = RunContext(device=torch.device("cpu"), data=DataSource(None), seed=0, preset="cpu", work_dir=Path("."))
    widths = {c: {b["input_ids"].shape[1] for b in suite.train_batches(data, TrainConfig(compile=c), 0, ctx)}
              for c in (False, True)}
    assert widths[True] <= {32, 64, 96} and len(widths[True]) <= 3
    assert len(widths[False]) > len(widths[True])


def test_the_cpu_preset_hash_is_unchanged_by_compile_default():
    spec = RunSpec("glue", "sst2", "lora", "minilm-l6", "cpu", 42, {"rank": 8}, CPU_TRAIN)
    assert "compile" not in spec.identity()["train"]


@pytest.mark.slow
def test_an_inductor_compiled_run_agrees_with_eager(monkeypatch: pytest.MonkeyPatch):
    """The real compiler (inductor, C++ on the CPU): the toy suite's run, compiled and eager, computes
    the same losses and scores to float tolerance, and the record counts the compiled graphs."""
    from harness.pipeline import load as load_cache
    from harness.pipeline.plan import GridRequest, plan_grid
    from harness.pipeline.runner import ExecutionOptions, execute_run

    monkeypatch.delenv("HARNESS_COMPILE_BACKEND", raising=False)
    options = ExecutionOptions(device="cpu", progress=False, cache=False)
    records = {}
    for compiled in (False, True):
        (spec,) = plan_grid(GridRequest(suite="toy", adapters="full", tasks="sign", seeds=(1,), preset="cpu",
                                        train_overrides={"compile": compiled}), cuda_available=False)
        records[compiled] = execute_run(spec, options)
        assert records[compiled]["status"] == "success", records[compiled].get("error")
    load_cache.MODEL_CACHE.clear()
    load_cache.DATA_CACHE.clear()
    eager, comp = records[False], records[True]
    info = comp["precision"]["compile"]
    assert info["enabled"] is True and info["backend"] == "inductor"
    assert info["graphs"] >= 1 and info["compile_seconds"] > 0
    assert [s for s, _ in comp["loss_curve"]] == [s for s, _ in eager["loss_curve"]]
    for (_, a), (_, b) in zip(eager["loss_curve"], comp["loss_curve"]):
        assert math.isclose(a, b, rel_tol=1e-4, abs_tol=1e-6), (a, b)
    assert math.isclose(comp["metrics"]["score"], eager["metrics"]["score"], abs_tol=1e-6)
