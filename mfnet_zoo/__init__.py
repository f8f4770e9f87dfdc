"""mfnet_zoo: segmentation models with low-rank factorization context (MFNet) and its baselines.

The package is a lazy facade (PEP 562): ``import mfnet_zoo`` costs nothing, and the first public
name used imports torch, timm and the model families (which register themselves), so that
``mfnet-zoo --help`` answers without loading them.
"""
from __future__ import annotations

import copy
import importlib
from typing import TYPE_CHECKING, Any

from .version import __version__

if TYPE_CHECKING:  # what the lazy names are, for type checkers and the API docs
    from ._factory import create_model, load_model
    from ._pretrained import PretrainedCfg, resolve_data_config
    from ._registry import (get_pretrained_cfg, is_model, list_models, list_pretrained_tags, model_entrypoint,
                            register_model, register_pretrained_cfgs)
    from .layers import (ASPP, CONTEXT_STATES, CONTEXTS, ClassifierDecoder, DeepLabV3PlusDecoder, EMAContext,
                         EMAUnit, FactorizationContext, FoldedFactorizationContext, Reconstruction, create_context,
                         get_context_state, set_context_state)
    from .losses import SegmentationLoss
    from .models import SegmentationModel, SegmentationOutput, TimmEncoder

_LAZY = {
    "._factory": ("create_model", "load_model"),
    "._pretrained": ("PretrainedCfg", "resolve_data_config"),
    "._registry": ("get_pretrained_cfg", "is_model", "list_models", "list_pretrained_tags", "model_entrypoint",
                   "register_model", "register_pretrained_cfgs"),
    ".layers": ("ASPP", "CONTEXTS", "CONTEXT_STATES", "ClassifierDecoder", "DeepLabV3PlusDecoder", "EMAContext",
                "EMAUnit", "FactorizationContext", "FoldedFactorizationContext", "Reconstruction", "create_context",
                "get_context_state", "set_context_state"),
    ".losses": ("SegmentationLoss",),
    ".models": ("SegmentationModel", "SegmentationOutput", "TimmEncoder"),
}
_WHERE = {name: module for module, names in _LAZY.items() for name in names}


def __getattr__(name: str) -> Any:
    if name == "from_pretrained":  # SegmentationModel.from_pretrained: any saved model source
        value = __getattr__("SegmentationModel").from_pretrained
    elif name in _WHERE:
        value = getattr(importlib.import_module(_WHERE[name], __name__), name)
    else:
        raise AttributeError(f"module 'mfnet_zoo' has no attribute {name!r}")
    globals()[name] = value  # once imported, a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


def reparameterize_model(model: SegmentationModel, inplace: bool = False) -> SegmentationModel:
    """A folded copy of ``model`` for inference (``inplace=True``: the model itself), as timm's
    ``reparameterize_model``; see :meth:`SegmentationModel.reparameterize`."""
    return (model if inplace else copy.deepcopy(model)).reparameterize()


__all__ = [
    "ASPP",
    "CONTEXTS",
    "CONTEXT_STATES",
    "ClassifierDecoder",
    "DeepLabV3PlusDecoder",
    "EMAContext",
    "EMAUnit",
    "FactorizationContext",
    "FoldedFactorizationContext",
    "PretrainedCfg",
    "Reconstruction",
    "SegmentationLoss",
    "SegmentationModel",
    "SegmentationOutput",
    "TimmEncoder",
    "__version__",
    "create_context",
    "create_model",
    "from_pretrained",
    "get_context_state",
    "get_pretrained_cfg",
    "is_model",
    "list_models",
    "list_pretrained_tags",
    "load_model",
    "model_entrypoint",
    "register_model",
    "register_pretrained_cfgs",
    "reparameterize_model",
    "resolve_data_config",
    "set_context_state",
]
