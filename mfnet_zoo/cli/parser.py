"""The ``mfnet-zoo`` command line's arguments: every command's options, torch-free, so that ``--help``
answers at once (:mod:`mfnet_zoo.cli` runs the commands)."""
from __future__ import annotations

import argparse
import difflib
import textwrap
from collections.abc import Sequence

from .._constants import (AMP_CHOICES, CONTEXT_DESCRIPTIONS, CONVERT_SOURCES, DATASETS, EVAL_PROTOCOLS,
                          PRESET_DESCRIPTIONS)
from ..version import __version__

__all__ = ["build_parser", "MODEL_HELP"]

MODEL_HELP = ("a model source: a registry name (a new model, random weights), name.tag (pretrained), "
              "hf-hub:org/repo[@rev], a save_pretrained folder (e.g. runs/demo/model), a .safetensors file with "
              "config.json beside it, a training checkpoint (.pt) or run folder (its best.pt, else last.pt)")


class StrictParser(argparse.ArgumentParser):
    """An ArgumentParser that takes options only as spelled (no abbreviations) and answers an unknown one with
    the usage of the command it was given to and the closest options that command has."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs["allow_abbrev"] = False
        super().__init__(*args, **kwargs)
        self.commands: dict[str, argparse.ArgumentParser] = {}  # command name -> its parser (build_parser sets it)

    def parse_args(self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None):
        namespace, extras = self.parse_known_args(args, namespace)
        if extras:
            command = getattr(namespace, "command", None)
            parser = self.commands.get(command, self)
            others = {name: p for name, p in self.commands.items() if name != command}
            parser.error(unknown_arguments(parser, extras, others))
        return namespace


def _options(parser: argparse.ArgumentParser) -> list[str]:
    return [s for action in parser._actions for s in action.option_strings if s not in ("-h", "--help")]


def unknown_arguments(parser: argparse.ArgumentParser, extras: Sequence[str],
                      others: dict[str, argparse.ArgumentParser] | None = None) -> str:
    """'unrecognized arguments: ...' and, for each unknown option, what was probably meant: ``parser``'s options
    that start with it (an abbreviation) or are spelled closest, else the ``others`` commands that take it."""
    options = _options(parser)
    hints = []
    for extra in extras:
        if not extra.startswith("-"):
            continue
        typed = extra.split("=", 1)[0]
        close = [o for o in options if o.startswith(typed)][:3] or difflib.get_close_matches(typed, options, n=2,
                                                                                             cutoff=0.7)
        elsewhere = [name for name, other in (others or {}).items() if typed in _options(other)]
        if close:
            hints.append(f"{typed}: did you mean {' or '.join(close)}?")
        elif elsewhere:
            hints.append(f"{typed} is an option of {', '.join(elsewhere)}, not of this command")
    return f"unrecognized arguments: {' '.join(extras)}" + (f" ({'; '.join(hints)})" if hints else "")


def _names(text: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in text.split(","))
    if not all(names):
        raise argparse.ArgumentTypeError(f"expected comma-separated class names such as background,road,car, "
                                         f"got {text!r}")
    return names


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers such as 0.75,1,1.25, got {text!r}")


def _add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", choices=tuple(DATASETS), default="synthetic")
    p.add_argument("--data-root", help="dataset folder (VOC: the folder holding VOCdevkit/)")
    p.add_argument("--sbd-root", help="SBD folder (img/, cls/, train.txt, val.txt) for --data voc-aug")
    p.add_argument("--download", action="store_true", help="let torchvision download VOC / SBD")
    p.add_argument("--skip-bad", action="store_true", help="--data folder: leave out (and count) bad pairs")
    p.add_argument("--classes", type=_names, metavar="A,B,...",
                   help="--data folder: the class names in index order (as ROOT/classes.txt, one per line, names "
                        "them); without either, train takes the class count from the train masks (highest "
                        "label + 1, 255 ignored) and eval from the model")
    p.add_argument("--synthetic-size", type=int, default=1600, help="training scenes for --data synthetic*")
    p.add_argument("--image-size", type=int, help="scene size for --data synthetic* (default: 64; the context "
                   "study's scenes, synthetic-local/-global/-global-nocue: 224)")
    p.add_argument("--batch-size", type=int, help="default: the preset's")
    p.add_argument("--workers", type=int, default=0)
    _add_runtime_args(p, amp_default=None)


def _add_runtime_args(p: argparse.ArgumentParser, amp_default: str | None = "none", progress: bool = True) -> None:
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    p.add_argument("--amp", choices=AMP_CHOICES, default=amp_default,
                   help="autocast dtype (bf16 + --channels-last: 2-3x faster on CPUs with bf16 units)")
    p.add_argument("--channels-last", action="store_true")
    if progress:
        _add_progress_arg(p)


def _add_progress_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bars (default: only when stderr is a terminal)")


def _add_tta_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scales", type=_floats, default=(1.0,), help="multi-scale inference, e.g. 0.5,0.75,1,1.5")
    p.add_argument("--flip", action="store_true", help="also average horizontally flipped predictions")
    p.add_argument("--window", type=int, help="sliding-window tile size for large images")


def build_parser(train_defaults: dict | None = None) -> argparse.ArgumentParser:
    """The ``mfnet-zoo`` parser; ``train_defaults`` replace the train command's defaults (``--config``)."""
    parser = StrictParser(prog="mfnet-zoo", description="Segmentation models with low-rank factorization context: "
                                                        "inspect, train, evaluate, predict, export, publish.")
    parser.add_argument("--version", action="version", version=f"mfnet-zoo {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=StrictParser)
    parser.commands = sub.choices
    p = sub.add_parser("list", help="registered models as a table: family, context, encoder, parameters, tags")
    p.add_argument("pattern", nargs="?", default="*", help="fnmatch pattern, e.g. 'mfnet*' (default: all)")
    p.add_argument("--pretrained", action="store_true", help="only models with weights, one row per name.tag")
    p.add_argument("--json", action="store_true", help="machine-readable output (exact parameter counts)")
    p = sub.add_parser("info", help="parameters, MACs and blocks of a model")
    p.add_argument("name", help=MODEL_HELP)
    p.add_argument("--size", type=int, default=513, help="input side for the MAC count (default 513)")
    p.add_argument("--no-macs", action="store_true", help="skip the MAC count (one forward pass)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
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
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt if it exists (else start): one "
                   "command line for the first start and every restart")
    p.add_argument("--grad-accum-steps", type=int, metavar="N", help="optimizer step every N batches (the "
                   "global batch: N x --batch-size x processes; default: the preset's, 1)")
    p.add_argument("--save-every", type=int, metavar="STEPS", help="also write OUT/last.pt every STEPS optimizer "
                   "steps, mid-epoch (default: at epoch ends only; docs/training.md, 'Preemption and restarts')")
    p.add_argument("--push-to-hub", metavar="REPO_ID", help="push OUT/model/ to this Hub repo at the end (see push)")
    _add_data_args(p)
    if train_defaults:
        p.set_defaults(**train_defaults)
    p = sub.add_parser("push", help="upload a run's model/, a save_pretrained folder or a checkpoint to the Hub")
    p.add_argument("src", help="a run folder (its model/, else best.pt / last.pt), a model folder or a .pt checkpoint")
    p.add_argument("repo_id", help="Hub repo 'namespace/name' (created if it does not exist)")
    p.add_argument("--private", action="store_true", help="create the repo private (an existing repo keeps its own)")
    p.add_argument("--revision", help="branch to commit to (created from main if it does not exist)")
    p.add_argument("--commit-message")
    p.add_argument("--token", help="Hub token with write access (default: HF_TOKEN, else the login cache)")
    p = sub.add_parser("eval", help="evaluate a model on a dataset (mIoU, fwIoU, per-class IoU)")
    p.add_argument("model", help=MODEL_HELP)
    p.add_argument("--split", default="val")
    p.add_argument("--num-classes", type=int)
    p.add_argument("--json", action="store_true")
    p.add_argument("--out", help="also write the metrics as JSON to this file")
    _add_tta_args(p)
    p.add_argument("--protocol", choices=EVAL_PROTOCOLS, default="full",
                   help="full: every pixel of every image (default); paper: as the paper's code scored, on "
                        "CROP_SIZE centre crops after resizing the shorter side to CROP_SIZE (its FixScaleCrop)")
    p.add_argument("--crop-size", type=int, default=513, help="the paper protocol's crop (default 513)")
    _add_data_args(p)
    p = sub.add_parser("predict", help="segment image files, folders or globs; writes PNGs (and .npy)")
    p.add_argument("model", help=MODEL_HELP)
    p.add_argument("inputs", nargs="+", help="image files, folders or glob patterns")
    p.add_argument("--out", default="predictions")
    p.add_argument("--batch-size", type=int, default=4)
    _add_tta_args(p)
    p.add_argument("--probs", action="store_true", help="also write per-class probabilities (.npy)")
    p.add_argument("--no-fold", action="store_true", help="keep the static context unfolded (same logits, slower)")
    _add_runtime_args(p)
    p = sub.add_parser("export", help="export to ONNX or a torch.export program (dynamic batch/height/width)")
    p.add_argument("model", help=MODEL_HELP)
    p.add_argument("--format", choices=("onnx", "torch-export"), default="onnx")
    p.add_argument("--out", help="output file (default: MODEL.onnx / MODEL.pt2)")
    p.add_argument("--size", type=int, default=513, help="example input side used for tracing")
    p.add_argument("--batch", type=int, default=1, help="example batch used for tracing (the graph takes any batch)")
    p.add_argument("--opset", type=int, default=18)
    p.add_argument("--no-fold", action="store_true", help="export the static context unfolded (same logits, slower)")
    p.add_argument("--check", action="store_true", help="run the ONNX file in onnxruntime at batch 2 and a size not "
                   "traced, and print the largest difference from torch's logits")
    p = sub.add_parser("benchmark", help="latency/throughput of models, interleaved for fair ratios")
    p.add_argument("models", nargs="+", help="model sources (see 'predict --help'); registry names: random weights")
    p.add_argument("--size", type=int, default=513)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--runs", type=int, default=7)
    p.add_argument("--warmup", type=int, default=2)
    _add_runtime_args(p, progress=False)
    p.add_argument("--compile", nargs="?", const="inductor", metavar="BACKEND",
                   help="torch.compile each model (default backend: inductor); warm-up absorbs compilation")
    p.add_argument("--train", action="store_true", help="time training steps (forward, loss, backward, SGD)")
    p.add_argument("--no-macs", action="store_true")
    p.add_argument("--json", action="store_true")
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
    p = sub.add_parser("demo", help="train and evaluate a small MFNet on built-in synthetic scenes (CPU: 104 s "
                                    "on the development machine, 372 s on a user's; it prints an estimate after "
                                    "the first epoch)")
    p.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    p.add_argument("--epochs", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    _add_progress_arg(p)
    return parser
