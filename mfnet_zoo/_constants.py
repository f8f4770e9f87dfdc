"""Constants shared across the package (one definition each)."""
from __future__ import annotations

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "AMP_CHOICES", "DATASETS", "CONVERT_SOURCES", "AUGMENTATIONS",
           "EVAL_PROTOCOLS", "PRESET_DESCRIPTIONS", "CONTEXT_DESCRIPTIONS"]

# the normalisation of torchvision's and timm's ImageNet weights (timm.data.IMAGENET_DEFAULT_MEAN/STD)
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

# choices the command line offers; here, so that `mfnet-zoo --help` needs no torch
AMP_CHOICES: tuple[str, ...] = ("none", "bf16", "fp16")  # mfnet_zoo.inference.autocast
# mfnet_zoo.data.build_dataset's names -> the name model cards and run.json give them (a folder: its own);
# synthetic-*: the context study's scenes (mfnet_zoo.data.render_context_scene)
DATASETS: dict[str, str | None] = {
    "synthetic": "mfnet_zoo synthetic shapes",
    "synthetic-local": "mfnet_zoo context scenes (local)",
    "synthetic-global": "mfnet_zoo context scenes (global)",
    "synthetic-global-nocue": "mfnet_zoo context scenes (global, cue removed)",
    "folder": None,
    "voc": "PASCAL VOC 2012",
    "voc-aug": "PASCAL VOC 2012 with SBD (train_aug)",
}
CONVERT_SOURCES: tuple[str, ...] = ("paper-mfnet", "paper-deeplab", "paper-emanet", "emanet")  # mfnet_zoo.convert
AUGMENTATIONS: tuple[str, ...] = ("deeplab", "paper", "none")  # mfnet_zoo.data.build_train_transforms
EVAL_PROTOCOLS: tuple[str, ...] = ("full", "paper")  # mfnet_zoo.data.build_eval_transforms
# mfnet_zoo.presets.PRESETS, in words (its keys, in this order)
PRESET_DESCRIPTIONS: dict[str, str] = {
    "paper": "what the paper's code ran: its augmentation, groups and batch-averaged loss, lr 0.07, "
             "MFNet's context pair-only from epoch 10, validation on its 513 centre crops",
    "paper-text": "the method as the paper's text describes it: no augmentation, the context in the logits "
                  "after 10 epochs, every parameter trained",
    "default": "ours: DeepLab's augmentation, batch 8, lr 0.01, everything trained, full-image validation",
}
# mfnet_zoo.layers.create_context's names, in words (width: the channels the block works at; rank: K)
CONTEXT_DESCRIPTIONS: dict[str, str] = {
    "none": "1x1 conv + BN + ReLU: the projection alone, no context",
    "pool": "the 1x1 projection and image pooling (ASPP without atrous branches; ParseNet)",
    "aspp": "ASPP: 1x1, three dilated 3x3 (rates 6, 12, 18 at stride 16), image pooling (no dropout here)",
    "static": "MFNet's static factorization: learned Y Z (the same map for every image) + 1x1 embedding",
    "pair-only": "static factorization as the paper's code ran it: the pair for the loss, the features bypass it",
    "nmf": "input-adaptive NMF of the embedding (this library's settings: seeded bases)",
    "nmf-unrolled": "`nmf` with gradient through every NMF update (bases_grad='unrolled'), not the last one alone",
    "nmf-hamburger": "input-adaptive NMF with Hamburger's segmentation settings (bases redrawn in training)",
    "ema": "EM attention (EMANet's unit) at `width`, between 1x1 projections (EMANet's own are 3x3)",
    "ema-unrolled": "`ema` with gradient through every EM stage (bases_grad='unrolled'; EMANet has none)",
}
