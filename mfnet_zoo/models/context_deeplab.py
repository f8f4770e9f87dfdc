"""Any context block between a timm encoder and the DeepLabV3+ decoder: the context study's models.

``create_model("context_deeplab", context="nmf-hamburger", encoder="resnet18")``: the encoder, the decoder and
the widths stay the same whichever ``context`` (one of :data:`mfnet_zoo.layers.CONTEXTS`) sits between them,
so models differ in their context alone (docs/context-study.md).
"""
from __future__ import annotations

from .._registry import register_model
from ..layers import DeepLabV3PlusDecoder, create_context
from ._family import TEST_ENCODER, build_segmentation_model, require_low_level
from .encoder import TimmEncoder

__all__: list[str] = []


def _context_deeplab_head(encoder: TimmEncoder, num_classes: int, *, context: str = "static",
                          decoder_channels: int = 256, width: int | None = None, rank: int = 64,
                          base_size: tuple[int, int] = (33, 33), seed: int = 0, separable: bool = False):
    # decoder_channels: the context's output and the decoder's width; width: where the context works (default:
    # the encoder's channels); separable: depthwise-separable decoder convs
    block = create_context(context, encoder.out_channels, decoder_channels, width=width, rank=rank,
                           output_stride=encoder.output_stride, base_size=tuple(base_size), seed=seed)
    decoder = DeepLabV3PlusDecoder(require_low_level(encoder, "context_deeplab"), num_classes,
                                   in_channels=decoder_channels, channels=decoder_channels, separable=separable)
    return block, decoder


# the contexts no other family's test configs build (static, pair-only, nmf and ASPP: mfnet, deeplabv3plus)
@register_model(test_configs={name: {"encoder": TEST_ENCODER, "context": name, "decoder_channels": 16, "rank": 8}
                              for name in ("none", "pool", "ema", "nmf-hamburger")}, head=_context_deeplab_head)
def context_deeplab(pretrained: bool = False, encoder: str = "resnet50", **kwargs):
    """Any context block (context=, one of mfnet_zoo.layers.CONTEXTS) + the DeepLabV3+ decoder on any timm encoder."""
    return build_segmentation_model(_context_deeplab_head, "context_deeplab", pretrained, encoder=encoder, **kwargs)
