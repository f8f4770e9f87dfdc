"""mfnet_zoo: segmentation models with low-rank factorization context (MFNet) and its baselines."""
from ._factory import create_model
from ._registry import is_model, list_models, list_pretrained_tags, model_entrypoint, register_model
from .layers import (ASPP, ClassifierDecoder, DeepLabV3PlusDecoder, EMAContext, EMAUnit, FactorizationContext,
                     Reconstruction)
from .losses import SegmentationLoss
from .models import SegmentationModel, SegmentationOutput, TimmEncoder
from .version import __version__

__all__ = [
    "ASPP",
    "ClassifierDecoder",
    "DeepLabV3PlusDecoder",
    "EMAContext",
    "EMAUnit",
    "FactorizationContext",
    "Reconstruction",
    "SegmentationLoss",
    "SegmentationModel",
    "SegmentationOutput",
    "TimmEncoder",
    "__version__",
    "create_model",
    "is_model",
    "list_models",
    "list_pretrained_tags",
    "model_entrypoint",
    "register_model",
]
