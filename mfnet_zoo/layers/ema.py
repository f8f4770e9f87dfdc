"""Expectation-maximization attention (EMANet, Li et al. ICCV 2019)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import Conv2dNormActivation

from .._checks import check_feature_map, check_positive_int

__all__ = ["EMAUnit", "EMAContext"]


def _l2_normalize(x: torch.Tensor, dim: int) -> torch.Tensor:
    # EMANet's own normalisation (eps added to the norm), kept for checkpoint parity
    return x / (1e-6 + x.norm(dim=dim, keepdim=True))


class EMAUnit(nn.Module):
    """EM attention unit: B x C x h x w -> B x C x h x w.

    K bases (a buffer, C x K, l2-normalised per base) are refined per image by ``stages``
    EM iterations without gradient; the features are re-estimated from the bases, projected
    by a 1x1 conv + BN and added to the input. In training only, the dataset-level bases
    follow the per-image ones by a moving average (``momentum``); eval never changes them
    (the paper's code updates them in eval too, a bug this class does not reproduce).

    Args:
        channels: C.
        k: number of bases K (64 in EMANet).
        stages: EM iterations (3 in EMANet).
        momentum: weight of the old bases in the moving-average update.
    """

    def __init__(self, channels: int, k: int = 64, stages: int = 3, momentum: float = 0.9) -> None:
        super().__init__()
        for name, value in (("channels", channels), ("k", k), ("stages", stages)):
            check_positive_int(name, value)
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"momentum must be in [0, 1], got {momentum!r}")
        self.channels, self.k, self.stages, self.momentum = channels, k, stages, momentum
        self.register_buffer("mu", _l2_normalize(torch.randn(1, channels, k) * math.sqrt(2.0 / k), dim=1))
        self.conv1 = nn.Conv2d(channels, channels, 1)
        self.conv2 = nn.Sequential(nn.Conv2d(channels, channels, 1, bias=False), nn.BatchNorm2d(channels))
        for m in self.modules():  # EMANet's initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / m.out_channels))

    def extra_repr(self) -> str:
        return f"k={self.k}, stages={self.stages}, momentum={self.momentum}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: B x C x h x w -> B x C x h x w."""
        check_feature_map(x, self.channels, type(self).__name__)
        identity = x
        x = self.conv1(x).flatten(2)  # B x C x N
        # B copies of the bases, not a stride-0 expand: matmul reshapes an expanded batch, and that
        # reshape makes torch.export guard on (and bake in) B == 1 when traced with one image
        mu = self.mu.repeat(x.shape[0], 1, 1)  # B x C x K
        with torch.no_grad():
            for _ in range(self.stages):
                z = F.softmax(x.transpose(1, 2) @ mu, dim=2)  # B x N x K responsibilities
                mu = _l2_normalize(x @ (z / (1e-6 + z.sum(dim=1, keepdim=True))), dim=1)
        x = F.relu((mu @ z.transpose(1, 2)).view_as(identity))  # sizes from the tensor, none baked in
        if self.training:
            with torch.no_grad():
                self.mu.mul_(self.momentum).add_(mu.mean(dim=0, keepdim=True), alpha=1.0 - self.momentum)
        return F.relu(self.conv2(x) + identity)


class EMAContext(nn.Module):
    """EMANet's head before the classifier: B x in_channels x h x w -> B x out_channels x h x w.

    3x3 conv + BN + ReLU to ``width``, :class:`EMAUnit`, 3x3 conv + BN + ReLU to
    ``out_channels``, Dropout2d(0.1).
    """

    def __init__(self, in_channels: int, out_channels: int = 256, width: int = 512, k: int = 64,
                 stages: int = 3, momentum: float = 0.9, dropout: float = 0.1) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.reduce = Conv2dNormActivation(in_channels, width, kernel_size=3)
        self.emau = EMAUnit(width, k=k, stages=stages, momentum=momentum)
        self.proj = Conv2dNormActivation(width, out_channels, kernel_size=3)
        self.dropout = nn.Dropout2d(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: B x in_channels x h x w -> B x out_channels x h x w."""
        check_feature_map(x, self.in_channels, type(self).__name__)
        return self.dropout(self.proj(self.emau(self.reduce(x))))
