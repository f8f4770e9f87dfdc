"""Custom data in a folder: images/{split}/NAME.(jpg|png|...) + masks/{split}/NAME.png [+ classes.txt]."""
from __future__ import annotations

import dataclasses
import functools
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision import tv_tensors

__all__ = ["FolderDataset", "MaskLabels", "apply_orientation", "exif_orientation", "load_image", "load_mask",
           "load_pair", "read_class_names", "scan_mask_labels"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
CLASSES_FILE = "classes.txt"  # one class name per line, in index order
MASK_MODES = ("P", "L", "I", "I;16")  # palette or grayscale PNGs of class indices
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


def _mask_array(path: str | Path) -> tuple[np.ndarray, int]:
    """(H x W class indices in the file's own integer type, its EXIF orientation)."""
    try:
        with Image.open(path) as mask:
            if mask.mode not in MASK_MODES:
                raise ValueError(f"mode {mask.mode!r}; expected a palette or grayscale PNG of class indices")
            return np.asarray(mask), exif_orientation(mask)
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot read mask {str(path)!r}: {e}") from e


def _read_mask(path: str | Path) -> tuple[torch.Tensor, int]:
    array, orientation = _mask_array(path)
    return torch.from_numpy(array.astype(np.int64)), orientation


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
               name: str, orientation: int = 1, classes_from: str = "") -> None:
    """Raise ValueError naming ``name`` (the mask file: the one to fix) on a size mismatch or labels outside
    [0, num_classes) + ignore.

    ``orientation``: the EXIF orientation applied to both (named in a size mismatch it may explain);
    ``classes_from``: where the class count came from, said in a label error.
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
                             f"[0, {num_classes}) and not the ignore index {ignore_index}"
                             + (f"; {classes_from}" if classes_from else ""))


def read_class_names(root: str | Path) -> list[str] | None:
    """The class names in ``root/classes.txt`` (one per line, blank lines skipped), or None without the file."""
    path = Path(root) / CLASSES_FILE
    if not path.is_file():
        return None
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


@dataclasses.dataclass(frozen=True)
class MaskLabels:
    """What one pass over a folder of masks found: the class labels that occur (the ignore index left out)."""

    folder: Path
    masks: int
    labels: tuple[int, ...]

    @property
    def num_classes(self) -> int:
        """The highest label + 1: the class count the masks imply."""
        return self.labels[-1] + 1

    @property
    def unseen(self) -> tuple[int, ...]:
        """Indices below the highest label that no mask holds (a class the data never shows, or a typo)."""
        present = set(self.labels)
        return tuple(i for i in range(self.num_classes) if i not in present)

    def describe(self) -> str:
        """One line: the class count and where it came from."""
        return (f"{self.num_classes} classes: the highest label in the {self.masks} masks of {str(self.folder)!r} "
                f"is {self.num_classes - 1} (no {CLASSES_FILE} or --classes to name them)")


def scan_mask_labels(folder: str | Path, ignore_index: int = 255, skip_bad: bool = False) -> MaskLabels:
    """One pass over the PNG masks in ``folder`` (each file's pixels read once, as stored): the labels that occur.

    An unreadable mask or a negative label is a ValueError naming the file (``skip_bad``: left out). A scan
    is remembered while the files are unchanged (name, size, modification time), so the train and
    validation sets of one run share it. Warns, once, listing any index below the highest that no mask holds.
    """
    folder = Path(folder)
    masks = sorted(folder.glob("*.png"))
    if not masks:
        raise FileNotFoundError(f"no masks (*.png) in {str(folder)!r} to take the class count from")
    signature = tuple((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in masks)
    return _scan(folder, signature, ignore_index, skip_bad)


@functools.lru_cache(maxsize=8)
def _scan(folder: Path, signature: tuple[tuple[str, int, int], ...], ignore_index: int, skip_bad: bool) -> MaskLabels:
    present: set[int] = set()
    read = 0
    for name, _, _ in signature:
        try:
            array, _ = _mask_array(folder / name)
        except ValueError:
            if skip_bad:
                continue
            raise
        values = (np.flatnonzero(np.bincount(array.ravel(), minlength=256)) if array.dtype == np.uint8
                  else np.unique(array))
        if values.size and values[0] < 0:
            raise ValueError(f"{str(folder / name)!r}: mask label {int(values[0])} is negative; labels are class "
                             f"indices 0, 1, ... (and the ignore index {ignore_index})")
        present.update(int(v) for v in values if v != ignore_index)
        read += 1
    if not present:
        raise ValueError(f"the masks in {str(folder)!r} hold no class label (only the ignore index {ignore_index}); "
                         f"nothing to take the class count from")
    found = MaskLabels(folder, read, tuple(sorted(present)))
    if found.unseen:
        shown = ", ".join(map(str, found.unseen[:20])) + (", ..." if len(found.unseen) > 20 else "")
        warnings.warn(f"{found.num_classes} classes taken from the highest label in {str(folder)!r}, but no mask "
                      f"holds index(es) {shown}: a class these masks never show, or a mislabelled mask",
                      UserWarning, stacklevel=4)
    return found


class FolderDataset(Dataset):
    """Images and class-index PNG masks with the same stem, in ``root/images/{split}`` and ``root/masks/{split}``.

    The class names, first found of: ``classes`` (``--classes a,b,c``), ``root/classes.txt`` (one name per
    line), ``num_classes`` (named "0", "1", ...), else the masks: one pass over ``root/masks/train``
    (:func:`scan_mask_labels`; the highest label + 1, the ignore index left out; named "0", "1", ...).
    ``class_source`` says which (``"classes"``, ``"classes.txt"``, ``"num_classes"``, ``"masks"``) and
    ``mask_labels`` holds the scan. Items: ``transforms(image, mask)`` with a uint8 tv_tensors.Image and an
    int64 tv_tensors.Mask. A bad pair (unreadable file, size mismatch, label outside the classes) is an
    error naming the mask file when it is read; with ``skip_bad=True`` every pair is checked up front (reads
    the whole split once), bad ones are left out and listed in ``skipped``.

    Orientation: a mask is in the pixel grid of its image file as stored, and the image's EXIF
    orientation tag turns both (:func:`load_pair`): a phone photo and its mask stay aligned and
    train upright, as ``predict`` shows photos.
    """

    def __init__(self, root: str | Path, split: str = "train", transforms=None, num_classes: int | None = None,
                 ignore_index: int = 255, skip_bad: bool = False, classes: Sequence[str] | None = None) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"dataset root {str(self.root)!r} does not exist or is not a folder; expected "
                                    f"images/{split}/*.jpg|png and masks/{split}/*.png in it")
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
        self.ignore_index = ignore_index
        self.mask_labels: MaskLabels | None = None
        self.classes, self.class_source = self._class_names(classes, num_classes, mask_dir, skip_bad)
        self.num_classes = len(self.classes)
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

    def _class_names(self, classes: Sequence[str] | None, num_classes: int | None, mask_dir: Path,
                     skip_bad: bool) -> tuple[list[str], str]:
        """(names, where they came from); see the class docstring for the order."""
        in_file = read_class_names(self.root)
        if classes is not None:
            if isinstance(classes, str):
                raise TypeError(f"classes takes a sequence of names, got the string {classes!r}")
            names, source = [str(c).strip() for c in classes], "classes"
            if in_file is not None and in_file != names:
                raise ValueError(f"classes {names} differ from {str(self.root / CLASSES_FILE)!r} ({in_file}); "
                                 f"give the names once")
        elif in_file is not None:
            names, source = in_file, CLASSES_FILE
        elif num_classes is not None:
            return [str(i) for i in range(num_classes)], "num_classes"
        else:
            train_masks = self.root / "masks" / "train"
            self.mask_labels = scan_mask_labels(train_masks if train_masks.is_dir() else mask_dir, self.ignore_index,
                                                skip_bad)
            return [str(i) for i in range(self.mask_labels.num_classes)], "masks"
        where = "the classes given" if source == "classes" else repr(str(self.root / CLASSES_FILE))
        if not names or not all(names):
            raise ValueError(f"{where} name(s) an empty class: {names}")
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"{where} name(s) {repeated} more than once: {names}")
        if num_classes is not None and num_classes != len(names):
            raise ValueError(f"num_classes={num_classes}, but {where} name {len(names)} classes: {names}")
        return names, source

    def classes_from(self) -> str:
        """Where the class count came from, in words (said in a label error)."""
        n = self.num_classes
        if self.class_source == "masks":
            return (f"the {n} classes are the highest label in {str(self.mask_labels.folder)!r} + 1: name every "
                    f"class in {CLASSES_FILE} or with --classes")
        if self.class_source == "num_classes":
            return f"num_classes is {n}"
        where = "given (--classes)" if self.class_source == "classes" else f"in {str(self.root / CLASSES_FILE)!r}"
        return f"{n} classes are named {where}: fix the mask or name the missing classes"

    def __len__(self) -> int:
        return len(self.images)

    def _load(self, image_path: Path, mask_path: Path) -> tuple[tv_tensors.Image, tv_tensors.Mask]:
        image, mask, orientation = load_pair(image_path, mask_path)
        check_pair(image, mask, self.num_classes, self.ignore_index, str(mask_path), orientation,
                   self.classes_from())
        return image, mask

    def __getitem__(self, index: int):
        image, mask = self._load(self.images[index], self.masks[index])
        return self.transforms(image, mask) if self.transforms is not None else (image, mask)
