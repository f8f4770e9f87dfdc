"""The depthwise-separable 3x3 conv of DeepLabV3+ (Xception's atrous separable convolution) and smp."""
from __future__ import annotations

from torch import nn
from torchvision.ops import Conv2dNormActivation

__all__ = ["separable_conv_bn_relu"]


def separable_conv_bn_relu(in_channels: int, out_channels: int, dilation: int = 1) -> nn.Sequential:
    """Depthwise 3x3 (dilated by ``dilation``), pointwise 1x1, BN, ReLU: B x in x h x w -> B x out x h x w.

    About 1/9 of a full 3x3 conv's MACs when ``out_channels`` is small next to 9 x ``in_channels``."""
    return nn.Sequential(nn.Conv2d(in_channels, in_channels, 3, padding=dilation, dilation=dilation,
                                   groups=in_channels, bias=False),
                         Conv2dNormActivation(in_channels, out_channels, kernel_size=1))
