"""Prediction on image files: expand files/folders/globs, run :mod:`mfnet_zoo.inference`, write PNGs."""
from __future__ import annotations

import glob
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ._atomic import atomic_path
from ._pretrained import resolve_data_config
from .data.folder import IMAGE_EXTENSIONS, load_image
from .inference import autocast, infer_probabilities, probabilities_to_classes
from .visualize import colorize, voc_palette

__all__ = ["expand_inputs", "predict_files", "PredictionReport"]


def expand_inputs(inputs: Iterable[str]) -> tuple[list[Path], list[str]]:
    """Files, folders (their images, sorted) and glob patterns -> (image paths, problems)."""
    paths: list[Path] = []
    problems: list[str] = []
    for item in inputs:
        if os.path.isdir(item):
            found = sorted(p for p in Path(item).iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
            problems += [] if found else [f"{item}: folder has no images ({', '.join(IMAGE_EXTENSIONS)})"]
            paths += found
        elif os.path.isfile(item):
            paths.append(Path(item))
        elif glob.has_magic(item):
            found = sorted(Path(p) for p in glob.glob(item, recursive=True) if os.path.isfile(p))
            problems += [] if found else [f"{item}: pattern matches no file"]
            paths += found
        else:
            problems.append(f"{item}: no such file or folder")
    return paths, problems


@dataclass
class PredictionReport:
    written: list[Path] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


def _save_outputs(out_dir: Path, stem: str, image: torch.Tensor, classes: torch.Tensor, probs: torch.Tensor | None,
                  alpha: float) -> list[Path]:
    index = Image.fromarray(classes.to(torch.uint8).numpy())
    index.putpalette(voc_palette().flatten().tolist())  # an 'L' image becomes 'P': indices + VOC colours
    overlay = (image.float() * (1 - alpha) + colorize(classes).float() * alpha).round().to(torch.uint8)
    outputs = []
    with atomic_path(out_dir / f"{stem}.png") as tmp:
        index.save(tmp, format="PNG")
    outputs.append(out_dir / f"{stem}.png")
    with atomic_path(out_dir / f"{stem}_overlay.png") as tmp:
        Image.fromarray(overlay.permute(1, 2, 0).numpy()).save(tmp, format="PNG")
    outputs.append(out_dir / f"{stem}_overlay.png")
    if probs is not None:
        with atomic_path(out_dir / f"{stem}_probs.npy") as tmp, open(tmp, "wb") as f:
            np.save(f, probs.numpy().astype(np.float16))
        outputs.append(out_dir / f"{stem}_probs.npy")
    return outputs


@torch.no_grad()
def predict_files(model: torch.nn.Module, inputs: Iterable[str], out_dir: str | Path, *, batch_size: int = 4,
                  scales: Sequence[float] = (1.0,), flip: bool = False, window: int | None = None,
                  save_probs: bool = False, alpha: float = 0.5, device: torch.device | str = "cpu",
                  amp: str = "none", channels_last: bool = False, progress: bool = True) -> PredictionReport:
    """Predict every image in ``inputs`` (files, folders, globs) and write, at the original size:
    ``NAME.png`` (class indices, VOC palette), ``NAME_overlay.png`` and, with ``save_probs``,
    ``NAME_probs.npy`` (K x H x W float16). Unreadable inputs are reported, the rest processed.

    ``amp`` ('none', 'bf16', 'fp16') runs the model under autocast and ``channels_last`` converts
    model and images: together 2-3x faster on CPUs with bf16 matrix units (see the benchmarks);
    probabilities are always averaged in float32.
    """
    from tqdm.auto import tqdm

    device = torch.device(device)
    autocast(device, amp)  # a bad amp fails before anything is written
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = model.to(device).eval()
    if channels_last:  # otherwise the model keeps whatever layout its owner gave it
        model = model.to(memory_format=torch.channels_last)
    data_cfg = resolve_data_config(model)
    mean = torch.tensor(data_cfg["mean"], device=device).view(1, -1, 1, 1)
    std = torch.tensor(data_cfg["std"], device=device).view(1, -1, 1, 1)
    paths, problems = expand_inputs(inputs)
    report = PredictionReport(failed=problems)
    loaded: list[tuple[Path, torch.Tensor]] = []

    def flush() -> None:
        if not loaded:
            return
        images = torch.stack([image for _, image in loaded]).to(device)
        images = (images.float() / 255 - mean) / std
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with autocast(device, amp):
            probs = infer_probabilities(model, images, scales, flip, window)
        classes = probabilities_to_classes(probs)
        for i, (path, image) in enumerate(loaded):
            report.written += _save_outputs(out_dir, path.stem, image, classes[i].cpu(),
                                            probs[i].cpu() if save_probs else None, alpha)
        loaded.clear()

    for path in tqdm(paths, desc="predict", disable=not progress, dynamic_ncols=True):
        try:
            image = load_image(path)
        except ValueError as e:
            report.failed.append(str(e))
            continue
        if loaded and (image.shape != loaded[0][1].shape or len(loaded) == batch_size):
            flush()  # a batch holds images of one size
        loaded.append((path, image))
    flush()
    return report
