"""Joint image/mask transforms (torchvision.transforms.v2 with tv_tensors.Mask).

Two families of training transforms and two evaluation protocols:

* ``train_transforms`` (``augmentation="deeplab"``): DeepLab's random scale, crop, flip; masks are
  padded with the ignore index, images with 0 before normalisation.
* ``paper_train_transforms`` (``"paper"``): what the paper's code ran on VOC, in its order
  (github:nageshgurram12/generic-semantic-segmentation, branch mfnet,
  ``dataloaders/datasets/pascal.py:84-92``): torchvision's ``RandomHorizontalFlip``,
  :class:`RandomScaleCrop` (masks padded with 0, background, as the code), :class:`RandomGaussianBlur`.
* ``eval_transforms`` (protocol ``"full"``): convert and normalise; every pixel of every image is scored.
* ``paper_eval_transforms`` (protocol ``"paper"``): the code's validation transform :class:`FixScaleCrop`
  (``pascal.py:94-101``): shorter side resized to 513, centre 513 x 513 crop.

Images are resized with the encoder's interpolation (``resolve_data_config(model)["interpolation"]``,
bilinear by default) where a transform takes ``interpolation``.

Every random draw uses torch's generator (``torch.manual_seed`` / the engine's seed), never Python's
``random``. Resizing follows PIL as the code used it: images bilinear with antialiasing (PIL's
``BILINEAR``, within 1 grey level), masks ``NEAREST_EXACT`` (PIL's ``NEAREST``, exactly).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torchvision import tv_tensors
from torchvision.transforms import InterpolationMode, v2
from torchvision.transforms.v2 import functional as TF

from .._constants import AUGMENTATIONS, EVAL_PROTOCOLS, IMAGENET_MEAN, IMAGENET_STD

__all__ = ["AUGMENTATIONS", "EVAL_PROTOCOLS", "IMAGENET_MEAN", "IMAGENET_STD", "FixScaleCrop", "RandomGaussianBlur",
           "RandomScale", "RandomScaleCrop", "build_eval_transforms", "build_train_transforms", "eval_transforms",
           "paper_eval_transforms", "paper_train_transforms", "pil_gaussian_blur", "train_transforms"]

Augmentation = Literal["deeplab", "paper", "none"]
EvalProtocol = Literal["full", "paper"]


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


def _resize(inpt: Any, size: list[int]) -> Any:
    """Resize as PIL did in the paper's code: masks NEAREST_EXACT (= PIL NEAREST), images bilinear + antialias."""
    if isinstance(inpt, tv_tensors.Mask):
        return TF.resize(inpt, size, interpolation=v2.InterpolationMode.NEAREST_EXACT)
    return TF.resize(inpt, size, antialias=True)


def _short_side_size(height: int, width: int, short: int) -> tuple[int, int]:
    """(h, w) with the shorter side ``short`` and the other truncated, as the code (``int(1.0 * h * ow / w)``)."""
    if height > width:
        return int(1.0 * height * short / width), short
    return short, int(1.0 * width * short / height)


class RandomScaleCrop(v2.Transform):
    """The paper code's ``RandomScaleCrop`` (``dataloaders/custom_transforms.py:88-122``) on image and mask.

    1. The shorter side is drawn uniformly among the integers ``int(base_size * scale_range[0])`` ..
       ``int(base_size * scale_range[1])`` (both included; 256..1026 for 513), the other side scaled with
       it and truncated to an int (a square image: both sides).
    2. If that side is shorter than ``crop_size``, the image is padded on the right and bottom only to
       ``crop_size``: the image with 0 (black, before normalisation), the mask with ``mask_fill`` (0 in
       the code, so padding counts as background; 255 would ignore it).
    3. A ``crop_size`` square at a uniformly drawn position (ends included).

    The draws use torch's generator. image: C x H x W, mask: H x W -> C x crop x crop, crop x crop.
    """

    def __init__(self, base_size: int = 513, crop_size: int = 513, scale_range: tuple[float, float] = (0.5, 2.0),
                 mask_fill: int = 0) -> None:
        super().__init__()
        if not 0 < scale_range[0] <= scale_range[1]:
            raise ValueError(f"scale_range must be (low, high) with 0 < low <= high, got {scale_range!r}")
        if int(base_size * scale_range[0]) < 1 or crop_size < 1:
            raise ValueError(f"base_size * scale_range[0] and crop_size must be >= 1, got base_size={base_size!r}, "
                             f"scale_range={scale_range!r}, crop_size={crop_size!r}")
        self.base_size, self.crop_size, self.mask_fill = base_size, crop_size, mask_fill
        self.scale_range = tuple(scale_range)

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        height, width = v2.query_size(flat_inputs)
        low, high = int(self.base_size * self.scale_range[0]), int(self.base_size * self.scale_range[1])
        short = int(torch.randint(low, high + 1, ()))
        oh, ow = _short_side_size(height, width, short)
        pad_h, pad_w = (max(self.crop_size - oh, 0), max(self.crop_size - ow, 0)) if short < self.crop_size else (0, 0)
        left = int(torch.randint(0, ow + pad_w - self.crop_size + 1, ()))  # the code draws x first
        top = int(torch.randint(0, oh + pad_h - self.crop_size + 1, ()))
        return {"size": [oh, ow], "padding": [0, 0, pad_w, pad_h], "top": top, "left": left}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        out = _resize(inpt, params["size"])
        if any(params["padding"]):
            out = TF.pad(out, params["padding"], fill=self.mask_fill if isinstance(inpt, tv_tensors.Mask) else 0)
        return TF.crop(out, params["top"], params["left"], self.crop_size, self.crop_size)


def _box_blur_radius(radius: float, passes: int) -> float:
    """Pillow's box radius for a Gaussian of standard deviation ``radius`` in ``passes`` extended box blurs
    (Gwosdek et al., SSVM 2011; Pillow's ``_gaussian_blur_radius``), in float32 as Pillow computes it."""
    f = np.float32
    sigma2 = f(radius) * f(radius) / f(passes)
    length = np.sqrt(f(12.0) * sigma2 + f(1.0), dtype=np.float32)
    whole = np.floor((length - f(1.0)) / f(2.0))
    frac = (f(2.0) * whole + f(1.0)) * (whole * (whole + f(1.0)) - f(3.0) * sigma2)
    frac /= f(6.0) * (sigma2 - (whole + f(1.0)) * (whole + f(1.0)))
    return float(f(whole + frac))


def pil_gaussian_blur(image: torch.Tensor, radius: float, passes: int = 3) -> torch.Tensor:
    """``PIL.ImageFilter.GaussianBlur(radius)`` on a uint8 ... x H x W tensor, bit-exact: ``passes`` extended
    box blurs along the width, then along the height, edges replicated, with Pillow's 24-bit fixed-point
    weights and its rounding to uint8 after every pass."""
    box = _box_blur_radius(radius, passes)
    whole = int(box)
    if box <= 0:
        return image
    inner = int(np.float32(1 << 24) / (np.float32(box) * np.float32(2.0) + np.float32(1.0)))  # Pillow's ww
    taps = torch.full((2 * whole + 3,), float(inner), dtype=torch.float64)
    taps[0] = taps[-1] = ((1 << 24) - (2 * whole + 1) * inner) // 2  # Pillow's fw, the fractional ends
    x = image.to(torch.float64).reshape(-1, 1, *image.shape[-2:])  # integer sums: exact in float64
    for dim in (-1, -2):  # width first, then height
        kernel = taps.view(1, 1, 1, -1) if dim == -1 else taps.view(1, 1, -1, 1)
        pad = (whole + 1, whole + 1, 0, 0) if dim == -1 else (0, 0, whole + 1, whole + 1)
        for _ in range(passes):
            x = torch.floor((F.conv2d(F.pad(x, pad, mode="replicate"), kernel) + (1 << 23)) / (1 << 24))
    return x.reshape(image.shape).to(image.dtype)


class RandomGaussianBlur(v2.Transform):
    """The paper code's ``RandomGaussianBlur`` (``custom_transforms.py:76-85``): with probability ``p``, blur
    the image (not the mask) as PIL's ``GaussianBlur(radius)`` with the radius (the Gaussian's standard
    deviation) drawn uniformly in [0, ``max_radius``). Images must be uint8, as the code's PIL images
    (apply it before ``ToDtype``). The draws use torch's generator."""

    def __init__(self, p: float = 0.5, max_radius: float = 1.0) -> None:
        super().__init__()
        if not 0 <= p <= 1 or max_radius < 0:
            raise ValueError(f"p must be in [0, 1] and max_radius >= 0, got p={p!r}, max_radius={max_radius!r}")
        self.p, self.max_radius = p, max_radius

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        apply = bool(torch.rand(()) < self.p)
        return {"radius": float(torch.rand(())) * self.max_radius if apply else 0.0}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if params["radius"] <= 0 or not isinstance(inpt, tv_tensors.Image):
            return inpt
        if inpt.dtype != torch.uint8:
            raise TypeError(f"RandomGaussianBlur blurs uint8 images as PIL did (apply it before ToDtype), "
                            f"got dtype {inpt.dtype}")
        return tv_tensors.wrap(pil_gaussian_blur(inpt.as_subclass(torch.Tensor), params["radius"]), like=inpt)


class FixScaleCrop(v2.Transform):
    """The paper code's validation transform ``FixScaleCrop`` (``custom_transforms.py:125-149``): the shorter
    side resized to ``crop_size`` (the other truncated to an int), then the centre ``crop_size`` square
    (offsets ``int(round((side - crop) / 2.))``, half to even). Deterministic; the parts of the longer side outside the
    square are never seen. image: C x H x W, mask: H x W -> C x crop x crop, crop x crop."""

    def __init__(self, crop_size: int = 513) -> None:
        super().__init__()
        if crop_size < 1:
            raise ValueError(f"crop_size must be >= 1, got {crop_size!r}")
        self.crop_size = crop_size

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        height, width = v2.query_size(flat_inputs)
        oh, ow = _short_side_size(height, width, self.crop_size)  # the code's sizing, as RandomScaleCrop's
        return {"size": [oh, ow], "top": round((oh - self.crop_size) / 2.0),  # Python's round, as the code
                "left": round((ow - self.crop_size) / 2.0)}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        return TF.crop(_resize(inpt, params["size"]), params["top"], params["left"], self.crop_size, self.crop_size)


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


def paper_train_transforms(crop_size: int = 513, base_size: int | None = None,
                           scale_range: tuple[float, float] | None = (0.5, 2.0), flip: bool = True,
                           blur: bool = True, mask_fill: int = 0, mean: Sequence[float] = IMAGENET_MEAN,
                           std: Sequence[float] = IMAGENET_STD) -> v2.Compose:
    """The paper code's VOC training transform, in its order (``pascal.py:84-92``): random horizontal flip
    (p 0.5), :class:`RandomScaleCrop` (shorter side ``scale_range`` x ``base_size``, default ``crop_size``:
    513 and 513 in the code, ``train.py:211-214``; masks padded with ``mask_fill`` = 0, background, as the
    code), :class:`RandomGaussianBlur` (p 0.5, radius in [0, 1)), normalise.

    ``scale_range=None`` keeps the image's size (padded and cropped at random only).
    """
    steps: list[v2.Transform] = [v2.ToImage()]
    if flip:
        steps.append(v2.RandomHorizontalFlip())
    steps.append(RandomScaleCrop(base_size or crop_size, crop_size, scale_range, mask_fill=mask_fill)
                 if scale_range is not None else
                 v2.RandomCrop(crop_size, pad_if_needed=True,
                               fill={tv_tensors.Image: 0, tv_tensors.Mask: mask_fill, "others": 0}))
    if blur:
        steps.append(RandomGaussianBlur())
    return v2.Compose([*steps, *_finish(mean, std)])


def paper_eval_transforms(crop_size: int = 513, mean: Sequence[float] = IMAGENET_MEAN,
                          std: Sequence[float] = IMAGENET_STD) -> v2.Compose:
    """The paper code's validation transform (``pascal.py:94-101``): :class:`FixScaleCrop` ``crop_size``, normalise.

    Scores 513 x 513 centre crops of upscaled images (the figures the paper reports), not full images.
    """
    return v2.Compose([v2.ToImage(), FixScaleCrop(crop_size), *_finish(mean, std)])


def build_train_transforms(augmentation: Augmentation = "deeplab", crop_size: int = 513,
                           scale_range: tuple[float, float] | None = (0.5, 2.0), flip: bool = True,
                           mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                           ignore_index: int = 255, interpolation: str = "bilinear") -> v2.Compose:
    """The training transform an ``augmentation`` name (one of :data:`AUGMENTATIONS`) stands for:

    - ``"deeplab"``: :func:`train_transforms` (random scale ``scale_range``, ``crop_size`` crop padded with
      ``ignore_index``, ``flip``; images resized with ``interpolation``, the encoder's);
    - ``"paper"``: :func:`paper_train_transforms` (what the paper's code ran; ``scale_range`` x ``crop_size``
      for the shorter side, ``flip``, blur, masks padded with 0);
    - ``"none"``: the paper text's "no augmentation": :class:`FixScaleCrop` ``crop_size`` (``scale_range`` and
      ``flip`` are not used).

    ``"paper"`` and ``"none"`` resize as the paper's code did (PIL's bilinear), whatever ``interpolation``.
    """
    if augmentation == "deeplab":
        return train_transforms(crop_size, scale_range, flip, mean=mean, std=std, ignore_index=ignore_index,
                                interpolation=interpolation)
    if augmentation == "paper":
        return paper_train_transforms(crop_size, scale_range=scale_range, flip=flip, mean=mean, std=std)
    if augmentation == "none":
        return paper_eval_transforms(crop_size, mean=mean, std=std)
    raise ValueError(f"augmentation must be one of {AUGMENTATIONS}, got {augmentation!r}")


def build_eval_transforms(protocol: EvalProtocol = "full", crop_size: int = 513,
                          mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> v2.Compose:
    """The evaluation transform of a ``protocol`` (one of :data:`EVAL_PROTOCOLS`): ``"full"`` scores every
    pixel of every image at its own size (:func:`eval_transforms`); ``"paper"`` scores the ``crop_size``
    centre crops the paper's code scored (:func:`paper_eval_transforms`)."""
    if protocol == "full":
        return eval_transforms(mean=mean, std=std)
    if protocol == "paper":
        return paper_eval_transforms(crop_size, mean=mean, std=std)
    raise ValueError(f"protocol must be one of {EVAL_PROTOCOLS}, got {protocol!r}")
