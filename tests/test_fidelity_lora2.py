"""LoRA²'s importance score, pruning and regulariser against the paper's equations (issue 16), on values
of order 1 so each comparison means something, with each term of the score shown to matter.

Importance (AdaLoRA's eq. 8-10, LoRA²'s simplified eq. 9): I = |θ·∇θ|; Ī_t = β1·Ī_{t-1} + (1-β1)·I_t;
Ū_t = β2·Ū_{t-1} + (1-β2)·|I_t - Ī_t|; s = Ī·Ū; the score of singular value i is
s(λ_i) + mean_j s(v[j, i]) + mean_j s(U[i, j]).
"""

from __future__ import annotations

import torch

from adapters.lora2 import LoRA2, Lora2Options
from harness.config import build
from tests.adapter_testkit import apply_adapter
from tests.tiny_models import tiny_bert

BETA1, BETA2 = 0.7, 0.6  # distinct, so swapping them shows
RANK, K = 8, 4


def lora2(**options) -> LoRA2:
    return LoRA2(build(Lora2Options, options, "adapter 'lora2'"))


def adapted(**options):
    adapter = lora2(rank=RANK, k=K, alpha=16, beta1=BETA1, beta2=BETA2,
                    targets="intermediate.dense,output.dense", **options)
    model, _, _ = apply_adapter(adapter, tiny_bert(layers=1).double(), total_steps=100)
    return adapter, model, [m for _, m in adapter.wrappers(model)]


def fill(tensors, seed: int, offset: float = 0.0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(t.shape, generator=g, dtype=torch.float64) + offset for t in tensors]


def set_params_and_grads(modules, seed: int) -> None:
    with torch.no_grad():
        for i, m in enumerate(modules):
            for p, value in zip((m.lam, m.v, m.U), fill((m.lam, m.v, m.U), 100 + i)):
                p.copy_(value)
            for p, grad in zip((m.lam, m.v, m.U), fill((m.lam, m.v, m.U), seed + i)):
                p.grad = grad


def hand_scores(modules, steps: list[int]) -> tuple[list[torch.Tensor], dict[str, list[torch.Tensor]]]:
    """The score by the equations above, after one importance update per seed in ``steps``, and the
    variants with one term changed (to show that each one matters)."""
    parts: dict[str, list[torch.Tensor]] = {"full": [], "sensitivity only": [], "no uncertainty smoothing": [],
                                            "lambda only": [], "no v term": [], "no U term": [],
                                            "column means": []}
    for i, m in enumerate(modules):
        per: dict[str, dict[str, torch.Tensor]] = {}
        values = fill((m.lam, m.v, m.U), 100 + i)  # what set_params_and_grads wrote
        for index, name in enumerate(("lam", "v", "U")):
            value = values[index]
            sens = torch.zeros_like(value)
            unc = torch.zeros_like(value)
            raw_last = torch.zeros_like(value)
            for seed in steps:
                grad = fill((m.lam, m.v, m.U), seed + i)[index]
                current = (value * grad).abs()
                sens = BETA1 * sens + (1 - BETA1) * current
                unc = BETA2 * unc + (1 - BETA2) * (current - sens).abs()
                raw_last = (current - sens).abs()
            per[name] = {"score": sens * unc, "sens": sens, "unc_raw": sens * raw_last}
        s = {n: per[n]["score"] for n in per}
        parts["full"].append(s["lam"] + s["v"].mean(dim=0) + s["U"].mean(dim=1))
        sens = {n: per[n]["sens"] for n in per}
        parts["sensitivity only"].append(sens["lam"] + sens["v"].mean(dim=0) + sens["U"].mean(dim=1))
        raw = {n: per[n]["unc_raw"] for n in per}
        parts["no uncertainty smoothing"].append(raw["lam"] + raw["v"].mean(dim=0) + raw["U"].mean(dim=1))
        parts["lambda only"].append(s["lam"])
        parts["no v term"].append(s["lam"] + s["U"].mean(dim=1))
        parts["no U term"].append(s["lam"] + s["v"].mean(dim=0))
        parts["column means"].append(s["lam"] + s["v"].mean(dim=1).mean() + s["U"].mean(dim=0).mean())
    return parts["full"], parts


def test_importance_score_follows_eq9_and_every_term_matters():
    adapter, _, modules = adapted()
    allocator = adapter._allocator
    steps = [1, 2, 3]
    for seed in steps:
        set_params_and_grads(modules, seed)
        allocator.update_importance()
    expected, variants = hand_scores(modules, steps)
    for m, want in zip(modules, expected):
        got = allocator.scores(m)
        assert float(want.min()) > 0.01  # order-1 inputs give scores far above the tolerance
        torch.testing.assert_close(got.double(), want, rtol=1e-9, atol=0)
    # each variant is far from the full score: a test against it can tell the terms apart
    full = torch.cat(expected)
    for name, values in variants.items():
        if name == "full":
            continue
        gap = float(((torch.cat(values) - full).abs() / full.abs()).max())
        assert gap > 0.1, f"the variant '{name}' is within {gap:.3f} of the full score: this test would miss it"
    # only λ, v and U carry importance (the paper's saving): u and V have none
    assert all(id(m.u) not in allocator.importance and id(m.V) not in allocator.importance for m in modules)


def test_pruning_keeps_exactly_the_top_scored_singular_values():
    adapter, _, modules = adapted()
    allocator = adapter._allocator
    for seed in (1, 2):
        set_params_and_grads(modules, seed)
        allocator.update_importance()
    expected, _ = hand_scores(modules, [1, 2])
    flat = torch.cat(expected)
    budget = 5
    order = torch.argsort(flat, descending=True)
    survivors = set(order[:budget].tolist())
    assert float(flat[order[budget - 1]] - flat[order[budget]]) > 1e-6  # no tie at the cut
    lam_before = torch.cat([m.lam.detach().clone() for m in modules])
    allocator.mask_to_budget(budget)
    mask = torch.cat([m.rank_mask for m in modules])
    assert set(torch.nonzero(mask).flatten().tolist()) == survivors
    lam_after = torch.cat([m.lam.detach() for m in modules])
    kept = torch.tensor(sorted(survivors))
    assert torch.equal(lam_after[kept], lam_before[kept])  # survivors untouched
    pruned = torch.tensor(sorted(set(range(flat.numel())) - survivors))
    assert torch.count_nonzero(lam_after[pruned]) == 0 and torch.count_nonzero(lam_before[pruned]) == len(pruned)
    assert sum(m.final_rank() for m in modules) == budget


def test_orthogonality_regulariser_equals_the_hand_computed_value():
    coefficient = 0.3
    adapter, model, modules = adapted(orth_reg=coefficient)
    with torch.no_grad():
        for i, m in enumerate(modules):
            for p, value in zip((m.u, m.v, m.U, m.V), fill((m.u, m.v, m.U, m.V), 200 + i)):
                p.copy_(0.3 * value)
    terms = []
    for m in modules:
        p = m.u @ m.v  # P = u·v, d_in x r
        q = m.U @ m.V  # Q = U·V, r x d_out
        assert p.shape[0] != q.shape[1] or m.in_features == m.out_features
        eye_r, eye_k = torch.eye(RANK, dtype=torch.float64), torch.eye(K, dtype=torch.float64)
        for gram, eye in ((p.T @ p, eye_r), (q @ q.T, eye_r), (m.u.T @ m.u, eye_k), (m.v @ m.v.T, eye_k),
                          (m.U.T @ m.U, eye_k), (m.V @ m.V.T, eye_k)):
            terms.append(((gram - eye) ** 2).sum())
    expected = coefficient * sum(terms) / len(terms)
    assert float(expected.detach()) > 1.0
    got = adapter.extra_loss(model)
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=0)
    # each term is a sizeable share of the total: dropping one shows
    assert min(float(t.detach()) for t in terms) > 1e-3 * float(sum(terms).detach())
