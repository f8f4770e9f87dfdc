"""The ``mfnet-zoo`` command: inspect the zoo from the shell."""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from . import __version__
from ._factory import create_model
from ._registry import list_models, list_pretrained_tags, model_entrypoint
from .profiling import count_macs, count_parameters

__all__ = ["main"]


def model_info(name: str, size: int = 513, macs: bool = True) -> dict:
    """Parameters, MACs at size x size, blocks and tags of a registered model."""
    model = create_model(name)
    info = {
        "name": name,
        "description": (model_entrypoint(name).__doc__ or "").strip().splitlines()[0],
        "encoder": model.encoder.name,
        "output_stride": model.output_stride,
        "blocks": {"encoder": type(model.encoder).__name__, "context": type(model.context).__name__,
                   "decoder": type(model.decoder).__name__},
        "num_classes": model.num_classes,
        "parameters": count_parameters(model),
        "pretrained_tags": list_pretrained_tags(name),
    }
    if macs:
        info["input_size"] = [1, model.in_chans, size, size]
        info["macs"] = count_macs(model, tuple(info["input_size"]))
    return info


def _cmd_list(args: argparse.Namespace) -> int:
    for name in list_models(args.pattern, pretrained=args.pretrained):
        print(name)
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mfnet-zoo", description=__doc__)
    parser.add_argument("--version", action="version", version=f"mfnet-zoo {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("list", help="list registered models (fnmatch pattern)")
    p.add_argument("pattern", nargs="?", default="*")
    p.add_argument("--pretrained", action="store_true", help="only models with weights, as name.tag")
    p.set_defaults(func=_cmd_list)
    p = sub.add_parser("info", help="parameters, MACs and blocks of a model")
    p.add_argument("name")
    p.add_argument("--size", type=int, default=513, help="input side for the MAC count (default 513)")
    p.add_argument("--no-macs", action="store_true", help="skip the MAC count (one forward pass)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_cmd_info)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, TypeError) as e:  # user mistakes: a message, not a traceback
        print(f"mfnet-zoo: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
