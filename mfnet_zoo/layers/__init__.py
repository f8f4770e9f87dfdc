"""Composable blocks: context modules (B x C_in x h x w -> B x 256 x h x w) and decoders."""
from .aspp import ASPP, atrous_rates_for
from .context import (CONTEXT_STATES, Reconstruction, get_context_state, provides_reconstruction,
                      set_context_state)
from .decoder import ClassifierDecoder, DeepLabV3PlusDecoder
from .ema import EMAContext, EMAUnit
from .factorization import FactorizationContext, FoldedFactorizationContext

__all__ = [
    "ASPP",
    "CONTEXT_STATES",
    "ClassifierDecoder",
    "DeepLabV3PlusDecoder",
    "EMAContext",
    "EMAUnit",
    "FactorizationContext",
    "FoldedFactorizationContext",
    "Reconstruction",
    "atrous_rates_for",
    "get_context_state",
    "provides_reconstruction",
    "set_context_state",
]
