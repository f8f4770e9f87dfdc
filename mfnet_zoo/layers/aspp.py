"""Atrous spatial pyramid pooling (DeepLabV3 / V3+)."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torchvision.ops import Conv2dNormActivation

from .._checks import check_feature_map, is_positive_int
from .separable import separable_conv_bn_relu

__all__ = ["ASPP", "atrous_rates_for"]


def atrous_rates_for(output_stride: int, base_rates: Sequence[int] = (6, 12, 18)) -> tuple[int, ...]:
    """ASPP rates for an encoder output stride: (6, 12, 18) at 16, doubled at 8, halved at 32."""
    if output_stride not in (8, 16, 32):
        raise ValueError(f"output_stride must be 8, 16 or 32, got {output_stride!r}")
    return tuple(max(1, r * 16 // output_stride) for r in base_rates)


class ASPP(nn.Module):
    """ASPP: B x in_channels x h x w -> B x out_channels x h x w.

    A 1x1 branch, one dilated 3x3 branch per rate, and image pooling (global average,
    1x1 conv, BN, ReLU, broadcast back), concatenated and projected by 1x1 conv + BN + ReLU
    and dropout. As the paper's code (and torchvision), the pooling branch has a BatchNorm
    over a 1 x 1 map, so training needs a batch of at least 2. ``atrous_rates=()`` leaves the
    1x1 branch and image pooling: ParseNet's global context, the "pool" context of the context study.
    ``separable=True`` makes each dilated branch depthwise-separable (as smp's ASPP and DeepLabV3+ with
    Xception): about the cost of the 1x1 branch each, where a full 3x3 branch costs 9 times that.
    """

    def __init__(self, in_channels: int, out_channels: int = 256,
                 atrous_rates: Sequence[int] = (6, 12, 18), dropout: float = 0.5, separable: bool = False) -> None:
        super().__init__()
        if not all(is_positive_int(r) for r in atrous_rates):
            raise ValueError(f"atrous_rates must be positive ints (or empty: no atrous branch), got {atrous_rates!r}")
        self.atrous_rates, self.separable = tuple(atrous_rates), separable
        self.in_channels = in_channels
        atrous = (separable_conv_bn_relu if separable
                  else lambda i, o, r: Conv2dNormActivation(i, o, kernel_size=3, dilation=r))
        self.branches = nn.ModuleList([Conv2dNormActivation(in_channels, out_channels, kernel_size=1)]
                                      + [atrous(in_channels, out_channels, r) for r in atrous_rates])
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1),
                                  Conv2dNormActivation(in_channels, out_channels, kernel_size=1))
        self.project = nn.Sequential(
            Conv2dNormActivation(out_channels * (len(atrous_rates) + 2), out_channels, kernel_size=1),
            nn.Dropout(dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: B x in_channels x h x w -> B x out_channels x h x w."""
        check_feature_map(x, self.in_channels, type(self).__name__)
        pooled = self.pool(x).expand(-1, -1, x.shape[-2], x.shape[-1])
        return self.project(torch.cat([branch(x) for branch in self.branches] + [pooled], dim=1))
