"""Context blocks by name: the same width, rank and output for each, so they can be compared like for like.

``create_context(name, in_channels, out_channels)`` returns a B x in_channels x h x w -> B x out_channels x h x w
block; the ``context_deeplab`` family puts any of them between a timm encoder and the DeepLabV3+ decoder, and
the context study (``benchmarks/context_study.py``, docs/context-study.md) compares them.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable

from torch import nn
from torchvision.ops import Conv2dNormActivation

from .._checks import check_positive_int
from .aspp import ASPP, atrous_rates_for
from .ema import EMAUnit
from .factorization import NMF_SETTINGS, BasesGrad, FactorizationContext

__all__ = ["CONTEXTS", "ContextSpec", "create_context"]


@dataclasses.dataclass(frozen=True)
class ContextSpec:
    """What every named block is built from (see :func:`create_context`)."""

    in_channels: int
    out_channels: int
    width: int
    rank: int
    output_stride: int
    base_size: tuple[int, int]
    seed: int
    atrous_rates: tuple[int, ...] | None = None
    separable: bool = False


def _ema(spec: ContextSpec, bases_grad: BasesGrad) -> nn.Module:
    return nn.Sequential(Conv2dNormActivation(spec.in_channels, spec.width, kernel_size=1),
                         EMAUnit(spec.width, rank=spec.rank, bases_grad=bases_grad),
                         Conv2dNormActivation(spec.width, spec.out_channels, kernel_size=1))


def _factorization(spec: ContextSpec, **options: object) -> nn.Module:
    return FactorizationContext(spec.in_channels, spec.out_channels, rank=spec.rank, width=spec.width,
                                base_size=spec.base_size, seed=spec.seed, **options)


def _aspp(spec: ContextSpec, rates: tuple[int, ...]) -> nn.Module:
    return ASPP(spec.in_channels, spec.out_channels, atrous_rates=rates, dropout=0.0, separable=spec.separable)


# name -> builder; their one-line descriptions, torch-free for the CLI, are _constants.CONTEXT_DESCRIPTIONS
CONTEXTS: dict[str, Callable[[ContextSpec], nn.Module]] = {
    "none": lambda s: Conv2dNormActivation(s.in_channels, s.out_channels, kernel_size=1),
    "pool": lambda s: _aspp(s, ()),
    "aspp": lambda s: _aspp(s, atrous_rates_for(s.output_stride) if s.atrous_rates is None else s.atrous_rates),
    "static": lambda s: _factorization(s, mode="static"),
    "pair-only": lambda s: _factorization(s, mode="static", context_state="pair-only"),
    "nmf": lambda s: _factorization(s, mode="nmf", **NMF_SETTINGS["mfnet_zoo"]),
    # nmf's settings, only the gradient differs (through every NMF update, not the last one alone)
    "nmf-unrolled": lambda s: _factorization(s, mode="nmf", **NMF_SETTINGS["mfnet_zoo"], bases_grad="unrolled"),
    "nmf-hamburger": lambda s: _factorization(s, mode="nmf", **NMF_SETTINGS["hamburger"]),
    "ema": lambda s: _ema(s, "none"),
    "ema-unrolled": lambda s: _ema(s, "unrolled"),
}


def create_context(name: str, in_channels: int, out_channels: int = 256, *, width: int | None = None,
                   rank: int = 64, output_stride: int = 16, base_size: tuple[int, int] = (33, 33),
                   seed: int = 0, atrous_rates: tuple[int, ...] | None = None, separable: bool = False) -> nn.Module:
    """The context block ``name`` (one of :data:`CONTEXTS`): B x in_channels x h x w -> B x out_channels x h x w.

    ``width`` (default ``in_channels``) is where the factorizations and EM attention work, after a 1x1
    embedding; ``rank`` is their K; ``output_stride`` sets ASPP's rates unless ``atrous_rates`` gives them;
    ``separable`` makes ASPP's dilated branches depthwise-separable; ``base_size`` the static Z's grid
    (the feature size at training). Blocks that take no part of these ignore them. The ``-unrolled`` names are
    ``nmf`` and ``ema`` with ``bases_grad="unrolled"`` (gradient through every iteration, so the bases carry it
    between positions); everything else, outputs included, is the same.
    """
    if name not in CONTEXTS:
        raise ValueError(f"unknown context {name!r}; available: {tuple(CONTEXTS)}")
    width = in_channels if width is None else width
    for arg, value in (("in_channels", in_channels), ("out_channels", out_channels), ("rank", rank),
                       ("width", width)):
        check_positive_int(arg, value)
    rates = None if atrous_rates is None else tuple(atrous_rates)
    return CONTEXTS[name](ContextSpec(in_channels, out_channels, width, rank, output_stride, tuple(base_size), seed,
                                      rates, separable))
