"""Export to ONNX (onnxruntime-ready) and to torch.export programs, with dynamic batch and size."""
from __future__ import annotations

import contextlib
import importlib
from pathlib import Path

import torch
from torch import nn

from ._atomic import atomic_path
from ._checks import check_positive_int

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


def _example(model: nn.Module, input_size: tuple[int, int], batch: int) -> torch.Tensor:
    param = next(model.parameters())
    return torch.randn(batch, model.in_chans, *input_size, device=param.device)


def _tracing(batch_size: int) -> tuple[int, contextlib.AbstractContextManager]:
    """The example batch to trace and the context to trace it in, so that the batch stays dynamic.

    torch.export specialises a dimension whose example size is 0 or 1 (``Dim.AUTO`` becomes the
    constant 1) unless it traces size-obliviously (``backed_size_oblivious``, as torch.onnx does); a
    torch without that setting traces a batch of 2 instead. The graph takes any batch either way.
    """
    check_positive_int("batch_size", batch_size)
    if batch_size != 1:
        return batch_size, contextlib.nullcontext()
    config = importlib.import_module("torch.fx.experimental._config")
    if not hasattr(config, "backed_size_oblivious"):
        return 2, contextlib.nullcontext()
    return 1, config.patch(backed_size_oblivious=True)


def export_program(model: nn.Module, path: str | Path | None = None, input_size: tuple[int, int] = (513, 513),
                   batch_size: int = 1) -> torch.export.ExportedProgram:
    """``torch.export`` of the eval-mode model (logits only): B x C x H x W -> B x K x H x W.

    Traced with a ``batch_size`` x C x ``input_size`` example; batch, height and width stay
    dynamic (``Dim.AUTO``), so the program runs at any batch and size. A batch-1 example is traced
    with torch's size-oblivious setting (``backed_size_oblivious``; a batch of 2 on a torch without
    it), without which plain ``torch.export`` pins the batch to 1. Saved to ``path`` (``.pt2``,
    load with ``torch.export.load``) when given.
    """
    batch, tracing = _tracing(batch_size)
    with tracing:
        program = torch.export.export(LogitsOnly(model).eval(), (_example(model, input_size, batch),),
                                      dynamic_shapes=_dynamic_shapes())
    if path is not None:
        with atomic_path(path) as tmp:
            torch.export.save(program, tmp)
    return program


def export_onnx(model: nn.Module, path: str | Path, input_size: tuple[int, int] = (513, 513),
                opset: int = 18, batch_size: int = 1) -> Path:
    """ONNX file (torch.export-based exporter; needs ``onnxscript``) with dynamic batch, height and width.

    Input ``images`` (B x C x H x W float32, normalised), output ``logits`` (B x K x H x W), for any
    B, H and W: traced with a ``batch_size`` x C x ``input_size`` example (batch 1 size-obliviously,
    as :func:`export_program`), and no block bakes a batch or image size into a reshape.
    """
    if opset < 17:
        raise ValueError(f"opset must be >= 17, got {opset}")
    batch, tracing = _tracing(batch_size)
    with atomic_path(path) as tmp, tracing:
        torch.onnx.export(LogitsOnly(model).eval(), (_example(model, input_size, batch),), str(tmp), dynamo=True,
                          opset_version=opset, input_names=["images"], output_names=["logits"],
                          dynamic_shapes=_dynamic_shapes(), external_data=False, verbose=False)
    return Path(path)
