"""Procedurally generated segmentation scenes: shapes on textured backgrounds, with occlusion.

Built in so that the demo, the tests and the examples train on real images and masks without
any download. Every scene is a pure function of (seed, index): the dataset is deterministic,
needs no disk, and can also be written out in the folder layout of :class:`FolderDataset`.

Four families (``SyntheticShapes(scenes=...)``): ``"shapes"`` (the demo's: five shapes, the class is the
shape) and the context study's three, which share one layout and differ in where the part of the label
that is not the shape comes from (:func:`render_context_scene`): ``"local"``, ``"global"``, ``"global-nocue"``.
"""
from __future__ import annotations

import dataclasses
import math
from functools import partial
from pathlib import Path

import torch
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.io import write_png

__all__ = ["CONTEXT_CLASSES", "SCENES", "SYNTHETIC_CLASSES", "ContextLayout", "ContextObject", "SyntheticShapes",
           "context_scene_layout", "render_context_scene", "render_scene", "write_synthetic_dataset"]

SYNTHETIC_CLASSES = ("background", "circle", "square", "triangle", "ring", "cross")
# the context scenes: shape x stripe orientation ("v" vertical, "h" horizontal); whose stripes decide
# (the object's own, or a marker's far away) is the family's rule
CONTEXT_CLASSES = ("background", "circle-v", "circle-h", "square-v", "square-h", "triangle-v", "triangle-h")


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


def _stripes(size: int, vertical: bool) -> torch.Tensor:
    """S x S square wave in {0, 1}, period S / 28 (8 px at 224), varying along x (vertical) or y."""
    period = max(4, round(size / 28))
    ramp = torch.arange(size).div(period / 2, rounding_mode="floor").remainder(2).float()
    return ramp.expand(size, size) if vertical else ramp[:, None].expand(size, size)


# the context scenes' layout, as fractions of the size S (pixels at S = 224): a marker three stripe periods wide
# (3/28 S, 24 px) and 0.6 S tall (134), 0.01 S (2 px) from one side edge; objects of radius 0.065-0.085 S
# (15-19 px) in the band that starts 0.62 S (139 px) beyond the marker's far edge, so at 224 every object pixel
# is at least 140 columns from every marker pixel. The farthest a logit of the context study's model without a
# context block (test_resnet at stride 16 + the DeepLabV3+ decoder) moves when one input column changes is
# 121 px (benchmarks/context_study.py, logit_reach; 112 px from the centre column), so the gap clears that reach
# by 19 px: at 224 no logit of an object depends on the marker except through the context block
# (tests/test_context_study.py measures the reach and checks the gap of the held-out scenes against it).
_MARKER_WIDTH, _MARKER_HEIGHT, _MARKER_OFFSET, _MARKER_GAP = 3 / 28, 0.6, 0.01, 0.62
_OBJECT_RADIUS = (0.065, 0.085)
_CONTEXT_RULES = ("local", "global", "global-nocue")


@dataclasses.dataclass(frozen=True)
class ContextObject:
    """One object of a context scene, in the frame with the marker on the left (pixels)."""

    shape: int  # 0 circle, 1 square, 2 triangle
    vertical: bool  # the orientation of its own stripes (the local rule's label)
    radius: float
    cx: float
    cy: float
    theta: float
    colour: tuple[float, float, float]

    def mask(self, size: int) -> torch.Tensor:
        """S x S bool: the object's pixels (in the frame with the marker on the left)."""
        # every shape lies within 1.2 r of its centre (the triangle's circumradius): test that box only
        bound = 1.2 * self.radius + 2
        rows = torch.arange(max(0, math.floor(self.cy - bound)), min(size, math.ceil(self.cy + bound) + 1))
        cols = torch.arange(max(0, math.floor(self.cx - bound)), min(size, math.ceil(self.cx + bound) + 1))
        mask = torch.zeros(size, size, dtype=torch.bool)
        if len(rows) and len(cols):
            y, x = torch.meshgrid(rows.float(), cols.float(), indexing="ij")
            dx, dy = x - self.cx, y - self.cy
            c, s = math.cos(self.theta), math.sin(self.theta)
            mask[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1] = _shape_mask(self.shape + 1, dx * c + dy * s,
                                                                           -dx * s + dy * c, self.radius)
        return mask


@dataclasses.dataclass(frozen=True)
class ContextLayout:
    """The geometry of a context scene (:func:`context_scene_layout`): what every rule shares.

    ``marker`` is (x0, y0, width, height) in the frame with the marker on the left; the scene is mirrored
    (``flip(-1)``) when ``marker_left`` is False. Later objects occlude earlier ones.
    """

    size: int
    marker_vertical: bool
    marker_left: bool
    marker: tuple[int, int, int, int]
    objects: tuple[ContextObject, ...]

    def label_mask(self, rule: str = "global", mirrored: bool = True) -> torch.Tensor:
        """S x S int64 labels of ``rule`` (as :func:`render_context_scene` returns them with ``mirrored``)."""
        _check_rule(rule)
        mask = torch.zeros(self.size, self.size, dtype=torch.int64)
        for obj in self.objects:
            orientation = obj.vertical if rule == "local" else self.marker_vertical
            mask[obj.mask(self.size)] = 1 + 2 * obj.shape + (0 if orientation else 1)
        return mask.flip(-1) if mirrored and not self.marker_left else mask

    def marker_gap(self) -> int | None:
        """The smallest column distance (px) between a marker pixel and an object pixel (None: no object
        pixel in the image); the same in both mirrored frames."""
        object_cols = (self.label_mask(mirrored=False) > 0).any(dim=0).nonzero().flatten()
        if not len(object_cols):
            return None
        x0, _, width, _ = self.marker
        return int(((x0 - object_cols).clamp(min=0) + (object_cols - (x0 + width - 1)).clamp(min=0)).min())


def _check_rule(rule: str) -> None:
    if rule not in _CONTEXT_RULES:
        raise ValueError(f"rule must be 'local', 'global' or 'global-nocue', got {rule!r}")


def _draw_layout(generator: torch.Generator, size: int, max_objects: int) -> ContextLayout:
    marker_vertical = bool(torch.rand(1, generator=generator) < 0.5)
    marker_left = bool(torch.rand(1, generator=generator) < 0.5)
    width, height = max(4, round(_MARKER_WIDTH * size)), round(_MARKER_HEIGHT * size)
    x0 = round(_MARKER_OFFSET * size)
    y0 = int(torch.randint(size - height + 1, (1,), generator=generator))
    far_edge = x0 + width + _MARKER_GAP * size  # objects start here (marker on the left)
    n_objects = 1 + int(torch.randint(max_objects, (1,), generator=generator))
    objects = []
    for _ in range(n_objects):
        shape = int(torch.randint(3, (1,), generator=generator))  # circle, square, triangle
        vertical = bool(torch.rand(1, generator=generator) < 0.5)
        low, high = _OBJECT_RADIUS
        r = size * (low + (high - low) * float(torch.rand(1, generator=generator)))
        reach = 1.2 * r  # the triangle's circumradius, the largest of the three
        lo, hi = far_edge + reach, size - 1 - reach
        cx = lo + (hi - lo) * float(torch.rand(1, generator=generator))
        cy = reach + (size - 1 - 2 * reach) * float(torch.rand(1, generator=generator))
        theta = float(torch.rand(1, generator=generator)) * 2 * math.pi
        colour = tuple((0.3 + 0.7 * torch.rand(3, generator=generator)).tolist())
        objects.append(ContextObject(shape, vertical, r, cx, cy, theta, colour))
    return ContextLayout(size, marker_vertical, marker_left, (x0, y0, width, height), tuple(objects))


def _context_generator(index: int, seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + index)


def context_scene_layout(index: int, size: int = 224, seed: int = 0, max_objects: int = 4) -> ContextLayout:
    """The layout of context scene ``index`` (marker, objects), without drawing it: what
    :func:`render_context_scene` draws for the same arguments, cheap enough to scan thousands of scenes
    (``layout.label_mask(rule)``, ``layout.marker_gap()``)."""
    return _draw_layout(_context_generator(index, seed), size, max_objects)


def render_context_scene(index: int, size: int = 224, seed: int = 0, rule: str = "global",
                         max_objects: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """Context scene ``index``: (image 3 x S x S float in [0, 1], mask S x S int64 in [0, 7)).

    Every scene has 1 to ``max_objects`` circles, squares or triangles on one side and a black-and-white
    striped marker (vertical or horizontal stripes) at the other edge, beyond the objects' receptive field
    (see the layout above; :func:`context_scene_layout` gives it without drawing). The label of an object is
    its shape and an orientation taken from:

    - ``"local"``: the object's own stripes (each object is filled with coloured stripes, drawn per
      object; the marker is drawn too, a distractor);
    - ``"global"``: the marker's stripes; the objects are filled plain, so without image-wide context a
      model can only guess between the two classes of a shape;
    - ``"global-nocue"``: as ``"global"`` with the marker painted over: the floor of that guess.

    For one ``index`` the three rules draw the same layout, shapes, colours and marker.
    """
    _check_rule(rule)
    generator = _context_generator(index, seed)
    layout = _draw_layout(generator, size, max_objects)  # first, so that context_scene_layout draws the same
    image = _texture(size, generator)
    stripes = {True: _stripes(size, True), False: _stripes(size, False)}
    for obj in layout.objects:
        inside = obj.mask(size)
        colour = torch.tensor(obj.colour).view(3, 1, 1)
        pattern = 0.45 + 0.55 * stripes[obj.vertical] if rule == "local" else 0.725  # plain: the stripes' mean
        fill = colour * pattern + 0.05 * torch.randn(3, size, size, generator=generator)
        image = torch.where(inside, fill, image)
    if rule != "global-nocue":
        x0, y0, width, height = layout.marker
        image[:, y0:y0 + height, x0:x0 + width] = stripes[layout.marker_vertical][y0:y0 + height, x0:x0 + width]
    if not layout.marker_left:  # the mirrored layout: marker on the right, objects on the left
        image = image.flip(-1)
    return image.clamp(0, 1), layout.label_mask(rule)


# scenes=... of SyntheticShapes: renderer (index, size, seed) -> (image, mask), and the class names
SCENES = {
    "shapes": (render_scene, SYNTHETIC_CLASSES),
    **{rule: (partial(render_context_scene, rule=rule), CONTEXT_CLASSES)
       for rule in ("local", "global", "global-nocue")},
}


class SyntheticShapes(Dataset):
    """``length`` synthetic scenes of ``size`` x ``size``, rendered on first access and kept in memory.

    ``scenes``: one of :data:`SCENES`: ``"shapes"`` (the demo's, :func:`render_scene`) or the context
    study's ``"local"``, ``"global"``, ``"global-nocue"`` (:func:`render_context_scene`, 224 and above).
    Items: ``transforms(image, mask)`` with a uint8 tv_tensors.Image (3 x S x S) and an int64
    tv_tensors.Mask (S x S), like the scenes written to disk and the other datasets here.
    """

    def __init__(self, length: int = 512, size: int = 128, seed: int = 0, transforms=None,
                 scenes: str = "shapes") -> None:
        if length <= 0 or size < 16:
            raise ValueError(f"need length > 0 and size >= 16, got length={length}, size={size}")
        if scenes not in SCENES:
            raise ValueError(f"scenes must be one of {tuple(SCENES)}, got {scenes!r}")
        self.length, self.size, self.seed, self.transforms = length, size, seed, transforms
        self.scenes = scenes
        self._render, self.classes = SCENES[scenes]
        self._cache: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int):
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for {self.length} scenes")
        if index not in self._cache:
            image, mask = self._render(index, self.size, self.seed)
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
