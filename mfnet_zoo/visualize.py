"""Colour masks with the PASCAL VOC palette and lay out image | ground truth | prediction panels."""
from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch

from ._atomic import atomic_path

__all__ = ["voc_palette", "colorize", "save_panels", "write_curves"]


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
                mean: Sequence[float], std: Sequence[float], class_names: Sequence[str] | None = None,
                tile: int = 160) -> Path:
    """A readable PNG, one row per sample: image | ground truth | prediction, with column titles and a
    legend of the classes present (written atomically).

    images: B x 3 x H x W normalised with ``mean``/``std``; targets, predictions: B x H x W class
    indices (255 = void). Tiles are drawn ``tile`` pixels high (at least 128), nearest-neighbour, so
    small scenes stay sharp. ``class_names``: index -> name for the legend (default: the indices).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    if tile < 128:
        raise ValueError(f"tile must be at least 128 pixels, got {tile}")
    mean_t, std_t = torch.tensor(mean).view(1, 3, 1, 1), torch.tensor(std).view(1, 3, 1, 1)
    rgb = ((images.float().cpu() * std_t + mean_t).clamp(0, 1) * 255).round().to(torch.uint8)
    rows, dpi = len(rgb), 100
    height, width = images.shape[-2:]
    tile_w = tile * width / height
    legend_h = 0.3 + 0.22 * math.ceil(max(len(class_names or []), 1) / 4)  # inches for the legend rows
    fig, axes = plt.subplots(rows, 3, squeeze=False, dpi=dpi,
                             figsize=(3 * tile_w / dpi + 0.3, rows * tile / dpi + 0.45 + legend_h))
    for i in range(rows):
        panels = (rgb[i], colorize(targets[i].cpu()), colorize(predictions[i].cpu()))
        for j, (ax, panel) in enumerate(zip(axes[i], panels)):
            ax.imshow(panel.permute(1, 2, 0).numpy(), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(("image", "ground truth", "prediction")[j], fontsize=11)
    present = sorted({int(c) for c in torch.cat([targets.flatten(), predictions.flatten()]).tolist() if c != 255})
    palette = voc_palette()
    handles = [Patch(facecolor=(palette[c].float() / 255).tolist(), edgecolor="black", linewidth=0.5,
                     label=class_names[c] if class_names is not None and c < len(class_names) else str(c))
               for c in present]
    fig.legend(handles=handles, loc="lower center", ncol=min(4, max(len(handles), 1)), frameon=False, fontsize=9)
    fig.tight_layout(rect=(0, legend_h / fig.get_figheight(), 1, 1))
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    plt.close(fig)
    return Path(path)


def write_curves(path: str | Path, history: Sequence[dict]) -> None:
    """Training curves as a PNG (atomically): the train loss, and validation mIoU and fwIoU, per epoch
    (``history``: metrics.jsonl's records), like the paper's Figures 8-10."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, (ax_loss, ax_iou) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(epochs, [h["train"]["loss"] for h in history], marker="o", label="train loss")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("loss")
    ax_loss.legend()
    evaluated = [h for h in history if "val" in h]
    for key in ("mIoU", "fwIoU"):
        ax_iou.plot([h["epoch"] for h in evaluated], [h["val"][key] for h in evaluated], marker="o", label=key)
    ax_iou.set_xlabel("epoch")
    ax_iou.set_ylabel("IoU")
    ax_iou.set_ylim(0, 1)
    ax_iou.legend()
    fig.suptitle("training curves")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
