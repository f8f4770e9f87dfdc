"""Joint image/mask transforms (torchvision.transforms.v2 with tv_tensors.Mask).

Masks are resized with nearest neighbour and padded with the ignore index; images are
resized with the encoder's interpolation (``resolve_data_config(model)["interpolation"]``,
bilinear by default) and padded with 0 before normalisation (as DeepLab's code).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torchvision import tv_tensors
from torchvision.transforms import InterpolationMode, v2
from torchvision.transforms.v2 import functional as TF

from .._constants import IMAGENET_MEAN, IMAGENET_STD

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "RandomScale", "train_transforms", "eval_transforms"]


def interpolation_mode(name: str) -> InterpolationMode:
    """torchvision's mode for a timm-style interpolation name ('bilinear', 'bicubic', ...)."""
    try:
        return InterpolationMode(name)
    except ValueError:
        raise ValueError(f"interpolation must be one of {[m.value for m in InterpolationMode]}, got {name!r}") from None


class RandomScale(v2.Transform):
    """Rescale image and mask by one factor drawn uniformly from ``scale_range`` (0.5-2.0 in DeepLab).

    Images are resampled with ``interpolation``; masks always with nearest neighbour.
    """

    def __init__(self, scale_range: tuple[float, float] = (0.5, 2.0), interpolation: str = "bilinear") -> None:
        super().__init__()
        if not 0 < scale_range[0] <= scale_range[1]:
            raise ValueError(f"scale_range must be (low, high) with 0 < low <= high, got {scale_range!r}")
        self.scale_range = tuple(scale_range)
        self.interpolation = interpolation_mode(interpolation)

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        height, width = v2.query_size(flat_inputs)
        scale = float(torch.empty(1).uniform_(*self.scale_range))
        return {"size": [max(1, round(height * scale)), max(1, round(width * scale))]}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        return TF.resize(inpt, params["size"], interpolation=self.interpolation, antialias=True)  # masks: nearest


def _finish(mean: Sequence[float], std: Sequence[float]) -> list[v2.Transform]:
    return [v2.ToDtype({tv_tensors.Image: torch.float32, tv_tensors.Mask: torch.int64, "others": None}, scale=True),
            v2.Normalize(mean=list(mean), std=list(std))]


def train_transforms(crop_size: int = 513, scale_range: tuple[float, float] | None = (0.5, 2.0), flip: bool = True,
                     mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                     ignore_index: int = 255, interpolation: str = "bilinear") -> v2.Compose:
    """Random scale, random crop of ``crop_size`` (padded: image 0, mask ``ignore_index``), flip, normalise.

    ``scale_range=None, flip=False`` is the paper's "no augmentation": the shorter side is
    resized to ``crop_size`` and the centre is cropped. Pass the model's ``mean``, ``std`` and
    ``interpolation`` (image resizing; masks: nearest) from :func:`mfnet_zoo.resolve_data_config`.
    """
    mode = interpolation_mode(interpolation)
    if scale_range is None and not flip:
        geometry = [v2.Resize(crop_size, interpolation=mode, antialias=True), v2.CenterCrop(crop_size)]
    else:
        geometry = [RandomScale(scale_range, interpolation)] if scale_range is not None else []
        geometry.append(v2.RandomCrop(crop_size, pad_if_needed=True,
                                      fill={tv_tensors.Image: 0, tv_tensors.Mask: ignore_index, "others": 0}))
        if flip:
            geometry.append(v2.RandomHorizontalFlip())
    return v2.Compose([v2.ToImage(), *geometry, *_finish(mean, std)])


def eval_transforms(mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> v2.Compose:
    """Full-size evaluation: only convert and normalise with the model's ``mean``/``std`` (metrics are
    computed at the original size)."""
    return v2.Compose([v2.ToImage(), *_finish(mean, std)])
