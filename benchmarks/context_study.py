"""The context study, v2: which context block reads a distant cue, how reliably, and at what cost? Writes
docs/context-study.md, its plots and JSON.

    python benchmarks/context_study.py --resume --commit   # the full study: 105 runs (plan()), every session
    python benchmarks/context_study.py --quick --out-dir /tmp/cs   # the contexts that exist, 64 px, two steps
    python benchmarks/context_study.py --from-json          # rewrite the page and plots from the JSON alone

Every model is ``context_deeplab`` with the same timm encoder (test_resnet, output stride 16), the same
DeepLabV3+ decoder and widths; only ``context`` differs. Each is trained from scratch with the same recipe
(the demo's: AdamW, flips, batch 8) on the context scenes of ``mfnet_zoo.data.render_context_scene`` and
evaluated on held-out scenes. Before any run the script measures how far a logit of the model without a
context sees (one input column perturbed at a time) and checks that the scenes keep every object beyond it.

The runs follow :func:`plan` (first seed of everything, then more seeds; see ``Study``). The JSON is written
atomically after every run, ``--resume`` skips the runs it holds (a session can be killed at any point), and
``--commit`` commits the JSON to the current branch after every run. The page is generated from the JSON
alone, the same way at the end of a run and with ``--from-json``.
"""
from __future__ import annotations

import argparse
import base64
import copy
import dataclasses
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader

import mfnet_zoo
from mfnet_zoo import create_model
from mfnet_zoo._atomic import atomic_path
from mfnet_zoo._constants import CONTEXT_DESCRIPTIONS, IMAGENET_MEAN, IMAGENET_STD
from mfnet_zoo.benchmark import benchmark, benchmark_training
from mfnet_zoo.data import CONTEXT_CLASSES, SyntheticShapes, eval_transforms, render_context_scene, train_transforms
from mfnet_zoo.data.synthetic import context_scene_layout
from mfnet_zoo.demo import DEMO_CONFIG
from mfnet_zoo.layers import CONTEXTS, create_context
from mfnet_zoo.metrics import SegmentationMetrics
from mfnet_zoo.run_record import cpu_name
from mfnet_zoo.train import Trainer, seed_everything

ROOT = Path(__file__).resolve().parents[1]
VERSION = 2
# every context of the study, in the page's order; the full study needs each of them in mfnet_zoo.layers.CONTEXTS,
# --quick takes those that exist
CONTEXT_ORDER = ("none", "pool", "aspp", "nmf", "nmf-unrolled", "ema", "ema-unrolled", "static", "pair-only",
                 "nmf-hamburger")
# the contexts the question is about, with 8 seeds on the global scenes; the others get 3
MAIN_CONTEXTS = ("none", "pool", "aspp", "nmf", "nmf-unrolled", "ema", "ema-unrolled")
UNROLLED = ("nmf-unrolled", "ema-unrolled")  # low-rank blocks with the gradient unrolled through every iteration
FAMILIES = ("global", "local", "global-nocue")
ENCODER, STRIDE = "test_resnet", 16
READS_MARKER = 0.95  # a seed reads the marker when its orientation accuracy on the global scenes is at least this
RELIABLE = (7, 8)  # a context reads it reliably when at least 7 of 8 seeds do
REACH_MARGIN = 16  # px: the smallest object-marker gap must exceed the largest logit reach by at least this
CHANCE_DRAWS = 20000  # Monte Carlo draws of a marker-blind model's guesses (the chance band)
VAL_SEED, TRAIN_SEED = 1, 0  # the scenes' seeds (the same scenes for every model seed)
# version 1's field at 224 px (docs/context-study.json of v1): its "theoretical" reach of the logits, its trained
# model's figure by the same centre-of-mass measure, and its scenes' smallest object-marker gap
V1_FIELD = {"theoretical": 106.6, "trained": 112.3, "gap": 115}


@dataclasses.dataclass(frozen=True)
class Study:
    """What is held fixed across the runs (recorded in the JSON); the defaults are the full study."""

    image_size: int = 224
    train_scenes: int = 1600
    val_scenes: int = 160
    epochs: int = 5
    batch_size: int = 8
    main_seeds: int = 8  # global scenes, MAIN_CONTEXTS
    other_seeds: int = 3  # global scenes, the other contexts
    local_seeds: int = 3  # local scenes, every context
    control_seeds: int = 1  # global-nocue (the marker painted over), every context
    contexts: tuple[str, ...] = CONTEXT_ORDER
    main_contexts: tuple[str, ...] = MAIN_CONTEXTS
    channels: int = 64  # the contexts' output and the decoder's width
    width: int = 96  # where the factorizations and EM attention work: the encoder's channels (as MFNet)
    rank: int = 16  # K bases / factors: 14 x 14 = 196 positions at 224
    latency_runs: int = 15
    train_step_runs: int = 5

    def model_kwargs(self, context: str) -> dict:
        grid = self.image_size // STRIDE
        return dict(encoder=ENCODER, output_stride=STRIDE, num_classes=len(CONTEXT_CLASSES), context=context,
                    decoder_channels=self.channels, width=self.width, rank=self.rank, base_size=(grid, grid),
                    separable=True,
                    pretrained_cfg_overlay=dict(mean=IMAGENET_MEAN, std=IMAGENET_STD))

    @classmethod
    def from_json(cls, record: dict) -> Study:
        """The study a JSON record describes (its lists back to tuples)."""
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in record.items()})

    def train_config(self, seed: int):
        return DEMO_CONFIG.replace(epochs=self.epochs, batch_size=self.batch_size, crop_size=self.image_size,
                                   seed=seed, amp="bf16")

    def seeds(self, family: str, context: str) -> int:
        """How many seeds the plan gives ``context`` on ``family``."""
        if family == "global":
            return self.main_seeds if context in self.main_contexts else self.other_seeds
        return self.local_seeds if family == "local" else self.control_seeds


QUICK = Study(image_size=64, train_scenes=8, val_scenes=4, epochs=1, batch_size=4, main_seeds=1, other_seeds=1,
              local_seeds=1, control_seeds=1, latency_runs=1, train_step_runs=1)


def plan(study: Study) -> list[tuple[str, str, int]]:
    """Every run as (family, context, seed), ordered so that a study stopped early is useful: seed by seed,
    and within a seed the global scenes first, then local, then the control. With the defaults: seed 0 of
    everything (30 runs), seeds 1 and 2 on global and local (40; every context then has 3 seeds), seeds 3-7 of
    MAIN_CONTEXTS on global (35): 105 runs."""
    rounds = max(study.seeds(f, c) for f in FAMILIES for c in study.contexts)
    return [(f, c, s) for s in range(rounds) for f in FAMILIES for c in study.contexts if s < study.seeds(f, c)]


# -- how far a logit sees --------------------------------------------------------------------------------------
def _positive(model: nn.Module) -> nn.Module:
    """A float64 eval copy with every conv weight made positive and BN's scale 1: no cancellation, so an output
    changes whenever an input it depends on does."""
    model = copy.deepcopy(model).double().eval()
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            module.weight.data.abs_()
        if isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
    return model


@torch.no_grad()
def logit_reach(model: nn.Module, size: int, height: int | None = None, bump: float = 1e4, chunk: int = 16) -> dict:
    """How far (px) the logits move when one input column changes, for every column of a ``size`` px wide input.

    The model is made positive (:func:`_positive`, float64, eval); to a random input in [0, 1], ``bump`` is
    added to one column (every row and channel) at a time: large enough to win every max-pool window it is
    in, so the change travels as far as any path goes, through the align_corners upsampling too. The reach of
    column c is the largest |c' - c| over the logit columns c' that change at all (compared bit for bit with
    the unperturbed input in the same batch). ``height`` (default ``size``) can be smaller: a whole column is
    perturbed and nothing in the model pools over the image, so the horizontal reach does not depend on it.

    Returns ``max`` (over the columns), ``argmax`` (its column), ``centre`` (the larger of the two middle
    columns' reach, (size - 1) // 2 and size // 2) and ``per_column``.
    """
    model = _positive(model)
    height = height or size
    x = torch.rand(1, 3, height, size, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    reach = []
    for start in range(0, size, chunk):
        columns = range(start, min(size, start + chunk))
        batch = x.repeat(len(columns) + 1, 1, 1, 1)  # row 0 stays unperturbed: the reference, in the same batch
        for i, c in enumerate(columns):
            batch[i + 1, :, :, c] += bump
        out = model(batch)
        logits = out.logits if hasattr(out, "logits") else out
        moved = (logits[1:] != logits[:1]).any(dim=1).any(dim=1)  # B x W: logit columns that changed
        for i, c in enumerate(columns):
            cols = moved[i].nonzero().flatten()
            reach.append(int((cols - c).abs().max()) if len(cols) else 0)
    best = max(range(size), key=lambda c: reach[c])
    return {"max": reach[best], "argmax": best, "centre": max(reach[(size - 1) // 2], reach[size // 2]),
            "per_column": reach}


def _centre_gradient(model: nn.Module, forward, images: torch.Tensor) -> torch.Tensor:
    """|d out[centre] / d input| summed over images and channels (H x W): out = forward(model, images)."""
    images = images.clone().requires_grad_(True)
    out = forward(model, images)
    h, w = out.shape[-2:]
    grad = torch.zeros_like(out)
    grad[..., h // 2, w // 2] = 1.0
    out.backward(grad)
    return images.grad.abs().sum(dim=(0, 1))


def _radii(gradient: torch.Tensor) -> dict:
    """Radii (pixels, from the gradient's centre of mass) holding 50% and 95% of its mass."""
    size = gradient.shape[-1]
    yy, xx = torch.meshgrid(torch.arange(size, dtype=torch.float64), torch.arange(size, dtype=torch.float64),
                            indexing="ij")
    mass = gradient.double() / gradient.sum()
    cy, cx = (mass * yy).sum(), (mass * xx).sum()
    r = ((yy - cy) ** 2 + (xx - cx) ** 2).sqrt().flatten()
    order = r.argsort()
    cumulative = mass.flatten()[order].cumsum(0)
    return {"r50": round(r[order][int((cumulative >= 0.5).nonzero()[0])].item(), 1),
            "r95": round(r[order][int((cumulative >= 0.95).nonzero()[0])].item(), 1)}


def gradient_mass_radii(model: nn.Module, images: torch.Tensor) -> dict:
    """Where the gradient mass of a trained model's centre logit lies (Luo et al.'s "effective receptive
    field"): radii around its centre of mass holding 50% / 95% of |gradient| over ``images``. Not a bound on
    what the logit can see (that is :func:`logit_reach`)."""
    model = copy.deepcopy(model).eval()
    return _radii(_centre_gradient(model, lambda m, x: m(x).logits, images))


# -- the scenes' facts -----------------------------------------------------------------------------------------
def scene_facts(study: Study) -> dict:
    """What the scenes alone say, from their layouts (no drawing):

    - ``marker_gap``: the smallest column distance (px) between a marker pixel and an object pixel over the
      held-out scenes;
    - ``floor``: the held-out orientation accuracy of the training-set majority (each shape answered with the
      orientation most of its object pixels have in the training scenes): what a model that ignores the marker
      but learns the training set's imbalance scores;
    - ``chance``: a marker-blind model that answers one orientation per scene (orientation is shared by every
      object of a scene, so its errors come in whole scenes): its accuracy over the held-out set is
      sum_i w_i B_i / sum_i w_i with w_i the scene's object pixels and B_i a fair coin; mean 0.5, its standard
      deviation, and the 2.5% and 97.5% quantiles of CHANCE_DRAWS draws (the chance band).
    """
    def counts(seed: int, scenes: int) -> tuple[torch.Tensor, list[int], list[int]]:
        total, weights, gaps = torch.zeros(3, 2, dtype=torch.int64), [], []
        for index in range(scenes):
            layout = context_scene_layout(index, study.image_size, seed)
            mask = layout.label_mask("global", mirrored=False)
            total += torch.bincount(mask.flatten(), minlength=7)[1:].view(3, 2)
            weights.append(int((mask > 0).sum()))
            gap = layout.marker_gap()
            if gap is not None:
                gaps.append(gap)
        return total, weights, gaps

    train, _, _ = counts(TRAIN_SEED, study.train_scenes)
    held_out, weights, gaps = counts(VAL_SEED, study.val_scenes)
    majority = train.argmax(dim=1)  # per shape: 0 vertical, 1 horizontal
    floor = held_out.gather(1, majority[:, None]).sum().item() / held_out.sum().item()
    w = torch.tensor(weights, dtype=torch.float64)
    w = w / w.sum()
    draws = torch.randint(0, 2, (CHANCE_DRAWS, len(weights)), generator=torch.Generator().manual_seed(0)).double()
    accuracy = draws @ w
    return {"marker_gap": min(gaps), "floor": floor,
            "train_majority": ["vertical" if m == 0 else "horizontal" for m in majority.tolist()],
            "train_share": (train.max(dim=1).values.sum() / train.sum()).item(),
            "chance": {"mean": 0.5, "sd": 0.5 * w.square().sum().sqrt().item(),
                       "low": torch.quantile(accuracy, 0.025).item(), "high": torch.quantile(accuracy, 0.975).item(),
                       "draws": CHANCE_DRAWS}}


def figure_scenes(study: Study) -> list[int]:
    """Two held-out scenes for the figure: the first with a vertical and the first with a horizontal marker."""
    chosen = {}
    for index in range(study.val_scenes):
        chosen.setdefault(context_scene_layout(index, study.image_size, VAL_SEED).marker_vertical, index)
    return sorted(chosen.values()) if len(chosen) == 2 else list(range(min(2, study.val_scenes)))


# -- one run ---------------------------------------------------------------------------------------------------
_PAIRS = [[1 + 2 * s, 2 + 2 * s] for s in range(3)]  # the two classes (v, h) of each shape


def shape_accuracy(confusion: torch.Tensor) -> float:
    """Of the object pixels, the share given the right shape, in either orientation."""
    confusion = torch.as_tensor(confusion)
    right = sum(confusion[pair][:, pair].sum().item() for pair in _PAIRS)
    total = confusion[1:].sum().item()
    return right / total if total else float("nan")


def orientation_accuracy(confusion: torch.Tensor) -> float:
    """Of the object pixels predicted as an object (any shape), the share given the right stripe orientation
    (0.5 is a coin flip): the part of the task the marker decides in the global scenes, apart from the shape."""
    confusion = torch.as_tensor(confusion)
    objects = confusion[1:, 1:]  # true object class x predicted object class
    true_orientation = torch.arange(6)[:, None] % 2
    right = objects[true_orientation == torch.arange(6)[None, :] % 2].sum().item()
    total = objects.sum().item()
    return right / total if total else float("nan")


def orientation_given_shape(confusion: torch.Tensor) -> float:
    """Of the object pixels given the right shape, the share also given the right orientation (v1's figure)."""
    confusion = torch.as_tensor(confusion)
    right = total = 0
    for pair in _PAIRS:
        block = confusion[pair][:, pair]
        right += block.diag().sum().item()
        total += block.sum().item()
    return right / total if total else float("nan")


def _encode_mask(mask: torch.Tensor) -> str:
    return base64.b64encode(zlib.compress(mask.to(torch.uint8).numpy().tobytes(), 9)).decode("ascii")


def _decode_mask(text: str, size: int) -> torch.Tensor:
    data = bytearray(zlib.decompress(base64.b64decode(text)))
    return torch.frombuffer(data, dtype=torch.uint8).view(size, size).long()


def evaluate_run(model: nn.Module, loader: DataLoader, keep: list[int] = ()) -> dict:
    """Scores of ``model`` on ``loader`` (in order) and the predictions of the scenes ``keep`` (encoded)."""
    metrics = SegmentationMetrics(len(CONTEXT_CLASSES))
    kept, seen = {}, 0
    with torch.no_grad():
        for images, masks in loader:
            predictions = model.predict(images)
            metrics.update(predictions, masks)
            for index in keep:
                if seen <= index < seen + len(images):
                    kept[str(index)] = _encode_mask(predictions[index - seen])
            seen += len(images)
    result = metrics.compute()
    confusion = metrics.confusion.cpu()
    record = {"mIoU": result["mIoU"], "pixel_acc": result["pixel_acc"], "per_class_iou": result["per_class_iou"],
              "shape_acc": shape_accuracy(confusion), "orientation_acc": orientation_accuracy(confusion),
              "orientation_given_shape": orientation_given_shape(confusion), "confusion": confusion.tolist()}
    if kept:
        record["predictions"] = kept
    return record


def train_run(study: Study, context: str, family: str, seed: int, data: dict, scratch: Path,
              keep: list[int] = (), radii_images: torch.Tensor | None = None) -> tuple[dict, nn.Module]:
    cfg = study.train_config(seed)
    generator = seed_everything(seed)
    model = create_model("context_deeplab", **study.model_kwargs(context))
    train_set, val_set = data[family]
    loader = DataLoader(train_set, batch_size=cfg.batch_size, shuffle=True, drop_last=True, generator=generator)
    start = time.perf_counter()
    Trainer(model, loader, None, cfg, scratch / f"{family}-{context}-{seed}", class_names=list(CONTEXT_CLASSES),
            progress=False).fit()
    seconds = time.perf_counter() - start
    record = {"context": context, "family": family, "seed": seed, "train_seconds": round(seconds, 1),
              **evaluate_run(model, DataLoader(val_set, batch_size=50), keep)}
    if radii_images is not None:
        record["gradient_mass_radii"] = gradient_mass_radii(model, radii_images)
    return record, model


# -- cost --------------------------------------------------------------------------------------------------------
def cost(study: Study) -> dict:
    """Per context: parameters, MACs and CPU latency (batch 1, eval) of the block alone and of its whole model,
    and the whole model's training step (forward, loss, backward, SGD step; the study's batch and size, bf16
    autocast as the runs): median ms and the peak MB of the tensors one step allocates."""
    grid = study.image_size // STRIDE
    blocks = {name: create_context(name, study.width, study.channels, width=study.width, rank=study.rank,
                                   base_size=(grid, grid)) for name in study.contexts}
    models = {name: create_model("context_deeplab", **study.model_kwargs(name)) for name in study.contexts}
    alone = benchmark(blocks, input_shape=(1, study.width, grid, grid), runs=study.latency_runs, warmup=2,
                      memory=False)
    whole = benchmark(models, size=study.image_size, runs=study.latency_runs, warmup=2, memory=False)
    train = benchmark_training({name: (lambda n=name: create_model("context_deeplab", **study.model_kwargs(n)))
                                for name in study.contexts}, size=study.image_size, batch=study.batch_size,
                               runs=study.train_step_runs, warmup=1, amp="bf16")
    return {r["model"]: {"context": r, "model": w, "train": t} for r, w, t in zip(alone, whole, train)}


# -- summary and statistics --------------------------------------------------------------------------------------
SCORES = ("mIoU", "shape_acc", "orientation_acc")


def seed_stats(values: list[float]) -> dict:
    """Mean and sample standard deviation (ddof = 1; 0 for one value) of the defined ``values``, their count
    ``n``, and ``undefined``: how many were NaN, a score with nothing to score (orientation accuracy of a model
    that predicted no object pixel at all: such a seed does not read the marker)."""
    defined = [float(v) for v in values if not math.isnan(v)]
    return {"mean": statistics.fmean(defined) if defined else math.nan,
            "std": statistics.stdev(defined) if len(defined) > 1 else 0.0, "n": len(defined),
            "undefined": len(values) - len(defined)}


def _runs_of(runs: list[dict], family: str, context: str) -> list[dict]:
    return sorted((r for r in runs if r["family"] == family and r["context"] == context), key=lambda r: r["seed"])


def summarize(runs: list[dict], study: Study) -> dict:
    table: dict = {}
    for family in FAMILIES:
        for context in study.contexts:
            done = _runs_of(runs, family, context)
            if done:
                entry = {key: seed_stats([r[key] for r in done]) for key in SCORES}
                entry["reads"] = sum(r["orientation_acc"] >= READS_MARKER for r in done)
                entry["n"], entry["planned"] = len(done), study.seeds(family, context)
                table.setdefault(family, {})[context] = entry
    return table


def fisher_threshold(n: int, baseline: int, n_ref: int, alpha: float = 0.05) -> dict:
    """The fewest of ``n`` seeds that must read the marker for Fisher's exact test (two-sided) against
    ``baseline`` of ``n_ref`` to give p < ``alpha``, and that p (k None: no count does)."""
    from scipy.stats import fisher_exact

    for k in range(n + 1):
        if k / n > baseline / n_ref:
            p = float(fisher_exact([[k, n - k], [baseline, n_ref - baseline]]).pvalue)
            if p < alpha:
                return {"n": n, "baseline": baseline, "n_ref": n_ref, "k": k, "p": p}
    return {"n": n, "baseline": baseline, "n_ref": n_ref, "k": None, "p": None}


def fisher_tests(table: dict) -> dict:
    """Fisher's exact test (two-sided) of each context's count of seeds that read the marker on the global
    scenes against ``none``'s and ``pool``'s; and what the full study's design can detect: the counts its 8 seeds
    need against 1/8 and 0/8, and its 3 seeds against 1/8."""
    from scipy.stats import fisher_exact

    glob = table.get("global", {})
    tests = {}
    for context, entry in glob.items():
        tests[context] = {"reads": entry["reads"], "n": entry["n"]}
        for reference in ("none", "pool"):
            ref = glob.get(reference)
            if ref is not None and reference != context:
                p = fisher_exact([[entry["reads"], entry["n"] - entry["reads"]],
                                  [ref["reads"], ref["n"] - ref["reads"]]]).pvalue
                tests[context][f"p_vs_{reference}"] = float(p)
    full = Study()
    n, few = full.main_seeds, full.other_seeds
    return {"fisher": tests, "thresholds": [fisher_threshold(n, 1, n), fisher_threshold(n, 0, n),
                                            fisher_threshold(few, 1, n)]}


def summarize_into(result: dict, study: Study) -> None:
    """The summary, the statistics and the reading of ``result["runs"]``, stored in ``result``."""
    result["summary"] = summarize(result["runs"], study)
    result["statistics"] = fisher_tests(result["summary"])
    result["reading"] = reading(result, study)


# -- the reading: sentences computed from the numbers ------------------------------------------------------------
def _f(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def _p(p: float | None) -> str:
    return "n/a" if p is None else (f"{p:.3f}" if p >= 0.001 else f"{p:.1e}")


def _seeds(n: int) -> str:
    return f"{n} seed" + ("" if n == 1 else "s")


def _pm(entry: dict | None, key: str) -> str:
    if entry is None:
        return "n/a"
    stats = entry[key]
    undefined = f" ({stats['undefined']} undefined)" if stats.get("undefined") else ""
    if stats["n"] < 2:
        return ("n/a" if stats["n"] == 0 else f"{stats['mean']:.3f} (one seed)") + undefined
    return f"{stats['mean']:.3f} ± {stats['std']:.3f}{undefined}"


def reliability(entry: dict | None) -> str:
    """'reliable', 'not reliable', 'undecided' (planned seeds not all done) or 'too few seeds' (fewer than 8
    planned): the 7-of-8 rule applied to a context's global-scene count."""
    if entry is None or entry["n"] < entry["planned"]:
        return "undecided"
    if entry["n"] < RELIABLE[1]:
        return "too few seeds"
    return "reliable" if entry["reads"] * RELIABLE[1] >= RELIABLE[0] * entry["n"] else "not reliable"


TIME_TOLERANCE = 1.1  # "lower cost" allows a measured time up to 10% above the other's (CPU timings are noisy)


def _cheaper(costs: dict, a: str, b: str) -> bool:
    """Whether context ``a`` costs less than ``b``: fewer MACs for the whole model, and neither its inference nor
    its training step more than TIME_TOLERANCE slower on the CPU."""
    return (costs[a]["model"]["macs"] < costs[b]["model"]["macs"]
            and costs[a]["model"]["median_ms"] <= TIME_TOLERANCE * costs[b]["model"]["median_ms"]
            and costs[a]["train"]["median_ms"] <= TIME_TOLERANCE * costs[b]["train"]["median_ms"])


def _cost_words(costs: dict, c: str) -> str:
    return (f"{costs[c]['model']['macs'] / 1e9:.3f} GMACs and {costs[c]['model']['median_ms']:.1f} ms per image, "
            f"{costs[c]['train']['median_ms']:.0f} ms per training step")


def unrolled_verdict(result: dict, study: Study) -> str:
    """The one plain sentence: does an unrolled low-rank block read the marker reliably at lower cost than ASPP?"""
    glob, costs = result["summary"].get("global", {}), result["cost"]
    unrolled = [c for c in UNROLLED if c in study.contexts]
    if not unrolled:
        return ("Unrolled low-rank blocks: none was part of this run (`" + "`, `".join(UNROLLED) + "` missing), so "
                "the study says nothing about them.")
    counts = ", ".join(f"`{c}` {glob[c]['reads']}/{glob[c]['n']}" if c in glob else f"`{c}` not run"
                       for c in unrolled)
    aspp = glob.get("aspp")
    aspp_words = (f"ASPP itself: {aspp['reads']}/{aspp['n']} seeds, {reliability(aspp)}" if aspp else
                  "ASPP: not run")
    states = {reliability(glob.get(c)) for c in [*unrolled, "aspp"]}
    if "undecided" in states:
        return (f"Unrolled low-rank blocks against ASPP: not decided yet, the planned seeds are not all done "
                f"(seeds reading the marker so far: {counts}; {aspp_words}).")
    if "too few seeds" in states:
        return (f"Unrolled low-rank blocks against ASPP: not decidable, too few seeds for the {RELIABLE[0]}-of-"
                f"{RELIABLE[1]} rule (seeds reading the marker: {counts}; {aspp_words}).")
    reliable = [c for c in unrolled if reliability(glob[c]) == "reliable"]
    cheaper = [c for c in reliable if "aspp" in costs and _cheaper(costs, c, "aspp")]
    if cheaper:
        return ("Yes: " + "; ".join(f"`{c}` reads the marker reliably ({glob[c]['reads']}/{glob[c]['n']} seeds) "
                                    f"at lower cost than ASPP ({_cost_words(costs, c)}, against "
                                    f"{_cost_words(costs, 'aspp')})" for c in cheaper)
                + f". {aspp_words}.")
    if reliable:
        return ("No: " + "; ".join(f"`{c}` reads the marker reliably ({glob[c]['reads']}/{glob[c]['n']} seeds) but "
                                   f"not at lower cost than ASPP ({_cost_words(costs, c)}, against "
                                   f"{_cost_words(costs, 'aspp')})" for c in reliable)
                + f"; no unrolled low-rank block reads it reliably at lower cost. {aspp_words}.")
    return (f"No: no unrolled low-rank block reads the marker reliably ({counts} seeds; the rule needs "
            f"{RELIABLE[0]} of {RELIABLE[1]}). {aspp_words}.")


def reading(result: dict, study: Study) -> list[str]:
    """Sentences drawn from the numbers alone (the page's reading)."""
    table, stats, facts = result["summary"], result["statistics"], result["scenes"]
    glob, local = table.get("global", {}), table.get("local", {})
    chance = facts["chance"]
    lines = []
    nocue_runs = [r for r in result["runs"] if r["family"] == "global-nocue"]
    band = (f"a marker-blind model that picks one orientation per scene scores 0.5 on average, standard deviation "
            f"{chance['sd']:.3f}, and 95% of such models score {chance['low']:.3f}-{chance['high']:.3f} "
            f"(the chance band); the training-set majority scores {facts['floor']:.3f} (the floor)")
    if nocue_runs:
        values = [r["orientation_acc"] for r in nocue_runs]
        inside = sum(chance["low"] <= v <= chance["high"] for v in values)
        lines.append(f"Marker-blind: {band}. With the marker painted over, the {len(values)} control runs score "
                     f"{statistics.fmean(values):.3f} on average (range {min(values):.3f}-{max(values):.3f}); "
                     f"{inside} of {len(values)} lie in the chance band.")
    else:
        lines.append(f"Marker-blind: {band}.")
    for context, entry in glob.items():
        test = stats["fisher"][context]
        refs = "; ".join(f"against `{ref}` ({glob[ref]['reads']}/{glob[ref]['n']}) p = {_p(test[f'p_vs_{ref}'])}"
                         for ref in ("none", "pool") if f"p_vs_{ref}" in test)
        verdict = reliability(entry)
        words = {"reliable": "reads the marker reliably",
                 "not reliable": f"does not read it reliably (fewer than {RELIABLE[0]} of {RELIABLE[1]})",
                 "undecided": f"{entry['n']} of {entry['planned']} planned seeds done, not decided",
                 "too few seeds": f"{_seeds(entry['n'])}, too few for the {RELIABLE[0]}-of-{RELIABLE[1]} rule"
                 }[verdict]
        beyond = ""
        if "p_vs_none" in test:
            more = entry["reads"] / entry["n"] > glob["none"]["reads"] / glob["none"]["n"]
            beyond = (f"; {'more' if more else 'less'} often than `none` (p < 0.05)" if test["p_vs_none"] < 0.05
                      else "; not distinguishable from `none` at p < 0.05")
        lines.append(f"Global scenes, `{context}`: {entry['reads']} of {_seeds(entry['n'])} read the marker "
                     f"(orientation >= {READS_MARKER}){'; ' + refs if refs else ''}: {words}{beyond}.")
    lines.append(unrolled_verdict(result, study))
    collapsed = []  # a run that predicted no object pixel: orientation NaN
    for family in FAMILIES:
        runs = [r for r in result["runs"] if r["family"] == family]
        lost = [f"`{r['context']}` seed {r['seed']}" for r in runs if math.isnan(r["orientation_acc"])]
        if runs:
            collapsed.append(f"{family} {len(lost)} of {len(runs)}" + (f" ({', '.join(lost)})" if lost else ""))
    lines.append("Collapsed runs (no object pixel predicted on the held-out scenes, orientation undefined): "
                 + "; ".join(collapsed) + ".")
    everywhere = [c for c in study.contexts if all(c in table.get(f, {}) for f in FAMILIES)]
    if everywhere:  # each context weighs the same, whatever its number of seeds
        m = {f: statistics.fmean(table[f][c]["shape_acc"]["mean"] for c in everywhere) for f in FAMILIES}
        sentence = (f"Shape accuracy, mean over the {len(everywhere)} contexts run on all three families (each "
                    f"context's mean over its seeds): local {m['local']:.3f}, global {m['global']:.3f}, "
                    f"global-nocue {m['global-nocue']:.3f}.")
        gap, fill = m["local"] - m["global"], m["local"] - m["global-nocue"]
        if gap > 0:  # the no-cue scenes have the global scenes' plain fill and no marker
            share = fill / gap
            sentence += (f" The no-cue scenes have the global scenes' plain fill and no marker; local minus no-cue "
                         f"is {fill:.3f}, " + (f"{share:.0%} of the local-global gap ({gap:.3f}): that much of the gap "
                                               "comes with the plain fill, without the marker" if share > 0 else
                                               f"so none of the local-global gap ({gap:.3f}) is explained by the "
                                               "plain fill alone") + ".")
        else:
            sentence += " The global scenes' shapes are not scored below the local ones: there is no fill gap to split."
        lines.append(sentence)
        readers = [r for r in result["runs"] if r["family"] == "global" and r["orientation_acc"] >= READS_MARKER]
        if readers:
            values = [r["shape_acc"] for r in readers]
            lines.append(f"The {len(readers)} global runs that read the marker give the right shape to "
                         f"{min(values):.3f}-{max(values):.3f} of the object pixels (shape is scored apart from "
                         "orientation).")
    if local and min(e["n"] for e in local.values()) < 2:
        lines.append("Local scenes: some contexts have one seed so far, no noise estimate; no comparison is drawn.")
    elif local:
        best = max(local, key=lambda c: local[c]["mIoU"]["mean"])
        close = [c for c in local if c != best and abs(local[c]["mIoU"]["mean"] - local[best]["mIoU"]["mean"])
                 <= 2 * max(local[c]["mIoU"]["std"], local[best]["mIoU"]["std"])]
        lines.append(f"Local scenes: the best mean mIoU is `{best}` ({_pm(local[best], 'mIoU')}); within twice the "
                     f"larger seed standard deviation of it (a coarse rule, not a test): "
                     f"{', '.join(f'`{c}`' for c in close) or 'none'}.")
    return lines


# -- plots -------------------------------------------------------------------------------------------------------
def plot(path: Path, result: dict, study: Study) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table, chance = result["summary"], result["scenes"]["chance"]
    contexts = [c for c in study.contexts if any(c in table.get(f, {}) for f in FAMILIES)]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    colours = {"global": "tab:blue", "local": "tab:green", "global-nocue": "tab:gray"}
    width = 0.27
    for ax, key, title in zip(axes, SCORES, ("mIoU", "shape accuracy of object pixels",
                                             "orientation accuracy (object pixels predicted as objects)")):
        for i, family in enumerate(FAMILIES):
            xs, means, low, high = [], [], [], []
            for j, c in enumerate(contexts):
                entry = table.get(family, {}).get(c)
                if entry is None:
                    continue
                mean, std = entry[key]["mean"], entry[key]["std"]
                xs.append(j + (i - 1) * width)
                means.append(mean)
                low.append(max(0.0, min(std, mean)))  # mean ± std, clipped to [0, 1]
                high.append(max(0.0, min(std, 1 - mean)))
            ax.bar(xs, means, width, yerr=[low, high], capsize=3, color=colours[family], label=family)
            if key == "orientation_acc":
                for j, c in enumerate(contexts):
                    values = [r[key] for r in _runs_of(result["runs"], family, c)]
                    ax.plot([j + (i - 1) * width] * len(values), values, "o", color="k", markersize=3,
                            markeredgecolor="w", markeredgewidth=0.5, zorder=3)
        if key == "orientation_acc":
            ax.axhspan(chance["low"], chance["high"], color="k", alpha=0.1, label="chance band")
            ax.axhline(result["scenes"]["floor"], color="k", linestyle=":", linewidth=1, label="floor")
            ax.axhline(READS_MARKER, color="tab:red", linestyle="--", linewidth=1, label="reads the marker")
        ax.set_xticks(range(len(contexts)), contexts, rotation=35, ha="right")
        ax.set_title(title, fontsize=10)
        ax.set_ylim(0, 1.3)
    axes[0].legend(loc="upper center", ncol=3, fontsize=8)
    axes[2].legend(loc="upper center", ncol=3, fontsize=7)
    fig.suptitle(f"context blocks on {ENCODER} + DeepLabV3+ decoder, {study.image_size} px; mean ± sd (ddof 1, "
                 "clipped to [0, 1]) over the seeds; dots: one seed each", fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png", metadata={"Software": None})
    plt.close(fig)


def scenes_figure(path: Path, result: dict, study: Study) -> None:
    """Two held-out scenes per row: image | ground truth | prediction, each row labelled (family, context,
    seed), from the predictions stored in the JSON: local none and aspp, every context on global, no-cue none."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    from mfnet_zoo.visualize import colorize, voc_palette

    scenes = result["figure_scenes"]
    wanted = [("local", "none"), ("local", "aspp"), *(("global", c) for c in study.contexts),
              ("global-nocue", "none")]
    rows = []
    for family, context in wanted:
        run = next((r for r in _runs_of(result["runs"], family, context) if "predictions" in r), None)
        if run is not None:
            rows.append(run)
    if not rows:
        return
    size = study.image_size
    fig, axes = plt.subplots(len(rows), 3 * len(scenes), squeeze=False,
                             figsize=(1.45 * 3 * len(scenes) + 1.2, 1.45 * len(rows) + 0.9))
    for i, run in enumerate(rows):
        for k, index in enumerate(scenes):
            image, truth = render_context_scene(index, size, VAL_SEED, run["family"])
            prediction = _decode_mask(run["predictions"][str(index)], size)
            panels = (image, colorize(truth), colorize(prediction))
            for j, panel in enumerate(panels):
                ax = axes[i][3 * k + j]
                ax.imshow(panel.permute(1, 2, 0).numpy() if panel.dtype == torch.uint8 else
                          panel.permute(1, 2, 0).clamp(0, 1).numpy(), interpolation="nearest")
                ax.set_xticks([])
                ax.set_yticks([])
                if i == 0:
                    ax.set_title(f"scene {index}: " + ("image", "truth", "prediction")[j], fontsize=7)
        axes[i][0].set_ylabel(f"{run['family']}\n{run['context']}\nseed {run['seed']}", fontsize=7)
    palette = voc_palette()
    handles = [Patch(facecolor=(palette[c].float() / 255).tolist(), edgecolor="black", linewidth=0.5, label=name)
               for c, name in enumerate(CONTEXT_CLASSES)]
    fig.legend(handles=handles, loc="lower center", ncol=7, frameon=False, fontsize=7)
    fig.tight_layout(rect=(0, 0.5 / fig.get_figheight(), 1, 1))
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png", metadata={"Software": None})
    plt.close(fig)


# -- the page ----------------------------------------------------------------------------------------------------
def write_page(path: Path, result: dict, img_prefix: str) -> None:
    study = Study.from_json(result["study"])
    table, costs, facts, stats = result["summary"], result["cost"], result["scenes"], result["statistics"]
    reach, m = result["receptive_field"], result["machine"]
    runs, total = result["runs"], len(plan(study))
    seconds = [r["train_seconds"] for r in runs]
    gap, margin = facts["marker_gap"], facts["marker_gap"] - reach["reach"]["max"]
    chance = facts["chance"]
    descriptions = result["contexts"]
    t1, t0, t3 = stats["thresholds"]
    glob = table.get("global", {})
    lines = [
        "# Which context helps, and when? A controlled study (v2)",
        "",
        "<!-- written by benchmarks/context_study.py from context-study.json; rerun it (or --from-json) rather "
        "than editing this page -->",
        "",
        "MFNet's claim is that low-rank factorization gives a segmentation network global context. This study puts "
        "each context block of the library between the same encoder and the same decoder, trains them alike, and "
        "asks: which of them read a cue that lies beyond the receptive field (global scenes), how reliably over "
        "seeds, and what does each cost (local scenes, and the cost table)? Version 2 fixes the scenes' geometry "
        "(the v1 scenes left objects within reach of the marker), adds the unrolled low-rank blocks, gives the "
        "question's contexts 8 seeds, scores shape and orientation apart and states its statistics.",
        "",
        f"Command: `{result['command']}` on {m['cpu']}, {m['threads']} threads (torch {m['torch']}, timm "
        f"{m['timm']}, mfnet_zoo {m['mfnet_zoo']}): {len(runs)} of the {total} planned training runs"
        + (f", {statistics.median(seconds):.0f} s each (median; {sum(seconds) / 60:.0f} min of training in all)"
           if seconds else "")
        + ". Raw runs, with each run's confusion matrix, per-class IoU and time: "
        "[context-study.json](context-study.json).",
        "",
        "## Set-up",
        "",
        f"- **Model**: `create_model(\"context_deeplab\", context=...)`: timm's `{ENCODER}` (random init, "
        f"output stride {STRIDE}), the context block at width {study.width} (the encoder's channels) and rank "
        f"{study.rank}, output {study.channels} channels, the DeepLabV3+ decoder at width {study.channels}. "
        "Contexts: " + "; ".join(f"`{c}`: {descriptions[c]}" for c in study.contexts) + ".",
        f"- **Recipe** (the demo's): AdamW lr {DEMO_CONFIG.lr}, weight decay {DEMO_CONFIG.weight_decay}, poly decay, "
        f"batch {study.batch_size}, {study.epochs} epochs of {study.train_scenes} scenes "
        f"({study.epochs * (study.train_scenes // study.batch_size)} steps), horizontal flips, bf16 autocast, "
        f"cross-entropy + {DEMO_CONFIG.reconstruction_weight} x MSE of the reconstruction pair where a block has "
        "one, no warm-up. The seed sets the model's init and the data order; the scenes are the same for every "
        f"seed. Scores: after the last epoch, on {study.val_scenes} held-out scenes (another scene seed), never "
        "selected on them.",
        f"- **Seeds** ({total} runs): global scenes {study.main_seeds} seeds for "
        + ", ".join(f"`{c}`" for c in study.contexts if c in study.main_contexts)
        + f" and {study.other_seeds} for "
        + (", ".join(f"`{c}`" for c in study.contexts if c not in study.main_contexts) or "no other")
        + f"; local scenes {study.local_seeds} seeds for every context; the no-cue control {study.control_seeds} "
        "seed each. Run order: seed by seed (global, local, control), so a study stopped early has every context "
        "at the seeds it finished.",
        f"- **Scenes** ({study.image_size} x {study.image_size}, `mfnet_zoo.data.render_context_scene`, "
        f"{study.train_scenes} for training, {study.val_scenes} held out): 1-4 circles, squares and triangles in a "
        "band at one side, a black-and-white striped marker (vertical or horizontal stripes) at the other edge. "
        "Seven classes: background and shape x orientation. One layout for all three families; where the "
        "orientation comes from differs: **local**, each object is filled with coloured stripes of its own "
        "orientation (the marker is a distractor); **global**, the objects are filled plain and the marker's "
        "stripes give every object's orientation; **global-nocue**, global labels with the marker painted over.",
        "",
        f"![held-out scenes and predictions, every row labelled family, context, seed]({img_prefix}"
        "context_study_scenes.png)",
        "",
        "## How far a logit sees, measured before any run",
        "",
        f"`logit_reach` in the script: the model without a context block, every conv weight made positive "
        f"(no cancellation), float64, eval mode, on a random {study.image_size} px input; a bump of 10^4, large "
        "enough to win every max-pool window it enters, is added to one input column at a time, and the reach of "
        "that column is the farthest logit column that changes at all (bit for bit, the align_corners upsampling "
        f"included), for all {study.image_size} columns.",
        "",
        "| | px |",
        "|---|---:|",
        f"| largest reach (column {reach['reach']['argmax']}) | {reach['reach']['max']} |",
        f"| reach of the centre (columns {(study.image_size - 1) // 2} and {study.image_size // 2}) | "
        f"{reach['reach']['centre']} |",
        f"| smallest object-marker gap, {study.val_scenes} held-out scenes | {gap} |",
        f"| margin: gap - largest reach (required: >= {REACH_MARGIN}) | {margin} |",
        "",
        (f"Every object pixel of the held-out scenes is {gap} or more columns from every marker pixel, {margin} px "
         "beyond the farthest any logit of the model without context moves when one input column changes: "
         "without a context block that mixes the whole image, no logit of an object depends on the marker."
         if margin >= REACH_MARGIN else
         f"The gap ({gap} px) does NOT clear the largest reach ({reach['reach']['max']} px) by {REACH_MARGIN} px at "
         "this size: logits of objects may depend on the marker without any context block, and the global "
         "scenes do not isolate what the context blocks do."),
    ]
    trained = reach.get("trained")
    if trained:
        lines += ["", f"For comparison, where the gradient mass of the trained no-context model's centre logit lies "
                  f"(global scenes, seed 0; Luo et al.'s effective receptive field): 50% within {trained['r50']} px "
                  f"and 95% within {trained['r95']} px of its centre of mass. That is where the model mostly "
                  "looks, not a bound on what it can see."]
    if study.image_size == 224:
        v1 = V1_FIELD
        lines += ["", f"Version 1 took the logits' reach from the support of the centre logit's gradient around its "
                  f"centre of mass ({v1['theoretical']} px with every weight positive); that was not an upper bound "
                  f"(its trained model's figure was {v1['trained']} px), and its scenes' smallest gap "
                  f"({v1['gap']} px) was "
                  + (f"{reach['reach']['max'] - v1['gap']} px inside" if reach["reach"]["max"] >= v1["gap"] else
                     "outside")
                  + " the largest reach measured here."]
    lines += [
        "",
        "## Scores and statistics",
        "",
        "- **Shape accuracy**: of the object pixels, the share given the right shape (either orientation). "
        "**Orientation accuracy**: of the object pixels predicted as an object (any shape), the share given the "
        "right orientation: on the global scenes, how well the marker is read, apart from the shape. (v1's "
        "'orientation' counted only the pixels given the right shape; mIoU mixes both.) Both come from each "
        "run's confusion matrix, kept in the JSON. A run that predicts no object pixel on the held-out scenes "
        "(collapsed to background) has no orientation accuracy: the tables count it as undefined and leave it "
        "out of the mean and std, and it does not read the marker.",
        f"- A seed **reads the marker** when its orientation accuracy on the global scenes is at least "
        f"{READS_MARKER}; a context reads it **reliably** when at least {RELIABLE[0]} of {RELIABLE[1]} seeds do "
        f"(contexts with fewer than {RELIABLE[1]} seeds are not called reliable or unreliable).",
        "- Counts are compared with **Fisher's exact test**, two-sided (`scipy.stats.fisher_exact`), against "
        f"`none` and against `pool`. With {t1['n']} seeds against {t1['n']}, p < 0.05 needs "
        + (f"{t1['k']}/{t1['n']} against {t1['baseline']}/{t1['n']} (p = {t1['p']:.4f})" if t1["k"] else
           f"more than {t1['n']} seeds against {t1['baseline']}/{t1['n']}")
        + " and "
        + (f"{t0['k']}/{t0['n']} against 0/{t0['n']} (p = {t0['p']:.4f})" if t0["k"] else
           f"more than {t0['n']} seeds against 0/{t0['n']}")
        + f"; a context with {t3['n']} seeds needs "
        + (f"{t3['k']}/{t3['n']} against {t3['baseline']}/{t3['n_ref']} (p = {t3['p']:.4f})" if t3["k"] else
           f"more seeds to differ from {t3['baseline']}/{t3['n_ref']}")
        + " (the design's numbers, computed with scipy).",
        "- Means ± **sample standard deviation** (ddof = 1) over the seeds; error bars are that, clipped to [0, 1].",
        f"- **Floor**: the training-set majority (each shape answered with the orientation most of its pixels "
        f"have in the {study.train_scenes} training scenes: "
        + ", ".join(f"{s} {o}" for s, o in zip(("circle", "square", "triangle"), facts["train_majority"]))
        + f"; {facts['train_share']:.3f} of the training pixels) scores {facts['floor']:.3f} on the held-out "
        "scenes.",
        f"- **Chance band**: orientation is shared by every object of a scene, so a marker-blind model's errors "
        "come in whole scenes. One that picks an orientation per scene by a fair coin scores sum_i w_i B_i / "
        f"sum_i w_i over the {study.val_scenes} held-out scenes (w_i: object pixels of scene i): mean 0.5, "
        f"standard deviation {chance['sd']:.3f}; 95% of {chance['draws']:,} draws lie in {chance['low']:.3f}-"
        f"{chance['high']:.3f}. An orientation accuracy inside the band is no evidence of reading the marker.",
        "",
        "## Results",
        "",
        "Global scenes (the marker decides the orientation):",
        "",
        "| context | seeds | read the marker | p vs `none` | p vs `pool` | verdict | orientation | shape | mIoU |",
        "|---|---:|---:|---:|---:|---|---:|---:|---:|",
    ]
    for c in study.contexts:
        e = glob.get(c)
        if e is None:
            lines.append(f"| `{c}` | 0/{study.seeds('global', c)} | n/a | n/a | n/a | not run | n/a | n/a | n/a |")
            continue
        test = stats["fisher"][c]
        lines.append(f"| `{c}` | {e['n']}/{e['planned']} | {e['reads']}/{e['n']} | {_p(test.get('p_vs_none'))} | "
                     f"{_p(test.get('p_vs_pool'))} | {reliability(e)} | {_pm(e, 'orientation_acc')} | "
                     f"{_pm(e, 'shape_acc')} | {_pm(e, 'mIoU')} |")
    lines += [
        "",
        "Local scenes (each object's own stripes decide) and the no-cue control (global labels, marker painted "
        "over, one seed):",
        "",
        "| context | local mIoU | local shape | local orientation | no-cue mIoU | no-cue shape | no-cue orientation |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for c in study.contexts:
        lo, nc = table.get("local", {}).get(c), table.get("global-nocue", {}).get(c)
        lines.append(f"| `{c}` | " + " | ".join([_pm(lo, k) for k in SCORES] + [_pm(nc, k) for k in SCORES]) + " |")
    lines += [
        "",
        f"![mIoU, shape and orientation accuracy per context]({img_prefix}context_study.png)",
        "",
        "## Cost at the study's size",
        "",
        f"One interleaved CPU run each ({m['cpu']}, {m['threads']} threads). Inference: batch 1, eval mode, the "
        f"context block alone on {study.width} x {study.image_size // STRIDE} x {study.image_size // STRIDE} "
        f"features and the whole model on a {study.image_size} px image. Training step: the whole model, batch "
        f"{study.batch_size} at {study.image_size} px, bf16 autocast as the runs, forward, loss, backward and an "
        "SGD step (median ms), and the peak MB of the tensors one step allocates (activations and gradients; "
        "weights and optimizer state excluded). In the reading, a block has **lower cost** than another when its "
        f"model has fewer MACs and neither its inference nor its training step is more than "
        f"{TIME_TOLERANCE - 1:.0%} slower here (differences of a few percent are within the timing noise).",
        "",
        "| context | block params | block MMACs | block ms | model params | model GMACs | model ms | "
        "train step ms | train step peak MB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in study.contexts:
        if c not in costs:
            continue
        b, w, t = costs[c]["context"], costs[c]["model"], costs[c]["train"]
        lines.append(f"| `{c}` | {b['parameters']:,} | {b['macs'] / 1e6:.1f} | {b['median_ms']:.2f} | "
                     f"{w['parameters']:,} | {w['macs'] / 1e9:.2f} | {w['median_ms']:.1f} | {t['median_ms']:.0f} | "
                     f"{t['peak_memory_mb']:.0f} |")
    params = [costs[c]["model"]["parameters"] for c in study.contexts if c in costs]
    lines += ["", "## Reading", "", *[f"- {s}" for s in result["reading"]], "",
              f"Limits: a {min(params) / 1e6:.1f}-{max(params) / 1e6:.1f}M-parameter model trained from scratch for "
              "a fixed, short budget on synthetic scenes, one recipe for every block (no block was tuned); the "
              "counts of seeds are small samples and the Fisher p-values are not corrected for the number of "
              "contexts compared. Per-seed results and confusion matrices are in the JSON.", ""]
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines))


def finish(out_dir: Path) -> dict:
    """Summary, statistics, reading, plots and page from OUT_DIR/context-study.json alone (the end of a run and
    --from-json both come here, so the page is the same either way)."""
    json_path = out_dir / "context-study.json"
    result = json.loads(json_path.read_text())
    if result.get("version") != VERSION:
        raise SystemExit(f"{json_path} is not a v{VERSION} study (rerun the study)")
    study = Study.from_json(result["study"])
    summarize_into(result, study)
    with atomic_path(json_path) as tmp:
        tmp.write_text(json.dumps(result, indent=1))
    plot(out_dir / "img" / "context_study.png", result, study)
    scenes_figure(out_dir / "img" / "context_study_scenes.png", result, study)
    write_page(out_dir / "context-study.md", result, "img/")
    return result


def machine() -> dict:
    import timm

    return {"cpu": f"{cpu_name()}, {os.cpu_count()} vCPUs", "threads": torch.get_num_threads(),
            "torch": torch.__version__, "timm": timm.__version__, "mfnet_zoo": mfnet_zoo.__version__,
            "python": platform.python_version()}


def git_commit(json_path: Path, message: str, also: tuple[Path, ...] = ()) -> bool:
    """``git add`` the JSON (and the files ``also``) and commit them alone on the current branch of the JSON's
    working tree (``git commit -- paths``: whatever else is staged stays out); a failure is a warning."""
    cwd = json_path.parent
    paths = [json_path.name] + [os.path.relpath(p, cwd) for p in also if p.is_file()]
    try:
        for args in (["add", *paths], ["commit", "-q", "-m", message, "--", *paths]):
            subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True, timeout=120)
        return True
    except (OSError, subprocess.SubprocessError) as e:
        detail = getattr(e, "stderr", "") or str(e)
        print(f"warning: --commit: git failed ({detail.strip()}); going on", file=sys.stderr, flush=True)
        return False


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="the contexts that exist, one seed, 64 px, one short epoch, small sets (smoke test)")
    parser.add_argument("--out-dir", default=str(ROOT / "docs"), help="where context-study.md/.json go (img/ below)")
    parser.add_argument("--resume", action="store_true", help="keep the runs already in the JSON, run the rest")
    parser.add_argument("--fresh", action="store_true", help="start over even if the JSON holds runs of this study")
    parser.add_argument("--commit", action="store_true",
                        help="after every run: git add the JSON and commit it on the current branch of its "
                             "working tree (at the end, the page and plots too); a failed commit is a warning")
    parser.add_argument("--contexts", nargs="+", choices=CONTEXT_ORDER, help="default: all of CONTEXT_ORDER")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--from-json", action="store_true",
                        help="rewrite the page and the plots from OUT_DIR/context-study.json, without training")
    args = parser.parse_args(argv)
    out_dir = Path(args.out_dir)
    if args.from_json:
        return finish(out_dir)
    study = QUICK if args.quick else Study()
    contexts = tuple(args.contexts) if args.contexts else CONTEXT_ORDER
    missing = [c for c in contexts if c not in CONTEXTS]
    if missing and not args.quick:
        raise SystemExit(f"contexts {missing} are not in mfnet_zoo.layers.CONTEXTS yet; the full study needs them "
                         "(--quick runs the ones that exist; --contexts picks some)")
    contexts = tuple(c for c in CONTEXT_ORDER if c in contexts and c in CONTEXTS)
    study = dataclasses.replace(study, contexts=contexts, **({"epochs": args.epochs} if args.epochs else {}))
    (out_dir / "img").mkdir(parents=True, exist_ok=True)
    json_path = out_dir / "context-study.json"
    command = "python benchmarks/context_study.py" + (" " + " ".join(argv if argv is not None else sys.argv[1:])
                                                      if (argv if argv is not None else sys.argv[1:]) else "")
    old = json.loads(json_path.read_text()) if json_path.is_file() else {}
    if old.get("version") != VERSION:  # nothing to resume in another version's JSON (v1's): start afresh
        if old and args.resume:
            print(f"--resume: {json_path} is not a v{VERSION} study; starting a new one", flush=True)
        old = {}
    same_study = old.get("study") == json.loads(json.dumps(dataclasses.asdict(study)))
    if args.resume and old and not same_study:
        raise SystemExit(f"--resume: {json_path} was made with another study configuration; drop --resume "
                         "(or --out-dir elsewhere)")
    if not (args.resume or args.fresh or args.quick) and same_study and old.get("runs"):
        raise SystemExit(f"{json_path} holds {len(old['runs'])} runs of this study: pass --resume to continue them "
                         "or --fresh to start over")
    previous = old if args.resume else {}
    runs_plan = plan(study)
    start = time.perf_counter()
    result = {"version": VERSION, "command": command, "study": dataclasses.asdict(study),
              "machine": previous.get("machine") or machine(),
              "contexts": {c: CONTEXT_DESCRIPTIONS.get(c, "") for c in study.contexts},
              "plan": [list(p) for p in runs_plan], "runs": previous.get("runs", []),
              "wall_minutes": previous.get("wall_minutes", 0.0)}
    result["sessions"] = previous.get("sessions", []) + [machine()]

    def save() -> None:
        result["wall_minutes"] = previous.get("wall_minutes", 0.0) + (time.perf_counter() - start) / 60
        summarize_into(result, study)
        with atomic_path(json_path) as tmp:
            tmp.write_text(json.dumps(result, indent=1))

    if previous:
        for key in ("cost", "receptive_field", "scenes", "figure_scenes"):
            result[key] = previous[key]
    else:
        print(f"context study v{VERSION}: {len(study.contexts)} contexts, {len(runs_plan)} runs; the reach of a logit "
              "and the scenes first", flush=True)
        result["scenes"] = scene_facts(study)
        result["figure_scenes"] = figure_scenes(study)
        none_model = create_model("context_deeplab", **study.model_kwargs("none"))
        result["receptive_field"] = {"reach": logit_reach(none_model, study.image_size)}
        reach, gap = result["receptive_field"]["reach"], result["scenes"]["marker_gap"]
        print(f"logit reach: max {reach['max']} px (column {reach['argmax']}), centre {reach['centre']} px; "
              f"smallest object-marker gap {gap} px; margin {gap - reach['max']} px", flush=True)
        if gap - reach["max"] < REACH_MARGIN and study.image_size >= 224:
            raise SystemExit(f"the scenes' gap ({gap} px) does not clear the logit reach ({reach['max']} px) by "
                             f"{REACH_MARGIN} px: fix the geometry in mfnet_zoo/data/synthetic.py first")
        print("cost of every context (inference and a training step)", flush=True)
        result["cost"] = cost(study)
        save()
        if args.commit:
            git_commit(json_path, f"context study v{VERSION}: 0/{len(runs_plan)} runs (reach, scenes and cost)")

    data = {}
    for family in FAMILIES:
        mean, std = IMAGENET_MEAN, IMAGENET_STD
        data[family] = (SyntheticShapes(study.train_scenes, study.image_size, seed=TRAIN_SEED, scenes=family,
                                        transforms=train_transforms(study.image_size, None, True, mean=mean, std=std)),
                        SyntheticShapes(study.val_scenes, study.image_size, seed=VAL_SEED, scenes=family,
                                        transforms=eval_transforms(mean=mean, std=std)))
    radii_images = torch.stack([data["global"][1][i][0] for i in range(min(16, study.val_scenes))])
    done = {(r["family"], r["context"], r["seed"]) for r in result["runs"]}
    for family in dict.fromkeys(f for f, c, s in runs_plan if (f, c, s) not in done):
        print(f"rendering the {family} scenes", flush=True)  # now, so that no run's time includes them
        for dataset in data[family]:
            for index in range(len(dataset)):
                dataset[index]
    with tempfile.TemporaryDirectory() as scratch:
        for i, (family, context, seed) in enumerate(runs_plan):
            if (family, context, seed) in done:
                continue
            want_radii = family == "global" and context == "none" and seed == 0
            record, _ = train_run(study, context, family, seed, data, Path(scratch),
                                  keep=result["figure_scenes"] if seed == 0 else (),
                                  radii_images=radii_images if want_radii else None)
            shutil.rmtree(Path(scratch) / f"{family}-{context}-{seed}", ignore_errors=True)  # its checkpoints
            if want_radii:
                result["receptive_field"]["trained"] = record.pop("gradient_mass_radii")
            record["session"] = len(result["sessions"]) - 1
            result["runs"].append(record)
            save()
            done.add((family, context, seed))
            print(f"[{i + 1}/{len(runs_plan)}] {family:12s} {context:13s} seed {seed}: mIoU {record['mIoU']:.3f} "
                  f"shape {record['shape_acc']:.3f} orientation {record['orientation_acc']:.3f} "
                  f"({record['train_seconds']:.0f} s)", flush=True)
            if args.commit:
                git_commit(json_path, f"context study v{VERSION}: {len(done & set(runs_plan))}/{len(runs_plan)} runs")
    save()
    result = finish(out_dir)
    for line in result["reading"]:
        print(line)
    if args.commit:
        git_commit(json_path, f"context study v{VERSION}: page and plots, {len(done & set(runs_plan))}/"
                              f"{len(runs_plan)} runs",
                   also=(out_dir / "context-study.md", out_dir / "img" / "context_study.png",
                         out_dir / "img" / "context_study_scenes.png"))
    return result


if __name__ == "__main__":
    main()
