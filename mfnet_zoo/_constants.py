"""Constants shared across the package (one definition each)."""
from __future__ import annotations

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD"]

# the normalisation of torchvision's and timm's ImageNet weights (timm.data.IMAGENET_DEFAULT_MEAN/STD)
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
