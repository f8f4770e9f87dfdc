"""mfnet_zoo: segmentation models with low-rank factorization context (MFNet) and its baselines.

The package is a lazy facade (PEP 562): ``import mfnet_zoo`` costs nothing, and the first public
name used imports torch and timm (the registry loads the model families on its first lookup), so
that ``mfnet-zoo --help`` answers without loading them. It exports the registry, the factory and
loading, the loss and the four named blocks; the other layers live in :mod:`mfnet_zoo.layers`.
"""
from __future__ import annotations

import copy
import importlib
from typing import TYPE_CHECKING, Any

from ._deprecations import moved_names
from .version import __version__

if TYPE_CHECKING:  # what the lazy names are, for type checkers and the API docs
    from ._factory import create_model, load_model
    from ._pretrained import PretrainedCfg, resolve_data_config
    from ._registry import (get_pretrained_cfg, is_model, list_models, list_pretrained_tags, model_entrypoint,
                            register_model, register_pretrained_cfgs)
    from .layers import ASPP, DeepLabV3PlusDecoder, EMAUnit, FactorizationContext
    from .losses import SegmentationLoss
    from .models import SegmentationModel, SegmentationOutput, TimmEncoder

_LAZY = {
    "._factory": ("create_model", "load_model"),
    "._pretrained": ("PretrainedCfg", "resolve_data_config"),
    "._registry": ("get_pretrained_cfg", "is_model", "list_models", "list_pretrained_tags", "model_entrypoint",
                   "register_model", "register_pretrained_cfgs"),
    ".layers": ("ASPP", "DeepLabV3PlusDecoder", "EMAUnit", "FactorizationContext"),  # the four named blocks
    ".losses": ("SegmentationLoss",),
    ".models": ("SegmentationModel", "SegmentationOutput", "TimmEncoder"),
}
_WHERE = {name: module for module, names in _LAZY.items() for name in names}
# layer internals the facade used to export: importable from mfnet_zoo.layers, where they live
_moved = moved_names(__name__, dict.fromkeys(
    ("CONTEXTS", "CONTEXT_STATES", "ClassifierDecoder", "EMAContext", "FoldedFactorizationContext", "Reconstruction",
     "create_context", "get_context_state", "set_context_state"), "mfnet_zoo.layers"))


def __getattr__(name: str) -> Any:
    if name == "from_pretrained":  # SegmentationModel.from_pretrained: any saved model source
        value = __getattr__("SegmentationModel").from_pretrained
    elif name in _WHERE:
        value = getattr(importlib.import_module(_WHERE[name], __name__), name)
    else:
        return _moved(name)  # a moved name (with a FutureWarning each time), else AttributeError
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
    "DeepLabV3PlusDecoder",
    "EMAUnit",
    "FactorizationContext",
    "PretrainedCfg",
    "SegmentationLoss",
    "SegmentationModel",
    "SegmentationOutput",
    "TimmEncoder",
    "__version__",
    "create_model",
    "from_pretrained",
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
]
