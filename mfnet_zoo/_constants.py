"""Constants shared across the package (one definition each)."""
from __future__ import annotations

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "AMP_CHOICES", "DATASETS", "CONVERT_SOURCES", "AUGMENTATIONS",
           "EVAL_PROTOCOLS", "PRESET_DESCRIPTIONS"]

# the normalisation of torchvision's and timm's ImageNet weights (timm.data.IMAGENET_DEFAULT_MEAN/STD)
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

# choices the command line offers; here, so that `mfnet-zoo --help` needs no torch
AMP_CHOICES: tuple[str, ...] = ("none", "bf16", "fp16")  # mfnet_zoo.inference.autocast
DATASETS: tuple[str, ...] = ("synthetic", "folder", "voc", "voc-aug")  # mfnet_zoo.data.build_dataset
CONVERT_SOURCES: tuple[str, ...] = ("paper-mfnet", "paper-deeplab", "paper-emanet", "emanet")  # mfnet_zoo.convert
AUGMENTATIONS: tuple[str, ...] = ("deeplab", "paper", "none")  # mfnet_zoo.data.build_train_transforms
EVAL_PROTOCOLS: tuple[str, ...] = ("full", "paper")  # mfnet_zoo.data.build_eval_transforms
# mfnet_zoo.train.PRESETS, in words (its keys, in this order)
PRESET_DESCRIPTIONS: dict[str, str] = {
    "paper": "what the paper's code ran: its augmentation, groups and batch-averaged loss, lr 0.07, "
             "MFNet's context pair-only from epoch 10, validation on its 513 centre crops",
    "paper-text": "the method as the paper's text describes it: no augmentation, the context in the logits "
                  "after 10 epochs, every parameter trained",
    "default": "ours: DeepLab's augmentation, batch 8, lr 0.01, everything trained, full-image validation",
}
