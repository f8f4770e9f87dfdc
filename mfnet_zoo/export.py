"""Export to ONNX (onnxruntime-ready) and to torch.export programs, with dynamic batch and size."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ._atomic import atomic_path

__all__ = ["LogitsOnly", "export_onnx", "export_program"]


class LogitsOnly(nn.Module):
    """B x C x H x W -> B x K x H x W logits: the model with a plain tensor output, for deployment."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x).logits


def _dynamic_shapes() -> dict:
    auto = torch.export.Dim.AUTO  # named Dims with ranges trip over the stride-4/stride-16 size guards
    return {"x": {0: auto, 2: auto, 3: auto}}


def _example(model: nn.Module, input_size: tuple[int, int]) -> torch.Tensor:
    param = next(model.parameters())
    return torch.randn(2, model.in_chans, *input_size, device=param.device)


def export_program(model: nn.Module, path: str | Path | None = None,
                   input_size: tuple[int, int] = (513, 513)) -> torch.export.ExportedProgram:
    """``torch.export`` of the eval-mode model (logits only) with dynamic batch, height and width.

    Saved to ``path`` (``.pt2``, load with ``torch.export.load``) when given.
    """
    program = torch.export.export(LogitsOnly(model).eval(), (_example(model, input_size),),
                                  dynamic_shapes=_dynamic_shapes())
    if path is not None:
        with atomic_path(path) as tmp:
            torch.export.save(program, tmp)
    return program


def export_onnx(model: nn.Module, path: str | Path, input_size: tuple[int, int] = (513, 513),
                opset: int = 18) -> Path:
    """ONNX file (torch.export-based exporter; needs ``onnxscript``) with dynamic batch, height and width.

    Input ``images`` (B x C x H x W float32, normalised), output ``logits`` (B x K x H x W).
    """
    if opset < 17:
        raise ValueError(f"opset must be >= 17, got {opset}")
    with atomic_path(path) as tmp:
        torch.onnx.export(LogitsOnly(model).eval(), (_example(model, input_size),), str(tmp), dynamo=True,
                          opset_version=opset, input_names=["images"], output_names=["logits"],
                          dynamic_shapes=_dynamic_shapes(), external_data=False, verbose=False)
    return Path(path)
