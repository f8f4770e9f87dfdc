"""What a model is, in one dict and in words: ``mfnet-zoo info``, the zoo table (``benchmarks/zoo_table.py``)."""
from __future__ import annotations

from typing import Any

from ._factory import load_model
from ._registry import list_pretrained_tags, model_entrypoint
from .profiling import count_macs, count_parameters

__all__ = ["model_info", "format_model_info"]


def model_info(source: str, size: int = 513, macs: bool = True) -> dict:
    """What the model ``source`` names (a registry name, or any source :func:`mfnet_zoo.load_model` takes)
    is: its architecture's description, encoder, blocks, classes, parameters, pretrained tags and
    (``macs``) the MACs of one ``size`` x ``size`` image. Serves ``mfnet-zoo info`` and the zoo table."""
    model = load_model(source)
    name = model.model_name
    info = {
        "name": source,
        "architecture": name,
        "description": (model_entrypoint(name).__doc__ or "").strip().splitlines()[0],
        "encoder": model.encoder.name,
        "output_stride": model.output_stride,
        "blocks": {"encoder": type(model.encoder).__name__, "context": type(model.context).__name__,
                   "decoder": type(model.decoder).__name__},
        "num_classes": model.num_classes,
        "parameters": count_parameters(model),
        "pretrained_tags": list_pretrained_tags(name),
    }
    if macs:
        info["input_size"] = [1, model.in_chans, size, size]
        info["macs"] = count_macs(model, tuple(info["input_size"]))
    return info


def format_model_info(info: dict[str, Any]) -> str:
    """:func:`model_info`'s dict as the lines ``mfnet-zoo info`` prints."""
    blocks = info["blocks"]
    lines = [f"{info['name']}: {info['description']}",
             f"  encoder        {info['encoder']} (output stride {info['output_stride']})",
             f"  blocks         {blocks['encoder']} -> {blocks['context']} -> {blocks['decoder']}",
             f"  parameters     {info['parameters']:,} ({info['num_classes']} classes)"]
    if "macs" in info:
        lines.append(f"  MACs           {info['macs'] / 1e9:.2f} G at {info['input_size'][2]} x {info['input_size'][3]}")
    lines.append(f"  pretrained     {', '.join(info['pretrained_tags']) or 'none published yet'}")
    return "\n".join(lines)
