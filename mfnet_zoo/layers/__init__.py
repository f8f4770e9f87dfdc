"""Composable blocks: context modules (B x C_in x h x w -> B x 256 x h x w) and decoders."""
from .aspp import ASPP, atrous_rates_for
from .create_context import CONTEXTS, create_context
from .context_protocol import (CONTEXT_STATES, Reconstruction, get_context_state, provides_reconstruction,
                               set_context_state, unused_parameters)
from .decoder import ClassifierDecoder, DeepLabV3PlusDecoder, TopDownDecoder
from .ema import EMAContext, EMAUnit
from .factorization import BASES_GRAD, NMF_SETTINGS, FactorizationContext, FoldedFactorizationContext
from .weight_init import kaiming_init_

__all__ = [
    "ASPP",
    "BASES_GRAD",
    "CONTEXTS",
    "CONTEXT_STATES",
    "ClassifierDecoder",
    "DeepLabV3PlusDecoder",
    "EMAContext",
    "EMAUnit",
    "FactorizationContext",
    "FoldedFactorizationContext",
    "NMF_SETTINGS",
    "Reconstruction",
    "TopDownDecoder",
    "atrous_rates_for",
    "create_context",
    "get_context_state",
    "kaiming_init_",
    "provides_reconstruction",
    "set_context_state",
    "unused_parameters",
]
