"""Wrapping keeps the model's state (issue 16): train/eval mode carries over to the wrappers and the
compute dtype follows ``model.to(dtype)`` after wrapping; and the non-low-rank methods we implement
(Adapter-H/P, BitFit) against their papers' formulas."""

from __future__ import annotations

import math

import pytest
import torch

from harness.config import build
from harness.parameters import module_param_ids
from harness.registry import ADAPTERS
from tests.adapter_testkit import HEAD
from tests.tiny_models import tiny_bert, token_batch

WRAPPING = {
    "msplora": {"rank": 8, "alpha": 16, "dropout": 0.3, "groups": 2},
    "sera": {"rank": 8, "alpha": 16, "dropout": 0.3},
    "lora2": {"rank": 8, "alpha": 16, "k": 4, "dropout": 0.3},
    "melora": {"rank": 8, "alpha": 16, "split": 4, "dropout": 0.3},
    "moslora": {"rank": 8, "alpha": 16, "dropout": 0.3},
    "dylora": {"rank": 8, "alpha": 16, "dropout": 0.3},
    "adapter-h": {"bottleneck": 8},
    "adapter-p": {"bottleneck": 8},
}


def make(name: str, **options):
    cls = ADAPTERS.get(name)
    return cls(build(cls.config_cls, {**WRAPPING.get(name, {}), **options}, name))


def apply_any(adapter, model):
    """``apply`` as the runner does it, for low-rank and bottleneck adapters alike."""
    from harness.pipeline.attach import attach

    return attach(adapter, model, family="encoder", head_modules=HEAD, total_steps=10)


def wrappers(model):
    return [m for m in model.modules() if hasattr(m, "base") and hasattr(m, "site")]


def randomise(model, seed: int = 3) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if p.requires_grad and not n.startswith(HEAD):
                p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.3)


@pytest.mark.parametrize("name", list(WRAPPING))
@pytest.mark.parametrize("mode", ["eval", "train"])
def test_wrapping_keeps_the_train_or_eval_mode(name, mode):
    model = tiny_bert(layers=2)
    model.train(mode == "train")
    model = apply_any(make(name), model)
    found = wrappers(model)
    assert found
    for w in found:
        assert all(m.training == (mode == "train") for m in w.modules()), f"{name}: {type(w).__name__}"
    if mode == "eval" and name not in ("adapter-h", "adapter-p"):
        randomise(model)
        ids = token_batch()
        with torch.no_grad():  # dropout 0.3 on the adapter input stays off in an eval-mode model
            assert torch.equal(model(input_ids=ids).logits, model(input_ids=ids).logits)


@pytest.mark.parametrize("name", list(WRAPPING))
def test_model_to_bfloat16_after_wrapping_runs_in_bfloat16(name):
    ids = token_batch()
    model = apply_any(make(name), tiny_bert(layers=2))
    randomise(model)
    with torch.no_grad():
        reference = model(input_ids=ids).logits
    model.to(torch.bfloat16)
    trainable = [p for n, p in model.named_parameters() if p.requires_grad and not n.startswith(HEAD)]
    assert trainable and all(p.dtype == torch.bfloat16 for p in trainable)
    with torch.no_grad():
        out = model(input_ids=ids).logits
    assert out.dtype == torch.bfloat16
    scale = float(reference.abs().max())
    assert scale > 1e-3
    assert float((out.float() - reference).abs().max()) < 0.1 * scale  # bf16 has ~3 significant digits
    # and it trains in bf16: a backward pass reaches the adapter tensors
    model.train()
    model(input_ids=ids).logits.float().pow(2).sum().backward()
    assert all(p.grad is not None and p.grad.dtype == torch.bfloat16 for p in trainable)


# ---- Adapter-H / Adapter-P ------------------------------------------------------------------------------


@pytest.mark.parametrize("name,kinds", [("adapter-h", {"attention.output.dense", "output.dense"}),
                                        ("adapter-p", {"output.dense"})])
def test_bottleneck_adapters_follow_houlsby_and_pfeiffer(name, kinds):
    """y + W_up·act(W_down·y + b_down) + b_up on the projection output y, at the paper's positions:
    after attention and after the FFN (Houlsby), after the FFN only (Pfeiffer); every layer."""
    layers = 3
    model = apply_any(make(name), tiny_bert(layers=layers).double())
    found = wrappers(model)
    assert {w.site.kind for w in found} == kinds and len(found) == layers * len(kinds)
    names = {w.site.name for w in found}
    ffn = {f"bert.encoder.layer.{i}.output.dense" for i in range(layers)}
    attention = {f"bert.encoder.layer.{i}.attention.output.dense" for i in range(layers)}
    assert names == (ffn | attention if name == "adapter-h" else ffn)
    for w in found:
        # init: W_down ~ N(0, 0.02²), the rest zero, so the model starts unchanged
        down = w.down_weight.detach().flatten()
        assert tuple(w.down_weight.shape) == (8, w.out_features)
        assert 0.75 * 0.02 < float(down.std()) < 1.25 * 0.02
        for zero in (w.down_bias, w.up_weight, w.up_bias):
            assert torch.count_nonzero(zero.detach()) == 0
    randomise(model)
    g = torch.Generator().manual_seed(9)
    for w in found:
        x = torch.randn(2, 5, w.in_features, generator=g, dtype=torch.float64)
        y = x @ w.base.weight.T + w.base.bias
        hidden = torch.relu(y @ w.down_weight.T + w.down_bias)
        expected = y + hidden @ w.up_weight.T + w.up_bias
        assert float((expected - y).detach().abs().max()) > 0.1
        assert torch.allclose(w(x), expected, atol=1e-9, rtol=0)


@pytest.mark.parametrize("name", ["adapter-h", "adapter-p", "bitfit"])
def test_one_optimizer_step_moves_the_output(name):
    ids = token_batch()
    model = tiny_bert(layers=2).double()
    with torch.no_grad():
        start = model(input_ids=ids).logits
    head_ids = module_param_ids(model, HEAD)
    model = apply_any(make(name), model)
    params = [p for p in model.parameters() if p.requires_grad and id(p) not in head_ids]
    with torch.no_grad():
        assert torch.equal(model(input_ids=ids).logits, start)
    opt = torch.optim.Adam(params, lr=1e-2)
    model(input_ids=ids).logits.pow(2).sum().backward()
    opt.step()
    with torch.no_grad():
        change = float((model(input_ids=ids).logits - start).abs().max())
    assert change > 1e-6, f"{name}: {change:.3g}"


def test_bitfit_trains_exactly_the_bias_terms_of_the_blocks():
    """BitFit: every bias inside the transformer blocks (attention, FFN, LayerNorm) and nothing else."""
    model = tiny_bert(layers=2)
    head_ids = module_param_ids(model, HEAD)
    model = apply_any(make("bitfit"), model)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad and id(p) not in head_ids}
    expected = {n for n, _ in model.named_parameters()
                if n.startswith("bert.encoder.layer.") and n.endswith(".bias")}
    assert trainable == expected
    assert any("LayerNorm" in n for n in expected) and len(expected) == 2 * 8
    assert math.isclose(sum(p.numel() for n, p in model.named_parameters() if n in trainable),
                        sum(p.numel() for n, p in model.named_parameters() if n in expected))
