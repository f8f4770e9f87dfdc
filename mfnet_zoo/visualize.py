"""Colour masks with the PASCAL VOC palette and lay out image | ground truth | prediction panels."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from ._atomic import atomic_path

__all__ = ["voc_palette", "colorize", "save_panels"]


def voc_palette(num_colors: int = 256) -> torch.Tensor:
    """The VOC colour map (num_colors x 3 uint8): class c gets the bits of c spread over R, G, B."""
    c = torch.arange(num_colors)
    palette = torch.zeros(num_colors, 3, dtype=torch.int64)
    for shift in range(8):
        for channel in range(3):
            palette[:, channel] |= ((c >> (3 * shift + channel)) & 1) << (7 - shift)
    return palette.to(torch.uint8)


def colorize(mask: torch.Tensor) -> torch.Tensor:
    """H x W class indices (255 = void) -> 3 x H x W uint8 colours."""
    return voc_palette()[mask.long().clamp(0, 255)].permute(2, 0, 1)


def save_panels(path: str | Path, images: torch.Tensor, targets: torch.Tensor, predictions: torch.Tensor,
                mean: Sequence[float], std: Sequence[float]) -> Path:
    """One row per sample: image | ground truth | prediction, as a PNG (written atomically).

    images: B x 3 x H x W normalised with ``mean``/``std``; targets, predictions: B x H x W.
    """
    from torchvision.io import write_png
    from torchvision.utils import make_grid

    mean_t, std_t = torch.tensor(mean).view(1, 3, 1, 1), torch.tensor(std).view(1, 3, 1, 1)
    rgb = ((images.float().cpu() * std_t + mean_t).clamp(0, 1) * 255).round().to(torch.uint8)
    rows = [t for i in range(len(rgb)) for t in (rgb[i], colorize(targets[i].cpu()), colorize(predictions[i].cpu()))]
    grid = make_grid(torch.stack(rows), nrow=3, padding=2, pad_value=255)
    with atomic_path(path) as tmp:
        write_png(grid, str(tmp))
    return Path(path)
