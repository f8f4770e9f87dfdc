"""Inference and training cost of models measured side by side: interleaved rounds, so machine drift hits
every model alike and the ratios stay fair."""
from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ._checks import is_positive_int
from .losses import SegmentationLoss
from .models.segmentation import SegmentationOutput
from .profiling import count_macs, count_parameters, peak_memory
from .inference import autocast

__all__ = ["benchmark", "benchmark_training", "format_benchmark", "paired_ratio"]

ModelSpec = nn.Module | Callable[[], nn.Module]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _build(spec: ModelSpec) -> nn.Module:
    return spec if isinstance(spec, nn.Module) else spec()


def _shapes(models: dict, size: int | tuple[int, int], batch: int, sizes: dict | None,
            input_shape: tuple[int, ...] | None, built: dict[str, nn.Module]) -> dict[str, tuple[int, ...]]:
    """B x C x H x W per model: ``input_shape`` for plain blocks, else an image batch of the model's size."""
    if input_shape is not None:
        return {name: tuple(input_shape) for name in models}
    default = (size, size) if isinstance(size, int) else tuple(size)
    # smp, torchvision and other models have no in_chans: RGB
    return {name: (batch, getattr(built[name], "in_chans", 3), *(sizes or {}).get(name, default)) for name in models}


def _peak_mb(fn: Callable[[], object], device: torch.device) -> float:
    """MB of tensors allocated while fn runs (weights and inputs excluded), from the allocator on CUDA."""
    if device.type != "cuda":
        return peak_memory(fn) / 2**20
    _sync(device)
    before = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    fn()
    _sync(device)
    return (torch.cuda.max_memory_allocated(device) - before) / 2**20


def _interleaved(steps: dict[str, Callable[[], object]], device: torch.device, runs: int,
                 warmup: int) -> dict[str, dict[str, float]]:
    """Warm each step up, then time one call of each per round; median and min ms over the rounds, and every
    round's ms (``rounds_ms``, for :func:`paired_ratio`). Odd rounds run the steps in reverse order, so that no
    step always runs first, or always right after the same other step (caches, clock ramps)."""
    for step in steps.values():
        for _ in range(warmup):
            step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for round_ in range(runs):
        for name, step in (reversed(steps.items()) if round_ % 2 else steps.items()):
            _sync(device)
            start = time.perf_counter()
            step()
            _sync(device)
            times[name].append(time.perf_counter() - start)
    return {name: {"median_ms": statistics.median(t) * 1e3, "min_ms": min(t) * 1e3, "rounds_ms": [x * 1e3 for x in t]}
            for name, t in times.items()}


def paired_ratio(results: Sequence[dict], name: str, reference: str) -> float:
    """The median over rounds of ``name``'s time / ``reference``'s time in the same round: on a machine whose
    speed drifts (a shared VM), each round's pair sees about the same speed, so a drift across rounds, which
    moves the ratio of the two medians, cancels; jitter within a round does not."""
    by_name = {r["model"]: r["rounds_ms"] for r in results}
    for key in (name, reference):
        if key not in by_name:
            raise ValueError(f"no results for {key!r}; measured: {sorted(by_name)}")
    return statistics.median(a / b for a, b in zip(by_name[name], by_name[reference], strict=True))


def _check_settings(device: torch.device, amp: str, runs: int, warmup: int, min_warmup: int) -> None:
    """Fail on a bad amp or round count before any model is built."""
    autocast(device, amp)
    if not is_positive_int(runs):
        raise ValueError(f"runs must be an int >= 1, got {runs!r}")
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < min_warmup:
        raise ValueError(f"warmup must be an int >= {min_warmup}, got {warmup!r}")


def _prepare(spec: ModelSpec, device: torch.device, channels_last: bool) -> nn.Module:
    model = _build(spec).to(device)
    return model.to(memory_format=torch.channels_last) if channels_last else model


def _input(shape: tuple[int, ...], device: torch.device, channels_last: bool) -> torch.Tensor:
    x = torch.randn(shape, device=device)
    return x.contiguous(memory_format=torch.channels_last) if channels_last and x.ndim == 4 else x


@torch.no_grad()
def benchmark(models: dict[str, ModelSpec], size: int | tuple[int, int] = 513, batch: int = 1,
              device: torch.device | str = "cpu", runs: int = 7, warmup: int = 2, channels_last: bool = False,
              macs: bool = True, sizes: dict[str, tuple[int, int]] | None = None,
              amp: str = "none", compile: bool | str = False, memory: bool = True,
              input_shape: tuple[int, ...] | None = None) -> list[dict]:
    """Eval-mode forward latency of each model, measured in interleaved rounds.

    ``models`` maps names to modules (any: smp's and torchvision's too) or to zero-argument builders;
    ``sizes`` overrides the image size per model (smp's DeepLabV3+ refuses 513, say); ``input_shape``
    (B x C x H x W) replaces the image batch, for blocks such as a context module on 2048 x 33 x 33.
    ``amp`` ('none', 'bf16', 'fp16') runs under autocast; ``compile`` wraps each model in
    ``torch.compile`` (a backend name, or True for inductor) and the warm-up rounds absorb the compilation.

    Returns per model: parameters, MACs (one input of batch 1), median and min latency (ms,
    warm-up excluded), throughput (inputs/s) and peak MB of the tensors one forward allocates
    (activations; weights and inputs excluded), from the allocator on CUDA and from
    :func:`mfnet_zoo.profiling.peak_memory` elsewhere; MACs and memory come from one eager forward
    outside the timed runs.
    """
    device = torch.device(device)
    _check_settings(device, amp, runs, warmup, min_warmup=0)
    built = {name: _prepare(spec, device, channels_last).eval() for name, spec in models.items()}
    shapes = _shapes(models, size, batch, sizes, input_shape, built)
    inputs = {name: _input(shapes[name], device, channels_last) for name in built}
    results = {name: {"model": name, "parameters": count_parameters(m), "batch": shapes[name][0],
                      "size": list(shapes[name][2:]), "device": str(device)} for name, m in built.items()}
    for name, model in built.items():
        if macs:
            results[name]["macs"] = count_macs(model, (1, *shapes[name][1:]))
        if memory:
            with autocast(device, amp):
                results[name]["peak_memory_mb"] = _peak_mb(lambda m=model, x=inputs[name]: m(x), device)
    runners = {name: torch.compile(m, backend="inductor" if compile is True else compile) if compile else m
               for name, m in built.items()}

    def forward(name: str) -> Callable[[], object]:
        def run():
            with autocast(device, amp):
                return runners[name](inputs[name])
        return run

    timed = _interleaved({name: forward(name) for name in built}, device, runs, warmup)
    for name, result in results.items():
        result.update(timed[name])
        result["images_per_s"] = result["batch"] / timed[name]["median_ms"] * 1e3
    return list(results.values())


def _loss(criterion: SegmentationLoss, output: object, target: torch.Tensor) -> torch.Tensor:
    """The zoo's loss on any segmentation output: ours, smp's (a tensor), torchvision's (a dict)."""
    if isinstance(output, dict):
        output = output["out"]
    if not isinstance(output, (SegmentationOutput, torch.Tensor)):
        raise TypeError(f"cannot take a loss of a {type(output).__name__} output")
    if isinstance(output, torch.Tensor) and output.shape[-2:] != target.shape[-2:]:
        output = F.interpolate(output, size=target.shape[-2:], mode="bilinear", align_corners=False)
    return criterion(output, target)


def benchmark_training(models: dict[str, ModelSpec], size: int | tuple[int, int] = 513, batch: int = 2,
                       device: torch.device | str = "cpu", runs: int = 3, warmup: int = 1,
                       channels_last: bool = False, amp: str = "none",
                       sizes: dict[str, tuple[int, int]] | None = None, num_classes: int = 21,
                       memory: bool = True) -> list[dict]:
    """Train-mode step latency (forward, the zoo's loss, backward, SGD with momentum), interleaved.

    The loss is :class:`~mfnet_zoo.SegmentationLoss`, so MFNet's step includes its reconstruction
    term as in training. Targets are random labels below the model's ``num_classes`` (ours) or
    ``num_classes`` (others: smp, torchvision). Returns per model: median and min step ms, images/s and the peak MB of
    tensors one step allocates (activations, gradients; measured on a step after the warm-up).
    """
    device = torch.device(device)
    _check_settings(device, amp, runs, warmup, min_warmup=1)  # the first step creates optimizer state
    built = {name: _prepare(spec, device, channels_last).train() for name, spec in models.items()}
    shapes = _shapes(models, size, batch, sizes, None, built)
    criterion = SegmentationLoss()
    results = {}
    steps = {}
    for name, model in built.items():
        x = _input(shapes[name], device, channels_last)
        classes = getattr(model, "num_classes", num_classes)
        target = torch.randint(0, classes, (shapes[name][0], *shapes[name][2:]), device=device)
        optimizer = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)

        def step(model=model, x=x, target=target, optimizer=optimizer):
            with autocast(device, amp):
                loss = _loss(criterion, model(x), target)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        steps[name] = step
        results[name] = {"model": name, "batch": shapes[name][0], "size": list(shapes[name][2:]),
                         "device": str(device)}
    timed = _interleaved(steps, device, runs, warmup)
    for name, result in results.items():
        result.update(timed[name])
        result["images_per_s"] = result["batch"] / timed[name]["median_ms"] * 1e3
        if memory:
            result["peak_memory_mb"] = _peak_mb(steps[name], device)
    return list(results.values())


def format_benchmark(results: Sequence[dict], reference: str | None = None) -> str:
    """A markdown table; ``reference`` adds each model's latency ratio to that model."""
    ref = next((r for r in results if r["model"] == reference), None)
    header = "| model | params | GMACs | median ms | min ms | img/s | peak MB |" + (" ratio |" if ref else "")
    lines = [header, "|---|---:|---:|---:|---:|---:|---:|" + ("---:|" if ref else "")]
    for r in results:
        params = f"{r['parameters']:,}" if "parameters" in r else "n/a"
        row = (f"| {r['model']} | {params} | {r.get('macs', float('nan')) / 1e9:.1f} | "
               f"{r['median_ms']:.1f} | {r['min_ms']:.1f} | {r['images_per_s']:.2f} | "
               f"{r.get('peak_memory_mb', float('nan')):.0f} |")
        lines.append(row + (f" {r['median_ms'] / ref['median_ms']:.2f}x |" if ref else ""))
    return "\n".join(lines)
