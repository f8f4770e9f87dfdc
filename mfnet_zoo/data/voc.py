"""PASCAL VOC 2012 and the SBD-augmented 'train_aug' set (10,582 images), via torchvision."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision import tv_tensors

from .._extras import require
from .folder import _read_image, apply_orientation, check_pair, load_pair

__all__ = ["VOC_CLASSES", "VOCSegmentation", "VOCAugSegmentation"]

VOC_CLASSES = ("background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
               "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
               "tvmonitor")


def _voc(root: str | Path, split: str, download: bool):
    from torchvision.datasets import VOCSegmentation as TorchvisionVOC

    try:
        return TorchvisionVOC(str(root), year="2012", image_set=split, download=download)
    except (RuntimeError, ValueError) as e:
        raise FileNotFoundError(f"PASCAL VOC 2012 ({split}) not found under {str(root)!r} (expected "
                                f"VOCdevkit/VOC2012/...); pass download=True or --download: {e}") from e


class VOCSegmentation(Dataset):
    """VOC 2012 segmentation ``split`` ('train' 1,464, 'val' 1,449, 'trainval') from ``root``.

    Items: ``transforms(image, mask)`` with a uint8 tv_tensors.Image and an int64 Mask
    (255 = void, ignored).
    """

    classes = VOC_CLASSES

    def __init__(self, root: str | Path, split: str = "train", download: bool = False, transforms=None) -> None:
        voc = _voc(root, split, download)
        self.images, self.masks = list(voc.images), list(voc.masks)
        self.transforms = transforms

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        image, mask, orientation = load_pair(self.images[index], self.masks[index])  # as FolderDataset
        check_pair(image, mask, len(VOC_CLASSES), 255, self.masks[index], orientation)
        return self.transforms(image, mask) if self.transforms is not None else (image, mask)


SBD_NEEDS = "reading SBD's .mat masks (--data voc-aug)"


def _load_sbd_mask(path: str) -> tv_tensors.Mask:
    loadmat = require("scipy.io", SBD_NEEDS).loadmat  # the [data] extra
    try:
        array = loadmat(path)["GTcls"][0]["Segmentation"][0]
    except (OSError, KeyError, ValueError, IndexError) as e:
        raise ValueError(f"cannot read SBD mask {path!r}: {e}") from e
    return tv_tensors.Mask(torch.from_numpy(np.asarray(array, dtype=np.int64)))


class VOCAugSegmentation(Dataset):
    """DeepLab's 'train_aug': (SBD train + SBD val + VOC train) minus VOC val.

    torchvision's SBDataset has no such split, so it is assembled here; with the full data it
    has 10,582 images. Where an image is annotated in both, VOC's mask is used (it marks
    object borders as void). Needs scipy (``pip install -e ".[data]"`` in the checkout).
    """

    classes = VOC_CLASSES

    def __init__(self, voc_root: str | Path, sbd_root: str | Path, download: bool = False, transforms=None) -> None:
        from torchvision.datasets import SBDataset

        require("scipy.io", SBD_NEEDS)  # before SBDataset, which would say "SBD not found" without it
        voc_train, voc_val = _voc(voc_root, "train", download), _voc(voc_root, "val", download)
        val_ids = {Path(p).stem for p in voc_val.images}
        items: dict[str, tuple[str, str, bool]] = {}  # id -> (image, mask, is_sbd)
        for split in ("train", "val"):
            try:
                sbd = SBDataset(str(sbd_root), image_set=split, mode="segmentation",
                                download=download and split == "train")
            except (RuntimeError, ValueError) as e:
                raise FileNotFoundError(f"SBD ({split}) not found under {str(sbd_root)!r} (expected img/, cls/, "
                                        f"{split}.txt); pass download=True or --download: {e}") from e
            for image, mask in zip(sbd.images, sbd.masks):
                items[Path(image).stem] = (image, mask, True)
        for image, mask in zip(voc_train.images, voc_train.masks):
            items[Path(image).stem] = (image, mask, False)
        self.ids = sorted(i for i in items if i not in val_ids)
        self._items = [items[i] for i in self.ids]
        self.transforms = transforms

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int):
        image_path, mask_path, is_sbd = self._items[index]
        if is_sbd:  # the image's EXIF orientation turns its mask too, as load_pair
            image, orientation = _read_image(image_path)
            image = tv_tensors.Image(apply_orientation(image, orientation))
            mask = tv_tensors.Mask(apply_orientation(_load_sbd_mask(mask_path), orientation))
        else:
            image, mask, orientation = load_pair(image_path, mask_path)
        check_pair(image, mask, len(VOC_CLASSES), 255, mask_path, orientation)
        return self.transforms(image, mask) if self.transforms is not None else (image, mask)
