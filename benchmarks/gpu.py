"""GPU throughput of the zoo's models next to smp's DeepLabV3+ and torchvision's DeepLabV3: training
images/s and batched inference, eager and torch.compile, bf16 autocast and channels_last. Writes the
GPU section of docs/benchmarks.md (between the gpu markers; the CPU tables are left as they are).

    python benchmarks/gpu.py                          # made to fit in 5 minutes on one H100/H200
    python benchmarks/gpu.py --device cpu --size 64 --large 64x128 --train-batch 2 --infer-batch 2 --runs 1 \\
        --amp none --compile-backend aot_eager --out /tmp/gpu.md     # a smoke check of this script

Never part of CI (it needs a GPU to mean anything).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from mfnet_zoo._atomic import atomic_path
from mfnet_zoo.benchmark import benchmark, benchmark_training, paired_ratio
from run import FAST, FAST_TARGET, GPU_BLOCK, OURS, ROOT, SMP, models, upsert_block

TRAIN = ["mfnet_r50", "mfnet_lite_r50", FAST, OURS, "emanet_r50", SMP, "torchvision deeplabv3_resnet50"]
EAGER = ["mfnet_r50", "mfnet_r50 folded", "mfnet_lite_r50 folded", FAST, OURS, "emanet_r50", SMP,
         "torchvision deeplabv3_resnet50"]
COMPILED = ["mfnet_r50 folded", "mfnet_lite_r50 folded", FAST, OURS, SMP]


def builders() -> dict:
    from mfnet_zoo import create_model

    return {**models(), "mfnet_lite_r50": lambda: create_model("mfnet_lite_r50")}


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{device.type} ({torch.get_num_threads()} threads)"


def run(args: argparse.Namespace) -> tuple[list[str], dict]:
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    build = builders()
    size = (args.size, args.size)
    # smp needs a multiple of 16 (512 for 513); the light and fast models run at smp's size, which their targets
    # compare to
    smp_size = {name: (args.size - args.size % 16,) * 2 for name in (SMP, "mfnet_lite_r50", "mfnet_lite_r50 folded",
                                                                     FAST)}
    common = {"device": device, "channels_last": True, "amp": args.amp, "sizes": smp_size}
    start = time.perf_counter()
    train = benchmark_training({k: build[k] for k in TRAIN}, size=size, batch=args.train_batch, runs=args.runs * 3,
                               warmup=3, **common)
    large = benchmark_training({k: build[k] for k in TRAIN}, size=args.large, batch=2, runs=args.runs, warmup=2,
                               memory=False, device=device, channels_last=True, amp=args.amp)
    eager = benchmark({k: build[k] for k in EAGER}, size=size, batch=args.infer_batch, runs=args.runs * 5,
                      warmup=3, macs=False, **common)
    compiled = [] if args.compile_backend == "none" else benchmark(
        {k: build[k] for k in COMPILED}, size=size, batch=args.infer_batch, runs=args.runs * 5, warmup=3,
        macs=False, memory=False, compile=args.compile_backend, **common)
    seconds = time.perf_counter() - start
    train_by, large_by, eager_by, compiled_by = ({r["model"]: r for r in t} for t in (train, large, eager, compiled))

    def cell(table: dict, name: str, key: str, fmt: str) -> str:
        return format(table[name][key], fmt) if name in table else "—"

    precision = "fp32" if args.amp == "none" else f"{args.amp} autocast"
    lines = [
        "<!-- gpu:start -->", "## GPU", "",
        f"Written by `python benchmarks/gpu.py` on {device_name(device)}, torch {torch.__version__}, "
        f"{precision}, channels_last, {args.size} x {args.size} ({smp_size[SMP][0]} for smp, mfnet_lite_r50 and {FAST}); "
        f"{seconds:.0f} s for the whole script. Training: batch {args.train_batch}, forward + SegmentationLoss "
        f"+ backward + SGD, median of {args.runs * 3} interleaved steps after 3 warm-up steps; at "
        f"{args.large[0]} x {args.large[1]}, batch 2, median of {args.runs} steps after 2. Inference: "
        f"batch {args.infer_batch}, median of {args.runs * 5} interleaved rounds; "
        + ("no compiled runs." if args.compile_backend == "none" else
           f"compiled with torch.compile(backend={args.compile_backend!r}), compilation in the warm-up."), "",
        f"| model | train img/s | train peak MB | train img/s at {args.large[0]} x {args.large[1]} | infer ms eager "
        "| infer peak MB | infer ms compiled |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name in dict.fromkeys(TRAIN + EAGER):
        lines.append(f"| {name} | {cell(train_by, name, 'images_per_s', '.0f')} | "
                     f"{cell(train_by, name, 'peak_memory_mb', '.0f')} | "
                     f"{cell(large_by, name, 'images_per_s', '.1f')} | "
                     f"{cell(eager_by, name, 'median_ms', '.1f')} | "
                     f"{cell(eager_by, name, 'peak_memory_mb', '.0f')} | "
                     f"{cell(compiled_by, name, 'median_ms', '.1f')} |")
    train_ratio = train_by["mfnet_r50"]["images_per_s"] / train_by[SMP]["images_per_s"]
    lines += ["", "| target (issue #12) | measured | met |", "|---|---:|---|",
              f"| mfnet_r50 training >= 1.25x smp DeepLabV3Plus img/s | {train_ratio:.2f}x | "
              f"{'yes' if train_ratio >= 1.25 else 'no'} |"]
    if compiled_by:
        speedup = compiled_by[SMP]["median_ms"] / compiled_by["mfnet_lite_r50 folded"]["median_ms"]
        lines.append(f"| mfnet_lite_r50 compiled inference >= 1.35x smp (speed) | {speedup:.2f}x | "
                     f"{'yes' if speedup >= 1.35 else 'no'} |")
    fast = paired_ratio(eager, FAST, SMP)
    lines.append(f"| {FAST} eager inference <= {FAST_TARGET}x smp's latency (issue #33's CPU target, here on the "
                 f"GPU; paired ratio) | {fast:.3f}x | {'yes' if fast <= FAST_TARGET else 'no'} |")
    lines += ["<!-- gpu:end -->"]
    return lines, {"device": device_name(device), "train": train, "train_large": large, "eager": eager,
                   "compiled": compiled, "seconds": seconds}


def _size(text: str) -> tuple[int, int]:
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HxW such as 1024x2048, got {text!r}") from None
    if min(height, width) < 32 or height % 16 or width % 16:
        raise argparse.ArgumentTypeError(f"HxW must be multiples of 16, at least 32 (smp's constraint), got {text!r}")
    return height, width


def upsert(text: str, block: str) -> str:
    """``text`` with its GPU block replaced by ``block``, or with ``block`` appended if it has none."""
    return upsert_block(text, block, GPU_BLOCK)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--size", type=int, default=513)
    parser.add_argument("--train-batch", type=int, default=8)
    parser.add_argument("--large", type=_size, default=(1024, 2048), metavar="HxW",
                        help="the large training size (batch 2; default 1024x2048)")
    parser.add_argument("--infer-batch", type=int, default=16)
    parser.add_argument("--runs", type=int, default=4, help="scale of the timed rounds (x3 train, x5 inference)")
    parser.add_argument("--amp", choices=("none", "bf16", "fp16"), default="bf16")
    parser.add_argument("--compile-backend", default="inductor", help="'none' skips the compiled runs")
    parser.add_argument("--out", default=str(ROOT / "docs" / "benchmarks.md"))
    parser.add_argument("--json", help="also write the raw results here")
    args = parser.parse_args()
    if args.size < 32:
        parser.error(f"--size must be >= 32, got {args.size}")
    lines, raw = run(args)
    block = "\n".join(lines)
    out = Path(args.out)
    with atomic_path(out) as tmp:
        tmp.write_text(upsert(out.read_text() if out.is_file() else "# Benchmarks\n", block))
    if args.json:
        with atomic_path(args.json) as tmp:
            tmp.write_text(json.dumps(raw, indent=2))
    print(block)


if __name__ == "__main__":
    main()
