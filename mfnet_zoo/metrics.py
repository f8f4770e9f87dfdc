"""Segmentation metrics from a confusion matrix accumulated on the device."""
from __future__ import annotations

import torch
import torch.distributed as dist

from ._checks import check_positive_int

__all__ = ["SegmentationMetrics", "format_iou_table"]


class SegmentationMetrics:
    """Confusion matrix over ``num_classes`` (rows: ground truth, columns: prediction).

    ``update`` is a bincount on the tensors' device with no host sync; ``compute`` reads it once.
    Pixels labelled ``ignore_index`` (or outside [0, num_classes)) are not counted. A class that
    appears neither in the ground truth nor in the predictions has no IoU (None in
    ``per_class_iou``) and is left out of the means, as in the paper's code (np.nanmean). With no
    counted pixel at all (an empty matrix) every summary is NaN: mIoU, fwIoU, pixel and mean
    accuracy alike, never a 0.0 that reads as a result.
    """

    def __init__(self, num_classes: int, ignore_index: int = 255, device: torch.device | str | None = None) -> None:
        check_positive_int("num_classes", num_classes)
        self.num_classes, self.ignore_index = num_classes, ignore_index
        self.confusion = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)

    def reset(self) -> None:
        self.confusion.zero_()

    @torch.no_grad()
    def update(self, prediction: torch.Tensor, target: torch.Tensor) -> None:
        """prediction: B x H x W class indices (or B x K x H x W logits); target: B x H x W."""
        if prediction.ndim == target.ndim + 1:
            prediction = prediction.argmax(dim=1)
        if prediction.shape != target.shape:
            raise ValueError(f"prediction {tuple(prediction.shape)} and target {tuple(target.shape)} differ in shape")
        k = self.num_classes
        if self.confusion.device != target.device:
            self.confusion = self.confusion.to(target.device)
        valid = (target >= 0) & (target < k) & (target != self.ignore_index)
        # invalid pixels go to an extra bin that is dropped: no boolean indexing, so no sync
        index = torch.where(valid, target.long() * k + prediction.long(), k * k)
        self.confusion += torch.bincount(index.flatten(), minlength=k * k + 1)[: k * k].view(k, k)

    def all_reduce(self) -> None:
        """Sum the matrices of all processes (under torch.distributed; a no-op otherwise)."""
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(self.confusion)

    def compute(self) -> dict:
        """mIoU, fwIoU (frequency-weighted, as the paper), pixel and mean accuracy, per-class IoU."""
        cm = self.confusion.double().cpu()
        true_positive, gt_pixels, predicted = cm.diag(), cm.sum(dim=1), cm.sum(dim=0)
        union = gt_pixels + predicted - true_positive
        iou = true_positive / union  # NaN where a class is in neither
        present = union > 0
        total = gt_pixels.sum()
        frequency = gt_pixels / total if total > 0 else gt_pixels
        seen = gt_pixels > 0
        return {
            "mIoU": iou[present].mean().item() if present.any() else float("nan"),
            "fwIoU": (frequency[seen] * iou[seen]).sum().item() if seen.any() else float("nan"),
            "pixel_acc": (true_positive.sum() / total).item() if total > 0 else float("nan"),
            "mean_acc": (true_positive[seen] / gt_pixels[seen]).mean().item() if seen.any() else float("nan"),
            "per_class_iou": [v if p else None for v, p in zip(iou.tolist(), present.tolist())],
        }


def format_iou_table(class_names: list[str], metrics: dict) -> str:
    """A markdown table of per-class IoU plus mIoU, fwIoU and pixel accuracy."""
    lines = ["| class | IoU |", "|---|---:|"]
    for name, iou in zip(class_names, metrics["per_class_iou"]):
        lines.append(f"| {name} | {'-' if iou is None else f'{iou:.3f}'} |")
    for key in ("mIoU", "fwIoU", "pixel_acc"):
        lines.append(f"| **{key}** | **{metrics[key]:.3f}** |")
    return "\n".join(lines)
