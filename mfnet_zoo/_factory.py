"""create_model: the one entry users type (as timm.create_model)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._registry import list_pretrained_tags, model_entrypoint, split_model_name_tag

if TYPE_CHECKING:  # the models sit above the factory; annotations only
    from .models.segmentation import SegmentationModel

__all__ = ["create_model"]


def create_model(
    model_name: str,
    pretrained: bool = False,
    num_classes: int = 21,
    encoder: str | None = None,
    encoder_weights: bool | str | None = None,
    output_stride: int = 16,
    in_chans: int = 3,
    pretrained_cfg_overlay: dict[str, Any] | None = None,
    **kwargs: Any,
) -> SegmentationModel:
    """Create a registered model by name, e.g. ``create_model("mfnet_r50", num_classes=5)``.

    Args:
        model_name: a name from :func:`list_models`, optionally with a pretrained tag (``name.tag``).
        pretrained: True loads the tag's (or the default tag's) weights; also ``"hf-hub:org/repo"``
            or a local directory / ``.safetensors`` file (safetensors only).
        num_classes: classifier outputs (21 = PASCAL VOC; 1 = binary).
        encoder: timm encoder for the generic families (``mfnet``, ``deeplabv3plus``, ``emanet``).
        encoder_weights: timm ImageNet weights for the encoder: True (timm's default) or a tag.
        output_stride: 8, 16 or 32, the stride of the deepest encoder features.
        in_chans: input channels.
        pretrained_cfg_overlay: fields replacing the tag's config, e.g. ``dict(file="w.safetensors")``
            to load a local file offline.
        **kwargs: block options of the family (``rank``, ``mode``, ``multi_grid``, ...); ``strict=True``
            makes a class-count mismatch with the weights an error.
    """
    if not isinstance(model_name, str):
        raise TypeError(f"model_name must be a str, got {type(model_name).__name__}")
    name, tag = split_model_name_tag(model_name)
    entrypoint = model_entrypoint(name)
    if tag and tag not in list_pretrained_tags(name):
        raise ValueError(f"unknown pretrained tag {tag!r} for {name!r}; available: {list_pretrained_tags(name)}")
    if encoder is not None:
        kwargs["encoder"] = encoder
    if pretrained_cfg_overlay is not None:
        kwargs["pretrained_cfg_overlay"] = pretrained_cfg_overlay
    return entrypoint(pretrained=pretrained, num_classes=num_classes, encoder_weights=encoder_weights,
                      output_stride=output_stride, in_chans=in_chans, pretrained_tag=tag, **kwargs)
