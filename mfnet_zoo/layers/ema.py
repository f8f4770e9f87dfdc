"""Expectation-maximization attention (EMANet, Li et al. ICCV 2019).

What the gradient sees (``bases_grad``; the forward outputs are the same in all three, only autograd differs):

* ``"none"`` (the default; EMANet as published): every EM stage runs without gradient and the
  reconstruction ``mu z^T`` is a constant, so ``conv1`` (whose output feeds only the EM stages) never gets a
  gradient; its authors confirm both (github:XiaLiPKU/EMANet issues #14 and #5), and report that with the
  gradient left on (``"unrolled"`` here) conv1 trains but the results were a little worse (#14).
* ``"one-step"``: the last E-step, the responsibilities ``z = softmax(x^T mu)``, is differentiable in the
  features ``x``, with the bases ``mu`` held constant (the analogue of Hamburger's one-step gradient): conv1
  trains, position by position.
* ``"unrolled"``: back-propagation through every E- and M-step, so the bases depend differentiably on every
  position. The backward gain of the bases' l2 normalisation is capped (a gradient clip that does not act
  at unit-scale features; see ``_l2_normalize_clipped``): without it, near-zero bases sent gradients 1e4 to 1e7
  times the one-step ones.

The property that separates them: in ``"none"`` and ``"one-step"`` the gradient of an output cell with
respect to the block's input at any *other* position is exactly zero (with BatchNorm in eval mode), and
that is how the published designs train: the bases carry global context forward, but no position's loss
sends gradient to features elsewhere. With ``"unrolled"`` a distant position reaches the cell through the
bases. In float32 and under bf16 autocast the unrolled gradient stays finite on zero, one-spike, tiny (1e-8)
and huge (1e4) inputs, with its norm within 10x of the one-step gradient's there (``tests/test_bases_grad.py``).

What the context study (docs/context-study.md, v2) found: neither EMANet's gradient (``"ema"``) nor the
unrolled one (``"ema-unrolled"``) made EM attention read a cue beyond the receptive field, 0 of 8 seeds each;
image pooling read it in 1 of 8, no context reliably.
"""
from __future__ import annotations

import contextlib
import math
import warnings

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import Conv2dNormActivation

from .._checks import check_feature_map, check_positive_int
from .factorization import BasesGrad, check_bases_grad

__all__ = ["EMAUnit", "EMAContext"]


def _rank_or_k(owner: str, rank: int, k: int | None) -> int:
    """``rank``, or the deprecated ``k`` in its place (with a FutureWarning); a TypeError if a ``rank`` other than
    the default is given too."""
    if k is None:
        return rank
    if rank != 64:
        raise TypeError(f"{owner} got both rank={rank!r} and its deprecated alias k={k!r}: pass rank only")
    warnings.warn(f"{owner}(k=...) is deprecated, use rank=... (the same quantity, named as in the rest of the "
                  "library)", FutureWarning, stacklevel=3)
    return k


def _l2_normalize(x: torch.Tensor, dim: int) -> torch.Tensor:
    # EMANet's own normalisation (eps added to the norm), kept for checkpoint parity: a base no position
    # is responsible for (a zero column) stays zero instead of 0 / 0
    return x / (1e-6 + x.norm(dim=dim, keepdim=True))


# "unrolled" only: the backward gain of the bases' normalisation, 1 / (1e-6 + |m|), is capped at 1 / _NORM_FLOOR
# (a gradient clip; see _l2_normalize_clipped)
_NORM_FLOOR = 0.3


class _ScaleGrad(torch.autograd.Function):
    """Identity forward (a view: the values are untouched); the backward multiplies the gradient by ``factor``."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(factor)
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (factor,) = ctx.saved_tensors
        return grad * factor, None


def _l2_normalize_clipped(x: torch.Tensor, dim: int) -> torch.Tensor:
    """:func:`_l2_normalize`, the same values, with its backward gain capped at ``1 / _NORM_FLOOR``.

    The normalisation's Jacobian has norm 1 / (1e-6 + |x|): up to 1e6 for a base whose weighted mean of the
    features is ~0 (one-spike or 1e-8-scale features after a conv1 with zero bias: without the clip, the
    unrolled gradient came out 1e4 to 1e7 times the one-step one there). The gradient into x is scaled by
    min(1, (1e-6 + |x|) / _NORM_FLOOR), a clip that does not act at unit-scale features: the bases' weighted
    means measured after conv1 have norms of 1.6 (16 channels) to 12 (512 channels), above the floor of 0.3.
    """
    norm = 1e-6 + x.detach().norm(dim=dim, keepdim=True)
    return _l2_normalize(_ScaleGrad.apply(x, (norm / _NORM_FLOOR).clamp(max=1.0)), dim)


class EMAUnit(nn.Module):
    """EM attention unit: B x C x h x w -> B x C x h x w.

    K bases (a buffer, C x K, l2-normalised per base) are refined per image by ``stages``
    EM iterations; the features are re-estimated from the bases, projected by a 1x1 conv + BN and
    added to the input. In training only, the dataset-level bases follow the per-image ones by a
    moving average (``momentum``); eval never changes them (the paper's code updates them in eval
    too, a bug this class does not reproduce).

    Args:
        channels: C.
        rank: number of bases K (64 in EMANet).
        stages: EM iterations (3 in EMANet).
        momentum: weight of the old bases in the moving-average update.
        bases_grad: what autograd sees of the EM iterations: ``"none"`` (the default; EMANet's: the
            reconstruction is a constant and ``conv1`` gets no gradient), ``"one-step"`` (the last
            E-step, position by position) or ``"unrolled"`` (every stage). See :mod:`mfnet_zoo.layers.ema`.
        k: deprecated alias of ``rank`` (keyword only; a FutureWarning).
    """

    def __init__(self, channels: int, rank: int = 64, stages: int = 3, momentum: float = 0.9, *,
                 bases_grad: BasesGrad = "none", k: int | None = None) -> None:
        super().__init__()
        rank = _rank_or_k(type(self).__name__, rank, k)
        for name, value in (("channels", channels), ("rank", rank), ("stages", stages)):
            check_positive_int(name, value)
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"momentum must be in [0, 1], got {momentum!r}")
        self.channels, self.rank, self.stages, self.momentum = channels, int(rank), stages, momentum
        self.bases_grad = bases_grad  # checked by the property
        self.register_buffer("mu", _l2_normalize(torch.randn(1, channels, self.rank) * math.sqrt(2.0 / self.rank),
                                                 dim=1))
        self.conv1 = nn.Conv2d(channels, channels, 1)
        self.conv2 = nn.Sequential(nn.Conv2d(channels, channels, 1, bias=False), nn.BatchNorm2d(channels))
        for m in self.modules():  # EMANet's initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / m.out_channels))

    @property
    def bases_grad(self) -> str:
        """What autograd sees of the EM iterations: ``"none"``, ``"one-step"`` or ``"unrolled"`` (settable)."""
        return self._bases_grad

    @bases_grad.setter
    def bases_grad(self, value: BasesGrad) -> None:
        self._bases_grad = check_bases_grad(value)

    @property
    def k(self) -> int:
        """Deprecated: :attr:`rank`."""
        warnings.warn("EMAUnit.k is deprecated, use EMAUnit.rank", FutureWarning, stacklevel=2)
        return self.rank

    def extra_repr(self) -> str:
        return f"rank={self.rank}, stages={self.stages}, momentum={self.momentum}, bases_grad={self.bases_grad!r}"

    def unused_parameters(self, reconstruction: bool = True) -> set[str]:
        """``conv1`` with ``bases_grad="none"``: the EM result is a constant for autograd (the context protocol)."""
        return {"conv1.weight", "conv1.bias"} if self.bases_grad == "none" else set()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: B x C x h x w -> B x C x h x w."""
        check_feature_map(x, self.channels, type(self).__name__)
        identity = x
        x = self.conv1(x).flatten(2)  # B x C x N
        # B copies of the bases, not a stride-0 expand: matmul reshapes an expanded batch, and that
        # reshape makes torch.export guard on (and bake in) B == 1 when traced with one image
        mu = self.mu.repeat(x.shape[0], 1, 1)  # B x C x K
        # the same operations in the same order in every mode (the same values, bit for bit); the modes
        # only choose which of them autograd records: all ("unrolled"), the last E-step ("one-step") or none
        record = contextlib.nullcontext if self.bases_grad == "unrolled" else torch.no_grad
        record_last_e = torch.no_grad if self.bases_grad == "none" else contextlib.nullcontext
        for stage in range(self.stages):
            with record_last_e() if stage == self.stages - 1 else record():
                z = F.softmax(x.transpose(1, 2) @ mu, dim=2)  # B x N x K responsibilities
            with record():
                # 1e-6: a base no position is responsible for (z underflows to 0 at large logits) gives 0, not 0 / 0
                mu = x @ (z / (1e-6 + z.sum(dim=1, keepdim=True)))
                mu = _l2_normalize_clipped(mu, dim=1) if mu.requires_grad else _l2_normalize(mu, dim=1)
        x = F.relu((mu @ z.transpose(1, 2)).view_as(identity))  # sizes from the tensor, none baked in
        if self.training:
            with torch.no_grad():
                self.mu.mul_(self.momentum).add_(mu.mean(dim=0, keepdim=True), alpha=1.0 - self.momentum)
        return F.relu(self.conv2(x) + identity)


class EMAContext(nn.Module):
    """EMANet's head before the classifier: B x in_channels x h x w -> B x out_channels x h x w.

    3x3 conv + BN + ReLU to ``width``, :class:`EMAUnit` (``rank`` bases, ``stages``, ``momentum``,
    ``bases_grad``: see there), 3x3 conv + BN + ReLU to ``out_channels``, Dropout2d(0.1). ``k`` is the
    deprecated alias of ``rank`` (keyword only; a FutureWarning).
    """

    def __init__(self, in_channels: int, out_channels: int = 256, width: int = 512, rank: int = 64,
                 stages: int = 3, momentum: float = 0.9, dropout: float = 0.1, *, bases_grad: BasesGrad = "none",
                 k: int | None = None) -> None:
        super().__init__()
        rank = _rank_or_k(type(self).__name__, rank, k)
        self.in_channels = in_channels
        self.reduce = Conv2dNormActivation(in_channels, width, kernel_size=3)
        self.emau = EMAUnit(width, rank=rank, stages=stages, momentum=momentum, bases_grad=bases_grad)
        self.proj = Conv2dNormActivation(width, out_channels, kernel_size=3)
        self.dropout = nn.Dropout2d(dropout)

    @property
    def bases_grad(self) -> str:
        """The EM unit's :attr:`EMAUnit.bases_grad` (settable here)."""
        return self.emau.bases_grad

    @bases_grad.setter
    def bases_grad(self, value: BasesGrad) -> None:
        self.emau.bases_grad = value

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: B x in_channels x h x w -> B x out_channels x h x w."""
        check_feature_map(x, self.in_channels, type(self).__name__)
        return self.dropout(self.proj(self.emau(self.reduce(x))))
