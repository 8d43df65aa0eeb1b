"""What the adapter tests share: attaching an adapter as the runner does, counting, and the checks that
several methods' tests run with their own sizes (tests/test_adapter_<name>.py call them). The tiny
models are in tests/tiny_models.py; the checks every registered adapter gets without a line of its own
are the contract tests (tests/test_contract.py)."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest
import torch
from torch import nn

from adapters._toolkit.peft_tuner import tuner_layers
from harness.adapter import Adapter, LowRankConfig
from harness.config import build
from harness.parameters import module_param_ids
from harness.pipeline.attach import attach
from harness.pipeline.measure import count_parameters
from harness.registry import ADAPTERS
from tests.tiny_models import (
    HIDDEN,
    INTERMEDIATE,
    meta_catalogue_model,
    meta_roberta,
    tiny_bert,
    tiny_llama,
    token_batch,
    two_layer_bert,
    two_layer_ids,
    two_layer_llama,
)

HEAD = ("classifier",)

# ---- attaching and counting ---------------------------------------------------------------------------


def apply_adapter(adapter: Adapter, model: nn.Module, total_steps: int = 100, head: tuple[str, ...] = HEAD,
                  family: str = "encoder", seed: int = 0) -> tuple[nn.Module, tuple, frozenset[int]]:
    """What the runner does (harness.pipeline.attach): sites, check, apply. Returns (model, sites, head ids)."""
    head_ids = module_param_ids(model, head)
    sites = adapter.sites(model, head)
    model = attach(adapter, model, family=family, head_modules=head, total_steps=total_steps, seed=seed)
    return model, sites, head_ids


def adapt(adapter: Adapter, model: nn.Module, head: tuple[str, ...] = HEAD, seed: int = 0
          ) -> tuple[nn.Module, frozenset[int]]:
    """``apply_adapter`` for a 10-step run, with the head made trainable as the runner does."""
    model, _, head_ids = apply_adapter(adapter, model, total_steps=10, head=head, seed=seed)
    for p in model.parameters():
        if id(p) in head_ids:
            p.requires_grad_(True)
    return model, head_ids


def make(name: str, **options: Any) -> Adapter:
    cls = ADAPTERS.get(name)
    return cls(build(cls.config_cls, options, name))


def adapter_count(model: nn.Module, head_ids: frozenset[int]) -> int:
    return count_parameters(model, head_ids).adapter_trainable


def adapter_params(model: nn.Module, head_ids: frozenset[int] = frozenset()) -> list[nn.Parameter]:
    return [p for _, p in model.named_parameters() if p.requires_grad and id(p) not in head_ids]


def randomise(params: list[nn.Parameter], seed: int = 3, std: float = 0.2) -> None:
    """Move the adapter away from its zero init so outputs and gradients are non-trivial."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in params:
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * std)


def logits(model: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    return model(input_ids=ids).logits


def train_steps(adapter: Adapter, model: nn.Module, steps: int, lr: float = 5e-2) -> list[float]:
    """``steps`` optimiser steps on one fixed batch with the runner's hooks (``extra_loss`` added to
    the loss, ``on_step_end`` after the step, before ``zero_grad``); the losses."""
    ids, labels = token_batch(batch=4), torch.tensor([0, 1, 1, 0])
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    losses = []
    for step in range(steps):
        loss = torch.nn.functional.cross_entropy(logits(model, ids), labels)
        extra = adapter.extra_loss(model)
        if extra is not None:
            loss = loss + extra
        loss.backward()
        optimizer.step()
        adapter.on_step_end(model, step)
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
    return losses


def meta_roberta_count(adapter: Adapter, config_file: str = "roberta-base.json") -> int:
    """Adapter parameters on a catalogue architecture built on the meta device (as ``harness params``)."""
    from harness.pipeline.attach import count_on_skeleton

    return count_on_skeleton(adapter, meta_roberta(config_file), (), "encoder")


def assert_only_adapter_gets_gradients(model: nn.Module, head_ids: frozenset[int], ids: torch.Tensor) -> None:
    """Backward through the adapted model: every adapter tensor gets a non-zero gradient, no other
    tensor gets one, and only adapter tensors (and nothing of the frozen base) are trainable."""
    trainable = {id(p) for p in adapter_params(model, head_ids)}
    assert trainable, "the adapter added no trainable tensors"
    model.zero_grad(set_to_none=True)
    logits(model, ids).pow(2).mean().backward()
    for name, p in model.named_parameters():
        if id(p) in trainable:
            assert p.grad is not None and p.grad.abs().sum() > 0, f"adapter tensor {name} got no gradient"
        elif id(p) not in head_ids:
            assert not p.requires_grad and p.grad is None, f"frozen tensor {name} is trainable or got a gradient"


# ---- the peft-backed methods on a 4-layer BERT (hidden 32, query+value) -----------------------------------

PEFT_LAYERS = 4
D = 768  # RoBERTa-base hidden size
N_QV = 24  # RoBERTa-base: 12 layers x (query, value)
# each method at a size that fits the tiny BERT
SMALL: dict[str, dict[str, Any]] = {"vera": {"rank": 16}, "lily": {"rank": 4, "stride_a": 2, "num_b": 2}}


def small(name: str, **options: Any) -> Adapter:
    return make(name, **{**SMALL.get(name, {"rank": 4}), **options})


def adapted(name: str, seed: int = 0, total_steps: int = 100, **options: Any):
    adapter = small(name, **options)
    model, sites, head_ids = apply_adapter(
        adapter, tiny_bert(PEFT_LAYERS, HIDDEN, INTERMEDIATE, seed=seed), total_steps
    )
    return adapter, model, sites, head_ids


class PeftChecks:
    """The checks of the peft-backed methods at their ``small`` size that the registry-wide contract tests
    (tests/test_contract.py: registration, preset options, gradients, state round trip, merge) do not make:
    a module subclasses it as ``class TestDoRA(PeftChecks, PeftZeroInitCheck)`` with ``name`` and
    ``tiny_bert_count`` (the adapter's parameters on the 4-layer BERT, by the method's formula)."""

    name: ClassVar[str]
    tiny_bert_count: ClassVar[int]

    def test_counts_on_tiny_bert_match_the_formulas(self):
        _, model, _, head_ids = adapted(self.name)
        assert adapter_count(model, head_ids) == self.tiny_bert_count

    def test_applies_to_a_causal_lm_without_changing_its_output(self):
        ids = token_batch()
        before = logits(tiny_llama(seed=0), ids)
        adapter = make(self.name, rank=2 if self.name != "vera" else 8, targets="q_proj,v_proj")
        model, sites, head_ids = apply_adapter(adapter, tiny_llama(seed=0), head=("lm_head",), family="causal_lm")
        assert {n for n, _ in tuner_layers(model)} == {s.name for s in sites} and len(sites) == 6
        assert adapter_count(model, head_ids) > 0
        torch.testing.assert_close(logits(model, ids), before, rtol=0, atol=1e-5)

class PeftZeroInitCheck:
    """For the methods whose adapter starts at zero (not PiSSA: its adapter holds W's principal part)."""

    name: ClassVar[str]

    def test_zero_init_identity(self):
        ids = token_batch()
        base = tiny_bert(PEFT_LAYERS, HIDDEN, INTERMEDIATE, seed=0)
        before = logits(base, ids)
        _, model, _, _ = adapted(self.name, seed=0)
        torch.testing.assert_close(logits(model, ids), before, rtol=0, atol=1e-6)


# ---- the plain-torch methods on a 2-layer BERT (tests/tiny_models.two_layer_bert) ---------------------------

TWO_LAYERS = 2


class MakesAdapter:
    """The checks below build the adapter under test with ``make_adapter`` (at the size they run)."""

    def make_adapter(self) -> Adapter:
        raise NotImplementedError


class WrapperChecks(MakesAdapter):
    """The checks of the methods written here (MELoRA, MoSLoRA, DyLoRA, BitFit, Adapter-H/P): a module
    subclasses it with ``name``, ``make_adapter`` (at the size the checks run) and ``paper_count`` (the
    paper preset's parameters on RoBERTa-base by the method's formula)."""

    name: ClassVar[str]
    paper_count: ClassVar[int]

    def test_paper_preset_counts_on_meta_roberta_base(self):
        cls = ADAPTERS.get(self.name)
        options = {"targets": "query,value"} if issubclass(cls.config_cls, LowRankConfig) else {}
        options.update(cls.preset_options("paper", "glue", "roberta-base"))
        adapter = cls(build(cls.config_cls, options, self.name))
        model, head_ids = adapt(adapter, meta_catalogue_model("roberta-base"), head=())
        assert adapter_count(model, head_ids) == self.paper_count
        assert all(p.is_meta for p in adapter_params(model, head_ids))

class StartsUnchangedCheck(MakesAdapter):
    """For the methods whose update starts at zero (not BitFit: it trains existing biases)."""

    def test_starts_as_the_pretrained_model_and_only_adapter_tensors_get_gradients(self):
        x = two_layer_ids()
        reference = two_layer_bert()(input_ids=x).logits
        model, head_ids = adapt(self.make_adapter(), two_layer_bert())
        assert torch.equal(model(input_ids=x).logits, reference)
        model.train()
        model(input_ids=x).logits.square().sum().backward()
        ours = {id(p) for p in adapter_params(model, head_ids)}
        for pname, p in model.named_parameters():
            if id(p) in ours or id(p) in head_ids:
                continue
            assert not p.requires_grad and p.grad is None, pname
        # B / up start at zero, but the first step's gradient reaches them
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in adapter_params(model, head_ids))
        # and a trained (non-zero) update changes the output: the identity above is not vacuous
        randomise(adapter_params(model, head_ids), seed=7, std=0.3)
        model.eval()
        assert not torch.allclose(model(input_ids=x).logits, reference, atol=1e-4)


class CausalLMCheck:
    """``causal_lm_adapter``: the method on LLaMA's modules (the 2-layer LLaMA)."""

    def causal_lm_adapter(self) -> Adapter:
        raise NotImplementedError

    def test_causal_lm_starts_unchanged_and_trains(self):
        x = two_layer_ids()
        reference = two_layer_llama()(input_ids=x).logits
        adapter = self.causal_lm_adapter()
        model, head_ids = adapt(adapter, two_layer_llama(), head=())
        assert torch.equal(model(input_ids=x).logits, reference), adapter.name
        randomise(adapter_params(model, head_ids), seed=7, std=0.3)
        assert not torch.allclose(model(input_ids=x).logits, reference, atol=1e-4), adapter.name


class HalfPrecisionCheck(MakesAdapter):
    def test_half_precision_base_gets_float32_adapter_tensors(self):
        """As peft does: adapter tensors of a bf16 (or quantised) base are float32 so small updates do not
        underflow; the output keeps the base's dtype and gradients reach the float32 tensors."""
        model, head_ids = adapt(self.make_adapter(), two_layer_bert().to(torch.bfloat16))
        ours = adapter_params(model, head_ids)
        assert ours and all(p.dtype == torch.float32 for p in ours)
        model.train()
        out = model(input_ids=two_layer_ids()).logits
        assert out.dtype == torch.bfloat16
        out.float().square().sum().backward()
        assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in ours)


# (model, targets, (d_in, d_out) of every target module) of the low-rank count tests
LOW_RANK_COUNT_CASES = [
    ("bert", ("query", "value"), [(HIDDEN, HIDDEN)] * 2 * TWO_LAYERS),
    ("bert", ("intermediate.dense",), [(HIDDEN, INTERMEDIATE)] * TWO_LAYERS),
    ("llama", ("q_proj", "v_proj"), [(HIDDEN, HIDDEN), (HIDDEN, 16)] * TWO_LAYERS),  # 2 kv heads of 8
    ("llama", ("down_proj",), [(48, HIDDEN)] * TWO_LAYERS),
]


class LowRankChecks(MakesAdapter):
    """For the plain-torch low-rank methods: ``count_adapter(targets)`` at the size whose count
    ``count_formula(shapes)`` gives, and the dense update against the forward pass."""

    def count_adapter(self, targets: tuple[str, ...]) -> Adapter:
        raise NotImplementedError

    def count_formula(self, shapes: list[tuple[int, int]]) -> int:
        raise NotImplementedError

    @pytest.mark.parametrize(("model", "targets", "shapes"), LOW_RANK_COUNT_CASES)
    def test_low_rank_counts(self, model, targets, shapes):
        if model == "bert":
            built, head_ids = adapt(self.count_adapter(targets), two_layer_bert(), HEAD)
        else:
            built, head_ids = adapt(self.count_adapter(targets), two_layer_llama(), ())
        assert adapter_count(built, head_ids) == self.count_formula(shapes)

    def test_merge_unmerge_and_delta_components_agree_with_the_forward_pass(self):
        x = two_layer_ids()
        adapter = self.make_adapter()
        model, head_ids = adapt(adapter, two_layer_bert())
        randomise(adapter_params(model, head_ids), seed=7, std=0.3)
        query = model.get_submodule("bert.encoder.layer.0.attention.self.query")
        original = query.base.weight.detach().clone()
        adapted_logits = model(input_ids=x).logits

        # the dense dW reproduces the wrapper's own (einsum / factored) computation
        h = torch.randn(5, HIDDEN, generator=torch.Generator().manual_seed(2))
        dw = {c.module: c for c in adapter.delta_components(model)}["bert.encoder.layer.0.attention.self.query"]
        assert dw.delta.shape == (HIDDEN, HIDDEN) and dw.layer == 0 and dw.kind == "query"
        torch.testing.assert_close(query(h), h @ (original + dw.delta).T + query.base.bias)
        assert len(adapter.delta_components(model)) == 2 * TWO_LAYERS

        adapter.merge(model)
        assert not torch.allclose(query.base.weight, original)
        torch.testing.assert_close(model(input_ids=x).logits, adapted_logits, atol=1e-5, rtol=1e-4)
        adapter.unmerge(model)
        torch.testing.assert_close(query.base.weight, original, atol=1e-6, rtol=0)
        torch.testing.assert_close(model(input_ids=x).logits, adapted_logits, atol=1e-5, rtol=1e-4)
