"""Datasets (VOC, SBD train_aug, folders, synthetic scenes) and joint image/mask transforms."""
from .factory import DATASETS, build_dataset
from .folder import FolderDataset, apply_orientation, exif_orientation, load_image, load_mask, load_pair
from .synthetic import SYNTHETIC_CLASSES, SyntheticShapes, render_scene, write_synthetic_dataset
from .transforms import IMAGENET_MEAN, IMAGENET_STD, RandomScale, eval_transforms, train_transforms
from .voc import VOC_CLASSES, VOCAugSegmentation, VOCSegmentation

__all__ = [
    "DATASETS",
    "FolderDataset",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "RandomScale",
    "SYNTHETIC_CLASSES",
    "SyntheticShapes",
    "VOCAugSegmentation",
    "VOCSegmentation",
    "VOC_CLASSES",
    "apply_orientation",
    "build_dataset",
    "eval_transforms",
    "exif_orientation",
    "load_image",
    "load_mask",
    "load_pair",
    "render_scene",
    "train_transforms",
    "write_synthetic_dataset",
]
