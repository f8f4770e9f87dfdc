"""Inference below training and prediction: device and autocast selection, class probabilities of
whole images, sliding windows, several scales and flips, and probabilities to classes.

:func:`infer_probabilities` is the one implementation behind ``mfnet-zoo predict``
(:mod:`mfnet_zoo.predict`) and :func:`mfnet_zoo.train.evaluate`.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

from ._constants import AMP_CHOICES
from ._factory import load_model
from ._pretrained import resolve_data_config
from .models.segmentation import is_binary

__all__ = ["AMP_CHOICES", "autocast", "infer_probabilities", "probabilities_to_classes", "resolve_device",
           "load_for_inference"]

IMAGE_INTERPOLATIONS = ("bilinear", "bicubic", "nearest")  # what timm's pretrained configs use, and nearest


def resolve_device(name: str | torch.device, rank: int = 0) -> torch.device:
    """``"auto"``: this process's GPU (``rank`` modulo the GPU count) if CUDA is there, else the CPU;
    anything else as ``torch.device`` reads it (``"cpu"``, ``"cuda:1"``)."""
    if name == "auto":
        return torch.device(f"cuda:{rank % torch.cuda.device_count()}") if torch.cuda.is_available() else \
            torch.device("cpu")
    return torch.device(name)


def autocast(device: torch.device, amp: str):
    """The autocast context for ``amp`` in {'none', 'bf16', 'fp16'} (fp16 needs CUDA)."""
    if amp not in AMP_CHOICES:
        raise ValueError(f"amp must be 'none', 'bf16' or 'fp16', got {amp!r}")
    if amp == "fp16" and device.type != "cuda":
        raise ValueError("amp='fp16' needs a CUDA device; use amp='bf16' on CPU")
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype, enabled=amp != "none")


def _window_logits(model: torch.nn.Module, x: torch.Tensor, window: int | None, overlap: float) -> torch.Tensor:
    """Logits B x K x H x W of the whole image, or averaged over overlapping window x window tiles."""
    h, w = x.shape[-2:]
    if window is None or (h <= window and w <= window):
        return model(x).logits
    stride = max(1, int(window * (1 - overlap)))
    tile_h, tile_w = min(window, h), min(window, w)
    tops = sorted({min(i * stride, h - tile_h) for i in range(math.ceil(max(h - tile_h, 0) / stride) + 1)})
    lefts = sorted({min(j * stride, w - tile_w) for j in range(math.ceil(max(w - tile_w, 0) / stride) + 1)})
    logits = counts = None
    for top in tops:
        for left in lefts:
            tile = model(x[..., top:top + tile_h, left:left + tile_w]).logits
            if logits is None:
                logits = x.new_zeros(x.shape[0], tile.shape[1], h, w, dtype=tile.dtype)
                counts = x.new_zeros(1, 1, h, w, dtype=tile.dtype)
            logits[..., top:top + tile_h, left:left + tile_w] += tile
            counts[..., top:top + tile_h, left:left + tile_w] += 1
    return logits / counts


@torch.no_grad()
def infer_probabilities(model: torch.nn.Module, images: torch.Tensor, scales: Sequence[float] = (1.0,),
                        flip: bool = False, window: int | None = None, overlap: float = 1 / 3,
                        interpolation: str | None = None) -> torch.Tensor:
    """Class probabilities B x K x H x W (sigmoid for one class), averaged over scales and flips.

    images: B x C x H x W, normalised. Each scale resizes the input (``interpolation``: 'bilinear',
    'bicubic' or 'nearest'; default the model's, see :func:`mfnet_zoo.resolve_data_config`), runs
    the model on the whole image or in ``window``-sized tiles overlapping by ``overlap``, and
    resizes the logits back to H x W (bilinear) before the softmax.
    """
    if not scales or any(s <= 0 for s in scales):
        raise ValueError(f"scales must be positive, got {scales!r}")
    if not 0 <= overlap < 1:
        raise ValueError(f"overlap must be in [0, 1), got {overlap!r}")
    mode = interpolation or resolve_data_config(model)["interpolation"]
    if mode not in IMAGE_INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {IMAGE_INTERPOLATIONS}, got {mode!r}")
    h, w = images.shape[-2:]
    total = None
    for scale in scales:
        x = images if scale == 1 else F.interpolate(images, scale_factor=scale, mode=mode,
                                                    **({} if mode == "nearest" else {"align_corners": False}))
        views = [(x, False), (x.flip(-1), True)] if flip else [(x, False)]
        for view, flipped in views:
            logits = _window_logits(model, view, window, overlap)
            logits = logits.flip(-1) if flipped else logits
            if logits.shape[-2:] != (h, w):
                logits = F.interpolate(logits, size=(h, w), mode="bilinear", align_corners=False)
            probs = torch.sigmoid(logits.float()) if is_binary(logits.shape[1]) else logits.float().softmax(dim=1)
            total = probs if total is None else total + probs
    return total / (len(scales) * (2 if flip else 1))


def probabilities_to_classes(probs: torch.Tensor) -> torch.Tensor:
    """B x K x H x W probabilities -> B x H x W int64 classes (one channel: binary, p > 0.5)."""
    return (probs[:, 0] > 0.5).long() if is_binary(probs.shape[1]) else probs.argmax(dim=1)


def load_for_inference(source: str | Path, device: torch.device | str = "cpu", fold: bool = True) -> torch.nn.Module:
    """The model ``source`` names (any source :func:`~mfnet_zoo.load_model` takes) on ``device``, in eval mode,
    folded for inference (the same logits, cheaper: ``reparameterize``) unless ``fold`` is False."""
    model = load_model(source).to(device).eval()
    return model.reparameterize() if fold and hasattr(model, "reparameterize") else model
