"""What a model is, in one dict and in words: ``mfnet-zoo info``, ``mfnet-zoo list``'s table, the zoo table
(``benchmarks/zoo_table.py``)."""
from __future__ import annotations

from typing import Any

import torch

from ._factory import create_model, load_model
from ._registry import get_model_family, get_pretrained_cfg, list_models, list_pretrained_tags, model_entrypoint
from .profiling import count_macs, count_parameters

__all__ = ["model_info", "format_model_info", "list_model_rows", "format_model_table"]


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


def _meta_summary(name: str) -> dict[str, Any]:
    """Blocks and parameter count of ``create_model(name)``, built on the meta device (shapes without memory or
    initialisation: milliseconds for a ResNet-101 model)."""
    with torch.device("meta"):
        model = create_model(name)
    return {"context": type(model.context).__name__, "encoder": model.encoder.name, "num_classes": model.num_classes,
            "parameters": count_parameters(model)}


def list_model_rows(pattern: str = "*", pretrained: bool = False) -> list[dict[str, Any]]:
    """``mfnet-zoo list``: one dict per registered model matching fnmatch ``pattern`` (``pretrained``: one per
    ``name.tag`` with weights): name, family, context block, default encoder, parameters at the default
    class count, pretrained tags (``pretrained``: where the tag's weights come from)."""
    rows = []
    summaries: dict[str, dict[str, Any]] = {}
    for entry in list_models(pattern, pretrained=pretrained):
        name, _, tag = entry.partition(".")
        if name not in summaries:
            summaries[name] = _meta_summary(name)
        row = {"name": entry, "family": get_model_family(name), **summaries[name],
               "pretrained_tags": list_pretrained_tags(name)}
        if tag:
            cfg = get_pretrained_cfg(name, tag)
            row["weights"] = (f"hf-hub:{cfg.hf_hub_id}" if cfg.hf_hub_id else cfg.file and str(cfg.file)) or \
                f"encoder only: {cfg.encoder_weights}"
        rows.append(row)
    return rows


def format_model_table(rows: list[dict[str, Any]]) -> str:
    """:func:`list_model_rows` as the aligned table ``mfnet-zoo list`` prints (parameters in millions)."""
    last = "weights" if any("weights" in r for r in rows) else "pretrained tags"
    table = [("model", "family", "context", "encoder", "params", last)]
    for r in rows:
        table.append((r["name"], r["family"], r["context"], r["encoder"], f"{r['parameters'] / 1e6:.2f}M",
                      r["weights"] if "weights" in r else ", ".join(r["pretrained_tags"]) or "-"))
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]) - 1)]
    return "\n".join("  ".join([cell.rjust(w) if i == 4 else cell.ljust(w) for i, (cell, w) in
                                enumerate(zip(row, widths))] + [row[-1]]).rstrip() for row in table)
