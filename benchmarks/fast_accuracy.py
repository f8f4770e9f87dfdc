"""Equal accuracy, shown the same way: ``fast_deeplab`` against smp's DeepLabV3+ with the same small timm encoder,
the same recipe and the same seeds, on three tasks; writes docs/fast-accuracy.md and its JSON (issue #33).

    python benchmarks/fast_accuracy.py --resume --commit      # 4 tasks x 2 models x 3 seeds (~80 min on 2 cores)
    python benchmarks/fast_accuracy.py --quick --out-dir /tmp/fa   # tiny sets, one seed, one epoch: a smoke run
    python benchmarks/fast_accuracy.py --from-json            # the page from the JSON alone

Both models: timm's ``test_resnet`` from scratch (smp takes it as ``tu-test_resnet``), each at its default
output stride (the fast model 32, smp's DeepLabV3+ 16) and width; smp's model as a user builds it
(``smp.DeepLabV3Plus("tu-test_resnet", encoder_weights=None, classes=K)``). One training loop for both, the
library's (``train_one_epoch``: ``SegmentationLoss``, the recipe's optimizer and poly schedule); the tasks:

- ``demo``: the demo's scenes (1,600 train, 200 held out, 64 px) and recipe (``DEMO_CONFIG``);
- ``global`` and ``local``: the context study's scenes and recipe (``benchmarks/context_study.py``'s ``Study``:
  224 px, 5 epochs, bf16 autocast) and its scoring: mIoU, and on ``global`` whether a seed reads the distant
  marker (orientation accuracy >= 0.95);
- ``own-data``: the folder dataset of ``examples/own_data.py`` (its generator, 400 train and 100 val images at
  64 px, labels 0, 1, 3 and 255 ignored) and its recipe, 10 epochs.

The data are fixed (the same scenes for every seed); a seed sets the weights' initialisation and the batches'
order. The JSON is written atomically after every run; ``--resume`` keeps the runs it holds. When the fast
model's default has changed since (its arguments or initial weights), ``--resume`` keeps smp's runs, reruns the
fast model's, and keeps the old ones under ``superseded``: the page's table of earlier defaults.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import segmentation_models_pytorch as smp
import torch
from torch import nn
from torch.utils.data import DataLoader

from mfnet_zoo import create_model
from mfnet_zoo._atomic import atomic_path
from mfnet_zoo._constants import IMAGENET_MEAN, IMAGENET_STD
from mfnet_zoo.data import (CONTEXT_CLASSES, SYNTHETIC_CLASSES, FolderDataset, SyntheticShapes, eval_transforms,
                            train_transforms)
from mfnet_zoo.demo import DEMO_CONFIG
from mfnet_zoo.layers import ASPP
from mfnet_zoo.losses import SegmentationLoss
from mfnet_zoo.models import SegmentationOutput
from mfnet_zoo.presets import PRESETS
from mfnet_zoo.run_record import cpu_name
from mfnet_zoo.train import build_optimizer, evaluate, seed_everything, train_one_epoch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))
from context_study import (READS_MARKER, TRAIN_SEED, VAL_SEED, Study, evaluate_run, git_commit,  # noqa: E402
                           seed_stats)
from own_data import write_dataset  # noqa: E402
from run import FAST_ACCURACY_BLOCK, FAST_ACCURACY_END, FAST_ACCURACY_START, upsert_block  # noqa: E402

ENCODER = "test_resnet"
MODELS = ("fast_deeplab", "smp DeepLabV3Plus")
TASKS = ("demo", "global", "local", "own-data")
SEEDS = 3
# the own-data example's recipe (examples/own_data.py), at 64 px and 10 epochs
OWN_DATA_CONFIG = PRESETS["default"].replace(epochs=10, batch_size=4, crop_size=64, scale_range=None,
                                             optimizer="adamw", lr=4e-3, param_rules=())
OWN_DATA_SIZES, OWN_DATA_PIXELS, OWN_DATA_CLASSES = {"train": 400, "val": 100}, 64, 4


class SmpModel(nn.Module):
    """smp's model read as the library's loops read a model: ``output.logits``, and ``predict`` -> class map."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> SegmentationOutput:
        logits = self.model(x)
        return SegmentationOutput(logits, logits)

    @torch.inference_mode()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        self.eval()
        return self(x).logits.argmax(dim=1)


def build(name: str, num_classes: int) -> nn.Module:
    if name == "fast_deeplab":
        return create_model("fast_deeplab", encoder=ENCODER, num_classes=num_classes)
    return SmpModel(smp.DeepLabV3Plus(f"tu-{ENCODER}", encoder_weights=None, classes=num_classes))


def machine() -> str:
    """The processor and the versions that set the numbers, for the page (each run records its CPU as well: the
    same seed trains to another mIoU on another CPU, by float rounding, as far as another seed does)."""
    return f"{cpu_name()}, torch {torch.__version__}, smp {smp.__version__}"


def fast_config() -> tuple[dict, str]:
    """How ``fast_deeplab`` is built by default, the model these runs measure: its ``model_args`` less the class
    count and a digest of its initial weights under seed 0 (so that a change of architecture or initialisation is
    seen as well as one of arguments), recorded in the JSON so that runs of a changed default are never mixed with
    runs of the old one; and its context block in words (for the page)."""
    torch.manual_seed(0)
    model = create_model("fast_deeplab", encoder=ENCODER, num_classes=2)
    config = json.loads(json.dumps({k: v for k, v in model.model_args.items() if k != "num_classes"}))
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode()), digest.update(tensor.cpu().numpy().tobytes())
    config["initial_weights_sha256"] = digest.hexdigest()
    context = model.model_args["context"]
    if isinstance(model.context, ASPP):
        rates = "/".join(map(str, model.context.atrous_rates))
        context += f" ({'separable, ' if model.context.separable else ''}rates {rates})" if rates else ""
    return config, context


def tasks(quick: bool, scratch: Path) -> dict:
    """task -> (recipe, train set, val set, classes); ``quick``: tiny sets and one epoch."""
    norm = dict(mean=IMAGENET_MEAN, std=IMAGENET_STD)
    study = Study(image_size=64, train_scenes=16, val_scenes=8) if quick else Study()
    demo_cfg = DEMO_CONFIG.replace(epochs=1) if quick else DEMO_CONFIG
    study_cfg = study.train_config(0).replace(epochs=1) if quick else study.train_config(0)
    own_cfg = OWN_DATA_CONFIG.replace(epochs=1) if quick else OWN_DATA_CONFIG
    demo_size, demo_train, demo_val = 64, (32 if quick else 1600), (16 if quick else 200)
    out = {"demo": (demo_cfg,
                    SyntheticShapes(demo_train, demo_size, seed=0, transforms=train_transforms(
                        demo_size, None, True, **norm)),
                    SyntheticShapes(demo_val, demo_size, seed=1, transforms=eval_transforms(**norm)),
                    len(SYNTHETIC_CLASSES))}
    for family in ("global", "local"):
        out[family] = (study_cfg,
                       SyntheticShapes(study.train_scenes, study.image_size, seed=TRAIN_SEED, scenes=family,
                                       transforms=train_transforms(study.image_size, None, True, **norm)),
                       SyntheticShapes(study.val_scenes, study.image_size, seed=VAL_SEED, scenes=family,
                                       transforms=eval_transforms(**norm)), len(CONTEXT_CLASSES))
    sizes = {"train": 16, "val": 8} if quick else OWN_DATA_SIZES
    root = write_dataset(scratch / "own-data", sizes, size=OWN_DATA_PIXELS)
    out["own-data"] = (own_cfg,
                       FolderDataset(root, "train", transforms=train_transforms(OWN_DATA_PIXELS, None, True, **norm),
                                     num_classes=OWN_DATA_CLASSES),
                       FolderDataset(root, "val", transforms=eval_transforms(**norm), num_classes=OWN_DATA_CLASSES),
                       OWN_DATA_CLASSES)
    return out


def run(task: str, name: str, seed: int, spec: tuple, build_model: Callable[[str, int], nn.Module] = build) -> dict:
    """Train ``name`` (``build_model(name, num_classes)``) on ``task`` with ``seed``; score it on the held-out set."""
    cfg, train_set, val_set, num_classes = spec
    cfg = cfg.replace(seed=seed)
    generator = seed_everything(seed)
    model = build_model(name, num_classes)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    loader = DataLoader(train_set, batch_size=cfg.batch_size, shuffle=True, drop_last=True, generator=generator)
    optimizer = build_optimizer(model, cfg)
    scheduler = torch.optim.lr_scheduler.PolynomialLR(optimizer, total_iters=cfg.epochs * len(loader),
                                                      power=cfg.poly_power)
    criterion = SegmentationLoss(batch_average=cfg.batch_average)
    start = time.perf_counter()
    for _ in range(cfg.epochs):
        train_one_epoch(model, loader, criterion, optimizer, scheduler, amp=cfg.amp, channels_last=cfg.channels_last,
                        clip_grad_norm=cfg.clip_grad_norm, progress=False)
    record = {"task": task, "model": name, "seed": seed, "train_seconds": round(time.perf_counter() - start, 1),
              "cpu": cpu_name()}
    val = DataLoader(val_set, batch_size=50)
    if task in ("global", "local"):  # the study's scoring
        scores = evaluate_run(model, val)
        record.update(mIoU=scores["mIoU"], orientation_acc=scores["orientation_acc"])
        if task == "global":
            record["reads_marker"] = scores["orientation_acc"] >= READS_MARKER
    else:
        record["mIoU"] = evaluate(model, val, num_classes, amp=cfg.amp, progress=False)["mIoU"]
    return record


def plan(seeds: int) -> list[tuple[str, str, int]]:
    """Seed by seed, every task and model: a partial result is balanced."""
    return [(t, m, s) for s in range(seeds) for t in TASKS for m in MODELS]


def _pm(values: list[float]) -> str:
    """Mean ± sample std (ddof 1) of the defined values; a NaN (orientation of a model that predicted no object
    pixel: it does not read the marker) is left out and counted."""
    stats = seed_stats(values)
    undefined = f" ({stats['undefined']} undefined)" if stats["undefined"] else ""
    digits = 4 if stats["n"] > 1 and stats["std"] < 0.0005 else 3  # at the ceiling (own-data) 3 would say ± 0.000
    value = f"{stats['mean']:.{digits}f}" + (f" ± {stats['std']:.{digits}f}" if stats["n"] > 1 else " (1 seed)")
    return (value if stats["n"] else "n/a") + undefined


def _by_cpu(runs: list[dict]) -> str:
    """Which CPUs ran the runs, with their counts (per model: a comparison across CPUs pairs no seed exactly)."""
    counts = Counter((r.get("cpu", "not recorded"), r["model"]) for r in runs)
    return "; ".join(f"{cpu}: {n} of {model}" for (cpu, model), n in sorted(counts.items()))


def summary(result: dict) -> list[str]:
    """The comparison, one row per task with every model's runs, and the marker counts: the page's top and
    docs/benchmarks.md's section."""
    runs = result["runs"]
    lines = [f"Both models on timm's `{ENCODER}` from scratch, each at its default output stride and width (the fast "
             f"model's context: `{result['fast_context']}`), trained "
             "by the same loop with the same recipe and seeds (benchmarks/fast_accuracy.py says how); mIoU on the "
             "held-out set, mean ± sample std (ddof 1) over seeds. The bar (issue #33): the fast model's mean within "
             f"one std of smp's, or above it. `{result['command']}`, {len(runs)} of {result['planned']} runs, "
             f"{result['machine']}; runs by CPU: {_by_cpu(runs)}."
             + (f" smp's runs are those of `{result['smp_runs_from']}`, kept when the fast model's default changed "
                "(smp's model did not)." if "smp_runs_from" in result else ""), "",
             "| task | seeds | fast_deeplab mIoU | smp DeepLabV3Plus mIoU | fast - smp | the bar: smp's mean - std | "
             "meets it |", "|---|---:|---:|---:|---:|---:|---|"]
    for task in TASKS:
        by = {m: [r["mIoU"] for r in runs if r["task"] == task and r["model"] == m] for m in MODELS}
        if not all(by.values()):
            continue
        fast, ref = (seed_stats(by[m]) for m in MODELS)
        lines.append(f"| {task} | {min(len(v) for v in by.values())} | {_pm(by[MODELS[0]])} | {_pm(by[MODELS[1]])} "
                     f"| {fast['mean'] - ref['mean']:+.4f} | {ref['mean'] - ref['std']:.4f} | "
                     f"{'yes' if fast['mean'] >= ref['mean'] - ref['std'] else 'no'} |")
    marker = {m: [r for r in runs if r["task"] == "global" and r["model"] == m] for m in MODELS}
    if all(marker.values()):
        lines += ["", f"Seeds that read the distant marker on the global scenes (orientation accuracy >= "
                  f"{READS_MARKER}): " + "; ".join(
                      f"{m} {sum(r['reads_marker'] for r in marker[m])} of {len(marker[m])} (orientation "
                      f"{_pm([r['orientation_acc'] for r in marker[m]])})" for m in MODELS) + "."]
    return lines


def superseded(saved: dict) -> list[dict]:
    """``saved``'s earlier defaults and its own fast runs, kept for the page when the fast model's default changes
    (the comparison drops those runs)."""
    return [*saved.get("superseded", []), {"command": saved["command"], "fast_config": saved.get("fast_config"),
                                           "runs": [r for r in saved["runs"] if r["model"] == MODELS[0]]}]


def _built_otherwise(config: dict | None, current: dict) -> str:
    """What an earlier default's ``fast_config`` has that today's has not, in words."""
    if config is None:
        return "not recorded"
    digest = "initial_weights_sha256"
    args = [f"{k}={json.dumps(config.get(k))}" for k in sorted((set(config) | set(current)) - {digest})
            if config.get(k) != current.get(k)]
    return ", ".join(args) if args else ("other initial weights" if config.get(digest) != current.get(digest)
                                         else "the same")


def history(result: dict) -> list[str]:
    """The earlier defaults' runs (``superseded``), one row each: what the design search measured."""
    if not result.get("superseded"):
        return []
    lines = ["## The fast model's earlier defaults", "",
             "The same comparison with `fast_deeplab` built otherwise, oldest first; their runs left the table above "
             "when the default changed (smp's did not). `built with`: the arguments that differ from today's.", "",
             "| built with | runs | " + " | ".join(TASKS) + " | reads the marker | from |",
             "|---|---:|" + "---:|" * len(TASKS) + "---:|---|"]
    for entry in result["superseded"]:
        runs = entry["runs"]
        cells = [_pm(v) if (v := [r["mIoU"] for r in runs if r["task"] == t]) else "-" for t in TASKS]
        marker = [r["reads_marker"] for r in runs if r["task"] == "global"]
        note = f" ({entry['note']})" if "note" in entry else ""
        lines.append(f"| {_built_otherwise(entry['fast_config'], result['fast_config'])}{note} | {len(runs)} | "
                     f"{' | '.join(cells)} | {sum(marker)} of {len(marker)} | `{entry['command']}` |")
    return ["", *lines]


def render(result: dict) -> str:
    """The page, from the JSON alone."""
    lines = ["# The fast model's accuracy against smp's DeepLabV3+", "",
             "<!-- written by benchmarks/fast_accuracy.py from fast-accuracy.json; rerun it (or --from-json) rather "
             "than editing this page -->", "", *summary(result), *history(result), "",
             "## Every run", "",
             "| task | model | seed | mIoU | orientation acc | train s | CPU |", "|---|---|---:|---:|---:|---:|---|"]
    for r in result["runs"]:
        orientation = f"{r['orientation_acc']:.3f}" if "orientation_acc" in r else "-"
        lines.append(f"| {r['task']} | {r['model']} | {r['seed']} | {r['mIoU']:.3f} | {orientation} | "
                     f"{r['train_seconds']:.0f} | {r.get('cpu', 'not recorded')} |")
    return "\n".join(lines) + "\n"


def benchmarks_block(result: dict) -> str:
    """docs/benchmarks.md's section (between markers, so that benchmarks/run.py keeps it when it rewrites the
    page): the summary, and where the runs are."""
    return "\n".join([FAST_ACCURACY_START, "## The fast model's accuracy against smp's DeepLabV3+", "",
                      *summary(result), "", "Every run: [fast-accuracy.md](fast-accuracy.md).", FAST_ACCURACY_END])


def write(result: dict, out_dir: Path) -> None:
    """The JSON, the page and, where out_dir has one, docs/benchmarks.md's section; each written atomically."""
    with atomic_path(out_dir / "fast-accuracy.json") as tmp:
        tmp.write_text(json.dumps(result, indent=1) + "\n")
    with atomic_path(out_dir / "fast-accuracy.md") as tmp:
        tmp.write_text(render(result))
    benchmarks = out_dir / "benchmarks.md"
    if benchmarks.is_file():
        text = upsert_block(benchmarks.read_text(), benchmarks_block(result), FAST_ACCURACY_BLOCK,
                            before="<!-- gpu:start -->")
        with atomic_path(benchmarks) as tmp:
            tmp.write_text(text)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sets, one seed, one epoch (a smoke run)")
    parser.add_argument("--out-dir", default=str(ROOT / "docs"))
    parser.add_argument("--resume", action="store_true", help="keep the runs already in the JSON, run the rest")
    parser.add_argument("--commit", action="store_true", help="git commit the JSON and the page after every run")
    parser.add_argument("--tasks", nargs="+", choices=TASKS, default=list(TASKS),
                        help="run only these tasks' runs (default: all); the others stay as the JSON has them")
    parser.add_argument("--from-json", action="store_true", help="rewrite the page from the JSON alone")
    args = parser.parse_args(argv)
    out_dir = Path(args.out_dir)
    json_path = out_dir / "fast-accuracy.json"
    if args.from_json:
        result = json.loads(json_path.read_text())
        write(result, out_dir)
        return result
    seeds = 1 if args.quick else SEEDS
    command = " ".join(["python benchmarks/fast_accuracy.py", *(sys.argv[1:] if argv is None else argv)])
    config, context = fast_config()
    order = plan(seeds)
    result = {"command": command, "planned": len(order), "quick": args.quick, "fast_config": config,
              "fast_context": context,
              "machine": machine(), "runs": []}
    if args.resume and json_path.is_file():
        saved = json.loads(json_path.read_text())
        if saved.get("quick") != args.quick:
            raise SystemExit(f"{json_path} holds a {'quick' if saved.get('quick') else 'full'} run; not resuming it")
        result["runs"] = saved["runs"]
        if saved.get("fast_config") != config:  # smp's model did not change: its runs stand
            result["runs"] = [r for r in saved["runs"] if r["model"] != MODELS[0]]
            result["smp_runs_from"] = saved.get("smp_runs_from", saved["command"])
            result["superseded"] = superseded(saved)
            print(f"{json_path} measured fast_deeplab built otherwise (context {saved.get('fast_context')!r}, now "
                  f"{context!r}; or other arguments or initial weights): its runs dropped, smp's "
                  f"{len(result['runs'])} kept", flush=True)
        else:
            result.update({k: saved[k] for k in ("smp_runs_from", "superseded") if k in saved})
    done = {(r["task"], r["model"], r["seed"]) for r in result["runs"]}
    todo = [key for key in order if key not in done and key[0] in args.tasks]
    with tempfile.TemporaryDirectory() as scratch:
        specs = tasks(args.quick, Path(scratch)) if todo else {}
        emulated = sorted({task for task, _, _ in todo if specs[task][0].amp == "bf16"})
        if emulated and not torch.ops.mkldnn._is_mkldnn_bf16_supported():
            print(f"warning: {cpu_name()} has no native bf16, which the {', '.join(emulated)} recipe autocasts to: "
                  f"its runs take ~6x as long as on one that has (--tasks demo own-data runs the rest)", flush=True)
        for task, name, seed in todo:
            record = run(task, name, seed, specs[task])
            result["runs"].append(record)
            result["runs"].sort(key=lambda r: order.index((r["task"], r["model"], r["seed"])))
            write(result, out_dir)
            print(f"[{len(result['runs'])}/{result['planned']}] {task:9s} {name:18s} seed {seed}: "
                  f"mIoU {record['mIoU']:.3f} ({record['train_seconds']:.0f} s)", flush=True)
            if args.commit:
                git_commit(json_path, f"fast model accuracy (#33): {len(result['runs'])}/{result['planned']} runs",
                           also=tuple(p for p in (out_dir / "fast-accuracy.md", out_dir / "benchmarks.md")
                                      if p.is_file()))
    write(result, out_dir)
    return result


if __name__ == "__main__":
    main()
