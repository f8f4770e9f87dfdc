"""The ``mfnet-zoo`` command: inspect the zoo from the shell."""
from __future__ import annotations

import argparse
import json
import sys
import textwrap
import warnings
from collections.abc import Sequence
from pathlib import Path

from ._constants import (AMP_CHOICES, CONTEXT_DESCRIPTIONS, CONVERT_SOURCES, DATASETS, EVAL_PROTOCOLS,
                         PRESET_DESCRIPTIONS)
from .version import __version__

__all__ = ["main"]


def _cmd_list(args: argparse.Namespace) -> int:
    from ._registry import list_models

    for name in list_models(args.pattern, pretrained=args.pretrained):
        print(name)
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    from .profiling import model_info

    info = model_info(args.name, size=args.size, macs=not args.no_macs)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"{info['name']}: {info['description']}")
    print(f"  encoder        {info['encoder']} (output stride {info['output_stride']})")
    print(f"  blocks         {info['blocks']['encoder']} -> {info['blocks']['context']} -> {info['blocks']['decoder']}")
    print(f"  parameters     {info['parameters']:,} ({info['num_classes']} classes)")
    if "macs" in info:
        print(f"  MACs           {info['macs'] / 1e9:.2f} G at {args.size} x {args.size}")
    print(f"  pretrained     {', '.join(info['pretrained_tags']) or 'none published yet'}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo
    from .metrics import format_iou_table

    result = run_demo(args.out, epochs=args.epochs, seed=args.seed, progress=not args.no_progress)
    print(format_iou_table(result["classes"], result["metrics"]))
    print(f"\nmIoU {result['metrics']['mIoU']:.3f} on {result['val_images']} held-out scenes after "
          f"{result['epochs']} epochs ({result['seconds']:.0f} s); curves, predictions and checkpoints in {args.out}/")
    return 0


def _dataset(args: argparse.Namespace, split: str, transforms):
    """The dataset that --data and its options name, for ``split``, and its class names."""
    from .data import build_dataset

    return build_dataset(args.data, split, transforms, root=args.data_root, sbd_root=args.sbd_root,
                         download=args.download, num_classes=args.num_classes, skip_bad=args.skip_bad,
                         synthetic_size=args.synthetic_size, image_size=args.image_size)


def _add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", choices=DATASETS, default="synthetic")
    p.add_argument("--data-root", help="dataset folder (VOC: the folder holding VOCdevkit/)")
    p.add_argument("--sbd-root", help="SBD folder (img/, cls/, train.txt, val.txt) for --data voc-aug")
    p.add_argument("--download", action="store_true", help="let torchvision download VOC / SBD")
    p.add_argument("--skip-bad", action="store_true", help="--data folder: leave out (and count) bad pairs")
    p.add_argument("--synthetic-size", type=int, default=1600, help="training scenes for --data synthetic*")
    p.add_argument("--image-size", type=int, help="scene size for --data synthetic* (default: 64; the context "
                   "study's scenes, synthetic-local/-global/-global-nocue: 224)")
    p.add_argument("--batch-size", type=int, help="default: the preset's")
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    p.add_argument("--amp", choices=AMP_CHOICES)
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--no-progress", action="store_true")


def _encoder_weights(args: argparse.Namespace) -> str | bool | None:
    """--encoder-weights: a timm tag, 'none' (a random encoder), or by default the encoder's ImageNet weights."""
    from ._registry import default_encoder_weights

    if args.encoder_weights is None:
        return default_encoder_weights(args.model, args.encoder)
    return None if args.encoder_weights.lower() == "none" else args.encoder_weights


def _cmd_train(args: argparse.Namespace) -> int:
    import torch
    from torch.utils.data import DataLoader

    from ._factory import create_model
    from ._pretrained import resolve_data_config
    from .inference import resolve_device
    from .metrics import format_iou_table
    from .publish import check_push, data_record, rerun_config
    from .train import PRESETS, Trainer, init_distributed, seed_everything, shard_dataset

    if not args.model:
        raise ValueError("train needs a model name (e.g. mfnet_r50) or --config run.json (a run to rerun)")
    if args.push_to_hub:  # a bad repo id or a missing token fails now, not after the training
        check_push(args.push_to_hub)
    overrides = (("epochs", args.epochs), ("batch_size", args.batch_size), ("lr", args.lr),
                 ("crop_size", args.crop_size), ("amp", args.amp), ("seed", args.seed))
    changes = {k: v for k, v in overrides if v is not None}
    if args.channels_last:
        changes["channels_last"] = True
    cfg = rerun_config(args.config, args.preset, PRESETS[args.preset]).replace(**changes)
    generator = seed_everything(cfg.seed)
    val_set, classes = _dataset(args, "val", None)
    model_kwargs = {k: v for k, v in (("encoder", args.encoder), ("context", args.context)) if v}
    overlay = {k: v for k, v in (("mean", args.mean), ("std", args.std)) if v is not None}
    for key, value in overlay.items():
        if len(value) != 3 or (key == "std" and min(value) <= 0):
            rule = "3 comma-separated numbers > 0" if key == "std" else "3 comma-separated numbers"
            raise ValueError(f"--{key} takes {rule} (one per RGB channel), got {','.join(map(str, value))}")
    encoder_weights = _encoder_weights(args)  # resolved: what run.json records is what was loaded
    model = create_model(args.model, num_classes=args.num_classes or len(classes),
                         encoder_weights=encoder_weights, output_stride=args.output_stride,
                         pretrained_cfg_overlay=overlay or None, **model_kwargs)
    data_cfg = resolve_data_config(model)  # normalise as the encoder's pretrained weights expect
    # the preset describes the transforms: its augmentation and its validation protocol
    train_set, _ = _dataset(args, "train", cfg.train_transforms(mean=data_cfg["mean"], std=data_cfg["std"],
                                                                interpolation=data_cfg["interpolation"]))
    val_set.transforms = cfg.eval_transforms(mean=data_cfg["mean"], std=data_cfg["std"])
    rank, world = init_distributed()
    device = resolve_device(args.device, rank)
    sampler = (torch.utils.data.DistributedSampler(train_set, world, rank, shuffle=True, seed=cfg.seed, drop_last=True)
               if world > 1 else None)
    train_loader = DataLoader(train_set, batch_size=cfg.batch_size, shuffle=sampler is None, sampler=sampler,
                              drop_last=True, num_workers=args.workers, generator=generator,
                              persistent_workers=args.workers > 0)
    full_images = args.data in ("voc", "voc-aug") and cfg.eval_protocol == "full"  # sizes differ: one at a time
    val_loader = DataLoader(shard_dataset(val_set, rank, world), batch_size=1 if full_images else cfg.batch_size,
                            num_workers=args.workers)
    run_config = {"command": "mfnet-zoo train", "argv": args.argv, "args": _recorded_args(args),
                  "preset": args.preset, "model": {"encoder_weights": encoder_weights or "none"},
                  "data": data_record(args.data, root=args.data_root, sbd_root=args.sbd_root, classes=classes,
                                      train_images=len(train_set), eval_images=len(val_set),
                                      image_size=train_set.size if args.data.startswith("synthetic") else None)}
    history = Trainer(model, train_loader, val_loader, cfg, args.out, device=device, class_names=classes,
                      progress=not args.no_progress, resume=args.resume, run_config=run_config).fit()
    if rank == 0:
        print(format_iou_table(classes, history[-1]["val"]))
        print(f"checkpoints, metrics.jsonl, curves.png, run.json and model/ (the best epoch, with its card) "
              f"in {args.out}/")
        if args.push_to_hub:
            return _push(args.out, args.push_to_hub, after_training=True)
    return 0


def _recorded_args(args: argparse.Namespace) -> dict:
    """The train command's options as resolved (paths absolute), for run.json."""
    recorded = {k: v for k, v in vars(args).items() if k not in ("func", "command", "argv")}
    for key in ("data_root", "sbd_root"):
        if recorded.get(key):
            recorded[key] = str(Path(recorded[key]).resolve())
    return recorded


def _push(src: str, repo_id: str, *, after_training: bool = False, **kwargs) -> int:
    from .publish import push

    try:
        result = push(src, repo_id, **kwargs)
    except (ValueError, OSError) as e:
        if not after_training:
            raise
        print(f"mfnet-zoo: error: the training finished ({src}/) but the push failed: {e}. Retry with "
              f"mfnet-zoo push {src} {repo_id}", file=sys.stderr)
        return 2
    print(f"pushed {', '.join(result['files'])} to {result['url']}")
    print(f"commit {result['commit_url']}; load it with mfnet_zoo.load_model(\"hf-hub:{repo_id}"
          f"{'' if result['revision'] == 'main' else '@' + result['revision']}\")")
    return 0


def _cmd_push(args: argparse.Namespace) -> int:
    return _push(args.src, args.repo_id, private=True if args.private else None, revision=args.revision,
                 commit_message=args.commit_message, token=args.token)


def _cmd_eval(args: argparse.Namespace) -> int:
    import torch
    from torch.utils.data import DataLoader

    from ._factory import load_model
    from ._pretrained import resolve_data_config
    from .data import build_eval_transforms
    from .inference import resolve_device
    from .metrics import format_iou_table
    from .train import evaluate, init_distributed, shard_dataset

    rank, world = init_distributed()
    device = resolve_device(args.device, rank)
    model = load_model(args.model).to(device)
    if args.channels_last:
        model.to(memory_format=torch.channels_last)
    data_cfg = resolve_data_config(model)
    transforms = build_eval_transforms(args.protocol, args.crop_size, mean=data_cfg["mean"], std=data_cfg["std"])
    dataset, classes = _dataset(args, args.split, transforms)
    full_images = args.data in ("voc", "voc-aug") and args.protocol == "full"  # sizes differ: one at a time
    loader = DataLoader(shard_dataset(dataset, rank, world), num_workers=args.workers,
                        batch_size=1 if full_images else (args.batch_size or 8))
    metrics = evaluate(model, loader, model.num_classes, device=device, amp=args.amp or "none",
                       channels_last=args.channels_last, progress=not args.no_progress and rank == 0,
                       scales=args.scales, flip=args.flip, window=args.window)
    if rank == 0:
        print(json.dumps(metrics, indent=2) if args.json else format_iou_table(classes, metrics))
        if args.out:
            from ._atomic import atomic_path

            with atomic_path(args.out) as tmp:
                tmp.write_text(json.dumps(metrics, indent=2))
    return 0


MODEL_HELP = ("a model source: a registry name (a new model, random weights), name.tag (pretrained), "
              "hf-hub:org/repo[@rev], a save_pretrained folder (e.g. runs/demo/model), a .safetensors file with "
              "config.json beside it, a training checkpoint (.pt) or run folder (its best.pt, else last.pt)")


def _inference_model(source: str, device, fold: bool):
    """The model ``source`` names, in eval mode, folded for inference (same logits, cheaper) unless ``fold``
    is False."""
    from ._factory import load_model

    model = load_model(source).to(device).eval()
    return model.reparameterize() if fold and hasattr(model, "reparameterize") else model


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers such as 0.75,1,1.25, got {text!r}")


def _cmd_predict(args: argparse.Namespace) -> int:
    from .inference import resolve_device
    from .predict import predict_files

    device = resolve_device(args.device)
    model = _inference_model(args.model, device, fold=not args.no_fold)
    report = predict_files(model, args.inputs, args.out, batch_size=args.batch_size, scales=args.scales,
                           flip=args.flip, window=args.window, save_probs=args.probs, device=device,
                           amp=args.amp, channels_last=args.channels_last, progress=not args.no_progress)
    images = sum(1 for p in report.written if p.name.endswith("_overlay.png"))
    print(f"wrote {images} prediction(s) to {args.out}/")
    for problem in report.failed:
        print(f"mfnet-zoo: error: {problem}", file=sys.stderr)
    return 1 if report.failed else 0


def _cmd_export(args: argparse.Namespace) -> int:
    from .export import export_onnx, export_program

    model = _inference_model(args.model, "cpu", fold=not args.no_fold)
    size = (args.size, args.size)
    if args.format == "onnx":
        path = export_onnx(model, args.out or f"{Path(args.model).name}.onnx", size, opset=args.opset,
                           batch_size=args.batch)
    else:
        path = args.out or f"{Path(args.model).name}.pt2"
        export_program(model, path, size, batch_size=args.batch)
    print(f"wrote {path}")
    return 0


def _cmd_benchmark(args: argparse.Namespace) -> int:
    from ._factory import load_model
    from ._sources import parse_model_source
    from .benchmark import benchmark, benchmark_training, format_benchmark
    from .inference import resolve_device

    for source in args.models:  # fail on a typo before building anything
        parse_model_source(source)
    models = {source: (lambda source=source: load_model(source)) for source in args.models}
    common = dict(size=args.size, batch=args.batch, device=resolve_device(args.device), runs=args.runs,
                  warmup=args.warmup, channels_last=args.channels_last, amp=args.amp)
    if args.train:
        results = benchmark_training(models, **common)
    else:
        results = benchmark(models, macs=not args.no_macs, compile=args.compile or False, **common)
    print(json.dumps(results, indent=2) if args.json else format_benchmark(results, reference=args.models[0]))
    return 0


def _cmd_convert(args: argparse.Namespace) -> int:
    from .convert import convert_checkpoint

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dst = convert_checkpoint(args.src, args.dst, args.source, num_classes=args.num_classes,
                                 output_stride=args.output_stride, context_in_logits=args.context_in_logits)
    for warning in caught:
        print(f"mfnet-zoo: warning: {warning.message}", file=sys.stderr)
    print(f"wrote {dst}/ (model.safetensors, config.json, README.md); "
          f"load with mfnet_zoo.from_pretrained({str(dst)!r})")
    return 0


def build_parser(train_defaults: dict | None = None) -> argparse.ArgumentParser:
    """The ``mfnet-zoo`` parser; ``train_defaults`` replace the train command's defaults (``--config``)."""
    parser = argparse.ArgumentParser(prog="mfnet-zoo", description=__doc__)
    parser.add_argument("--version", action="version", version=f"mfnet-zoo {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("list", help="list registered models (fnmatch pattern)")
    p.add_argument("pattern", nargs="?", default="*")
    p.add_argument("--pretrained", action="store_true", help="only models with weights, as name.tag")
    p.set_defaults(func=_cmd_list)
    p = sub.add_parser("info", help="parameters, MACs and blocks of a model")
    p.add_argument("name", help=MODEL_HELP)
    p.add_argument("--size", type=int, default=513, help="input side for the MAC count (default 513)")
    p.add_argument("--no-macs", action="store_true", help="skip the MAC count (one forward pass)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_cmd_info)
    p = sub.add_parser("train", help=f"train a model with a recipe preset ({', '.join(PRESET_DESCRIPTIONS)})",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog="presets (docs/reproduce.md has their tables):\n" + "\n".join(
                           textwrap.fill(text, 78, initial_indent=f"  {name:<12}", subsequent_indent=" " * 14)
                           for name, text in PRESET_DESCRIPTIONS.items()))
    p.add_argument("model", nargs="?", help="registered model name, e.g. mfnet_r50 (default: --config's)")
    p.add_argument("--config", metavar="FILE", help="rerun the run that wrote FILE (OUT/run.json): its options "
                                                     "are the defaults, options given here override them")
    p.add_argument("--preset", choices=tuple(PRESET_DESCRIPTIONS), default="default",
                   help="the recipe: optimizer, schedule, groups, loss, augmentation, validation protocol "
                        "(default: default)")
    p.add_argument("--encoder", help="timm encoder for the generic families (mfnet, deeplabv3plus, emanet, "
                   "context_deeplab)")
    p.add_argument("--context", choices=tuple(CONTEXT_DESCRIPTIONS),
                   help="context_deeplab's context block (docs/context-study.md compares them)")
    p.add_argument("--encoder-weights", metavar="TAG|none",
                   help="timm pretrained tag for the encoder (e.g. tv_in1k), or none for a random encoder; default: "
                        "ImageNet weights from the Hub (the paper models' tv_in1k tag, timm's default tag for "
                        "--encoder X)")
    p.add_argument("--mean", type=_floats, help="normalisation mean, e.g. 0.5,0.5,0.5 (default: the encoder's)")
    p.add_argument("--std", type=_floats, help="normalisation std (default: the encoder's)")
    p.add_argument("--num-classes", type=int, help="default: the dataset's")
    p.add_argument("--output-stride", type=int, default=16)
    p.add_argument("--epochs", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--crop-size", type=int, help="training crop (and the paper protocol's validation crop); "
                                                   "default: the preset's, 513")
    p.add_argument("--seed", type=int)
    p.add_argument("--out", default="runs/train")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt if it exists")
    p.add_argument("--push-to-hub", metavar="REPO_ID", help="push OUT/model/ to this Hub repo at the end (see push)")
    _add_data_args(p)
    p.set_defaults(func=_cmd_train)
    if train_defaults:
        p.set_defaults(**train_defaults)
    p = sub.add_parser("push", help="upload a run's model/, a save_pretrained folder or a checkpoint to the Hub")
    p.add_argument("src", help="a run folder (its model/, else best.pt / last.pt), a model folder or a .pt checkpoint")
    p.add_argument("repo_id", help="Hub repo 'namespace/name' (created if it does not exist)")
    p.add_argument("--private", action="store_true", help="create the repo private (an existing repo keeps its own)")
    p.add_argument("--revision", help="branch to commit to (created from main if it does not exist)")
    p.add_argument("--commit-message")
    p.add_argument("--token", help="Hub token with write access (default: HF_TOKEN, else the login cache)")
    p.set_defaults(func=_cmd_push)
    p = sub.add_parser("eval", help="evaluate a model on a dataset (mIoU, fwIoU, per-class IoU)")
    p.add_argument("model", help=MODEL_HELP)
    p.add_argument("--split", default="val")
    p.add_argument("--num-classes", type=int)
    p.add_argument("--json", action="store_true")
    p.add_argument("--out", help="also write the metrics as JSON to this file")
    p.add_argument("--scales", type=_floats, default=(1.0,), help="multi-scale evaluation, e.g. 0.5,0.75,1,1.5")
    p.add_argument("--flip", action="store_true", help="also average horizontally flipped predictions")
    p.add_argument("--window", type=int, help="sliding-window tile size for large images")
    p.add_argument("--protocol", choices=EVAL_PROTOCOLS, default="full",
                   help="full: every pixel of every image (default); paper: as the paper's code scored, on "
                        "CROP_SIZE centre crops after resizing the shorter side to CROP_SIZE (its FixScaleCrop)")
    p.add_argument("--crop-size", type=int, default=513, help="the paper protocol's crop (default 513)")
    _add_data_args(p)
    p.set_defaults(func=_cmd_eval)
    p = sub.add_parser("predict", help="segment image files, folders or globs; writes PNGs (and .npy)")
    p.add_argument("model", help=MODEL_HELP)
    p.add_argument("inputs", nargs="+", help="image files, folders or glob patterns")
    p.add_argument("--out", default="predictions")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--scales", type=_floats, default=(1.0,), help="e.g. 0.5,0.75,1,1.25,1.5,1.75")
    p.add_argument("--flip", action="store_true", help="also average horizontally flipped predictions")
    p.add_argument("--window", type=int, help="sliding-window tile size for large images")
    p.add_argument("--probs", action="store_true", help="also write per-class probabilities (.npy)")
    p.add_argument("--device", default="auto")
    p.add_argument("--amp", choices=AMP_CHOICES, default="none",
                   help="autocast dtype (bf16 + --channels-last: 2-3x faster on CPUs with bf16 units)")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--no-fold", action="store_true", help="keep the static context unfolded (same logits, slower)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_cmd_predict)
    p = sub.add_parser("export", help="export to ONNX or a torch.export program (dynamic batch/height/width)")
    p.add_argument("model", help=MODEL_HELP)
    p.add_argument("--format", choices=("onnx", "torch-export"), default="onnx")
    p.add_argument("--out", help="output file (default: MODEL.onnx / MODEL.pt2)")
    p.add_argument("--size", type=int, default=513, help="example input side used for tracing")
    p.add_argument("--batch", type=int, default=1, help="example batch used for tracing (the graph takes any batch)")
    p.add_argument("--opset", type=int, default=18)
    p.add_argument("--no-fold", action="store_true", help="export the static context unfolded (same logits, slower)")
    p.set_defaults(func=_cmd_export)
    p = sub.add_parser("benchmark", help="latency/throughput of models, interleaved for fair ratios")
    p.add_argument("models", nargs="+", help="model sources (see 'predict --help'); registry names: random weights")
    p.add_argument("--size", type=int, default=513)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--runs", type=int, default=7)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--device", default="auto")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--amp", choices=AMP_CHOICES, default="none", help="autocast dtype")
    p.add_argument("--compile", nargs="?", const="inductor", metavar="BACKEND",
                   help="torch.compile each model (default backend: inductor); warm-up absorbs compilation")
    p.add_argument("--train", action="store_true", help="time training steps (forward, loss, backward, SGD)")
    p.add_argument("--no-macs", action="store_true")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_benchmark)
    p = sub.add_parser("convert", help="convert a checkpoint of the paper's code (or EMANet's) to an mfnet_zoo folder")
    p.add_argument("src", help="the source checkpoint (.pth/.pth.tar), read with torch.load(weights_only=True)")
    p.add_argument("dst", help="output folder (save_pretrained layout)")
    p.add_argument("--from", dest="source", required=True, choices=CONVERT_SOURCES)
    p.add_argument("--num-classes", type=int, help="check the checkpoint's class count")
    p.add_argument("--output-stride", type=int, choices=(8, 16),
                   help="the stride the source was trained at (not stored in checkpoints; default: 16 for the "
                        "paper's code, 8 for EMANet's release)")
    p.add_argument("--context-in-logits", action="store_true",
                   help="paper-mfnet: put the factorization into the logits (as the paper's text describes; its "
                        "decoder was not trained for that). Default: the logits its runs produced (pair-only)")
    p.set_defaults(func=_cmd_convert)
    p = sub.add_parser("demo", help="train and evaluate a small MFNet on built-in synthetic scenes (CPU: 104 s "
                                    "on the development machine, 372 s on a user's; it prints an estimate after "
                                    "the first epoch)")
    p.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    p.add_argument("--epochs", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_demo)
    return parser


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse ``argv``; for ``train --config FILE`` parse again with FILE's options as the defaults, so that
    only the options typed here override them. ``args.argv`` keeps what was typed."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    if getattr(args, "config", None):
        from .publish import run_file_args

        args = build_parser(train_defaults=run_file_args(args.config, known=vars(args))).parse_args(argv)
    args.argv = argv
    return args


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = parse_args(argv)  # --help and --version end here, before torch is imported
        return args.func(args)
    except (ValueError, TypeError, OSError, NotImplementedError, FloatingPointError) as e:  # no traceback
        print(f"mfnet-zoo: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
