"""The low-rank methods against their papers' equations (issue 16), computed here from the raw factors
and never through the code's own helpers (``delta``, ``components``, ``delta_weight``, ``scaling``).

Every case runs at alpha != r (so a scaling that is reversed, dropped or forced to 1 shows), on the
non-square modules of a tiny BERT (``intermediate.dense`` 32 -> 64, ``output.dense`` 64 -> 32 and the
square ``attention.output.dense``), in float64 with random non-zero factors, so the compared numbers
are of order 1 and the tolerances (1e-9) sit far below them.

Layouts: the papers write x·W (in x out); torch's weights are out x in. Each ``*_update`` below returns
the dense update in torch's layout, dW (out x in), so that y = x·(W0 + dW)ᵀ + b.
"""

from __future__ import annotations

import math

import pytest
import torch

from harness.config import build
from harness.registry import ADAPTERS
from tests.adapter_testkit import HEAD, apply_adapter
from tests.tiny_models import tiny_bert, token_batch

ALPHA = 16.0
RANK = 8
TARGETS = "intermediate.dense,output.dense"
LAYERS = 4
TOL = 1e-9

# name -> options of the tiny case (alpha != rank everywhere)
CASES: dict[str, dict] = {
    "msplora": {"rank": RANK, "alpha": ALPHA, "targets": TARGETS, "groups": 3},
    "sera": {"rank": RANK, "alpha": ALPHA, "targets": TARGETS},
    "sera-split2": {"rank": RANK, "alpha": ALPHA, "targets": TARGETS, "split": 2},
    "lora2": {"rank": RANK, "alpha": ALPHA, "targets": TARGETS, "k": 4, "prune": False},
    "melora": {"rank": RANK, "alpha": ALPHA, "targets": TARGETS, "split": 4},
    "moslora": {"rank": RANK, "alpha": ALPHA, "targets": TARGETS},
    "dylora": {"rank": RANK, "alpha": ALPHA, "targets": TARGETS},
}


def adapter_name(case: str) -> str:
    return case.split("-")[0]


def make(case: str, **extra):
    name = adapter_name(case)
    cls = ADAPTERS.get(name)
    return cls(build(cls.config_cls, {**CASES[case], **extra}, name))


def adapted(case: str, seed: int = 0, **extra):
    """(adapter, float64 tiny BERT in eval mode with the adapter applied, {module name: wrapper})."""
    adapter = make(case, **extra)
    model = tiny_bert(layers=LAYERS, seed=seed).double()
    model, sites, _ = apply_adapter(adapter, model)
    wrappers = {s.name: model.get_submodule(s.name) for s in sites}
    return adapter, model, wrappers


def randomise_factors(model: torch.nn.Module, seed: int = 5, std: float = 0.5) -> None:
    """Every adapter tensor random and non-zero (shared ones once), of order 1."""
    g = torch.Generator().manual_seed(seed)
    seen: set[int] = set()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.requires_grad and not name.startswith(HEAD) and id(p) not in seen:
                seen.add(id(p))
                p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * std + 0.1)


# ---- the papers' formulas, from the raw factors ---------------------------------------------------------


def msplora_update(w, layer: int, num_layers: int) -> torch.Tensor:
    """MSPLoRA: dW = Σ_level (alpha / r_level)·B_level·A_level, ranks r, r/2, r/4."""
    ranks = {"global": RANK, "mid": RANK // 2, "layer": RANK // 4}
    total = torch.zeros(w.out_features, w.in_features, dtype=torch.float64)
    for level, r in ranks.items():
        pair = w.levels[level]
        assert tuple(pair.A.shape) == (r, w.in_features) and tuple(pair.B.shape) == (w.out_features, r)
        total = total + (ALPHA / r) * (pair.B @ pair.A)
    return total


def block_diagonal(blocks: torch.Tensor) -> torch.Tensor:
    """Dense block-diagonal matrix from (n, rows, cols) blocks, by slicing (not torch.block_diag)."""
    n, rows, cols = blocks.shape
    out = torch.zeros(n * rows, n * cols, dtype=blocks.dtype)
    for i in range(n):
        out[i * rows:(i + 1) * rows, i * cols:(i + 1) * cols] = blocks[i]
    return out


def sera_update(w, split: int) -> torch.Tensor:
    """SeRA: ΔW = (alpha / r)·A·C·B (x·W layout) with A, B block diagonal over ``split`` segments."""
    assert tuple(w.A.shape) == (split, w.in_features // split, RANK // split)
    assert tuple(w.C.shape) == (RANK, RANK)
    assert tuple(w.B.shape) == (split, RANK // split, w.out_features // split)
    a = block_diagonal(w.A.detach())  # d_in x r
    b = block_diagonal(w.B.detach())  # r x d_out
    return ((ALPHA / RANK) * a @ w.C.detach() @ b).T


def lora2_update(w) -> torch.Tensor:
    """LoRA²: ΔW = (alpha / r)·P·Λ·Q, P = u·v, Q = U·V (x·W layout)."""
    p = w.u @ w.v  # d_in x r
    q = w.U @ w.V  # r x d_out
    return ((ALPHA / RANK) * p @ torch.diag(w.lam) @ q).T


def melora_update(w, split: int) -> torch.Tensor:
    """MELoRA: block i of dW (output slice i x input slice i) = (alpha / r)·B_i·A_i, rank r/split."""
    out = torch.zeros(w.out_features, w.in_features, dtype=torch.float64)
    do, di = w.out_features // split, w.in_features // split
    for i in range(split):
        a, b = w.lora_A[i], w.lora_B[i]
        assert tuple(a.shape) == (RANK // split, di) and tuple(b.shape) == (do, RANK // split)
        out[i * do:(i + 1) * do, i * di:(i + 1) * di] = (ALPHA / RANK) * (b @ a)
    return out


def moslora_update(w) -> torch.Tensor:
    """MoSLoRA: dW = (alpha / r)·B·M·A with a trainable r x r mixer M."""
    return (ALPHA / RANK) * (w.lora_B @ w.lora_mixer @ w.lora_A)


def dylora_update(w, b: int) -> torch.Tensor:
    """DyLoRA at rank b: dW = (alpha / b)·B[:, :b]·A[:b]."""
    return (ALPHA / b) * (w.lora_B[:, :b] @ w.lora_A[:b])


def formula_update(case: str, name: str, w, dylora_rank: int = RANK) -> torch.Tensor:
    method = adapter_name(case)
    if method == "msplora":
        return msplora_update(w, w.site.layer, w.site.num_layers)
    if method == "sera":
        return sera_update(w, CASES[case].get("split", RANK))
    if method == "lora2":
        return lora2_update(w)
    if method == "melora":
        return melora_update(w, CASES[case]["split"])
    if method == "moslora":
        return moslora_update(w)
    return dylora_update(w, dylora_rank)


def base_out(w, x: torch.Tensor) -> torch.Tensor:
    return x @ w.base.weight.T + w.base.bias


def inputs(w, seed: int = 7) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(3, 5, w.in_features, generator=g, dtype=torch.float64)


# ---- forward ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", list(CASES))
def test_forward_equals_the_papers_formula(case):
    _, model, wrappers = adapted(case)
    randomise_factors(model)
    shapes = set()
    for name, w in wrappers.items():
        x = inputs(w)
        delta = formula_update(case, name, w)
        assert delta.abs().max() > 0.1  # the comparison below means something
        expected = base_out(w, x) + x @ delta.T
        got = w(x)
        assert torch.allclose(got, expected, atol=TOL, rtol=0), f"{case} {name}"
        shapes.add((w.in_features, w.out_features))
    assert {(32, 64), (64, 32)} <= shapes  # non-square modules both ways


def test_dylora_forward_uses_the_sampled_rank_in_training_and_full_rank_in_eval():
    _, model, wrappers = adapted("dylora")
    randomise_factors(model)
    for name, w in wrappers.items():
        x = inputs(w)
        w.train_rank = 3
        w.train()
        assert torch.allclose(w(x), base_out(w, x) + x @ dylora_update(w, 3).T, atol=TOL, rtol=0), name
        w.eval()
        assert torch.allclose(w(x), base_out(w, x) + x @ dylora_update(w, RANK).T, atol=TOL, rtol=0), name


def test_msplora_levels_are_shared_as_the_paper_says():
    """global: one pair per module type for all layers; mid: one per depth group floor(l·G/N);
    layer: one per layer. Checked on the tensors' identity."""
    _, _, wrappers = adapted("msplora")
    by_type: dict[str, list] = {}
    for name, w in wrappers.items():
        by_type.setdefault(name.split(f".{w.site.layer}.", 1)[1], []).append(w)
    assert set(by_type) == {"intermediate.dense", "output.dense", "attention.output.dense"}
    for kind, ws in by_type.items():
        assert len(ws) == LAYERS
        assert len({id(w.levels["global"].A) for w in ws}) == 1, kind
        assert len({id(w.levels["layer"].A) for w in ws}) == LAYERS, kind
        groups = [w.site.layer * 3 // LAYERS for w in ws]
        for w1 in ws:
            for w2 in ws:
                same = groups[ws.index(w1)] == groups[ws.index(w2)]
                assert (w1.levels["mid"].A is w2.levels["mid"].A) == same, kind
    # different types never share
    globals_ = {id(ws[0].levels["global"].A) for ws in by_type.values()}
    assert len(globals_) == 3


# ---- merge, unmerge, dense update ----------------------------------------------------------------------


@pytest.mark.parametrize("case", list(CASES))
def test_merge_unmerge_and_the_dense_update_of_the_analyses(case):
    adapter, model, wrappers = adapted(case)
    randomise_factors(model)
    ids = token_batch()
    w0 = {name: w.base.weight.detach().clone() for name, w in wrappers.items()}
    with torch.no_grad():
        unmerged = model(input_ids=ids).logits
        components = adapter.delta_components(model)
        adapter.merge(model)
        merged_weights = {name: w.base.weight.detach().clone() for name, w in wrappers.items()}
        merged = model(input_ids=ids).logits
        adapter.unmerge(model)
        after = model(input_ids=ids).logits
    assert torch.allclose(merged, unmerged, atol=1e-8, rtol=0)
    assert torch.allclose(after, unmerged, atol=1e-8, rtol=0)
    dense: dict[str, torch.Tensor] = {}
    for c in components:
        dense[c.module] = dense.get(c.module, 0) + c.delta.double()
    assert set(dense) == set(wrappers)
    for name, w in wrappers.items():
        delta = formula_update(case, name, w)
        assert delta.abs().max() > 0.1
        assert torch.allclose(merged_weights[name] - w0[name], delta, atol=TOL, rtol=0), f"{case} {name} merge"
        # components are float32 (the analyses' precision): compare relative to the update's size
        assert torch.allclose(dense[name], delta, atol=1e-5 * float(delta.detach().abs().max()), rtol=0), f"{case} {name}"
        assert torch.allclose(w.base.weight, w0[name], atol=1e-12, rtol=0), f"{case} {name} unmerge"


# ---- initialisation and one optimizer step ---------------------------------------------------------------


def assert_uniform(t: torch.Tensor, bound: float, what: str) -> None:
    """Kaiming-uniform with a=sqrt(5) is U(-1/sqrt(fan_in), 1/sqrt(fan_in)): inside the bound, filling it,
    with the uniform's standard deviation bound/sqrt(3)."""
    t = t.detach().flatten()
    assert t.numel() >= 32, what
    assert float(t.abs().max()) <= bound * (1 + 1e-12), f"{what}: outside U(-{bound:.4g}, {bound:.4g})"
    assert float(t.abs().max()) > 0.7 * bound, f"{what}: does not fill U(-{bound:.4g}, {bound:.4g})"
    std = float(t.std())
    assert 0.75 * bound / math.sqrt(3) < std < 1.25 * bound / math.sqrt(3), f"{what}: std {std:.4g}"


def assert_normal(t: torch.Tensor, std: float, what: str) -> None:
    t = t.detach().flatten()
    assert t.numel() >= 32, what
    got = float(t.std())
    assert 0.75 * std < got < 1.25 * std, f"{what}: std {got:.4g}, expected {std}"
    assert abs(float(t.mean())) < 4 * std / math.sqrt(t.numel()) + 1e-12, f"{what}: mean {float(t.mean()):.4g}"


def assert_zero(t: torch.Tensor, what: str) -> None:
    assert torch.count_nonzero(t.detach()) == 0, f"{what} must start at zero"


def test_msplora_init_kaiming_a_zero_b_every_level():
    _, _, wrappers = adapted("msplora")
    for name, w in wrappers.items():
        for level, pair in w.levels.items():
            assert_uniform(pair.A, 1 / math.sqrt(w.in_features), f"{name} {level} A")
            assert_zero(pair.B, f"{name} {level} B")


@pytest.mark.parametrize("case", ["sera", "sera-split2"])
def test_sera_init(case):
    split = CASES[case].get("split", RANK)
    _, _, wrappers = adapted(case)
    for name, w in wrappers.items():
        assert_uniform(w.A, 1 / math.sqrt(w.in_features // split), f"{name} A")
        assert_uniform(w.C, 1 / math.sqrt(RANK), f"{name} C")
        assert_zero(w.B, f"{name} B")


def test_lora2_init_gaussian_factors_zero_lambda():
    _, _, wrappers = adapted("lora2")
    for name, w in wrappers.items():
        for factor in ("u", "v", "U", "V"):
            assert_normal(getattr(w, factor), 0.02, f"{name} {factor}")
        assert_zero(w.lam, f"{name} lam")


def test_melora_moslora_dylora_init():
    for case in ("melora", "moslora", "dylora"):
        _, _, wrappers = adapted(case)
        for name, w in wrappers.items():
            fan = w.in_features // (CASES[case]["split"] if case == "melora" else 1)
            assert_uniform(w.lora_A, 1 / math.sqrt(fan), f"{case} {name} A")
            assert_zero(w.lora_B, f"{case} {name} B")
            if case == "moslora":
                assert_uniform(w.lora_mixer, 1 / math.sqrt(RANK), f"{name} mixer")


@pytest.mark.parametrize("case", list(CASES))
def test_starts_as_the_pretrained_model_and_one_optimizer_step_moves_it(case):
    """Zero where the paper says zero keeps the start exact; random where it says random lets the first
    step move the output (a second zero factor would freeze training: every gradient would be zero)."""
    torch.manual_seed(0)
    ids = token_batch()
    reference = tiny_bert(layers=LAYERS, seed=0).double()
    with torch.no_grad():
        start = reference(input_ids=ids).logits
    adapter, model, _ = adapted(case)
    model.train()
    params = [p for n, p in model.named_parameters() if p.requires_grad and not n.startswith(HEAD)]
    with torch.no_grad():
        assert torch.equal(model(input_ids=ids).logits, start)
    # Adam's first step moves every parameter with a non-zero gradient by ~lr whatever the gradient's size
    # (LoRA²'s std-0.02 factors give tiny gradients); a zero gradient moves nothing.
    opt = torch.optim.Adam(params, lr=1e-2)
    adapter.on_step_begin(model, 0)
    model(input_ids=ids).logits.pow(2).sum().backward()
    opt.step()
    with torch.no_grad():
        moved = model(input_ids=ids).logits
    change = float((moved - start).abs().max())
    assert change > 1e6 * torch.finfo(torch.float64).eps * float(start.abs().max()), f"{case}: {change:.3g}"


# ---- dropout ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", list(CASES))
def test_dropout_is_live_in_train_mode_on_the_adapter_input_only_and_off_in_eval(case):
    _, model, wrappers = adapted(case, dropout=0.5)
    randomise_factors(model)
    for name, w in wrappers.items():
        x = inputs(w)
        w.eval()
        expected = base_out(w, x) + x @ formula_update(case, name, w).T
        assert torch.allclose(w(x), expected, atol=TOL, rtol=0), f"{case} {name}: dropout in eval mode"
        w.train()
        seen: list[torch.Tensor] = []
        hook = w.dropout.register_forward_hook(lambda _m, _i, out, seen=seen: seen.append(out.detach()))
        first, second = w(x), w(x)
        hook.remove()
        assert not torch.allclose(first, second, atol=1e-3, rtol=0), f"{case} {name}: no dropout in train mode"
        # one mask per call, on the adapter's input; the frozen path sees x itself
        assert len(seen) == 2
        h = seen[0]
        zeros = float((h == 0).double().mean())
        assert 0.3 < zeros < 0.7, f"{case} {name}: dropped share {zeros:.2f} for p = 0.5"
        rank = RANK if adapter_name(case) != "dylora" else w.train_rank
        delta = formula_update(case, name, w, dylora_rank=rank)
        assert torch.allclose(first, base_out(w, x) + h @ delta.T, atol=TOL, rtol=0), f"{case} {name}"


def test_msplora_levels_share_one_dropout_mask():
    """Documented choice (adapters/msplora.py): the three levels see the same dropped input, since they
    run as one concatenated LoRA; each level's own mask would not reproduce ``Σ_level dW_level·h``."""
    _, model, wrappers = adapted("msplora", dropout=0.5)
    randomise_factors(model)
    w = next(iter(wrappers.values()))
    w.train()
    x = inputs(w)
    seen: list[torch.Tensor] = []
    hook = w.dropout.register_forward_hook(lambda _m, _i, out: seen.append(out.detach()))
    y = w(x)
    hook.remove()
    assert len(seen) == 1
    ranks = {"global": RANK, "mid": RANK // 2, "layer": RANK // 4}
    per_level = sum(seen[0] @ ((ALPHA / ranks[lv]) * (p.B @ p.A)).T for lv, p in w.levels.items())
    assert torch.allclose(y, base_out(w, x) + per_level, atol=TOL, rtol=0)
