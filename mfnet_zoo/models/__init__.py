"""SegmentationModel, the timm encoder wrapper, and the registered families."""
from . import context_deeplab, deeplabv3plus, emanet, fast_deeplab, mfnet  # noqa: F401  (registers the models)
from .encoder import TimmEncoder
from .segmentation import SegmentationModel, SegmentationOutput

__all__ = ["SegmentationModel", "SegmentationOutput", "TimmEncoder"]
