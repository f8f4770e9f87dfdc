"""Joint image/mask transforms (torchvision.transforms.v2 with tv_tensors.Mask).

Masks are resized with nearest neighbour and padded with the ignore index; images are
padded with 0 before normalisation (as DeepLab's code).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from .._constants import IMAGENET_MEAN, IMAGENET_STD

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "RandomScale", "train_transforms", "eval_transforms"]


class RandomScale(v2.Transform):
    """Rescale image and mask by one factor drawn uniformly from ``scale_range`` (0.5-2.0 in DeepLab)."""

    def __init__(self, scale_range: tuple[float, float] = (0.5, 2.0)) -> None:
        super().__init__()
        if not 0 < scale_range[0] <= scale_range[1]:
            raise ValueError(f"scale_range must be (low, high) with 0 < low <= high, got {scale_range!r}")
        self.scale_range = tuple(scale_range)

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        height, width = v2.query_size(flat_inputs)
        scale = float(torch.empty(1).uniform_(*self.scale_range))
        return {"size": [max(1, round(height * scale)), max(1, round(width * scale))]}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        return TF.resize(inpt, params["size"], antialias=True)  # masks: nearest, by type


def _finish(mean: Sequence[float], std: Sequence[float]) -> list[v2.Transform]:
    return [v2.ToDtype({tv_tensors.Image: torch.float32, tv_tensors.Mask: torch.int64, "others": None}, scale=True),
            v2.Normalize(mean=list(mean), std=list(std))]


def train_transforms(crop_size: int = 513, scale_range: tuple[float, float] | None = (0.5, 2.0), flip: bool = True,
                     mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                     ignore_index: int = 255) -> v2.Compose:
    """Random scale, random crop of ``crop_size`` (padded: image 0, mask ``ignore_index``), flip, normalise.

    ``scale_range=None, flip=False`` is the paper's "no augmentation": the shorter side is
    resized to ``crop_size`` and the centre is cropped.
    """
    if scale_range is None and not flip:
        geometry = [v2.Resize(crop_size, antialias=True), v2.CenterCrop(crop_size)]
    else:
        geometry = [RandomScale(scale_range)] if scale_range is not None else []
        geometry.append(v2.RandomCrop(crop_size, pad_if_needed=True,
                                      fill={tv_tensors.Image: 0, tv_tensors.Mask: ignore_index, "others": 0}))
        if flip:
            geometry.append(v2.RandomHorizontalFlip())
    return v2.Compose([v2.ToImage(), *geometry, *_finish(mean, std)])


def eval_transforms(mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> v2.Compose:
    """Full-size evaluation: only convert and normalise (metrics are computed at the original size)."""
    return v2.Compose([v2.ToImage(), *_finish(mean, std)])
