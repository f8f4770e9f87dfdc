"""The context study: which context block helps, and when? Writes docs/context-study.md, its plot and JSON.

    python benchmarks/context_study.py           # the full study: 7 contexts x 3 seeds x 2 families + a control
    python benchmarks/context_study.py --quick   # one seed, a few steps, small sets: the CI smoke test

Every model is ``context_deeplab`` with the same timm encoder (test_resnet, output stride 16), the same
DeepLabV3+ decoder and widths; only ``context`` differs. Each is trained from scratch with the same recipe
(the demo's: AdamW, flips, batch 8) on the context scenes of ``mfnet_zoo.data.render_context_scene`` and
evaluated on held-out scenes. The receptive field of the encoder is measured first, because it decides
which scenes need a context block at all. The JSON is written after every run, and ``--resume`` skips the
runs it holds, so a long study can be stopped and continued.
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import math
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader

import mfnet_zoo
from mfnet_zoo import create_model
from mfnet_zoo._atomic import atomic_path
from mfnet_zoo._constants import IMAGENET_MEAN, IMAGENET_STD
from mfnet_zoo.benchmark import benchmark
from mfnet_zoo.data import CONTEXT_CLASSES, SyntheticShapes, eval_transforms, render_context_scene, train_transforms
from mfnet_zoo.demo import DEMO_CONFIG
from mfnet_zoo.layers import CONTEXTS, create_context
from mfnet_zoo.metrics import SegmentationMetrics
from mfnet_zoo.train import Trainer, seed_everything
from mfnet_zoo.visualize import save_panels

ROOT = Path(__file__).resolve().parents[1]
CONTEXT_ORDER = ("none", "pool", "static", "pair-only", "nmf-hamburger", "ema", "aspp")
FAMILIES = ("global", "local", "global-nocue")
ENCODER, STRIDE = "test_resnet", 16


@dataclasses.dataclass(frozen=True)
class Study:
    """What is held fixed across the runs (recorded in the JSON); the defaults are the full study."""

    image_size: int = 224
    train_scenes: int = 1600
    val_scenes: int = 160
    epochs: int = 5
    batch_size: int = 8
    seeds: tuple[int, ...] = (0, 1, 2)
    control_seeds: tuple[int, ...] = (0,)  # the floor: every context, one seed
    contexts: tuple[str, ...] = CONTEXT_ORDER
    families: tuple[str, ...] = FAMILIES
    channels: int = 64  # the contexts' output and the decoder's width
    width: int = 96  # where the factorizations and EM attention work: the encoder's channels (as MFNet)
    rank: int = 16  # K bases / factors: 14 x 14 = 196 positions at 224
    latency_runs: int = 15

    def model_kwargs(self, context: str) -> dict:
        grid = self.image_size // STRIDE
        return dict(encoder=ENCODER, output_stride=STRIDE, num_classes=len(CONTEXT_CLASSES), context=context,
                    channels=self.channels, width=self.width, rank=self.rank, base_size=(grid, grid), separable=True,
                    pretrained_cfg_overlay=dict(mean=IMAGENET_MEAN, std=IMAGENET_STD))

    @classmethod
    def from_json(cls, record: dict) -> Study:
        """The study a JSON record describes (its lists back to tuples)."""
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in record.items()})

    def train_config(self, seed: int):
        return DEMO_CONFIG.replace(epochs=self.epochs, batch_size=self.batch_size, crop_size=self.image_size,
                                   seed=seed, amp="bf16")


QUICK = Study(image_size=224, train_scenes=16, val_scenes=8, epochs=1, seeds=(0,), control_seeds=(0,),
              latency_runs=2)


# -- receptive fields ------------------------------------------------------------------------------------------
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
    """Radii (pixels, from the gradient's centre of mass) holding 50% and 95% of its mass, and the reach of its
    support: the largest row or column offset with a non-zero gradient (half the side of the receptive field)."""
    size = gradient.shape[-1]
    yy, xx = torch.meshgrid(torch.arange(size, dtype=torch.float64), torch.arange(size, dtype=torch.float64),
                            indexing="ij")
    mass = gradient.double() / gradient.sum()
    cy, cx = (mass * yy).sum(), (mass * xx).sum()
    r = ((yy - cy) ** 2 + (xx - cx) ** 2).sqrt().flatten()
    order = r.argsort()
    cumulative = mass.flatten()[order].cumsum(0)
    inside = mass > 0
    reach = torch.maximum((yy - cy).abs(), (xx - cx).abs())[inside].max()
    return {"r50": round(r[order][int((cumulative >= 0.5).nonzero()[0])].item(), 1),
            "r95": round(r[order][int((cumulative >= 0.95).nonzero()[0])].item(), 1),
            "reach": round(reach.item(), 1)}


def _deepest(model, images):
    return model.encoder(images)[-1]


def _logits(model, images):
    return model(images).logits


def theoretical_field(model: nn.Module, size: int) -> dict:
    """How far (px, row or column offset) a centre output can see at all: the support of its gradient with every
    weight made positive (no cancellation), in float64, for the deepest encoder features and for the logits."""
    model = copy.deepcopy(model).double().eval()
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            module.weight.data.abs_()
        if isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
    images = torch.rand(1, 3, size, size, dtype=torch.float64)
    return {"encoder": _radii(_centre_gradient(model, _deepest, images))["reach"],
            "logits": _radii(_centre_gradient(model, _logits, images))["reach"]}


def effective_field(model: nn.Module, images: torch.Tensor) -> dict:
    """Effective receptive field (Luo et al. 2016) of the deepest encoder features and of the logits:
    |gradient| of the centre output over the held-out images, as radii holding 50% / 95% of its mass."""
    model = copy.deepcopy(model).eval()
    return {"encoder": _radii(_centre_gradient(model, _deepest, images)),
            "logits": _radii(_centre_gradient(model, _logits, images))}


def held_out_facts(size: int, scenes: int, seed: int = 1) -> tuple[int, float]:
    """Two facts of the ``scenes`` held-out global scenes, from one pass over them:

    - the marker gap: the smallest column distance (px) between a marker pixel and an object pixel; a logit
      whose field reaches less than this cannot see the marker from any object;
    - the majority orientation accuracy: always answering, for each shape, the orientation most of its pixels
      have; what a model that ignores the marker can reach (0.5 plus the set's imbalance).
    """
    gap, counts = size, torch.zeros(7, dtype=torch.int64)
    for index in range(scenes):
        image, mask = render_context_scene(index, size, seed, "global")
        blank, _ = render_context_scene(index, size, seed, "global-nocue")
        counts += torch.bincount(mask.flatten(), minlength=7)
        marker_cols = (image != blank).any(dim=0).any(dim=0).nonzero().flatten()
        object_cols = (mask > 0).any(dim=0).nonzero().flatten()
        if len(marker_cols) and len(object_cols):
            gap = min(gap, int((object_cols[:, None] - marker_cols[None, :]).abs().min()))
    pairs = counts[1:].view(3, 2)
    return gap, (pairs.max(dim=1).values.sum() / pairs.sum()).item()


# -- one run ---------------------------------------------------------------------------------------------------
def orientation_accuracy(confusion: torch.Tensor) -> float:
    """Of the object pixels given the right shape, the share also given the right stripe orientation
    (0.5 is a coin flip): the part of the task a distant cue decides in the global scenes."""
    right = total = 0
    for shape in range(3):
        pair = [1 + 2 * shape, 2 + 2 * shape]
        block = confusion[pair][:, pair]
        right += block.diag().sum().item()
        total += block.sum().item()
    return right / total if total else float("nan")


def evaluate_run(model: nn.Module, loader: DataLoader) -> dict:
    metrics = SegmentationMetrics(len(CONTEXT_CLASSES))
    with torch.no_grad():
        for images, masks in loader:
            metrics.update(model.predict(images), masks)
    result = metrics.compute()
    return {"mIoU": result["mIoU"], "pixel_acc": result["pixel_acc"], "per_class_iou": result["per_class_iou"],
            "orientation_acc": orientation_accuracy(metrics.confusion)}


def train_run(study: Study, context: str, family: str, seed: int, data: dict, scratch: Path,
              erf_images: torch.Tensor | None) -> tuple[dict, nn.Module]:
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
              **evaluate_run(model, DataLoader(val_set, batch_size=50))}
    if erf_images is not None:
        record["effective_field"] = effective_field(model, erf_images)
    return record, model


# -- cost --------------------------------------------------------------------------------------------------------
def cost(study: Study) -> dict:
    """Parameters, MACs and CPU latency (batch 1, eval) of each context alone and of its whole model."""
    grid = study.image_size // STRIDE
    blocks = {name: create_context(name, study.width, study.channels, width=study.width, rank=study.rank,
                                   base_size=(grid, grid)) for name in study.contexts}
    models = {name: create_model("context_deeplab", **study.model_kwargs(name)) for name in study.contexts}
    alone = benchmark(blocks, input_shape=(1, study.width, grid, grid), runs=study.latency_runs, warmup=2,
                      memory=False)
    whole = benchmark(models, size=study.image_size, runs=study.latency_runs, warmup=2, memory=False)
    return {r["model"]: {"context": r, "model": w} for r, w in zip(alone, whole)}


# -- summary, page, plot ---------------------------------------------------------------------------------------
def summarize(runs: list[dict], study: Study) -> dict:
    table: dict = {}
    for family in FAMILIES:
        for context in study.contexts:
            done = [r for r in runs if r["family"] == family and r["context"] == context]
            if not done:
                continue
            entry = {}
            for key in ("mIoU", "orientation_acc"):
                values = [r[key] for r in done]
                entry[key] = {"mean": statistics.fmean(values),
                              "std": statistics.stdev(values) if len(values) > 1 else 0.0, "n": len(values)}
            table.setdefault(family, {})[context] = entry
    return table


def _pm(entry: dict | None, key: str) -> str:
    if entry is None:
        return "n/a"
    if entry[key]["n"] < 2:
        return f"{entry[key]['mean']:.3f} (one seed)"
    return f"{entry[key]['mean']:.3f} ± {entry[key]['std']:.3f}"


def _separated(a: dict, b: dict, key: str = "mIoU") -> bool:
    """Whether two means differ by more than twice the larger seed standard deviation (else: noise)."""
    return abs(a[key]["mean"] - b[key]["mean"]) > 2 * max(a[key]["std"], b[key]["std"], 1e-9)


def _verdict(a: dict, b: dict, key: str) -> str:
    """How ``a`` compares with ``b`` on ``key``: above, below, or within the seeds' noise."""
    if min(a[key]["n"], b[key]["n"]) < 2:
        return "(one seed, no noise estimate) vs"
    if not _separated(a, b, key):
        return "within the seeds' noise of"
    return "above" if a[key]["mean"] > b[key]["mean"] else "below"


def reading(table: dict, study: Study, majority: float, runs: list[dict]) -> list[str]:
    """Sentences drawn from the numbers alone (the page's reading; the docs' advice builds on them).
    "Above"/"below" means the means differ by more than twice the larger of the two seed standard deviations."""
    lines = []
    local, glob, floor = table.get("local", {}), table.get("global", {}), table.get("global-nocue", {})
    if floor:
        f = statistics.fmean(e["orientation_acc"]["mean"] for e in floor.values())
        lines.append(f"With the marker painted over, the models get the orientation of {f:.3f} of the object pixels "
                     f"right on average over the contexts (range {min(e['orientation_acc']['mean'] for e in floor.values()):.3f}"
                     f"-{max(e['orientation_acc']['mean'] for e in floor.values()):.3f}); always answering each shape's "
                     f"majority orientation of the held-out set gives {majority:.3f}: the floor of the "
                     "global scenes.")
    if "none" in glob:
        n = glob["none"]
        for context in study.contexts:
            if context == "none" or context not in glob:
                continue
            g = glob[context]
            seeds = [r for r in runs if r["family"] == "global" and r["context"] == context]
            solved = sum(r["orientation_acc"] >= 0.95 for r in seeds)
            lines.append(f"Global scenes, `{context}`: read the marker (orientation >= 0.95) in {solved} of "
                         f"{len(seeds)} seeds; orientation {_pm(g, 'orientation_acc')}, "
                         f"{_verdict(g, n, 'orientation_acc')} no context ({_pm(n, 'orientation_acc')}); mIoU "
                         f"{_pm(g, 'mIoU')}, {_verdict(g, n, 'mIoU')} no context ({_pm(n, 'mIoU')}).")
    if local and "none" in local:
        best = max(local, key=lambda c: local[c]["mIoU"]["mean"])
        close = [c for c in local if c != best and not _separated(local[c], local[best])]
        lines.append(f"Local scenes: the best mean mIoU is `{best}` ({_pm(local[best], 'mIoU')}); within the seeds' "
                     f"noise of it: {', '.join(f'`{c}`' for c in close) or 'none'}.")
    return lines


def summarize_into(result: dict, study: Study) -> None:
    """The summary table and the reading of ``result["runs"]``, stored in ``result``."""
    result["summary"] = summarize(result["runs"], study)
    result["reading"] = reading(result["summary"], study, result["orientation_majority"], result["runs"])


def plot(path: Path, table: dict, study: Study) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    contexts = [c for c in study.contexts if any(c in table.get(f, {}) for f in FAMILIES)]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, key, title in ((axes[0], "mIoU", "mIoU (held-out scenes)"),
                           (axes[1], "orientation_acc", "orientation accuracy of object pixels")):
        width = 0.27
        colours = {"global": "tab:blue", "local": "tab:green", "global-nocue": "tab:gray"}
        for i, family in enumerate(FAMILIES):
            colour = colours[family]
            entries = [table.get(family, {}).get(c) for c in contexts]
            xs = [j + (i - 1) * width for j, e in enumerate(entries) if e]
            ax.bar(xs, [e[key]["mean"] for e in entries if e], width, yerr=[e[key]["std"] for e in entries if e],
                   capsize=3, color=colour, label=family)
        if key == "orientation_acc":
            ax.axhline(0.5, color="k", linestyle=":", linewidth=1)
        ax.set_xticks(range(len(contexts)), contexts, rotation=30, ha="right")
        ax.set_title(title)
        ax.set_ylim(0, 1.18)
    axes[0].legend(loc="upper center", ncol=3, fontsize=8)
    fig.suptitle(f"context blocks on {ENCODER} + DeepLabV3+ decoder, {study.image_size} px; mean ± std over "
                 f"{len(study.seeds)} seed(s)", fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def scenes_figure(path: Path, data: dict, models: dict) -> None:
    """Held-out scenes of each family with the predictions of a model without context and with pooling."""
    images, masks, predictions, names = [], [], [], []
    for family, model_name in (("local", "none"), ("global", "none"), ("global", "pool")):
        model = models.get((family, model_name))
        if model is None:
            continue
        batch = [data[family][1][i] for i in range(2)]
        x, y = torch.stack([b[0] for b in batch]), torch.stack([b[1] for b in batch])
        images.append(x), masks.append(y), predictions.append(model.predict(x))
    if images:
        save_panels(path, torch.cat(images), torch.cat(masks), torch.cat(predictions), IMAGENET_MEAN, IMAGENET_STD,
                    class_names=CONTEXT_CLASSES, tile=192)


def write_page(path: Path, result: dict, img_prefix: str) -> None:
    study = Study.from_json(result["study"])
    table, costs = result["summary"], result["cost"]
    field, m = result["receptive_field"], result["machine"]
    gap = field["marker_gap"]
    lines = [
        "# Which context helps, and when? A controlled study",
        "",
        "<!-- written by benchmarks/context_study.py; rerun it rather than editing this page -->",
        "",
        "MFNet's claim is that low-rank factorization gives a segmentation network global context. Its static "
        "context (Y Z, learned once for the dataset) is the same map for every image, and in the paper's own runs "
        "it never reached the logits. This study puts each context block of the library between the same encoder "
        "and the same decoder, trains them alike, and asks two questions: does any of them help when the answer "
        "lies outside the receptive field (global scenes), and what does each cost when it does not (local scenes)?",
        "",
        f"Command: `{result['command']}` on {m['cpu']}, {m['threads']} threads (torch {m['torch']}, timm "
        f"{m['timm']}, mfnet_zoo {m['mfnet_zoo']}): {len(result['runs'])} training runs of "
        f"{statistics.median(r['train_seconds'] for r in result['runs']):.0f} s each (median; about "
        f"{len(result['runs']) * statistics.median(r['train_seconds'] for r in result['runs']) / 60:.0f} min on an idle "
        "machine). Raw runs, with per-class IoU and each run's time: [context-study.json](context-study.json).",
        "",
        "## Set-up",
        "",
        f"- **Model**: `create_model(\"context_deeplab\", context=...)`: timm's `{ENCODER}` (random init, "
        f"output stride {STRIDE}), the context block at width {study.width} (the encoder's channels) and rank "
        f"{study.rank}, output {study.channels} channels, the DeepLabV3+ decoder at width {study.channels}. "
        "Contexts: " + "; ".join(f"`{c}`: {CONTEXTS[c]}" for c in study.contexts) + ".",
        f"- **Recipe** (the demo's): AdamW lr {DEMO_CONFIG.lr}, weight decay {DEMO_CONFIG.weight_decay}, poly decay, "
        f"batch {study.batch_size}, {study.epochs} epochs of {study.train_scenes} scenes "
        f"({study.epochs * (study.train_scenes // study.batch_size)} steps), horizontal flips, cross-entropy + "
        f"{DEMO_CONFIG.reconstruction_weight} x MSE of the reconstruction pair where a block has one "
        f"(static, pair-only, NMF), no warm-up. Seeds {list(study.seeds)} (model init and data order); the scenes "
        f"are the same for every seed. Scores: the last epoch on {study.val_scenes} held-out scenes (another "
        "seed), never selected on them.",
        f"- **Scenes** ({study.image_size} x {study.image_size}, `mfnet_zoo.data.render_context_scene`, "
        f"{study.train_scenes} for training, {study.val_scenes} held out): 1-4 circles, squares and triangles on "
        "one side, a black-and-white striped marker (vertical or horizontal stripes) on the other. Seven classes: "
        "background and shape x orientation. One layout for all three families; where the orientation comes from "
        "differs: **local**, each object is filled with coloured stripes of its own orientation (the marker is a "
        "distractor); **global**, the objects are filled plain and the marker's stripes give every object's "
        "orientation; **global-nocue**, global labels with the marker painted over (the floor).",
        "",
        f"![held-out scenes and predictions]({img_prefix}context_study_scenes.png)",
        "",
        "## The receptive field, measured first",
        "",
        f"Gradient of the centre output with respect to the {study.image_size} px input (`theoretical_field`, "
        "`effective_field` in the script). The theoretical field is where the gradient can be non-zero at all "
        "(every weight made positive, float64); the effective one is where its mass lies in a trained model "
        "(no context, global scenes, seed 0), as radii around the centre holding 50% and 95% of |gradient|.",
        "",
        "| output | theoretical reach (px) | effective r50 / r95, trained (px) |",
        "|---|---:|---:|",
    ]
    trained = field.get("trained")
    for key, name in (("encoder", f"deepest encoder features (stride {STRIDE})"), ("logits", "logits, no context")):
        eff = f"{trained[key]['r50']} / {trained[key]['r95']}" if trained else "n/a"
        lines.append(f"| {name} | {field['theoretical'][key]} | {eff} |")
    lines += [
        "",
        f"In the {study.val_scenes} held-out global scenes every object pixel is at least {gap} columns from the "
        f"marker, beyond the theoretical reach of the logits ({field['theoretical']['logits']} px): without a "
        "context block that mixes the whole image, no logit of an object depends on the marker at all.",
        "",
        "## Results",
        "",
        "mIoU and orientation accuracy (of the object pixels given the right shape, the share given the right "
        f"orientation; 0.5 is a coin flip, {result['orientation_majority']:.3f} always answering the held-out "
        "set's majority orientation of each shape), mean ± standard deviation over the seeds (the control: one "
        "seed).",
        "",
        "| context | " + " | ".join(f"{f} mIoU" for f in FAMILIES) + " | "
        + " | ".join(f"{f} orientation" for f in FAMILIES) + " |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for c in study.contexts:
        cells = [_pm(table.get(f, {}).get(c), "mIoU") for f in FAMILIES]
        cells += [_pm(table.get(f, {}).get(c), "orientation_acc") for f in FAMILIES]
        lines.append(f"| `{c}` | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"![mIoU and orientation accuracy per context]({img_prefix}context_study.png)",
        "",
        "## Cost at the study's size",
        "",
        f"One interleaved CPU run, batch 1, eval mode ({m['cpu']}, {m['threads']} threads): the context block alone "
        f"on {study.width} x {study.image_size // STRIDE} x {study.image_size // STRIDE} features, and the whole model "
        f"on a {study.image_size} px image.",
        "",
        "| context | block params | block MMACs | block ms | model params | model GMACs | model ms |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for c in study.contexts:
        b, w = costs[c]["context"], costs[c]["model"]
        lines.append(f"| `{c}` | {b['parameters']:,} | {b['macs'] / 1e6:.1f} | {b['median_ms']:.2f} | "
                     f"{w['parameters']:,} | {w['macs'] / 1e9:.2f} | {w['median_ms']:.1f} |")
    lines += ["", "## Reading", "", *[f"- {s}" for s in result["reading"]], "",
              "Limits: a 0.4M-parameter encoder trained from scratch for a fixed, short budget on synthetic scenes; "
              "'within the seeds' noise' uses twice the larger standard deviation of three seeds, a coarse test, and "
              "runs that read the marker in some seeds and not in others (orientation 1.0 or the floor) have a large "
              "spread, so for them it means 'not reliably', not 'no effect'. Per-seed results are in the JSON. Run "
              "times are medians because three runs shared the machine with the test suite.", ""]
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines))


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import timm

    return {"cpu": f"{cpu}, {os.cpu_count()} vCPUs", "threads": torch.get_num_threads(), "torch": torch.__version__,
            "timm": timm.__version__, "mfnet_zoo": mfnet_zoo.__version__, "python": platform.python_version()}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one seed, one short epoch, small sets (smoke test)")
    parser.add_argument("--out-dir", default=str(ROOT / "docs"), help="where context-study.md/.json go (img/ below)")
    parser.add_argument("--resume", action="store_true", help="keep the runs already in the JSON")
    parser.add_argument("--contexts", nargs="+", choices=CONTEXT_ORDER, help="default: all seven")
    parser.add_argument("--families", nargs="+", choices=FAMILIES, help="default: all three")
    parser.add_argument("--seeds", type=int, help="seeds per context and family (default 3)")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--from-json", action="store_true",
                        help="rewrite the page and the plot from OUT_DIR/context-study.json, without training")
    args = parser.parse_args(argv)
    if args.from_json:
        result = json.loads((Path(args.out_dir) / "context-study.json").read_text())
        study = Study.from_json(result["study"])
        summarize_into(result, study)
        with atomic_path(Path(args.out_dir) / "context-study.json") as tmp:
            tmp.write_text(json.dumps(result, indent=1))
        plot(Path(args.out_dir) / "img" / "context_study.png", result["summary"], study)
        write_page(Path(args.out_dir) / "context-study.md", result, "img/")
        return result
    study = QUICK if args.quick else Study()
    changes = {k: v for k, v in (("contexts", tuple(args.contexts) if args.contexts else None),
                                 ("families", tuple(args.families) if args.families else None),
                                 ("seeds", tuple(range(args.seeds)) if args.seeds else None),
                                 ("control_seeds", (0,) if args.seeds else None),
                                 ("epochs", args.epochs)) if v is not None}
    study = dataclasses.replace(study, **changes)
    out_dir = Path(args.out_dir)
    (out_dir / "img").mkdir(parents=True, exist_ok=True)
    json_path = out_dir / "context-study.json"
    command = "python benchmarks/context_study.py" + (" " + " ".join(argv) if argv else "")
    previous = json.loads(json_path.read_text()) if args.resume and json_path.is_file() else {}
    if previous and previous.get("study") != json.loads(json.dumps(dataclasses.asdict(study))):
        raise SystemExit(f"--resume: {json_path} was made with another study configuration; drop --resume")
    start = time.perf_counter()
    result = {"command": command, "study": dataclasses.asdict(study), "machine": machine(),
              "runs": previous.get("runs", []), "wall_minutes": previous.get("wall_minutes", 0.0)}
    print(f"context study: {len(study.contexts)} contexts; measuring cost and the receptive field first", flush=True)
    result["cost"] = previous.get("cost") or cost(study)
    if previous:
        result["receptive_field"], result["orientation_majority"] = (previous["receptive_field"],
                                                                     previous["orientation_majority"])
    else:
        gap, result["orientation_majority"] = held_out_facts(study.image_size, study.val_scenes)
        init_model = create_model("context_deeplab", **study.model_kwargs("none"))
        result["receptive_field"] = {"theoretical": theoretical_field(init_model, study.image_size),
                                     "marker_gap": gap}

    def save() -> None:
        result["wall_minutes"] = previous.get("wall_minutes", 0.0) + (time.perf_counter() - start) / 60
        summarize_into(result, study)
        with atomic_path(json_path) as tmp:
            tmp.write_text(json.dumps(result, indent=1))

    data = {}
    for family in FAMILIES:
        mean, std = IMAGENET_MEAN, IMAGENET_STD
        data[family] = (SyntheticShapes(study.train_scenes, study.image_size, seed=0, scenes=family,
                                        transforms=train_transforms(study.image_size, None, True, mean=mean, std=std)),
                        SyntheticShapes(study.val_scenes, study.image_size, seed=1, scenes=family,
                                        transforms=eval_transforms(mean=mean, std=std)))
    erf_images = torch.stack([data["global"][1][i][0] for i in range(min(16, study.val_scenes))])
    done = {(r["family"], r["context"], r["seed"]) for r in result["runs"]}
    kept: dict = {}
    with tempfile.TemporaryDirectory() as scratch:
        # seed by seed, so that a study stopped early has every context at the seeds it finished
        plan = [(f, c, s) for s in sorted(set(study.seeds) | set(study.control_seeds)) for f in study.families
                if s in (study.control_seeds if f == "global-nocue" else study.seeds) for c in study.contexts]
        for i, (family, context, seed) in enumerate(plan):
            if (family, context, seed) in done:
                continue
            want_field = family == "global" and context == "none" and seed == study.seeds[0]
            record, model = train_run(study, context, family, seed, data, Path(scratch),
                                      erf_images if want_field else None)
            if want_field:
                result["receptive_field"]["trained"] = record.pop("effective_field")
            if seed == study.seeds[0] and context in ("none", "pool"):
                kept[(family, context)] = model
            result["runs"].append(record)
            save()
            print(f"[{i + 1}/{len(plan)}] {family:12s} {context:13s} seed {seed}: mIoU {record['mIoU']:.3f} "
                  f"orientation {record['orientation_acc']:.3f} ({record['train_seconds']:.0f} s)", flush=True)
    save()
    scenes_figure(out_dir / "img" / "context_study_scenes.png", data, kept)
    plot(out_dir / "img" / "context_study.png", result["summary"], study)
    write_page(out_dir / "context-study.md", result, "img/")
    for line in result["reading"]:
        print(line)
    return result


if __name__ == "__main__":
    main()
