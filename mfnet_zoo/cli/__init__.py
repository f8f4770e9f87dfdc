"""The ``mfnet-zoo`` command: each command parses its options (:mod:`mfnet_zoo.cli.parser`), calls the
library and prints; ``mfnet_zoo.workflows`` and the other modules do the work."""
from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

from .._extras import MissingExtraError
from .parser import build_parser

__all__ = ["main", "parse_args", "build_parser"]


def _progress(args: argparse.Namespace) -> bool:
    """--progress / --no-progress, else progress bars only when stderr is a terminal (not in redirected logs)."""
    return sys.stderr.isatty() if args.progress is None else args.progress


def _cmd_list(args: argparse.Namespace) -> int:
    from ..info import format_model_table, list_model_rows

    rows = list_model_rows(args.pattern, pretrained=args.pretrained)
    if args.json:
        print(json.dumps(rows, indent=2))
    elif rows:
        print(format_model_table(rows))
    else:
        print(f"no {'pretrained ' if args.pretrained else ''}model matches {args.pattern!r}", file=sys.stderr)
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    from ..info import format_model_info, model_info

    info = model_info(args.name, size=args.size, macs=not args.no_macs)
    print(json.dumps(info, indent=2) if args.json else format_model_info(info))
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from ..demo import run_demo
    from ..metrics import format_iou_table

    result = run_demo(args.out, epochs=args.epochs, seed=args.seed, progress=_progress(args))
    print(format_iou_table(result["classes"], result["metrics"]))
    print(f"\nmIoU {result['metrics']['mIoU']:.3f} on {result['val_images']} held-out scenes after "
          f"{result['epochs']} epochs ({result['seconds']:.0f} s); curves, predictions and checkpoints in {args.out}/")
    return 0


def _data(args: argparse.Namespace):
    """The dataset that --data and its options name."""
    from ..data import DataOptions

    return DataOptions(args.data, root=args.data_root, sbd_root=args.sbd_root, download=args.download,
                       num_classes=args.num_classes, skip_bad=args.skip_bad, synthetic_size=args.synthetic_size,
                       image_size=args.image_size, classes=args.classes)


def _encoder_weights(args: argparse.Namespace) -> str | bool | None:
    """--encoder-weights: a timm tag, 'none' (a random encoder), or by default the encoder's ImageNet weights."""
    from .._registry import default_encoder_weights

    if args.encoder_weights is None:
        return default_encoder_weights(args.model, args.encoder)
    return None if args.encoder_weights.lower() == "none" else args.encoder_weights


def _cmd_train(args: argparse.Namespace) -> int:
    from ..metrics import format_iou_table
    from ..presets import PRESETS
    from ..publish import check_push
    from ..run_record import rerun_config
    from ..workflows import train

    if not args.model:
        raise ValueError("train needs a model name (e.g. mfnet_r50) or --config run.json (a run to rerun)")
    if args.push_to_hub:  # a bad repo id or a missing token fails now, not after the training
        check_push(args.push_to_hub)
    overrides = (("epochs", args.epochs), ("batch_size", args.batch_size), ("lr", args.lr),
                 ("crop_size", args.crop_size), ("amp", args.amp), ("seed", args.seed),
                 ("save_every", args.save_every), ("grad_accum_steps", args.grad_accum_steps))
    changes = {k: v for k, v in overrides if v is not None}
    if args.channels_last:
        changes["channels_last"] = True
    cfg = rerun_config(args.config, args.preset, PRESETS[args.preset]).replace(**changes)
    result = train(args.model, cfg, args.out, data=_data(args), encoder=args.encoder, context=args.context,
                   encoder_weights=_encoder_weights(args), mean=args.mean, std=args.std,
                   num_classes=args.num_classes, output_stride=args.output_stride, device=args.device,
                   workers=args.workers, resume=args.resume, progress=_progress(args),
                   run_config={"command": "mfnet-zoo train", "argv": args.argv, "args": _recorded_args(args),
                               "preset": args.preset})
    if result.rank == 0:
        print(format_iou_table(result.classes, result.history[-1]["val"]))
        print(f"checkpoints, metrics.jsonl, curves.png, run.json and model/ (the best epoch, with its card) "
              f"in {args.out}/")
        if args.push_to_hub:
            return _push(args.out, args.push_to_hub, after_training=True)
    return 0


def _recorded_args(args: argparse.Namespace) -> dict:
    """The train command's options as resolved (paths absolute), for run.json; not how it shows progress."""
    recorded = {k: v for k, v in vars(args).items() if k not in ("command", "argv", "progress", "no_progress")}
    for key in ("data_root", "sbd_root"):
        if recorded.get(key):
            recorded[key] = str(Path(recorded[key]).resolve())
    return recorded


def _push(src: str, repo_id: str, *, after_training: bool = False, **kwargs) -> int:
    from ..publish import push

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
    from .._atomic import write_json
    from ..metrics import format_iou_table
    from ..workflows import evaluate

    result = evaluate(args.model, data=_data(args), split=args.split, protocol=args.protocol,
                      crop_size=args.crop_size, batch_size=args.batch_size or 8, device=args.device,
                      workers=args.workers, amp=args.amp or "none", channels_last=args.channels_last,
                      scales=args.scales, flip=args.flip, window=args.window, progress=_progress(args))
    if result.rank == 0:
        print(json.dumps(result.metrics, indent=2) if args.json else format_iou_table(result.classes, result.metrics))
        if args.out:
            write_json(args.out, result.metrics)
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    from ..inference import load_for_inference, resolve_device
    from ..predict import expand_inputs, predict_files

    paths, problems = expand_inputs(args.inputs)
    if not paths:  # nothing to do: say why before loading the model, and write nothing
        raise FileNotFoundError(f"no image to predict: {'; '.join(problems)}")
    for problem in problems:
        print(f"mfnet-zoo: error: {problem}", file=sys.stderr)
    device = resolve_device(args.device)
    model = load_for_inference(args.model, device, fold=not args.no_fold)
    report = predict_files(model, [str(p) for p in paths], args.out, batch_size=args.batch_size, scales=args.scales,
                           flip=args.flip, window=args.window, save_probs=args.probs, device=device,
                           amp=args.amp, channels_last=args.channels_last, progress=_progress(args))
    for problem in report.failed:
        print(f"mfnet-zoo: error: {problem}", file=sys.stderr)
    images = sum(1 for p in report.written if p.name.endswith("_overlay.png"))
    print(f"wrote {images} prediction(s) to {args.out}/")
    return 1 if report.failed or problems else 0


def _cmd_export(args: argparse.Namespace) -> int:
    from .._extras import require
    from ..export import ONNX, check_onnx, export_onnx, export_program
    from ..inference import load_for_inference

    if args.check and args.format != "onnx":
        raise ValueError("--check runs the export in onnxruntime: it needs --format onnx")
    if args.format == "onnx":  # a missing extra fails before the model is built
        for module in ("onnx", "onnxscript") + (("onnxruntime",) if args.check else ()):
            require(module, "checking an ONNX export" if module == "onnxruntime" else ONNX)
    model = load_for_inference(args.model, "cpu", fold=not args.no_fold)
    size = (args.size, args.size)
    if args.format == "onnx":
        path = export_onnx(model, args.out or f"{Path(args.model).name}.onnx", size, opset=args.opset,
                           batch_size=args.batch)
    else:
        path = args.out or f"{Path(args.model).name}.pt2"
        export_program(model, path, size, batch_size=args.batch)
    print(f"wrote {path}")
    if args.check:
        shape = (2, model.in_chans, args.size // 2 + 1, args.size + 7)  # a batch and a size not traced
        worst = check_onnx(model, path, [shape])
        print(f"onnxruntime at {shape[0]} x {shape[1]} x {shape[2]} x {shape[3]}: max |logits - torch's| {worst:.1e}")
    return 0


def _cmd_benchmark(args: argparse.Namespace) -> int:
    from .._factory import load_model
    from .._sources import parse_model_source
    from ..benchmark import benchmark, benchmark_training, format_benchmark
    from ..inference import resolve_device

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
    from ..convert import convert_checkpoint

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dst = convert_checkpoint(args.src, args.dst, args.source, num_classes=args.num_classes,
                                 output_stride=args.output_stride, context_in_logits=args.context_in_logits)
    for warning in caught:
        print(f"mfnet-zoo: warning: {warning.message}", file=sys.stderr)
    print(f"wrote {dst}/ (model.safetensors, config.json, README.md); "
          f"load with mfnet_zoo.from_pretrained({str(dst)!r})")
    return 0


COMMANDS = {"list": _cmd_list, "info": _cmd_info, "train": _cmd_train, "push": _cmd_push, "eval": _cmd_eval, "predict": _cmd_predict, "export": _cmd_export, "benchmark": _cmd_benchmark, "convert": _cmd_convert, "demo": _cmd_demo}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse ``argv``; for ``train --config FILE`` parse again with FILE's options as the defaults, so that
    only the options typed here override them. ``args.argv`` keeps what was typed."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    if getattr(args, "config", None):
        from ..run_record import run_file_args

        # no_progress: recorded by versions before --progress; how a run showed progress is not rerun
        defaults = run_file_args(args.config, known=[*vars(args), "no_progress"])
        defaults.pop("no_progress", None)
        args = build_parser(train_defaults=defaults).parse_args(argv)
    args.argv = argv
    return args


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"mfnet-zoo: warning: {message}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = parse_args(argv)  # --help and --version end here, before torch is imported
        with warnings.catch_warnings():  # a warning is one line, as errors are; the previous display comes back
            warnings.showwarning = _one_line_warning
            return COMMANDS[args.command](args)
    except (ValueError, OSError, NotImplementedError, FloatingPointError, MissingExtraError) as e:
        # a user's error, or a missing optional dependency (the message names its extra): one line
        # (an internal TypeError or AttributeError is a bug and keeps its traceback)
        print(f"mfnet-zoo: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
