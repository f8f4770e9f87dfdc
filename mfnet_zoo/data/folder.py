"""Custom data in a folder: images/{split}/NAME.(jpg|png|...) + masks/{split}/NAME.png [+ classes.txt]."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from torch.utils.data import Dataset
from torchvision import tv_tensors

__all__ = ["FolderDataset", "load_image", "load_mask"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def load_image(path: str | Path) -> tv_tensors.Image:
    """An RGB uint8 image 3 x H x W, EXIF orientation applied; grayscale/RGBA/16-bit converted."""
    try:
        with Image.open(path) as image:
            image = ImageOps.exif_transpose(image)
            if image.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16-bit: rescale to 8 bits
                array = np.asarray(image, dtype=np.float32)
                image = Image.fromarray((array / max(array.max(), 1) * 255).astype(np.uint8))
            array = np.asarray(image.convert("RGB"))
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot read image {str(path)!r}: {e}") from e
    return tv_tensors.Image(torch.from_numpy(array.copy()).permute(2, 0, 1))


def load_mask(path: str | Path) -> tv_tensors.Mask:
    """A class-index mask H x W int64 from a palette ('P') or grayscale ('L') PNG."""
    try:
        with Image.open(path) as mask:
            if mask.mode not in ("P", "L", "I", "I;16"):
                raise ValueError(f"mode {mask.mode!r}; expected a palette or grayscale PNG of class indices")
            array = np.asarray(mask, dtype=np.int64)
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot read mask {str(path)!r}: {e}") from e
    return tv_tensors.Mask(torch.from_numpy(array.copy()))


def check_pair(image: torch.Tensor, mask: torch.Tensor, num_classes: int | None, ignore_index: int,
               name: str) -> None:
    """Raise ValueError naming ``name`` on a size mismatch or labels outside [0, num_classes) + ignore."""
    if image.shape[-2:] != mask.shape[-2:]:
        raise ValueError(f"{name}: image is {tuple(image.shape[-2:])} but its mask is {tuple(mask.shape[-2:])}")
    if num_classes is not None:
        bad = mask[((mask < 0) | (mask >= num_classes)) & (mask != ignore_index)]
        if bad.numel():
            raise ValueError(f"{name}: mask labels {sorted(set(bad.unique().tolist()))[:10]} are outside "
                             f"[0, {num_classes}) and not the ignore index {ignore_index}")


class FolderDataset(Dataset):
    """Images and class-index PNG masks with the same stem, in ``root/images/{split}`` and ``root/masks/{split}``.

    ``root/classes.txt`` (one name per line) gives the class names and count; without it pass
    ``num_classes`` to have labels checked. Items: ``transforms(image, mask)`` with a uint8
    tv_tensors.Image and an int64 tv_tensors.Mask. A bad pair (unreadable file, size mismatch,
    label out of range) is an error naming the file when it is read; with ``skip_bad=True``
    every pair is checked up front (reads the whole split once), bad ones are left out and
    listed in ``skipped``.
    """

    def __init__(self, root: str | Path, split: str = "train", transforms=None, num_classes: int | None = None,
                 ignore_index: int = 255, skip_bad: bool = False) -> None:
        self.root = Path(root)
        image_dir, mask_dir = self.root / "images" / split, self.root / "masks" / split
        for folder in (image_dir, mask_dir):
            if not folder.is_dir():
                raise FileNotFoundError(f"dataset folder {str(folder)!r} does not exist; expected the layout "
                                        f"images/{split}/*.jpg|png and masks/{split}/*.png under {str(self.root)!r}")
        self.images = sorted(p for p in image_dir.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
        if not self.images:
            raise FileNotFoundError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in {str(image_dir)!r}")
        self.masks = [mask_dir / f"{p.stem}.png" for p in self.images]
        missing = [str(m) for m in self.masks if not m.is_file()]
        if missing:
            raise FileNotFoundError(f"{len(missing)} image(s) have no mask, e.g. {missing[:3]}")
        classes_file = self.root / "classes.txt"
        self.classes = ([line.strip() for line in classes_file.read_text().splitlines() if line.strip()]
                        if classes_file.is_file() else None)
        self.num_classes = len(self.classes) if self.classes else num_classes
        self.ignore_index = ignore_index
        self.transforms = transforms
        self.skipped: list[str] = []
        if skip_bad:
            good = []
            for pair in zip(self.images, self.masks):
                try:
                    self._load(*pair)
                    good.append(pair)
                except ValueError as e:
                    self.skipped.append(str(e))
            if not good:
                raise ValueError(f"every image in {str(image_dir)!r} is bad, e.g. {self.skipped[0]}")
            self.images, self.masks = [p for p, _ in good], [m for _, m in good]
            if self.skipped:
                warnings.warn(f"skipped {len(self.skipped)} bad image/mask pair(s) in {str(image_dir)!r}, "
                              f"e.g. {self.skipped[0]}", UserWarning, stacklevel=2)

    def __len__(self) -> int:
        return len(self.images)

    def _load(self, image_path: Path, mask_path: Path) -> tuple[tv_tensors.Image, tv_tensors.Mask]:
        image, mask = load_image(image_path), load_mask(mask_path)
        check_pair(image, mask, self.num_classes, self.ignore_index, str(image_path))
        return image, mask

    def __getitem__(self, index: int):
        image, mask = self._load(self.images[index], self.masks[index])
        return self.transforms(image, mask) if self.transforms is not None else (image, mask)
