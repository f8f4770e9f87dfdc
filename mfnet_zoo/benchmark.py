"""Latency, throughput and peak memory of models measured side by side (interleaved runs)."""
from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence

import torch
from torch import nn

from .profiling import count_macs, count_parameters

__all__ = ["benchmark", "format_benchmark"]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def benchmark(models: dict[str, nn.Module | Callable[[], nn.Module]], size: int | tuple[int, int] = 513,
              batch: int = 1, device: torch.device | str = "cpu", runs: int = 7, warmup: int = 2,
              channels_last: bool = False, macs: bool = True,
              sizes: dict[str, tuple[int, int]] | None = None) -> list[dict]:
    """Eval-mode forward latency of each model, measured in interleaved rounds so drift hits all alike.

    ``models`` maps names to modules (any: smp's and torchvision's too) or to zero-argument builders;
    ``sizes`` overrides the input size per model (smp's DeepLabV3+ refuses 513, say).

    Returns per model: parameters, MACs (one image), median and min latency (ms, warm-up
    excluded), throughput (images/s) and, on CUDA, peak allocated memory (MB).
    """
    device = torch.device(device)
    default = (size, size) if isinstance(size, int) else tuple(size)
    shapes = {name: tuple((sizes or {}).get(name, default)) for name in models}
    built = {name: (m() if callable(m) and not isinstance(m, nn.Module) else m).eval().to(device)
             for name, m in models.items()}
    results = {name: {"model": name, "parameters": count_parameters(m), "batch": batch, "size": list(shapes[name]),
                      "device": str(device), "times": []} for name, m in built.items()}
    inputs = {}
    for name, model in built.items():
        height, width = shapes[name]
        in_chans = getattr(model, "in_chans", 3)  # smp, torchvision and other models: RGB
        if channels_last:
            model.to(memory_format=torch.channels_last)
        if macs:
            results[name]["macs"] = count_macs(model, (1, in_chans, height, width))
        x = torch.randn(batch, in_chans, height, width, device=device)
        inputs[name] = x.contiguous(memory_format=torch.channels_last) if channels_last else x
        for _ in range(warmup):
            model(inputs[name])
    for _ in range(runs):
        for name, model in built.items():
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            _sync(device)
            start = time.perf_counter()
            model(inputs[name])
            _sync(device)
            results[name]["times"].append(time.perf_counter() - start)
            if device.type == "cuda":
                results[name]["peak_memory_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    for result in results.values():
        times = result.pop("times")
        result["median_ms"] = statistics.median(times) * 1e3
        result["min_ms"] = min(times) * 1e3
        result["images_per_s"] = batch / statistics.median(times)
    return list(results.values())


def format_benchmark(results: Sequence[dict], reference: str | None = None) -> str:
    """A markdown table; ``reference`` adds each model's latency ratio to that model."""
    ref = next((r for r in results if r["model"] == reference), None)
    header = "| model | params | GMACs | median ms | min ms | img/s | peak MB |" + (" ratio |" if ref else "")
    lines = [header, "|---|---:|---:|---:|---:|---:|---:|" + ("---:|" if ref else "")]
    for r in results:
        row = (f"| {r['model']} | {r['parameters']:,} | {r.get('macs', float('nan')) / 1e9:.1f} | "
               f"{r['median_ms']:.1f} | {r['min_ms']:.1f} | {r['images_per_s']:.2f} | "
               f"{r.get('peak_memory_mb', float('nan')):.0f} |")
        lines.append(row + (f" {r['median_ms'] / ref['median_ms']:.2f}x |" if ref else ""))
    return "\n".join(lines)
