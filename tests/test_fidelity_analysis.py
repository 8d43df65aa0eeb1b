"""The SVD analyses against hand-worked matrices (issue 16): M_eff-k (MSPLoRA eq. 8), the inter-layer KL
of normalised spectra (MSPLoRA eq. 9-10, per tower in a dual encoder) and SeRA's subspace similarity φ
(eq. 4). Every expected value below is worked out by hand in the comments."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from harness.adapter import DeltaComponent
from harness.config import build
from harness.pipeline.analysis import analyze_components, subspace_similarity
from harness.pipeline.attach import attach
from harness.registry import ADAPTERS


def rotation(n: int, seed: int) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))
    return q


def with_spectrum(values: list[float], out: int = 5, inp: int = 7, seed: int = 0) -> torch.Tensor:
    """A random out x in matrix with exactly these singular values (rotated, not diagonal)."""
    s = torch.zeros(out, inp, dtype=torch.float64)
    for i, v in enumerate(values):
        s[i, i] = v
    return (rotation(out, seed) @ s @ rotation(inp, seed + 1).T).float()


def component(delta, layer=0, module=None, kind="query", part="lora") -> DeltaComponent:
    name = module or f"enc.layer.{layer}.{kind}"
    return DeltaComponent(module=name, kind=kind, layer=layer, component=part, delta=delta)


def test_m_eff_on_a_hand_worked_spectrum():
    # σ = 4, 3, 2, 1 (sum 10): M_eff-1 = 0.4, M_eff-2 = 0.7, M_eff-4 = M_eff-8 = 1
    result = analyze_components([component(with_spectrum([4, 3, 2, 1]))])
    (entry,) = result["components"]
    assert entry["shape"] == [5, 7]
    assert entry["numerical_rank"] == 4
    for k, want in {"1": 0.4, "2": 0.7, "4": 1.0, "8": 1.0}.items():
        assert entry["m_eff"][k] == pytest.approx(want, abs=1e-5), k
    assert result["m_eff_mean"]["lora"]["1"] == pytest.approx(0.4, abs=1e-5)


def test_module_total_is_the_sum_of_the_levels():
    # levels σ = (3) on direction 1 and (1) on direction 2 of the same rotation: total σ = (3, 1), M_eff-1 = 0.75
    q_out, q_in = rotation(5, 0).float(), rotation(7, 1).float()
    a = 3 * torch.outer(q_out[:, 0], q_in[:, 0])
    b = 1 * torch.outer(q_out[:, 1], q_in[:, 1])
    parts = [component(a, part="global"), component(b, part="layer")]
    described = {d["component"]: d for d in analyze_components(parts)["components"]}
    assert described["total"]["m_eff"]["1"] == pytest.approx(0.75, abs=1e-5)
    assert described["global"]["m_eff"]["1"] == pytest.approx(1.0, abs=1e-5)


def test_inter_layer_kl_on_hand_worked_spectra():
    # layer 0: σ = (3, 1) -> p0 = (0.75, 0.25); layer 1: σ = (1, 1) -> p1 = (0.5, 0.5)
    # KL(p0 || p1) = 0.75 ln 1.5 + 0.25 ln 0.5 = 0.130812; KL(p1 || p0) = 0.5 ln(2/3) + 0.5 ln 2 = 0.143841
    kl01 = 0.75 * math.log(1.5) + 0.25 * math.log(0.5)
    kl10 = 0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25)
    assert abs(kl01 - kl10) > 0.01  # asymmetric: the direction of the divergence shows
    comps = [component(with_spectrum([3, 1], seed=0), layer=0), component(with_spectrum([1, 1], seed=4), layer=1)]
    kl = analyze_components(comps)["inter_layer_kl"]
    assert set(kl) == {"query lora"}
    entry = kl["query lora"]
    assert entry["layers"] == [0, 1] and entry["spectrum_length"] == 2
    matrix = entry["matrix"]
    assert matrix[0][0] == pytest.approx(0, abs=1e-9) and matrix[1][1] == pytest.approx(0, abs=1e-9)
    assert matrix[0][1] == pytest.approx(kl01, rel=1e-4)
    assert matrix[1][0] == pytest.approx(kl10, rel=1e-4)


def test_subspace_similarity_on_hand_worked_directions():
    # torch layout out x in; the input-space directions (the papers' U of an in x out ΔW) are the right
    # singular vectors. ΔW1: input directions e1 (σ 3), e2 (σ 1); ΔW2: e2 (σ 2), (e1 + e3)/√2 (σ 1).
    # overlaps <u1_a, u2_b>²: (e1, e2) = 0, (e1, (e1+e3)/√2) = 1/2, (e2, e2) = 1, (e2, ·) = 0
    # φ(1,1) = 0; φ(1,2) = (0 + 1/2)/1 = 0.5; φ(2,1) = (0 + 1)/1 = 1; φ(2,2) = (0 + 1/2 + 1 + 0)/2 = 0.75
    e_in = torch.eye(6, dtype=torch.float64)
    e_out = torch.eye(4, dtype=torch.float64)
    d1 = 3 * torch.outer(e_out[0], e_in[0]) + 1 * torch.outer(e_out[1], e_in[1])
    d2 = 2 * torch.outer(e_out[0], e_in[1]) + 1 * torch.outer(e_out[1], (e_in[0] + e_in[2]) / math.sqrt(2))
    phi = subspace_similarity(d1, d2, max_rank=2)
    assert phi[0][0] == pytest.approx(0.0, abs=1e-9)
    assert phi[0][1] == pytest.approx(0.5, abs=1e-9)
    assert phi[1][0] == pytest.approx(1.0, abs=1e-9)
    assert phi[1][1] == pytest.approx(0.75, abs=1e-9)
    # the output space: both updates use e1, e2 of the output in the same order -> φ(1,1) = 1
    assert subspace_similarity(d1, d2, max_rank=2, space="output")[0][0] == pytest.approx(1.0, abs=1e-9)


# ---- a dual encoder: the towers are kept apart ---------------------------------------------------------


class _Attn(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.q = nn.Linear(width, width)
        self.v = nn.Linear(width, width)


class _Block(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.attn = _Attn(width)


class _Transformer(nn.Module):
    def __init__(self, width: int, layers: int):
        super().__init__()
        self.resblocks = nn.ModuleList([_Block(width) for _ in range(layers)])


class _Visual(nn.Module):
    def __init__(self, width: int, layers: int):
        super().__init__()
        self.transformer = _Transformer(width, layers)


class TinyDualEncoder(nn.Module):
    """open_clip's naming (suites/_shared/vision.py after the q/k/v surgery): the image tower's blocks are
    ``visual.transformer.resblocks``, the text tower's ``transformer.resblocks``; same types, same layer
    indices in both towers."""

    def __init__(self, layers: int = 2):
        super().__init__()
        self.visual = _Visual(16, layers)
        self.transformer = _Transformer(24, layers)


def test_inter_layer_kl_keeps_the_towers_of_a_dual_encoder_apart():
    torch.manual_seed(0)
    model = TinyDualEncoder(layers=2)
    cls = ADAPTERS.get("moslora")
    adapter = cls(build(cls.config_cls, {"rank": 4, "alpha": 8, "targets": "q,v"}, "moslora"))
    sites = adapter.sites(model, ())
    assert {s.stack for s in sites} == {"visual.transformer.resblocks", "transformer.resblocks"}
    assert len(sites) == 8  # 2 towers x 2 layers x (q, v)
    attach(adapter, model, family="dual_encoder", head_modules=(), total_steps=1)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.copy_(torch.randn(p.shape, generator=g))
    components = adapter.delta_components(model)
    assert len(components) == 8
    kl = analyze_components(components)["inter_layer_kl"]
    assert set(kl) == {f"{tower} {kind} lora" for tower in ("visual.transformer.resblocks", "transformer.resblocks")
                       for kind in ("q", "v")}
    # each tower's matrix is that tower's own layers: recompute it from that tower's components alone
    for tower in ("visual.transformer.resblocks", "transformer.resblocks"):
        own = [c for c in components if c.module.startswith(tower + ".") and c.kind == "q"]
        assert len(own) == 2
        alone = analyze_components(own)["inter_layer_kl"]["q lora"]
        assert kl[f"{tower} q lora"]["layers"] == [0, 1]
        torch.testing.assert_close(torch.tensor(kl[f"{tower} q lora"]["matrix"]), torch.tensor(alone["matrix"]))
        assert max(max(row) for row in alone["matrix"]) > 1e-3  # the layers' spectra do differ
