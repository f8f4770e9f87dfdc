"""Context blocks by name: the same width, rank and output for each, so they can be compared like for like.

``create_context(name, in_channels, out_channels)`` returns a B x in_channels x h x w -> B x out_channels x h x w
block; the ``context_deeplab`` family puts any of them between a timm encoder and the DeepLabV3+ decoder, and
the context study (``benchmarks/context_study.py``, docs/context-study.md) compares them.
"""
from __future__ import annotations

from torch import nn
from torchvision.ops import Conv2dNormActivation

from .._checks import check_positive_int
from .._constants import CONTEXT_DESCRIPTIONS
from .aspp import ASPP, atrous_rates_for
from .ema import EMAUnit
from .factorization import NMF_SETTINGS, FactorizationContext

__all__ = ["CONTEXTS", "create_context"]

# what each name builds (width: the channels the block works at; rank: K bases or factors)
CONTEXTS: dict[str, str] = CONTEXT_DESCRIPTIONS


def create_context(name: str, in_channels: int, out_channels: int = 256, *, width: int | None = None,
                   rank: int = 64, output_stride: int = 16, base_size: tuple[int, int] = (33, 33),
                   seed: int = 0) -> nn.Module:
    """The context block ``name`` (one of :data:`CONTEXTS`): B x in_channels x h x w -> B x out_channels x h x w.

    ``width`` (default ``in_channels``) is where the factorizations and EM attention work, after a 1x1
    embedding; ``rank`` is their K; ``output_stride`` sets ASPP's rates; ``base_size`` the static Z's grid
    (the feature size at training). Blocks that take no part of these ignore them.
    """
    if name not in CONTEXTS:
        raise ValueError(f"unknown context {name!r}; available: {tuple(CONTEXTS)}")
    for arg, value in (("in_channels", in_channels), ("out_channels", out_channels), ("rank", rank)):
        check_positive_int(arg, value)
    width = in_channels if width is None else width
    check_positive_int("width", width)
    if name == "none":
        return Conv2dNormActivation(in_channels, out_channels, kernel_size=1)
    if name in ("pool", "aspp"):
        return ASPP(in_channels, out_channels, atrous_rates=() if name == "pool" else atrous_rates_for(output_stride),
                    dropout=0.0)
    if name == "ema":
        return nn.Sequential(Conv2dNormActivation(in_channels, width, kernel_size=1), EMAUnit(width, k=rank),
                             Conv2dNormActivation(width, out_channels, kernel_size=1))
    factorization = dict(rank=rank, width=width, base_size=tuple(base_size), seed=seed)
    if name in ("static", "pair-only"):
        return FactorizationContext(in_channels, out_channels, mode="static",
                                    context_state="pair-only" if name == "pair-only" else "on", **factorization)
    settings = NMF_SETTINGS["hamburger" if name == "nmf-hamburger" else "mfnet_zoo"]
    return FactorizationContext(in_channels, out_channels, mode="nmf", **factorization, **settings)
