"""SVD analyses of adapter weight updates, stored in every low-rank run's record.

``analyze_components`` (called by the runner after training) returns JSON-able data:

- ``components``: per module and component (LoRA's ``lora``, MSPLoRA's ``global``/``mid``/``layer`` and
  their per-module ``total``, SeRA's ``sera``, LoRA²'s ``lora2``): the top singular values of dW,
  the effective-rank shares M_eff-k = (sum of the top k singular values) / (sum of all) (MSPLoRA eq. 8),
  the numerical rank and, where the adapter prunes, the final rank;
- ``inter_layer_kl``: for each module type and component (per tower in a dual encoder, named
  "tower kind component"), the layer x layer matrix of KL divergences KL(p_i || p_j) between
  normalised singular spectra p_l = σ_l / Σσ_l (MSPLoRA eq. 9-10);
- ``m_eff_mean``: M_eff-k averaged over the modules, per component.

``subspace_similarity`` is SeRA's eq. 4 between two runs' updates of one module,
φ(ΔW1, ΔW2, i, j) = ||U1[:, :i]ᵀ U2[:, :j]||²_F / min(i, j), with U the left singular vectors of ΔW in
the papers' x·W layout (in x out), i.e. the input-space directions. The ``python -m harness analyze``
command (``harness.cli.analyze``) rebuilds two runs' updates from the adapter tensors saved with
``--save-adapters`` and prints the φ table.

Spectra: exact (``torch.linalg.svdvals``) when the smaller side of dW is at most ``EXACT_SVD_LIMIT``;
above it (7B-size layers) a randomised SVD of rank ``LOWRANK_Q`` (``torch.svd_lowrank``), which is exact
up to float error for updates of lower rank and is flagged ``approximate`` in the record. The SVDs run
on CUDA when it is available.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import TYPE_CHECKING, Any

from harness.adapter import DeltaComponent
from harness.errors import HarnessError

if TYPE_CHECKING:
    import torch

M_EFF_KS = (1, 2, 4, 8)
TOP_SINGULAR_VALUES = 32
EXACT_SVD_LIMIT = 1024
LOWRANK_Q = 192
KL_EPS = 1e-12


def effective_rank_share(singular_values: list[float], k: int) -> float:
    """M_eff-k = (sum of the top k singular values) / (sum of all) (MSPLoRA eq. 8)."""
    total = sum(singular_values)
    return float(sum(sorted(singular_values, reverse=True)[:k]) / total) if total > 0 else 0.0


def numerical_rank(singular_values: list[float], shape: tuple[int, int]) -> int:
    """Singular values above max(σ)·max(m, n)·eps(float32), the usual matrix-rank tolerance."""
    if not singular_values or singular_values[0] <= 0:
        return 0
    tol = singular_values[0] * max(shape) * 1.1920929e-07
    return sum(1 for s in singular_values if s > tol)


def _svd_device() -> torch.device:
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def spectrum(delta: torch.Tensor) -> tuple[list[float], bool]:
    """Singular values of dW, largest first, and whether they are approximate."""
    import torch

    matrix = delta.detach().to(_svd_device(), torch.float32)
    smaller = min(matrix.shape)
    if smaller <= EXACT_SVD_LIMIT:
        return torch.linalg.svdvals(matrix).cpu().tolist(), False
    _, s, _ = torch.svd_lowrank(matrix, q=min(smaller, LOWRANK_Q), niter=3)
    return sorted(s.cpu().tolist(), reverse=True), True


def kl_divergence(p: list[float], q: list[float]) -> float:
    return float(sum(a * math.log(a / b) for a, b in zip(p, q) if a > 0))


def normalised_spectrum(singular_values: list[float], length: int) -> list[float] | None:
    """The top ``length`` singular values as a distribution (zeros lifted to KL_EPS so KL is finite);
    None for a zero update."""
    head = [max(s, 0.0) for s in singular_values[:length]]
    head += [0.0] * (length - len(head))
    total = sum(head)
    if total <= 0:
        return None
    lifted = [max(s / total, KL_EPS) for s in head]
    norm = sum(lifted)
    return [v / norm for v in lifted]


def inter_layer_kl(entries: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Layer x layer KL(p_i || p_j) for one module type and component (MSPLoRA eq. 9-10).

    The spectra are compared over their top K values, K the largest numerical rank among the layers
    (capped at TOP_SINGULAR_VALUES): beyond it the values are float noise. Layers whose update is zero
    are left out; None when fewer than two layers remain.
    """
    by_layer: dict[int, dict[str, Any]] = {}
    for e in entries:
        if e["layer"] is not None:
            by_layer.setdefault(int(e["layer"]), e)
    length = min(TOP_SINGULAR_VALUES, max([e["numerical_rank"] for e in by_layer.values()] or [0]))
    if length < 1:
        return None
    spectra = {layer: normalised_spectrum(e["singular_values"], length) for layer, e in sorted(by_layer.items())}
    layers = [layer for layer, p in spectra.items() if p is not None]
    if len(layers) < 2:
        return None
    matrix = [[kl_divergence(spectra[i], spectra[j]) for j in layers] for i in layers]  # type: ignore[arg-type]
    return {"layers": layers, "matrix": matrix, "spectrum_length": length}


def _describe(c: DeltaComponent, values: list[float], approximate: bool, top: int) -> dict[str, Any]:
    shape = (int(c.delta.shape[0]), int(c.delta.shape[1]))
    out: dict[str, Any] = {
        "module": c.module,
        "kind": c.kind,
        "layer": c.layer,
        "component": c.component,
        "shape": list(shape),
        "singular_values": values[:top],
        "m_eff": {str(k): effective_rank_share(values, k) for k in M_EFF_KS},
        "numerical_rank": numerical_rank(values, shape),
        "approximate": approximate,
    }
    rank = getattr(c, "final_rank", None)
    if rank is not None:
        out["final_rank"] = int(rank)
    return out


def tower_of(c: DeltaComponent) -> str:
    """The block stack a component's module sits in (``vision_model.encoder.layers`` of
    ``vision_model.encoder.layers.3.self_attn.q_proj``): the module name before its layer index. ""
    for a component without a layer."""
    if c.layer is None:
        return ""
    parts = c.module.split(".")
    index = str(c.layer)
    for i, part in enumerate(parts):
        if part == index:
            return ".".join(parts[:i])
    return ""


def module_totals(components: list[DeltaComponent]) -> list[DeltaComponent]:
    """dW summed over the components of each module that has more than one (MSPLoRA's levels)."""
    by_module: dict[str, list[DeltaComponent]] = defaultdict(list)
    for c in components:
        by_module[c.module].append(c)
    totals = []
    for module, parts in by_module.items():
        if len(parts) < 2:
            continue
        delta = parts[0].delta
        for p in parts[1:]:
            delta = delta + p.delta
        totals.append(DeltaComponent(module=module, kind=parts[0].kind, layer=parts[0].layer, component="total", delta=delta))
    return totals


def analyze_components(components: list[DeltaComponent], top: int = TOP_SINGULAR_VALUES) -> dict[str, Any]:
    """Spectra, M_eff-k and inter-layer KL of an adapter's updates (JSON-able, stored in the record)."""
    everything = list(components) + module_totals(components)
    cache: dict[int, tuple[DeltaComponent, list[float], bool]] = {}  # a shared tensor's SVD once
    described = []
    for c in everything:
        key = id(c.delta)
        if key not in cache:
            values, approximate = spectrum(c.delta)
            cache[key] = (c, values, approximate)
        _, values, approximate = cache[key]
        described.append(_describe(c, values, approximate, top))

    full_spectra = {id(c): cache[id(c.delta)][1] for c in everything}
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for c, d in zip(everything, described):
        groups[(tower_of(c), c.kind, c.component)].append({**d, "singular_values": full_spectra[id(c)]})
    # A dual encoder's towers have the same module types and layer indices: each tower is its own
    # group, named by its stack; a single-stack model keeps the plain "kind component" names.
    several_towers = len({tower for tower, _, _ in groups}) > 1
    kl: dict[str, Any] = {}
    for (tower, kind, component), entries in groups.items():
        matrix = inter_layer_kl(entries)
        if matrix is not None:
            name = f"{kind} {component}"
            kl[f"{tower} {name}" if several_towers else name] = matrix

    m_eff_mean: dict[str, dict[str, float]] = {}
    by_component: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for d in described:
        by_component[d["component"]].append(d)
    for component, ds in by_component.items():
        m_eff_mean[component] = {str(k): sum(d["m_eff"][str(k)] for d in ds) / len(ds) for k in M_EFF_KS}
    return {"components": described, "inter_layer_kl": kl, "m_eff_mean": m_eff_mean}


# ---------------------------------------------------------------------------------------------------
# subspace similarity between two runs (SeRA eq. 4)
# ---------------------------------------------------------------------------------------------------


def singular_directions(delta: torch.Tensor, space: str = "input") -> torch.Tensor:
    """Orthonormal singular directions of dW as columns, largest singular value first. ``input``: the
    left singular vectors of the papers' ΔW (in x out), i.e. the right ones of torch's out x in."""
    import torch

    if space not in ("input", "output"):
        raise HarnessError(f"space must be 'input' or 'output', got {space!r}")
    matrix = delta.detach().to(_svd_device(), torch.float64)
    u, _, vh = torch.linalg.svd(matrix, full_matrices=False)
    return (vh.T if space == "input" else u).cpu()


def subspace_similarity(delta1: torch.Tensor, delta2: torch.Tensor, max_rank: int = 8, space: str = "input") -> list[list[float]]:
    """φ(i, j) = ||U1[:, :i]ᵀ U2[:, :j]||²_F / min(i, j) for i, j = 1..max_rank (SeRA eq. 4)."""
    if tuple(delta1.shape) != tuple(delta2.shape):
        raise HarnessError(f"cannot compare updates of shapes {tuple(delta1.shape)} and {tuple(delta2.shape)}")
    u1 = singular_directions(delta1, space)
    u2 = singular_directions(delta2, space)
    n = min(max_rank, u1.shape[1], u2.shape[1])
    overlap = (u1[:, :n].T @ u2[:, :n]).pow(2)  # overlap[a, b] = <u1_a, u2_b>²
    cumulative = overlap.cumsum(0).cumsum(1)  # cumulative[i-1, j-1] = ||U1[:, :i]ᵀ U2[:, :j]||²_F
    return [[float(cumulative[i, j]) / min(i + 1, j + 1) for j in range(n)] for i in range(n)]
