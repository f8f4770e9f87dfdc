"""A fast DeepLabV3+-class model: an encoder at output stride 32 (no dilation), an image-wide context block, and
a decoder that brings detail back from strides 16, 8 and 4 (:class:`~mfnet_zoo.layers.TopDownDecoder`).

Why it is faster: at stride 16 a dilated ResNet-50 is 89 % of smp's DeepLabV3+ MACs; at stride 32 it is 0.58x
of smp's whole model. An image-wide context block makes up for the coarser map, the two skips for the lost
detail; docs/fast-design.md has the latency.

Why ``context="pool"`` (image pooling and a 1x1 branch), by the rule of issue #33: the cheapest block that the
context study (docs/context-study.md, v2) shows reading a distant cue in 7 of 8 seeds, else the one read in the
most seeds, ties broken by cost. No block reached 7 of 8; ``pool`` and ``aspp`` read the cue in the most seeds,
1 of 8 each (every low-rank block and ``none``: 0 of 8), and ``pool`` costs less at the study's size (0.289
against 0.324 GMACs, 15.6 against 16.6 ms per image, 308 against 322 ms per training step).

Why the context and decoder are He-initialised (:func:`~mfnet_zoo.layers.kaiming_init_`), as smp's decoders and
the paper's ASPP and decoder are: with torch's default initialisation this model read the study's distant marker
in 0 of 3 seeds where smp's DeepLabV3+ reads it in 3 of 3; He-initialised, with nothing else changed, it reads
it in 3 of 3 (global mIoU 0.466 against 0.224, smp 0.526; docs/fast-accuracy.md). The probes of
docs/fast-probes.md rule out the context's width, the stride, dropout and the ASPP's rates as what it lacked.
The study's blocks had torch's default.

Why the decoder is 128 wide and fuses strides 16, 8 and 4 (docs/fast-accuracy.md, against smp's DeepLabV3+ on
the same small encoder, 3 seeds; smp: global 0.526 ± 0.042, local 0.660 ± 0.049): 64 wide fusing 8 and 4 trailed
smp on both (0.466 and 0.600); adding the stride-16 level brought global within smp's std (0.504), not local
(0.609); 128 wide with the three levels is above smp on both (0.536, 0.697) for +0.9 GMACs at 512 x 512 (22.8
against smp's 36.6). 128 wide at stride 4 too: that stage takes most of the decoder's time on a CPU, and at 32
wide (``decoder_channels=(128, 128, 32)``) the decoder took 13 instead of 29 ms, but global fell to 0.389 and
0.406 and own-data to 0.986 (seed 0), under smp's bars; the finest stage's width is what matches smp.

Why one more separable conv at stride 4 before the classifier (``head_convs=1``), as DeepLabV3+'s decoder has two
after its fusion: without it the model trailed smp on the own-data folder, 0.9912 ± 0.0004 against 0.9917 ±
0.0002, just outside smp's std; with it, 0.9928 ± 0.0005. Elsewhere it moves the mean within a seed's spread:
the demo's scenes 0.754 ± 0.020 (0.737 without), global 0.571 ± 0.071 (0.536), local 0.660 ± 0.070 (0.697; smp
0.660 ± 0.049, one seed of 0.579 pulls it down). It costs 17,792 parameters and 0.3 GMACs at 512 x 512 (23.1
against 22.8); the decoder alone took 39.7 against 34.0 ms there on 2 CPU cores, +0.01x of smp's whole model.
"""
from __future__ import annotations

from .._pretrained import encoder_only_cfg
from .._registry import register_model, register_pretrained_cfgs
from ..layers import TopDownDecoder, create_context, kaiming_init_
from ._family import TEST_ENCODER, build_segmentation_model, build_variant
from .encoder import TimmEncoder

__all__: list[str] = []

register_pretrained_cfgs({
    "fast_deeplab_r50.tv_in1k": encoder_only_cfg("resnet50.tv_in1k", license="bsd-3-clause"),
})


def _fast_deeplab_head(encoder: TimmEncoder, num_classes: int, *, context: str = "pool",
                       decoder_channels: int | tuple[int, ...] = 128, context_channels: int | None = None,
                       atrous_rates: tuple[int, ...] | None = None, separable_aspp: bool = False,
                       skip_strides: tuple[int, ...] = (16, 8, 4), head_convs: int = 1, width: int | None = None,
                       rank: int = 64, base_size: tuple[int, int] = (16, 16), seed: int = 0):
    # context: one of mfnet_zoo.layers.CONTEXTS (the module docstring says why pool); context_channels: its output
    # (default: the first decoder stage's width); decoder_channels: TopDownDecoder's channels (one width, or one
    # per skip); atrous_rates (default: the encoder's stride's) and separable_aspp: aspp's; skip_strides: the
    # encoder levels the decoder fuses, deepest first; head_convs: TopDownDecoder's (separable convs after the
    # last fusion); width, rank, base_size, seed: the other contexts'
    skip_channels = encoder.use_skips(*skip_strides)
    if isinstance(decoder_channels, (tuple, list)) and len(decoder_channels) != len(skip_strides):
        raise ValueError(f"decoder_channels needs one width per skip stride {tuple(skip_strides)} (or one int), got "
                         f"{decoder_channels!r}")
    if context_channels is None:
        context_channels = TopDownDecoder.stage_widths(decoder_channels, len(skip_strides))[0]
    # He-initialised as smp's decoders and the paper's ASPP and decoder (kaiming_init_ says why)
    block = kaiming_init_(create_context(context, encoder.out_channels, context_channels, width=width, rank=rank,
                                         output_stride=encoder.output_stride, base_size=tuple(base_size), seed=seed,
                                         atrous_rates=atrous_rates, separable=separable_aspp))
    return block, kaiming_init_(TopDownDecoder(skip_channels, num_classes, in_channels=context_channels,
                                               channels=decoder_channels, head_convs=head_convs))


# 32 wide, not 16: at 16 the tiny model's logits are 1/40 of its features, and bf16's rounding of those features
# comes out as 2.6 % of the logits (tests/test_numerics.py measures errors against the logits' largest value)
@register_model(test_configs={"": {"encoder": TEST_ENCODER, "decoder_channels": 32}}, head=_fast_deeplab_head)
def fast_deeplab(pretrained: bool = False, encoder: str = "resnet50", **kwargs):
    """A fast model on any timm encoder with levels at strides 16, 8 and 4, at output stride 32 by default."""
    return build_segmentation_model(_fast_deeplab_head, "fast_deeplab", pretrained, encoder=encoder,
                                    **{"output_stride": 32, **kwargs})


@register_model(family="fast_deeplab")
def fast_deeplab_r50(pretrained: bool = False, **kwargs):
    """The fast model with ResNet-50 at output stride 32."""
    return build_variant(_fast_deeplab_head, "fast_deeplab_r50", pretrained, kwargs, encoder="resnet50",
                         output_stride=32)
