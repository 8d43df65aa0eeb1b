"""Retrieval metrics and losses, pure functions of a similarity matrix: recall@K both ways, the triplet
(VSE++) and the contrastive (CLIP) losses."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


RECALL_KS = (1, 5, 10)

# ------------------------------------------------------------------------------------------------------
# metrics and losses (pure functions of similarity matrices)
# ------------------------------------------------------------------------------------------------------


def retrieval_recalls(sim: torch.Tensor, caption_image: list[int], ks: tuple[int, ...] = RECALL_KS) -> dict[str, float]:
    """``sim``: images x captions similarities; ``caption_image[c]``: the image of caption c.
    Returns i2t_r{K}, t2i_r{K} in percent and their sum ``rsum``."""
    import torch

    n_images, n_captions = sim.shape
    owner = torch.as_tensor(caption_image, dtype=torch.long, device=sim.device)
    if owner.numel() != n_captions:
        raise ValueError("caption_image needs one image index per caption")
    positive = sim[owner, torch.arange(n_captions, device=sim.device)]  # sim of each caption with its image
    # text -> image: how many images beat the caption's own image
    t2i_rank = (sim > positive.unsqueeze(0)).sum(0)
    # image -> text: the best-ranked own caption is the one with the highest similarity; count the captions
    # above it
    best_own = torch.full((n_images,), float("-inf"), dtype=sim.dtype, device=sim.device)
    best_own = best_own.scatter_reduce(0, owner, positive, reduce="amax")
    i2t_rank = (sim > best_own.unsqueeze(1)).sum(1)
    out: dict[str, float] = {}
    for k in ks:
        out[f"i2t_r{k}"] = 100.0 * float((i2t_rank < k).float().mean())
    for k in ks:
        out[f"t2i_r{k}"] = 100.0 * float((t2i_rank < k).float().mean())
    out["rsum"] = sum(out.values())
    return out


def triplet_loss(sim: torch.Tensor, margin: float, hardest: bool) -> torch.Tensor:
    """Hinge triplet ranking loss of a square batch (row i: image i, column i: its caption)."""
    import torch

    diag = sim.diagonal()
    eye = torch.eye(sim.shape[0], dtype=torch.bool, device=sim.device)
    cost_caption = (margin + sim - diag.unsqueeze(1)).clamp(min=0).masked_fill(eye, 0)  # wrong captions per image
    cost_image = (margin + sim - diag.unsqueeze(0)).clamp(min=0).masked_fill(eye, 0)  # wrong images per caption
    if hardest:
        return cost_caption.max(1).values.mean() + cost_image.max(0).values.mean()
    return (cost_caption.sum() + cost_image.sum()) / sim.shape[0]


def contrastive_loss(sim: torch.Tensor, scale: torch.Tensor | float) -> torch.Tensor:
    import torch
    import torch.nn.functional as F

    logits = sim * scale
    target = torch.arange(sim.shape[0], device=sim.device)
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
