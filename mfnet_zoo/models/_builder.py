"""The one builder behind every registered model: encoder + a family's (context, decoder)."""
from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

from torch import nn

from .encoder import TimmEncoder
from .segmentation import SegmentationModel

__all__ = ["build_segmentation_model", "build_variant", "COMMON_ARGS"]

# a family's head function: (encoder, num_classes, **block options) -> (context, decoder)
HeadFn = Callable[..., tuple[nn.Module, nn.Module]]

COMMON_ARGS = ("num_classes", "encoder", "encoder_weights", "output_stride", "in_chans", "multi_grid",
               "encoder_kwargs")


def head_args(head_fn: HeadFn) -> list[str]:
    """The block options a family's head function takes (everything after encoder, num_classes)."""
    return [p.name for p in inspect.signature(head_fn).parameters.values()
            if p.kind is p.KEYWORD_ONLY]


def build_segmentation_model(
    head_fn: HeadFn,
    model_name: str,
    pretrained: bool = False,
    *,
    encoder: str,
    num_classes: int = 21,
    encoder_weights: bool | str | None = None,
    output_stride: int = 16,
    in_chans: int = 3,
    multi_grid: Sequence[int] | None = None,
    encoder_kwargs: dict[str, Any] | None = None,
    **kwargs: Any,
) -> SegmentationModel:
    """Build ``model_name`` from a timm encoder and the family's ``head_fn``.

    ``encoder_weights``: None/False (random), True (timm's default pretrained tag) or a timm
    tag such as ``"tv_in1k"``. Unknown keyword arguments raise TypeError naming the valid ones.
    """
    valid = head_args(head_fn)
    unknown = sorted(set(kwargs) - set(valid))
    if unknown:
        raise TypeError(f"{model_name}() got unexpected keyword argument(s) {unknown}; "
                        f"valid: {sorted(set(COMMON_ARGS) | set(valid))}")
    if pretrained:
        raise NotImplementedError(
            f"pretrained weights for {model_name!r} are not published yet; use encoder_weights=True "
            f"(ImageNet weights for the encoder, from timm) with pretrained=False")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes <= 0:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    if isinstance(encoder_weights, str):
        encoder, encoder_pretrained = f"{encoder.split('.')[0]}.{encoder_weights}", True
    else:
        encoder_pretrained = bool(encoder_weights)
    timm_encoder = TimmEncoder(encoder, pretrained=encoder_pretrained, output_stride=output_stride,
                               in_chans=in_chans, multi_grid=multi_grid, **(encoder_kwargs or {}))
    context, decoder = head_fn(timm_encoder, num_classes, **kwargs)
    model = SegmentationModel(timm_encoder, context, decoder)
    # enough to rebuild the architecture (checkpoints, configs); weights come separately
    model.model_name = model_name
    model.model_args = dict(num_classes=num_classes, encoder=encoder.split(".")[0], output_stride=output_stride,
                            in_chans=in_chans, multi_grid=None if multi_grid is None else tuple(multi_grid),
                            encoder_kwargs=dict(encoder_kwargs or {}), **kwargs)
    return model


def build_variant(head_fn: HeadFn, model_name: str, pretrained: bool, kwargs: dict[str, Any], *,
                  encoder: str, **defaults: Any) -> SegmentationModel:
    """A named variant: ``encoder`` is fixed, ``defaults`` (e.g. multi_grid) can be overridden."""
    if kwargs.get("encoder", encoder) != encoder:
        family = model_name.rsplit("_", 1)[0]
        raise TypeError(f"{model_name} fixes encoder={encoder!r}; for another encoder use "
                        f"create_model({family!r}, encoder={kwargs['encoder']!r})")
    kwargs.pop("encoder", None)
    return build_segmentation_model(head_fn, model_name, pretrained, encoder=encoder, **{**defaults, **kwargs})


def require_low_level(encoder: TimmEncoder, family: str) -> int:
    """Channels of the stride-4 features, or a ValueError naming what the encoder has."""
    if encoder.low_level_channels is None:
        raise ValueError(f"{family} needs stride-4 encoder features for its DeepLabV3+ decoder; "
                         f"{encoder.name!r} has reductions {encoder.model.feature_info.reduction()}")
    return encoder.low_level_channels
