"""Decoders: context features (+ low-level features) -> class logits at their own stride.

Every decoder takes ``(*skips, context)`` (the encoder's finer features, by default the stride-4 ones alone, then
the context's output) and owns the classifier, so a model can swap decoders without knowing which one it has;
``reset_classifier`` re-heads it for a new task.
"""
from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import Conv2dNormActivation

from .._checks import check_feature_map, check_positive_int, is_positive_int
from .separable import separable_conv_bn_relu

__all__ = ["DeepLabV3PlusDecoder", "ClassifierDecoder", "TopDownDecoder"]


class _ClassifierMixin:
    classifier: nn.Conv2d

    @property
    def num_classes(self) -> int:
        return self.classifier.out_channels

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the 1x1 classifier by a newly initialised one with ``num_classes`` outputs."""
        check_positive_int("num_classes", num_classes)
        old = self.classifier
        self.classifier = nn.Conv2d(old.in_channels, num_classes, 1).to(old.weight.device, old.weight.dtype)


class DeepLabV3PlusDecoder(_ClassifierMixin, nn.Module):
    """DeepLabV3+ decoder: fuse the upsampled context with stride-4 features, then classify.

    Args:
        low_level_channels: channels of the stride-4 encoder features.
        num_classes: classifier outputs.
        in_channels: channels of the context features (256).
        low_level_projection: channels the low-level features are squeezed to (48).
        channels: width of the two 3x3 convs (256).
        separable: depthwise 3x3 + pointwise 1x1 instead of full 3x3 convs (about 1/9 of their MACs).
        num_convs: 3x3 convs after the fusion (2 in DeepLabV3+; 1 in smp's decoder).

    forward(low_level: B x low_level_channels x H/4 x W/4, context: B x in_channels x h x w)
    -> B x num_classes x H/4 x W/4.
    """

    def __init__(self, low_level_channels: int, num_classes: int, in_channels: int = 256,
                 low_level_projection: int = 48, channels: int = 256, separable: bool = False,
                 num_convs: int = 2) -> None:
        super().__init__()
        check_positive_int("num_classes", num_classes)
        if num_convs not in (1, 2):
            raise ValueError(f"num_convs must be 1 or 2, got {num_convs!r}")
        self.in_channels, self.low_level_channels = in_channels, low_level_channels
        conv3x3 = separable_conv_bn_relu if separable else partial(Conv2dNormActivation, kernel_size=3)
        self.low_level_proj = Conv2dNormActivation(low_level_channels, low_level_projection, kernel_size=1)
        layers = [conv3x3(in_channels + low_level_projection, channels), nn.Dropout(0.5)]
        if num_convs == 2:
            layers += [conv3x3(channels, channels), nn.Dropout(0.1)]
        self.refine = nn.Sequential(*layers)  # not `fuse`: timm's reparameterize_model calls any .fuse()
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, low_level: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        check_feature_map(low_level, self.low_level_channels, "DeepLabV3PlusDecoder (low-level features)")
        check_feature_map(context, self.in_channels, "DeepLabV3PlusDecoder (context features)")
        # align_corners=True as the paper's (and DeepLab's) code, for weight compatibility
        context = F.interpolate(context, size=low_level.shape[-2:], mode="bilinear", align_corners=True)
        return self.classifier(self.refine(torch.cat([context, self.low_level_proj(low_level)], dim=1)))


class TopDownDecoder(_ClassifierMixin, nn.Module):
    """Fuse the context with finer skips, deepest first (stride 8, then 4), and classify at the finest.

    At each skip: upsample to its size, add its 1x1 projection, refine with one depthwise-separable 3x3 conv
    that also brings the sum to the next stage's width; then ``head_convs`` more separable convs at the finest
    stage before the classifier. A sum keeps each stage one width wide. The finest stage is the costly one (16 x
    the pixels of stride 16; on a CPU its depthwise convs and 1x1 convs are bound by memory more than by MACs),
    so it can run narrower than the others, a trade of accuracy for time: in ``fast_deeplab_r50`` at 512 x 512,
    ``channels=(128, 128, 32)`` took the decoder from 29 to 13 ms on 2 CPU cores, and cost 0.13 mIoU on the
    context study's global scenes (docs/fast-design.md, docs/fast-accuracy.md).

    Args:
        skip_channels: channels of the skips, deepest first (ResNet-50 at strides 8, 4: (512, 256)).
        num_classes: classifier outputs.
        in_channels: channels of the context features (default: the first stage's width); a 1x1 conv brings them
            to that width if they differ.
        channels: the width of every stage, or one width per skip, deepest first.
        head_convs: separable 3x3 convs after the last fusion (1: two at the finest stage, as DeepLabV3+'s
            decoder has two 3x3 convs after its fusion; it places boundaries within the stride-4 cell better).

    forward(*skips: B x skip_channels[i] x h_i x w_i (deepest first), context: B x in_channels x h x w)
    -> B x num_classes x h_last x w_last.
    """

    def __init__(self, skip_channels: tuple[int, ...], num_classes: int, in_channels: int | None = None,
                 channels: int | tuple[int, ...] = 64, head_convs: int = 1) -> None:
        super().__init__()
        check_positive_int("num_classes", num_classes)
        if isinstance(head_convs, bool) or not isinstance(head_convs, int) or head_convs < 0:
            raise ValueError(f"head_convs must be an int >= 0, got {head_convs!r}")
        if not skip_channels:
            raise ValueError("TopDownDecoder needs at least one skip, got skip_channels=()")
        widths = self.stage_widths(channels, len(skip_channels))
        in_channels = widths[0] if in_channels is None else in_channels
        self.skip_channels, self.in_channels, self.channels = tuple(skip_channels), in_channels, widths
        self.context_proj = (nn.Identity() if in_channels == widths[0]
                             else Conv2dNormActivation(in_channels, widths[0], kernel_size=1))
        self.skip_projs = nn.ModuleList(Conv2dNormActivation(c, w, kernel_size=1, activation_layer=None)
                                        for c, w in zip(skip_channels, widths))
        self.refines = nn.ModuleList(separable_conv_bn_relu(w, next_w)
                                     for w, next_w in zip(widths, widths[1:] + widths[-1:]))
        self.head = nn.Sequential(*(separable_conv_bn_relu(widths[-1], widths[-1]) for _ in range(head_convs)))
        self.classifier = nn.Conv2d(widths[-1], num_classes, 1)

    @staticmethod
    def stage_widths(channels: int | tuple[int, ...] | list[int], num_stages: int) -> tuple[int, ...]:
        """``channels`` as one width per stage: an int is every stage's; a sequence must hold ``num_stages`` widths
        (config.json gives it back as a list)."""
        if is_positive_int(channels):
            return (channels,) * num_stages
        if not (isinstance(channels, (tuple, list)) and len(channels) == num_stages
                and all(is_positive_int(width) for width in channels)):
            raise ValueError(f"channels must be a positive int or {num_stages} of them (one per skip, deepest first), "
                             f"got {channels!r}")
        return tuple(channels)

    def forward(self, *features: torch.Tensor) -> torch.Tensor:
        *skips, context = features
        if len(skips) != len(self.skip_channels):
            raise ValueError(f"TopDownDecoder expects {len(self.skip_channels)} skips and the context, got "
                             f"{len(skips)} skips")
        check_feature_map(context, self.in_channels, "TopDownDecoder (context features)")
        x = self.context_proj(context)
        for skip, channels, proj, refine in zip(skips, self.skip_channels, self.skip_projs, self.refines):
            check_feature_map(skip, channels, "TopDownDecoder (skip features)")
            # align_corners=True as every upsampling in the library (the paper's code)
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=True)
            x = refine(x + proj(skip))
        return self.classifier(self.head(x))


class ClassifierDecoder(_ClassifierMixin, nn.Module):
    """A 1x1 classifier on the context features; the low-level features are ignored (EMANet).

    forward(low_level, context: B x in_channels x h x w) -> B x num_classes x h x w.
    """

    def __init__(self, num_classes: int, in_channels: int = 256) -> None:
        super().__init__()
        check_positive_int("num_classes", num_classes)
        self.in_channels = in_channels
        self.classifier = nn.Conv2d(in_channels, num_classes, 1)

    def forward(self, low_level: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        check_feature_map(context, self.in_channels, "ClassifierDecoder (context features)")
        return self.classifier(context)
