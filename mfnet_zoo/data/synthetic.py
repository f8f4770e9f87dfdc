"""Procedurally generated segmentation scenes: shapes on textured backgrounds, with occlusion.

Built in so that the demo, the tests and the examples train on real images and masks without
any download. Every scene is a pure function of (seed, index): the dataset is deterministic,
needs no disk, and can also be written out in the folder layout of :class:`FolderDataset`.
"""
from __future__ import annotations

import math
from pathlib import Path

import torch
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.io import write_png

__all__ = ["SYNTHETIC_CLASSES", "SyntheticShapes", "render_scene", "write_synthetic_dataset"]

SYNTHETIC_CLASSES = ("background", "circle", "square", "triangle", "ring", "cross")


def _shape_mask(kind: int, u: torch.Tensor, v: torch.Tensor, r: float) -> torch.Tensor:
    """Mask of shape ``kind`` in object coordinates (u, v rotated, centred), radius r."""
    if kind == 1:
        return u * u + v * v <= r * r
    if kind == 2:
        return (u.abs() <= r * 0.8) & (v.abs() <= r * 0.8)
    if kind == 3:  # equilateral triangle (three half-planes), circumradius 1.2 r for an area like the others
        r = 1.2 * r
        return (v <= r * 0.5) & (math.sqrt(3) * u - v <= r) & (-math.sqrt(3) * u - v <= r)
    if kind == 4:
        d2 = u * u + v * v
        return (d2 <= r * r) & (d2 >= (0.55 * r) ** 2)
    arm = r * 0.3
    return ((u.abs() <= arm) & (v.abs() <= r)) | ((u.abs() <= r) & (v.abs() <= arm))


def _texture(size: int, generator: torch.Generator) -> torch.Tensor:
    """3 x S x S background: a colour gradient, stripes at a random angle, and pixel noise."""
    y, x = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    c0, c1 = torch.rand(3, 1, 1, generator=generator), torch.rand(3, 1, 1, generator=generator)
    angle = float(torch.rand(1, generator=generator)) * math.pi
    ramp = (x * math.cos(angle) + y * math.sin(angle) + 1) / 2
    image = c0 * (1 - ramp) + c1 * ramp
    frequency = 4 + 12 * float(torch.rand(1, generator=generator))
    stripes = torch.sin(frequency * (x * math.sin(angle) - y * math.cos(angle)) * math.pi)
    image = image + 0.15 * float(torch.rand(1, generator=generator)) * stripes
    return image + 0.05 * torch.randn(3, size, size, generator=generator)


def render_scene(index: int, size: int = 128, seed: int = 0, max_objects: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """Scene ``index``: (image 3 x S x S float in [0, 1], mask S x S int64 in [0, 6)).

    1 to ``max_objects`` shapes of random class, size, rotation, colour and texture; later
    shapes occlude earlier ones, in the image and in the mask.
    """
    generator = torch.Generator().manual_seed(seed * 1_000_003 + index)
    image = _texture(size, generator)
    mask = torch.zeros(size, size, dtype=torch.int64)
    y, x = torch.meshgrid(torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32),
                          indexing="ij")
    n_objects = 1 + int(torch.randint(max_objects, (1,), generator=generator))
    for _ in range(n_objects):
        kind = 1 + int(torch.randint(len(SYNTHETIC_CLASSES) - 1, (1,), generator=generator))
        r = size * (0.15 + 0.2 * float(torch.rand(1, generator=generator)))
        cy, cx = (torch.rand(2, generator=generator) * size).tolist()
        theta = float(torch.rand(1, generator=generator)) * 2 * math.pi
        dx, dy = x - cx, y - cy
        u, v = dx * math.cos(theta) + dy * math.sin(theta), -dx * math.sin(theta) + dy * math.cos(theta)
        inside = _shape_mask(kind, u, v, r)
        colour = torch.rand(3, 1, 1, generator=generator)
        fill = colour + 0.1 * torch.randn(3, size, size, generator=generator)
        image = torch.where(inside, fill, image)
        mask[inside] = kind
    return image.clamp(0, 1), mask


class SyntheticShapes(Dataset):
    """``length`` synthetic scenes of ``size`` x ``size``, rendered on first access and kept in memory.

    Items: ``transforms(image, mask)`` with a uint8 tv_tensors.Image (3 x S x S) and an int64
    tv_tensors.Mask (S x S), like the scenes written to disk and the other datasets here.
    """

    classes = SYNTHETIC_CLASSES

    def __init__(self, length: int = 512, size: int = 128, seed: int = 0, transforms=None) -> None:
        if length <= 0 or size < 16:
            raise ValueError(f"need length > 0 and size >= 16, got length={length}, size={size}")
        self.length, self.size, self.seed, self.transforms = length, size, seed, transforms
        self._cache: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int):
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for {self.length} scenes")
        if index not in self._cache:
            image, mask = render_scene(index, self.size, self.seed)
            self._cache[index] = ((image * 255).round().to(torch.uint8), mask)
        image, mask = self._cache[index]
        image, mask = tv_tensors.Image(image), tv_tensors.Mask(mask)
        return self.transforms(image, mask) if self.transforms is not None else (image, mask)


def write_synthetic_dataset(root: str | Path, splits: dict[str, int] | None = None, size: int = 128,
                            seed: int = 0) -> Path:
    """Write scenes as PNGs in the folder layout (images/{split}/, masks/{split}/, classes.txt)."""
    root = Path(root)
    splits = splits or {"train": 256, "val": 64}
    for offset, (split, count) in enumerate(splits.items()):
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "masks" / split).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            # each split draws from its own seed (as SyntheticShapes(seed=...)): no scene is in two splits
            image, mask = render_scene(i, size, seed + offset)
            write_png((image * 255).round().to(torch.uint8), str(root / "images" / split / f"{i:05d}.png"))
            write_png(mask.to(torch.uint8).unsqueeze(0), str(root / "masks" / split / f"{i:05d}.png"))
    (root / "classes.txt").write_text("\n".join(SYNTHETIC_CLASSES) + "\n")
    return root
