"""mfnet_zoo: segmentation models with low-rank factorization context (MFNet) and its baselines."""
import copy

from ._factory import create_model, load_model
from ._pretrained import PretrainedCfg, resolve_data_config
from ._registry import (get_pretrained_cfg, is_model, list_models, list_pretrained_tags, model_entrypoint,
                        register_model, register_pretrained_cfgs)
from .layers import (ASPP, CONTEXT_STATES, ClassifierDecoder, DeepLabV3PlusDecoder, EMAContext, EMAUnit,
                     FactorizationContext, FoldedFactorizationContext, Reconstruction, get_context_state,
                     set_context_state)
from .losses import SegmentationLoss
from .models import SegmentationModel, SegmentationOutput, TimmEncoder
from .version import __version__

from_pretrained = SegmentationModel.from_pretrained


def reparameterize_model(model: SegmentationModel, inplace: bool = False) -> SegmentationModel:
    """A folded copy of ``model`` for inference (``inplace=True``: the model itself), as timm's
    ``reparameterize_model``; see :meth:`SegmentationModel.reparameterize`."""
    return (model if inplace else copy.deepcopy(model)).reparameterize()

__all__ = [
    "ASPP",
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
