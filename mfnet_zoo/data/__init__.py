"""Datasets (VOC, SBD train_aug, folders, synthetic scenes) and joint image/mask transforms."""
from .factory import DATASETS, DataOptions, build_dataset
from .folder import FolderDataset, apply_orientation, exif_orientation, load_image, load_mask, load_pair
from .synthetic import (CONTEXT_CLASSES, SCENES, SYNTHETIC_CLASSES, SyntheticShapes, render_context_scene, render_scene,
                        write_synthetic_dataset)
from .transforms import (AUGMENTATIONS, EVAL_PROTOCOLS, IMAGENET_MEAN, IMAGENET_STD, FixScaleCrop, RandomGaussianBlur,
                         RandomScale, RandomScaleCrop, build_eval_transforms, build_train_transforms, eval_transforms,
                         paper_eval_transforms, paper_train_transforms, pil_gaussian_blur, train_transforms)
from .voc import VOC_CLASSES, VOCAugSegmentation, VOCSegmentation

__all__ = [
    "AUGMENTATIONS",
    "CONTEXT_CLASSES",
    "DATASETS",
    "DataOptions",
    "EVAL_PROTOCOLS",
    "FixScaleCrop",
    "FolderDataset",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "RandomGaussianBlur",
    "RandomScale",
    "RandomScaleCrop",
    "SCENES",
    "SYNTHETIC_CLASSES",
    "SyntheticShapes",
    "VOCAugSegmentation",
    "VOCSegmentation",
    "VOC_CLASSES",
    "apply_orientation",
    "build_dataset",
    "build_eval_transforms",
    "build_train_transforms",
    "eval_transforms",
    "exif_orientation",
    "load_image",
    "load_mask",
    "load_pair",
    "paper_eval_transforms",
    "paper_train_transforms",
    "pil_gaussian_blur",
    "render_context_scene",
    "render_scene",
    "train_transforms",
    "write_synthetic_dataset",
]
