"""DeepLabV3+ (Chen et al. 2018): ASPP + DeepLabV3+ decoder, the paper's first baseline."""
from __future__ import annotations

from collections.abc import Sequence

from .._pretrained import encoder_only_cfg
from .._registry import register_model, register_pretrained_cfgs
from ..layers import ASPP, DeepLabV3PlusDecoder, atrous_rates_for
from ._family import TEST_ENCODER, build_segmentation_model, build_variant, require_low_level
from .encoder import TimmEncoder

__all__: list[str] = []

# the paper's starting point: torchvision's ImageNet ResNets, served by timm on the Hub
register_pretrained_cfgs({
    "deeplabv3plus_r50.tv_in1k": encoder_only_cfg("resnet50.tv_in1k", license="bsd-3-clause"),
    "deeplabv3plus_r101.tv_in1k": encoder_only_cfg("resnet101.tv_in1k", license="bsd-3-clause"),
})


def _deeplabv3plus_head(encoder: TimmEncoder, num_classes: int, *, atrous_rates: Sequence[int] | None = None,
                        aspp_dropout: float = 0.5, decoder_channels: int = 256):
    rates = atrous_rates_for(encoder.output_stride) if atrous_rates is None else tuple(atrous_rates)
    context = ASPP(encoder.out_channels, 256, atrous_rates=rates, dropout=aspp_dropout)
    decoder = DeepLabV3PlusDecoder(require_low_level(encoder, "DeepLabV3+"), num_classes, channels=decoder_channels)
    return context, decoder


@register_model(test_configs={"": {"encoder": TEST_ENCODER}}, head=_deeplabv3plus_head)
def deeplabv3plus(pretrained: bool = False, encoder: str = "resnet50", **kwargs):
    """DeepLabV3+ on any timm encoder with stride-4 features."""
    return build_segmentation_model(_deeplabv3plus_head, "deeplabv3plus", pretrained, encoder=encoder, **kwargs)


@register_model(family="deeplabv3plus")
def deeplabv3plus_r50(pretrained: bool = False, **kwargs):
    """DeepLabV3+-R50 as the paper's code: multi-grid (1, 2, 4), stride 16; 40,352,181 params."""
    return build_variant(_deeplabv3plus_head, "deeplabv3plus_r50", pretrained, kwargs, encoder="resnet50",
                         multi_grid=(1, 2, 4))


@register_model(family="deeplabv3plus")
def deeplabv3plus_r101(pretrained: bool = False, **kwargs):
    """DeepLabV3+ with ResNet-101, multi-grid (1, 2, 4), output stride 16."""
    return build_variant(_deeplabv3plus_head, "deeplabv3plus_r101", pretrained, kwargs, encoder="resnet101",
                         multi_grid=(1, 2, 4))
