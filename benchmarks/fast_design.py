"""How wide the fast model's decoder stages can be, and which context it can afford: CPU latency against smp's
DeepLabV3+ (ResNet-50, output stride 16), all in one interleaved run; writes docs/fast-design.md and its JSON.

    python benchmarks/fast_design.py             # ~5 minutes on 2 CPU cores
    python benchmarks/fast_design.py --quick     # 128 x 128, 3 rounds: a smoke check

Two runs, each interleaved against smp's DeepLabV3+ (the reference, 1.00x): (1) the ResNet-50 encoder alone at
output stride 32 (the floor any stride-32 design stands on) and ``fast_deeplab_r50`` with its default context at
each decoder width (one for every stage, or one per stage at strides 16, 8 and 4); (2) each context of the study
with the default decoder. 512 x 512, batch 1, fp32, eval mode, random
weights; interleaved rounds (mfnet_zoo.benchmark), each model's time divided by smp's in the same round.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import segmentation_models_pytorch as smp
import timm
import torch

from mfnet_zoo import create_model
from mfnet_zoo._atomic import atomic_path
from mfnet_zoo.benchmark import benchmark, paired_ratio
from mfnet_zoo.models import TimmEncoder
from mfnet_zoo.run_record import cpu_name

from run import FAST_TARGET, ROOT, SMP, models

FLOOR = "resnet50 encoder alone, OS32"
# one width for every stage, or per stage (strides 16, 8, 4): the stride-4 stage is the costly one on a CPU
WIDTHS = (64, 128, 192, (64, 64, 32), (128, 64, 32), (128, 128, 32), (128, 128, 48), (128, 128, 64))
CONTEXTS = ("none", "pool", "aspp", "static", "nmf", "nmf-unrolled", "ema")


def default_args() -> dict:
    """How ``fast_deeplab`` is built by default: the width rows' context, the context rows' widths."""
    return create_model("fast_deeplab", encoder="test_resnet").model_args


def width_rows(context: str) -> dict:
    """smp, the floor, and the default model (its ``context``) at each width: what the decoder's width costs."""
    rows = {SMP: models()[SMP], FLOOR: lambda: TimmEncoder("resnet50", output_stride=32)}
    for width in WIDTHS:
        rows[f"fast_deeplab_r50 {context}, {_label(width)} wide"] = lambda w=width: create_model(
            "fast_deeplab_r50", decoder_channels=w)
    return rows


def context_rows(width: int | tuple[int, ...]) -> dict:
    """smp and each context with the decoder ``width`` wide: what the context costs."""
    rows = {SMP: models()[SMP]}
    for context in CONTEXTS:
        rows[f"fast_deeplab_r50 {context}, {_label(width)} wide"] = lambda c=context: create_model(
            "fast_deeplab_r50", context=c, decoder_channels=width)
    return rows


def _parse_width(text: str) -> int | tuple[int, ...]:
    """``"128"`` -> 128, ``"128,128,32"`` -> (128, 128, 32)."""
    widths = tuple(int(w) for w in text.split(","))
    return widths[0] if len(widths) == 1 else widths


def _label(width: int | tuple[int, ...] | list[int]) -> str:
    return str(width) if isinstance(width, int) else "/".join(map(str, width))


def _table(results: list[dict]) -> list[str]:
    lines = ["| model | params (M) | GMACs | median ms | min ms | vs smp DeepLabV3+ (paired) |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in results:
        r["vs_smp"] = paired_ratio(results, r["model"], SMP)
        lines.append(f"| {r['model']} | {r['parameters'] / 1e6:.1f} | {r['macs'] / 1e9:.1f} | "
                     f"{r['median_ms']:.0f} | {r['min_ms']:.0f} | {r['vs_smp']:.3f}x |")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int, default=21)
    defaults = default_args()
    parser.add_argument("--width", type=_parse_width,
                        default=defaults["decoder_channels"],
                        help="the decoder widths the context rows use, e.g. 128,128,32 (default: the model's)")
    parser.add_argument("--out", default=str(ROOT / "docs" / "fast-design.md"))
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    size = 128 if args.quick else 512
    rounds = 3 if args.quick else args.rounds
    widths = benchmark(width_rows(defaults["context"]), size=size, runs=rounds, warmup=2, memory=False)
    contexts = benchmark(context_rows(args.width), size=size, runs=rounds, warmup=2, memory=False)
    machine = (f"{cpu_name()}, {args.threads} threads, torch {torch.__version__}, timm {timm.__version__}, "
               f"smp {smp.__version__}")
    command = "python benchmarks/fast_design.py" + (" --quick" if args.quick else "")
    lines = ["# The fast model's design, measured", "",
             f"CPU latency at {size} x {size}, batch 1, fp32, eval mode, random weights; median and min of {rounds} "
             f"interleaved rounds in one process, each table its own run ({machine}). The ratio is the median over "
             f"rounds of each round's time / smp's (`mfnet_zoo.benchmark.paired_ratio`): it takes out this VM's slow "
             f"drift, not the jitter within a round; repeated runs of one pair still differ by about 0.03x. "
             f"Regenerate: `{command}`. "
             f"The target (issue #33) is {FAST_TARGET:.2f}x smp's DeepLabV3+.", "",
             f"## The decoder's width (context `{defaults['context']}`)", "", *_table(widths), "",
             f"## The context, with the decoder {_label(args.width)} wide", "", *_table(contexts)]
    out = Path(args.out)
    with atomic_path(out.with_suffix(".json")) as tmp:
        tmp.write_text(json.dumps({"size": size, "rounds": rounds, "machine": machine, "command": command,
                                   "widths": widths, "contexts": contexts}, indent=1) + "\n")
    with atomic_path(out) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
