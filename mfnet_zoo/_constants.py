"""Constants shared across the package (one definition each)."""
from __future__ import annotations

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "AMP_CHOICES", "DATASETS", "CONVERT_SOURCES"]

# the normalisation of torchvision's and timm's ImageNet weights (timm.data.IMAGENET_DEFAULT_MEAN/STD)
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

# choices the command line offers; here, so that `mfnet-zoo --help` needs no torch
AMP_CHOICES: tuple[str, ...] = ("none", "bf16", "fp16")  # mfnet_zoo.inference.autocast
DATASETS: tuple[str, ...] = ("synthetic", "folder", "voc", "voc-aug")  # mfnet_zoo.data.build_dataset
CONVERT_SOURCES: tuple[str, ...] = ("paper-mfnet", "paper-deeplab", "paper-emanet", "emanet")  # mfnet_zoo.convert
