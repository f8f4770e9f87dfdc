"""The training loss: cross-entropy + lambda * MSE over the context's reconstruction pair."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import torch
import torch.nn.functional as F
from segmentation_models_pytorch import losses as smp_losses
from torch import nn

from ._checks import is_positive_int
from .models.segmentation import SegmentationOutput

__all__ = ["SegmentationLoss"]

_EXTRA = {"dice": smp_losses.DiceLoss, "lovasz": smp_losses.LovaszLoss, "focal": smp_losses.FocalLoss}


class SegmentationLoss(nn.Module):
    """CE (ignore_index) + ``reconstruction_weight`` * MSE whenever the output carries a pair.

    There is no epoch logic here: whoever owns the schedule (the engine, or your loop)
    disables the context during warm-up, and a disabled context yields no pair.

    Args:
        reconstruction_weight: lambda (0.1 in the paper).
        ignore_index: label ignored by every term (255 = VOC's void).
        mode: ``"multiclass"`` (B x K logits, softmax CE) or ``"binary"`` (B x 1 logits, BCE).
        extra: more terms from segmentation-models-pytorch by name and weight, e.g. ``{"dice": 0.5}``
            (``dice``, ``lovasz``, ``focal``).
        batch_average: divide every term again by the batch size, as the paper's code does
            (``utils/loss.py:36-45``; its effective learning rate is then lr / batch). The divisor is
            this call's batch B unless ``batch_size`` says otherwise: with gradient accumulation or
            several processes pass the global batch (what :func:`mfnet_zoo.train.train_one_epoch`
            does), so that the update equals one step on the whole batch.

    forward(output: SegmentationOutput | B x K x H x W logits, target: B x H x W int64, *, batch_size=None)
    -> scalar. Terms are computed in float32 (float64 inputs stay float64).
    """

    def __init__(self, reconstruction_weight: float = 0.1, ignore_index: int = 255,
                 mode: Literal["multiclass", "binary"] = "multiclass",
                 extra: Mapping[str, float] | None = None, batch_average: bool = False) -> None:
        super().__init__()
        if mode not in ("multiclass", "binary"):
            raise ValueError(f"mode must be 'multiclass' or 'binary', got {mode!r}")
        if reconstruction_weight < 0:
            raise ValueError(f"reconstruction_weight must be >= 0, got {reconstruction_weight!r}")
        extra = dict(extra or {})
        unknown = sorted(set(extra) - set(_EXTRA))
        if unknown:
            raise ValueError(f"unknown extra loss term(s) {unknown}; available: {sorted(_EXTRA)}")
        self.reconstruction_weight = reconstruction_weight
        self.ignore_index = ignore_index
        self.mode = mode
        self.batch_average = batch_average
        self.extra_weights = extra
        self.extra = nn.ModuleDict({name: _EXTRA[name](mode=mode, ignore_index=ignore_index) for name in extra})

    def components(self, output: SegmentationOutput | torch.Tensor, target: torch.Tensor, *,
                   batch_size: int | None = None) -> dict[str, torch.Tensor]:
        """The weighted terms by name (``ce``, ``reconstruction``, extra names); they sum to the loss.

        ``batch_size``: the divisor of ``batch_average`` (ignored without it); None = this call's B.
        """
        logits = output.logits if isinstance(output, SegmentationOutput) else output
        if target.shape != logits.shape[:1] + logits.shape[2:]:
            raise ValueError(f"target shape {tuple(target.shape)} does not match logits "
                             f"{tuple(logits.shape)}; expected B x H x W")
        if batch_size is not None and not is_positive_int(batch_size):
            raise ValueError(f"batch_size must be a positive int or None, got {batch_size!r}")
        scale = 1.0 / (batch_size or logits.shape[0]) if self.batch_average else 1.0
        logits = _upcast(logits)
        if self.mode == "binary":
            valid = target != self.ignore_index
            ce = F.binary_cross_entropy_with_logits(logits[:, 0], target.to(logits.dtype).clamp(max=1),
                                                    reduction="none")
            ce = (ce * valid).sum() / valid.sum().clamp(min=1)
        else:
            ce = F.cross_entropy(logits, target, ignore_index=self.ignore_index)
        terms = {"ce": ce * scale}
        reconstruction = output.reconstruction if isinstance(output, SegmentationOutput) else None
        if reconstruction is not None and self.reconstruction_weight > 0:
            target_features, estimate = reconstruction
            mse = F.mse_loss(_upcast(estimate).expand_as(target_features), _upcast(target_features))
            terms["reconstruction"] = mse * (self.reconstruction_weight * scale)
        for name, loss in self.extra.items():
            terms[name] = loss(logits, target) * (self.extra_weights[name] * scale)
        return terms

    def forward(self, output: SegmentationOutput | torch.Tensor, target: torch.Tensor, *,
                batch_size: int | None = None) -> torch.Tensor:
        return sum(self.components(output, target, batch_size=batch_size).values())


def _upcast(x: torch.Tensor) -> torch.Tensor:
    """float16/bfloat16 (autocast) to float32; float32 and float64 unchanged."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
