"""One place that turns a dataset name (what ``mfnet-zoo --data`` takes) into a dataset and its class names."""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path

from torch.utils.data import Dataset

from .._constants import DATASETS
from .folder import FolderDataset
from .synthetic import SyntheticShapes
from .voc import VOC_CLASSES, VOCAugSegmentation, VOCSegmentation

__all__ = ["DATASETS", "DataOptions", "build_dataset"]


def build_dataset(name: str, split: str, transforms: Callable | None = None, *, root: str | Path | None = None,
                  sbd_root: str | Path | None = None, download: bool = False, num_classes: int | None = None,
                  skip_bad: bool = False, synthetic_size: int = 1600, image_size: int | None = None,
                  classes: Sequence[str] | None = None) -> tuple[Dataset, Sequence[str]]:
    """The dataset ``name`` (one of :data:`DATASETS`) for ``split`` and its class names.

    - ``synthetic``: rendered scenes, ``synthetic_size`` for 'train' (seed 0), an eighth (at least 16)
      otherwise (seed 1), ``image_size`` pixels square (default 64);
    - ``synthetic-local``, ``synthetic-global``, ``synthetic-global-nocue``: the context study's scenes
      (:func:`~mfnet_zoo.data.render_context_scene`), the same sizes and seeds, default 224 pixels;
    - ``folder``: :class:`FolderDataset` under ``root``: its classes named by ``classes``, else its
      classes.txt, else ``num_classes``, else taken from the train masks; ``skip_bad``;
    - ``voc``: VOC 2012 under ``root``; ``voc-aug``: SBD's train_aug (``sbd_root``) for 'train', VOC otherwise.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; available: {tuple(DATASETS)}")
    if name.startswith("synthetic"):
        scenes = name.removeprefix("synthetic").removeprefix("-") or "shapes"
        size = image_size or (64 if scenes == "shapes" else 224)
        ds = SyntheticShapes(synthetic_size if split == "train" else max(synthetic_size // 8, 16), size,
                             seed=0 if split == "train" else 1, transforms=transforms, scenes=scenes)
        return ds, list(ds.classes)
    if root is None:
        raise ValueError(f"--data {name} needs --data-root: the dataset's root folder (root=)")
    if name == "folder":
        ds = FolderDataset(root, split, transforms=transforms, num_classes=num_classes, skip_bad=skip_bad,
                           classes=classes)
        return ds, list(ds.classes)
    if name == "voc-aug" and split == "train":
        if sbd_root is None:
            raise ValueError("--data voc-aug needs --sbd-root (the SBD 'benchmark_RELEASE/dataset' folder, sbd_root=)")
        return VOCAugSegmentation(root, sbd_root, download, transforms), list(VOC_CLASSES)
    return VOCSegmentation(root, split, download, transforms), list(VOC_CLASSES)


@dataclasses.dataclass(frozen=True)
class DataOptions:
    """A dataset by name and its options, as ``mfnet-zoo --data ...`` gives them (see :func:`build_dataset`)."""

    name: str = "synthetic"
    root: str | Path | None = None
    sbd_root: str | Path | None = None
    download: bool = False
    num_classes: int | None = None
    skip_bad: bool = False
    synthetic_size: int = 1600
    image_size: int | None = None
    classes: tuple[str, ...] | None = None  # --data folder: the class names, in index order (--classes a,b,c)

    def __post_init__(self) -> None:
        if self.name not in DATASETS:
            raise ValueError(f"unknown dataset {self.name!r}; available: {tuple(DATASETS)}")
        if self.classes is not None and self.name != "folder":
            raise ValueError(f"classes names a folder dataset's classes (--data folder); {self.name!r} has its "
                             f"own: {self.classes}")

    def build(self, split: str, transforms: Callable | None = None) -> tuple[Dataset, Sequence[str]]:
        """The dataset for ``split`` and its class names."""
        return build_dataset(self.name, split, transforms, root=self.root, sbd_root=self.sbd_root,
                             download=self.download, num_classes=self.num_classes, skip_bad=self.skip_bad,
                             synthetic_size=self.synthetic_size, image_size=self.image_size, classes=self.classes)

    def full_images(self, protocol: str) -> bool:
        """Whether evaluation under ``protocol`` goes one image at a time: the full images of VOC and of a folder
        may differ in size (the paper protocol's crops, and the synthetic scenes, share one)."""
        return self.name in ("voc", "voc-aug", "folder") and protocol == "full"
