"""Export to ONNX (onnxruntime-ready) and to torch.export programs, with dynamic batch and size."""
from __future__ import annotations

import contextlib
import importlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ._atomic import atomic_path
from ._checks import check_positive_int
from ._extras import require

__all__ = ["LogitsOnly", "export_onnx", "export_program", "check_onnx", "ONNX_DIM_NAMES"]

# the names of the ONNX graph's dynamic dimensions (input "images" and output "logits"), as deployment tools
# (onnxruntime, TensorRT, OpenVINO) show them
ONNX_DIM_NAMES: dict[int, str] = {0: "batch", 2: "height", 3: "width"}
# torch.onnx.export takes names in dynamic_shapes from torch 2.7; setup.cfg allows 2.6, which names the
# dimensions after the export (_name_onnx_dims)
NAMED_DYNAMIC_SHAPES = tuple(int(v) for v in torch.__version__.split(".")[:2]) >= (2, 7)
ONNX = "ONNX export"


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


def _name_onnx_dims(path: Path) -> None:
    """Name the graph's dynamic dimensions :data:`ONNX_DIM_NAMES` in the file at ``path`` (torch < 2.7): the
    symbols the exporter gave the input's batch, height and width, renamed wherever they occur."""
    onnx = require("onnx", ONNX)
    proto = onnx.load(str(path))
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    renames = {dims[axis].dim_param: name for axis, name in ONNX_DIM_NAMES.items() if dims[axis].dim_param}
    for value in [*proto.graph.input, *proto.graph.output, *proto.graph.value_info]:
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param in renames:
                dim.dim_param = renames[dim.dim_param]
    onnx.save(proto, str(path))


def export_onnx(model: nn.Module, path: str | Path, input_size: tuple[int, int] = (513, 513),
                opset: int = 18, batch_size: int = 1) -> Path:
    """ONNX file (torch.export-based exporter; needs ``onnx`` and ``onnxscript``, the ``[export]`` extra) with
    dynamic batch, height and width.

    Input ``images`` (B x C x H x W float32, normalised), output ``logits`` (B x K x H x W), for any
    B, H and W, with those dimensions named ``batch``, ``height`` and ``width`` in the graph: traced with a
    ``batch_size`` x C x ``input_size`` example (batch 1 size-obliviously, as :func:`export_program`), and
    no block bakes a batch or image size into a reshape.
    """
    if opset < 17:
        raise ValueError(f"opset must be >= 17, got {opset}")
    for module in ("onnx", "onnxscript"):  # one line naming the extra, not the exporter's traceback
        require(module, ONNX)
    batch, tracing = _tracing(batch_size)
    axes = ONNX_DIM_NAMES if NAMED_DYNAMIC_SHAPES else _dynamic_shapes()["x"]
    with atomic_path(path) as tmp, tracing:
        torch.onnx.export(LogitsOnly(model).eval(), (_example(model, input_size, batch),), str(tmp), dynamo=True,
                          opset_version=opset, input_names=["images"], output_names=["logits"],
                          dynamic_shapes={"x": axes}, external_data=False, verbose=False)
        if not NAMED_DYNAMIC_SHAPES:
            _name_onnx_dims(tmp)
    return Path(path)


def check_onnx(model: nn.Module, path: str | Path,
               shapes: Sequence[tuple[int, int, int, int]] = ((2, 3, 97, 131),)) -> float:
    """The largest difference between onnxruntime's logits for the ONNX file at ``path`` and ``model``'s, over
    random inputs of ``shapes`` (B x C x H x W; by default a batch of 2 at a size an export rarely traces).
    Needs ``onnxruntime`` (the ``[export]`` extra)."""
    ort = require("onnxruntime", "checking an ONNX export")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    param = next(model.parameters())
    worst = 0.0
    for shape in shapes:
        x = torch.randn(shape)
        with torch.no_grad():
            expected = LogitsOnly(model).eval()(x.to(param.device)).float().cpu().numpy()
        (logits,) = session.run(["logits"], {"images": x.numpy()})
        if logits.shape != expected.shape:
            raise ValueError(f"{str(path)!r} gives logits of shape {logits.shape} for input {tuple(shape)}; the "
                             f"model gives {expected.shape}")
        worst = max(worst, float(np.abs(logits - expected).max()))
    return worst
