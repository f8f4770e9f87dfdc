"""How a family builds its models: a timm encoder + the family's (context, decoder) in one SegmentationModel."""
from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

from torch import nn

from .._builder import CONFIG_ARGS, WEIGHTS_ARGS, load_pretrained
from .._checks import check_positive_int
from .._deprecations import rename_args
from .._pretrained import PretrainedCfg
from .._registry import get_model_family, get_pretrained_cfg, list_models
from .encoder import TimmEncoder
from .segmentation import SegmentationModel

__all__ = ["build_segmentation_model", "build_variant", "COMMON_ARGS", "TEST_ENCODER"]

# timm's 0.6M-parameter test ResNet: what the registered test configs build tiny instances with
TEST_ENCODER = "test_resnet"

# a family's head function: (encoder, num_classes, **block options) -> (context, decoder)
HeadFn = Callable[..., tuple[nn.Module, nn.Module]]

# every family's arguments: what config.json saves (CONFIG_ARGS, with the head's block options: a saved config's
# allow-list, _builder.check_saved_args) and how weights are loaded (never from a saved config)
COMMON_ARGS = CONFIG_ARGS + WEIGHTS_ARGS + ("strict", "check_config")


def head_defaults(head_fn: HeadFn) -> dict[str, Any]:
    """The block options a family's head function takes (its keyword-only arguments) and their defaults."""
    return {p.name: p.default for p in inspect.signature(head_fn).parameters.values() if p.kind is p.KEYWORD_ONLY}


def build_segmentation_model(
    head_fn: HeadFn,
    model_name: str,
    pretrained: bool | str = False,
    *,
    encoder: str,
    num_classes: int | None = None,
    encoder_weights: bool | str | None = None,
    output_stride: int = 16,
    in_chans: int = 3,
    multi_grid: Sequence[int] | None = None,
    encoder_kwargs: dict[str, Any] | None = None,
    pretrained_tag: str = "",
    pretrained_cfg_overlay: dict[str, Any] | None = None,
    strict: bool = False,
    check_config: bool = True,
    **kwargs: Any,
) -> SegmentationModel:
    """Build ``model_name`` from a timm encoder and the family's ``head_fn``, then load weights.

    ``pretrained``: False, True (the tag's weights; ``pretrained_tag`` or the default tag),
    ``"hf-hub:org/repo[@revision]"`` or a local directory / .safetensors file.
    ``encoder_weights``: None/False (random), True (timm's default pretrained tag) or a timm
    tag such as ``"tv_in1k"``. ``num_classes``: default 21, or the tag's class count when its weights
    are loaded (timm's convention). Unknown keyword arguments raise TypeError naming the valid ones.
    """
    kwargs = rename_args(get_model_family(model_name), kwargs)  # old config.json files keep loading
    defaults = head_defaults(head_fn)
    unknown = sorted(set(kwargs) - set(defaults))
    if unknown:
        raise TypeError(f"{model_name}() got unexpected keyword argument(s) {unknown}; "
                        f"valid: {sorted(set(COMMON_ARGS) | set(defaults))}")
    cfg = get_pretrained_cfg(model_name, pretrained_tag) or PretrainedCfg()
    if pretrained_cfg_overlay:
        cfg = cfg.replace(**pretrained_cfg_overlay)
    if num_classes is None:
        num_classes = cfg.num_classes if pretrained is True and cfg.num_classes else 21
    check_positive_int("num_classes", num_classes)
    if pretrained is True and not cfg.has_weights:
        raise ValueError(f"{model_name!r} has no pretrained weights; models with weights: "
                         f"{list_models(pretrained=True)}. For ImageNet encoder weights only, use "
                         f"encoder_weights=True; for your own file, pretrained='path/to/model.safetensors'")
    if pretrained is True and cfg.encoder_weights:
        encoder_weights = cfg.encoder_weights
    if isinstance(encoder_weights, str):
        arch, _, tag = encoder_weights.rpartition(".")
        if arch and arch != encoder.split(".")[0]:
            raise ValueError(f"encoder_weights={encoder_weights!r} are for {arch!r}, the encoder is {encoder!r}")
        encoder, encoder_pretrained = f"{encoder.split('.')[0]}.{tag}", True
    else:
        encoder_pretrained = bool(encoder_weights)
    timm_encoder = TimmEncoder(encoder, pretrained=encoder_pretrained, output_stride=output_stride,
                               in_chans=in_chans, multi_grid=multi_grid, **(encoder_kwargs or {}))
    context, decoder = head_fn(timm_encoder, num_classes, **kwargs)
    model = SegmentationModel(timm_encoder, context, decoder)
    # every constructor argument, defaults included: enough to rebuild the architecture (config.json)
    model.model_name = model_name
    model.model_args = dict(num_classes=num_classes, encoder=encoder.split(".")[0], output_stride=output_stride,
                            in_chans=in_chans, multi_grid=None if multi_grid is None else tuple(multi_grid),
                            encoder_kwargs=dict(encoder_kwargs or {}), **{**defaults, **kwargs})
    model.pretrained_cfg = cfg.with_data_defaults(timm_encoder.data_config)  # mean/std/interpolation: the encoder's
    if pretrained:
        load_pretrained(model, pretrained, cfg, strict=strict, check_config=check_config)
    return model


def build_variant(head_fn: HeadFn, model_name: str, pretrained: bool, kwargs: dict[str, Any], *,
                  encoder: str, **defaults: Any) -> SegmentationModel:
    """A named variant: ``encoder`` is fixed, ``defaults`` (e.g. multi_grid) can be overridden."""
    if kwargs.get("encoder", encoder) != encoder:
        raise ValueError(f"{model_name} fixes encoder={encoder!r}; for another encoder use "
                         f"create_model({get_model_family(model_name)!r}, encoder={kwargs['encoder']!r})")
    kwargs.pop("encoder", None)
    return build_segmentation_model(head_fn, model_name, pretrained, encoder=encoder, **{**defaults, **kwargs})


def require_low_level(encoder: TimmEncoder, family: str) -> int:
    """Channels of the stride-4 features, or a ValueError naming what the encoder has."""
    if encoder.low_level_channels is None:
        raise ValueError(f"{family} needs stride-4 encoder features for its DeepLabV3+ decoder; "
                         f"{encoder.name!r} has reductions {encoder.model.feature_info.reduction()}")
    return encoder.low_level_channels
