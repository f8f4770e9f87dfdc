"""Custom data in a folder: images/{split}/NAME.(jpg|png|...) + masks/{split}/NAME.png [+ classes.txt]."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision import tv_tensors

__all__ = ["FolderDataset", "apply_orientation", "exif_orientation", "load_image", "load_mask", "load_pair"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
EXIF_ORIENTATION = 0x0112  # the EXIF tag: 1 upright; 2-8 mirrored and/or rotated as stored


def exif_orientation(image: Image.Image) -> int:
    """The EXIF orientation (1-8) of an opened image; 1 when it has none (or a value outside 1-8)."""
    value = image.getexif().get(EXIF_ORIENTATION, 1)
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def apply_orientation(x: torch.Tensor, orientation: int) -> torch.Tensor:
    """``x`` (... x H x W, an image or a mask) as EXIF ``orientation`` says to show it upright.

    The same transposition as ``PIL.ImageOps.exif_transpose``, on tensors, so an image and its mask
    (or any per-pixel map of it) are turned alike.
    """
    if orientation in (5, 6, 7, 8):  # a quarter turn (after a mirror for 5 and 7): height and width swap
        x = torch.rot90(x, 1 if orientation in (7, 8) else -1, dims=(-2, -1))
    if orientation in (2, 3, 5, 7):
        x = x.flip(-1)
    if orientation in (3, 4):
        x = x.flip(-2)
    return x


def _read_image(path: str | Path) -> tuple[torch.Tensor, int]:
    """(3 x H x W uint8 as stored, its EXIF orientation)."""
    try:
        with Image.open(path) as image:
            orientation = exif_orientation(image)
            if image.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16-bit: rescale to 8 bits
                array = np.asarray(image, dtype=np.float32)
                image = Image.fromarray((array / max(array.max(), 1) * 255).astype(np.uint8))
            array = np.asarray(image.convert("RGB"))
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot read image {str(path)!r}: {e}") from e
    return torch.from_numpy(array.copy()).permute(2, 0, 1), orientation


def load_image(path: str | Path, exif: bool = True) -> tv_tensors.Image:
    """An RGB uint8 image 3 x H x W, EXIF orientation applied (``exif=False``: as stored);
    grayscale/RGBA/16-bit converted."""
    image, orientation = _read_image(path)
    return tv_tensors.Image(apply_orientation(image, orientation) if exif else image)


def _read_mask(path: str | Path) -> tuple[torch.Tensor, int]:
    try:
        with Image.open(path) as mask:
            if mask.mode not in ("P", "L", "I", "I;16"):
                raise ValueError(f"mode {mask.mode!r}; expected a palette or grayscale PNG of class indices")
            orientation = exif_orientation(mask)
            array = np.asarray(mask, dtype=np.int64)
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot read mask {str(path)!r}: {e}") from e
    return torch.from_numpy(array.copy()), orientation


def load_mask(path: str | Path, orientation: int = 1) -> tv_tensors.Mask:
    """A class-index mask H x W int64 from a palette ('P') or grayscale ('L') PNG, turned as EXIF
    ``orientation`` says (pass its image's; the mask's own tag is not read, see :func:`load_pair`)."""
    return tv_tensors.Mask(apply_orientation(_read_mask(path)[0], orientation))


def load_pair(image_path: str | Path, mask_path: str | Path) -> tuple[tv_tensors.Image, tv_tensors.Mask, int]:
    """An image and its mask, aligned and upright: ``(image, mask, orientation)``.

    The mask is taken to be in the pixel grid of the image file as stored (as the image's pixels
    are), so the image's EXIF orientation turns both alike, and a photo with an orientation tag
    trains the right way up, as ``predict`` shows it. A mask whose own orientation tag differs from
    its image's is an error (which of the two to follow is unclear).
    """
    image, orientation = _read_image(image_path)
    mask, own = _read_mask(mask_path)
    if own not in (1, orientation):
        raise ValueError(f"{str(mask_path)!r} has EXIF orientation {own}, its image {str(image_path)!r} "
                         f"{orientation}: masks follow their image's orientation; remove the mask's tag "
                         f"or save it in the image's stored pixel grid")
    return (tv_tensors.Image(apply_orientation(image, orientation)),
            tv_tensors.Mask(apply_orientation(mask, orientation)), orientation)


def check_pair(image: torch.Tensor, mask: torch.Tensor, num_classes: int | None, ignore_index: int,
               name: str, orientation: int = 1) -> None:
    """Raise ValueError naming ``name`` on a size mismatch or labels outside [0, num_classes) + ignore.

    ``orientation``: the EXIF orientation applied to both (named in a size mismatch it may explain).
    """
    if image.shape[-2:] != mask.shape[-2:]:
        turned = (f" (after the image's EXIF orientation {orientation}, applied to both: the mask must be in "
                  f"the image's stored pixel grid, not turned upright)" if orientation != 1 else "")
        raise ValueError(f"{name}: image is {tuple(image.shape[-2:])} but its mask is {tuple(mask.shape[-2:])}"
                         f"{turned}")
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

    Orientation: a mask is in the pixel grid of its image file as stored, and the image's EXIF
    orientation tag turns both (:func:`load_pair`): a phone photo and its mask stay aligned and
    train upright, as ``predict`` shows photos.
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
        image, mask, orientation = load_pair(image_path, mask_path)
        check_pair(image, mask, self.num_classes, self.ignore_index, str(image_path), orientation)
        return image, mask

    def __getitem__(self, index: int):
        image, mask = self._load(self.images[index], self.masks[index])
        return self.transforms(image, mask) if self.transforms is not None else (image, mask)
