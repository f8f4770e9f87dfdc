"""Why smp's DeepLabV3+ reads the context study's distant marker and ``fast_deeplab`` does not: one factor at a
time, on the global scenes, with fast_accuracy.py's encoder, recipe, loop and scoring (issue #33). Writes
docs/fast-probes.md and its JSON.

    python benchmarks/fast_probes.py --seeds 1 --resume           # every variant, seed 0 (~4 min a run on 2 cores)
    python benchmarks/fast_probes.py --seeds 3 --resume --variants "fast pool, context 256"
    python benchmarks/fast_probes.py --from-json

Each variant changes one of the two models fast_accuracy.py compares (``fast_deeplab`` as first built: 64 wide,
fusing strides 8 and 4, with torch's default initialisation; ``smp.DeepLabV3Plus("tu-test_resnet")``), or the
library's DeepLabV3+ (``context_deeplab``), in one respect or, where its comment says why, two: the context's
width, block, rates or separable branches, the encoder's output stride, smp's width, rates or dropout, and the
initialisation of context and decoder (smp's ``initialize_decoder``/``initialize_head``). Variants, once run, are
not redefined (the resume refuses). The JSON is written atomically after every run; ``--resume`` keeps the runs it holds.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import segmentation_models_pytorch as smp
from segmentation_models_pytorch.base.initialization import initialize_decoder, initialize_head
from torch import nn

from mfnet_zoo import create_model
from mfnet_zoo._atomic import atomic_path
from mfnet_zoo.layers import ASPP

sys.path.insert(0, str(Path(__file__).resolve().parent))
from context_study import READS_MARKER  # noqa: E402
from fast_accuracy import ENCODER, ROOT, SmpModel, _pm, machine, run, tasks  # noqa: E402

# name -> (which model, its keyword arguments beyond the encoder and classes)
VARIANTS: dict[str, tuple[str, dict]] = {
    "fast pool, context 256": ("fast_deeplab", {"context_channels": 256}),
    "fast aspp": ("fast_deeplab", {"context": "aspp"}),
    "fast pool, stride 16": ("fast_deeplab", {"output_stride": 16}),
    "smp, decoder 64": ("smp", {"decoder_channels": 64}),
    # smp at 64 wide reads the marker: which of its ASPP's parts does it need?
    "smp 64, rates 1/1/1": ("smp", {"decoder_channels": 64, "decoder_atrous_rates": (1, 1, 1)}),
    "smp 64, rates 6/12/18": ("smp", {"decoder_channels": 64, "decoder_atrous_rates": (6, 12, 18)}),
    "smp 64, no dropout": ("smp", {"decoder_channels": 64, "decoder_aspp_dropout": 0.0}),
    # smp reads it with rates 12/24/36 only: at stride 16 on the 14 x 14 map of 224 px, 12 is a 192 px offset and
    # 24, 36 reach past the map (1x1 in effect). The same offset at stride 32 is rate 6, with 12 and 18 past the map
    "fast aspp, rates 6/12/18": ("fast_deeplab", {"context": "aspp", "atrous_rates": (6, 12, 18)}),
    # the fast model at smp's stride and rates: if it reads the marker, the stride is what the fast model lacks
    "fast aspp, stride 16, rates 12/24/36": ("fast_deeplab", {"context": "aspp", "output_stride": 16,
                                                              "atrous_rates": (12, 24, 36)}),
    "smp 64, plain aspp": ("smp", {"decoder_channels": 64, "decoder_aspp_separable": False}),
    # the library's DeepLabV3+ (context_deeplab) built as smp's: if it reads the marker, fast_deeplab's decoder is
    # what differs
    "context_deeplab, smp's ASPP": ("context_deeplab", {"context": "aspp", "decoder_channels": 64, "separable": True,
                                                        "atrous_rates": (12, 24, 36)}),
    # ... and at stride 32, with the fast model's context: if it reads the marker, a decoder that concatenates the
    # context at stride 4 (DeepLabV3+'s) carries it where fast_deeplab's sums do not
    "context_deeplab, stride 32, separable aspp 6/12/18": ("context_deeplab", {
        "context": "aspp", "decoder_channels": 64, "separable": True, "output_stride": 32,
        "atrous_rates": (6, 12, 18)}),
    "fast separable aspp 6/12/18, smp init": ("fast_deeplab", {"context": "aspp", "atrous_rates": (6, 12, 18),
                                                               "separable": True, "smp_init": True}),
    # the cheapest context with smp's initialisation
    "fast pool, smp init": ("fast_deeplab", {"smp_init": True}),
    # as smp's ASPP, its dilated branches depthwise-separable: about the cost of the pool context
    "fast separable aspp, rates 6/12/18": ("fast_deeplab", {"context": "aspp", "atrous_rates": (6, 12, 18),
                                                            "separable": True}),
}


def build(name: str, num_classes: int) -> nn.Module:
    """The variant's model. For the library's models, ``atrous_rates`` (and ``separable``) put an ASPP with those
    rates in place of the context block; context and decoder get torch's default initialisation (what every
    library model had when these probes ran; fast_deeplab is He-initialised since), or with ``smp_init`` smp's
    initialisation of its decoder and head (smp's own functions); fast_deeplab is as it was then, 64 wide,
    fusing strides 8 and 4 and with no head conv, unless the variant says otherwise."""
    model, kwargs = VARIANTS[name]
    if model == "smp":
        return SmpModel(smp.DeepLabV3Plus(f"tu-{ENCODER}", encoder_weights=None, classes=num_classes, **kwargs))
    # fast_deeplab as the probes ran: 64 wide, fusing strides 8 and 4, no head conv (its default is 128 wide, 16, 8, 4
    # and one head conv since)
    as_then = {"decoder_channels": 64, "skip_strides": (8, 4), "head_convs": 0}
    kwargs = {**(as_then if model == "fast_deeplab" else {}), **kwargs}
    rates, separable = kwargs.pop("atrous_rates", None), kwargs.pop("separable", False)
    smp_init = kwargs.pop("smp_init", False)
    built = create_model(model, encoder=ENCODER, num_classes=num_classes, **kwargs)
    if rates is not None:
        built.context = ASPP(built.encoder.out_channels, built.decoder.in_channels, tuple(rates), dropout=0.0,
                             separable=separable)
    for module in (*built.context.modules(), *built.decoder.modules()):
        if isinstance(module, (nn.Conv2d, nn.BatchNorm2d)):
            module.reset_parameters()
    if smp_init:
        initialize_decoder(built.context), initialize_decoder(built.decoder), initialize_head(built.decoder.classifier)
    return built


def render(result: dict) -> str:
    lines = ["# Which factor lets a model read the distant marker", "",
             "<!-- written by benchmarks/fast_probes.py from fast-probes.json; rerun it (or --from-json) rather "
             "than editing this page -->", "",
             f"The global scenes of the context study, fast_accuracy.py's recipe and loop, timm's `{ENCODER}` from "
             f"scratch; a seed reads the marker when its orientation accuracy is >= {READS_MARKER}. "
             f"`{result['command']}`, {result['machine']}.", "",
             "| variant | model | change | seeds | reads the marker | mIoU | orientation |",
             "|---|---|---|---:|---:|---:|---:|"]
    for name, (model, kwargs) in result["variants"].items():
        runs = [r for r in result["runs"] if r["model"] == name]
        if runs:
            lines.append(f"| {name} | {model} | `{json.dumps(kwargs)}` | {len(runs)} | "
                         f"{sum(r['reads_marker'] for r in runs)} of {len(runs)} | {_pm([r['mIoU'] for r in runs])} | "
                         f"{_pm([r['orientation_acc'] for r in runs])} |")
    lines += ["", "| variant | seed | mIoU | orientation | train s |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {r['model']} | {r['seed']} | {r['mIoU']:.3f} | {r['orientation_acc']:.3f} | "
              f"{r['train_seconds']:.0f} |" for r in result["runs"]]
    return "\n".join(lines) + "\n"


def write(result: dict, out_dir: Path) -> None:
    with atomic_path(out_dir / "fast-probes.json") as tmp:
        tmp.write_text(json.dumps(result, indent=1) + "\n")
    with atomic_path(out_dir / "fast-probes.md") as tmp:
        tmp.write_text(render(result))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--quick", action="store_true", help="tiny sets, one epoch (a smoke run)")
    parser.add_argument("--out-dir", default=str(ROOT / "docs"))
    parser.add_argument("--resume", action="store_true", help="keep the runs already in the JSON, run the rest")
    parser.add_argument("--from-json", action="store_true", help="rewrite the page from the JSON alone")
    args = parser.parse_args(argv)
    out_dir = Path(args.out_dir)
    json_path = out_dir / "fast-probes.json"
    if args.from_json:
        result = json.loads(json_path.read_text())
        write(result, out_dir)
        return result
    command = " ".join(["python benchmarks/fast_probes.py", *(sys.argv[1:] if argv is None else argv)])
    result = {"command": command, "quick": args.quick, "machine": machine(),
              "variants": {name: json.loads(json.dumps(VARIANTS[name])) for name in VARIANTS}, "runs": []}
    if args.resume and json_path.is_file():
        saved = json.loads(json_path.read_text())
        changed = [n for n in saved["variants"] if saved["variants"][n] != result["variants"].get(n)]
        if saved.get("quick") != args.quick or changed:
            raise SystemExit(f"{json_path} holds another size or other definitions of {changed}; not resuming it")
        result["runs"] = saved["runs"]
    done = {(r["model"], r["seed"]) for r in result["runs"]}
    todo = [(name, seed) for seed in range(args.seeds) for name in args.variants if (name, seed) not in done]
    with tempfile.TemporaryDirectory() as scratch:
        spec = tasks(args.quick, Path(scratch))["global"] if todo else None
        for name, seed in todo:
            record = run("global", name, seed, spec, build_model=build)
            result["runs"].append(record)
            write(result, out_dir)
            print(f"{name:24s} seed {seed}: mIoU {record['mIoU']:.3f}, orientation {record['orientation_acc']:.3f} "
                  f"({record['train_seconds']:.0f} s)", flush=True)
    write(result, out_dir)
    return result


if __name__ == "__main__":
    main()
