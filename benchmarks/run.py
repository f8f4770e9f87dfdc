"""Side-by-side cost of the zoo's models, smp's DeepLabV3+ and torchvision's DeepLabV3, and of the
context blocks alone, on the CPU; writes docs/benchmarks.md and the README's headline table.

    python benchmarks/run.py              # ~15 minutes on 2 CPU cores
    python benchmarks/run.py --quick      # smaller sizes and fewer runs, for a smoke check

Every table comes from one interleaved run in one process with pinned threads (mfnet_zoo.benchmark),
so its ratios are fair; absolute times depend on the machine, named in the output. The GPU section
of docs/benchmarks.md is written by benchmarks/gpu.py and kept as it is.
"""
from __future__ import annotations

import argparse
import re
from pathlib import Path

import segmentation_models_pytorch as smp
import timm
import torch
import torchvision
from torch import nn

import mfnet_zoo
from mfnet_zoo import create_model
from mfnet_zoo._atomic import atomic_path
from mfnet_zoo.benchmark import benchmark, benchmark_training, paired_ratio
from mfnet_zoo.layers import ASPP, EMAContext, FactorizationContext
from mfnet_zoo.inference import autocast
from mfnet_zoo.run_record import cpu_name

ROOT = Path(__file__).resolve().parents[1]
SMP = "smp DeepLabV3Plus r50 OS16"
OURS = "deeplabv3plus_r50"
FAST = "fast_deeplab_r50"
FAST_TARGET = 0.65  # issue #33: at most this fraction of smp's latency, fp32 CPU at 512 x 512
NO_GPU = ("<!-- gpu:start -->\n## GPU\n\nNot measured yet: no GPU was available where these tables were made. "
          "`python benchmarks/gpu.py` (made to fit in 5 minutes on one H100/H200) writes this section.\n"
          "<!-- gpu:end -->")
GPU_BLOCK = re.compile(r"<!-- gpu:start -->.*<!-- gpu:end -->", re.DOTALL)
FAST_ACCURACY_START, FAST_ACCURACY_END = "<!-- fast-accuracy:start -->", "<!-- fast-accuracy:end -->"
FAST_ACCURACY_BLOCK = re.compile(f"{FAST_ACCURACY_START}.*{FAST_ACCURACY_END}", re.DOTALL)
NO_FAST_ACCURACY = (f"{FAST_ACCURACY_START}\n## The fast model's accuracy against smp's DeepLabV3+\n\nNot measured "
                    "yet: `python benchmarks/fast_accuracy.py --resume --commit` (about 80 minutes on 2 cores) writes "
                    f"this section.\n{FAST_ACCURACY_END}")


def models() -> dict:
    """Name -> builder; random weights (weights do not change the cost)."""
    return {
        "mfnet_r50": lambda: create_model("mfnet_r50"),
        "mfnet_r50 folded": lambda: create_model("mfnet_r50").reparameterize(),
        "mfnet_r50 nmf": lambda: create_model("mfnet_r50", mode="nmf"),
        "mfnet_lite_r50 folded": lambda: create_model("mfnet_lite_r50").reparameterize(),
        OURS: lambda: create_model(OURS),
        FAST: lambda: create_model(FAST),
        "emanet_r50": lambda: create_model("emanet_r50"),
        SMP: lambda: smp.DeepLabV3Plus("resnet50", encoder_weights=None, encoder_output_stride=16, classes=21),
        "torchvision deeplabv3_resnet50": lambda: torchvision.models.segmentation.deeplabv3_resnet50(
            weights=None, weights_backbone=None, num_classes=21, aux_loss=False),
    }


def contexts(width: int = 2048) -> dict:
    return {
        "FactorizationContext static (+ 1x1 proj)": lambda: FactorizationContext(width),
        "FactorizationContext static, folded": lambda: FactorizationContext(width).eval().fuse(),
        "FactorizationContext nmf, width 512": lambda: FactorizationContext(width, mode="nmf"),
        "FactorizationContext nmf, width 2048": lambda: FactorizationContext(width, mode="nmf", width=width),
        "ASPP (256 out)": lambda: ASPP(width),
        "EMANet head (3x3 2048->512, EMAU, 3x3 512->256)": lambda: EMAContext(width),
    }


class Variant(nn.Module):
    """A model run on a channels_last copy of its input and/or under autocast, so that layouts and
    dtypes can be interleaved in one benchmark; the input conversion is part of the timed call."""

    def __init__(self, model: nn.Module, channels_last: bool, amp: str) -> None:
        super().__init__()
        self.model = model.to(memory_format=torch.channels_last) if channels_last else model
        self.channels_last, self.amp = channels_last, amp

    def forward(self, x: torch.Tensor):
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(x.device, self.amp):
            return self.model(x)


def variants(names: list[str]) -> dict:
    builders = models()
    return {f"{name}, {amp if amp != 'none' else 'fp32'}{', channels_last' if cl else ''}":
            (lambda name=name, cl=cl, amp=amp: Variant(builders[name](), cl, amp))
            for name in names for amp in ("none", "bf16") for cl in (False, True)}


def upsert_block(text: str, block: str, pattern: re.Pattern, before: str | None = None) -> str:
    """``text`` with the section ``pattern`` matches replaced by ``block``; without one, ``block`` goes before the
    marker ``before`` (where ``text`` has it) or at the end."""
    if pattern.search(text):
        return pattern.sub(lambda _: block, text)
    at = text.find(before) if before else -1
    return text[:at] + block + "\n\n" + text[at:] if at >= 0 else text.rstrip("\n") + "\n\n" + block + "\n"


def with_kept_blocks(text: str, previous: str) -> str:
    """``text`` followed by the sections other scripts write into the page, kept from ``previous`` across CPU
    reruns: the fast model's accuracy (benchmarks/fast_accuracy.py), then the GPU figures (benchmarks/gpu.py)."""
    kept = [(match.group(0) if (match := pattern.search(previous)) else placeholder)
            for pattern, placeholder in ((FAST_ACCURACY_BLOCK, NO_FAST_ACCURACY), (GPU_BLOCK, NO_GPU))]
    return text + "\n" + "\n\n".join(kept) + "\n"


def verdict(ratios: list[float]) -> str:
    """'helps'/'hurts'/'is mixed' for time ratios to a baseline, with the ratios."""
    text = ", ".join(f"{r:.2f}x" for r in ratios)
    if all(r < 0.95 for r in ratios):
        return f"helps ({text})"
    if all(r > 1.05 for r in ratios):
        return f"hurts ({text})"
    return f"is mixed or neutral ({text})"


def plot_models(table: dict[str, dict], path: Path, title: str) -> Path:
    """Latency against MACs, one numbered point per model (area proportional to its parameters), the names in
    a key beside the plot, so that close points stay readable (a PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 5), dpi=100)
    key = []
    for number, (name, r) in enumerate(table.items(), start=1):
        theirs = name.startswith(("smp", "torchvision"))
        ax.scatter(r["macs"] / 1e9, r["median_ms"], s=r["parameters"] / 1e5, alpha=0.5,
                   color="tab:orange" if theirs else "tab:blue")
        ax.annotate(str(number), (r["macs"] / 1e9, r["median_ms"]), ha="center", va="center", fontsize=8)
        key.append(f"{number}  {name} ({r['parameters'] / 1e6:.1f}M)")
    ax.set_xlabel("GMACs per image")
    ax.set_ylabel("median latency, ms (CPU, batch 1)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.margins(0.12)
    fig.text(0.70, 0.5, "\n".join(key) + "\n\nblue: mfnet_zoo\norange: smp, torchvision", fontsize=8,
             va="center", family="monospace")
    fig.tight_layout(rect=(0, 0, 0.68, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path


def _by_name(results: list[dict]) -> dict[str, dict]:
    return {r["model"]: r for r in results}


def _ratio(table: dict, name: str, ref: str, key: str = "median_ms") -> str:
    return f"{table[name][key] / table[ref][key]:.2f}x"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=str(ROOT / "docs" / "benchmarks.md"))
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    runs = 3 if args.quick else 7
    base = (129, 129) if args.quick else (513, 513)
    smp_base = (128, 128) if args.quick else (512, 512)
    large = (256, 512) if args.quick else (1024, 2048)
    small_ctx, large_ctx = ((1, 2048, 17, 17), (1, 2048, 32, 64)) if args.quick else \
        ((1, 2048, 33, 33), (1, 2048, 64, 128))
    smp_sizes = {SMP: smp_base}
    builders = models()
    folded, lite = "mfnet_r50 folded", "mfnet_lite_r50 folded"

    main_table = _by_name(benchmark(builders, size=base, runs=runs, sizes=smp_sizes))
    ab_rounds = runs + 4
    ab = _by_name(benchmark({k: builders[k] for k in (OURS, folded, "mfnet_r50")}, size=base, runs=ab_rounds,
                            macs=False, memory=False))
    # the light model against smp at smp's size: at 513 our features are 33 x 33, not 32 x 32 (+6 % MACs)
    ab_lite = _by_name(benchmark({k: builders[k] for k in (SMP, lite)}, size=smp_base, runs=ab_rounds, macs=False,
                                 memory=False))
    # the fast model against smp, alone: fp32; fp32 and bf16 autocast with channels_last (both models in the
    # layout oneDNN's CPU convolutions prefer); fp32 at the large size
    fast_rounds = max(11, ab_rounds)
    fast_pairs = {
        "fp32": benchmark({k: builders[k] for k in (SMP, FAST)}, size=smp_base, runs=fast_rounds, macs=False,
                          memory=False),
        **{setting: benchmark({k: (lambda k=k, amp=amp: Variant(builders[k](), True, amp)) for k in (SMP, FAST)},
                              size=smp_base, runs=fast_rounds, macs=False, memory=False)
           for setting, amp in (("fp32, channels_last", "none"), ("bf16 autocast, channels_last", "bf16"))},
        f"fp32 at {large[0]} x {large[1]}": benchmark({k: builders[k] for k in (SMP, FAST)}, size=large,
                                                      runs=max(3, runs // 2), warmup=1, macs=False, memory=False),
    }
    large_table = _by_name(benchmark(builders, size=large, runs=max(2, runs // 3), warmup=1, macs=False,
                                     memory=False))
    train = _by_name(benchmark_training({k: v for k, v in builders.items() if k != folded}, size=base, batch=2,
                                        sizes=smp_sizes, runs=max(2, runs // 2)))
    layout_names = [folded, OURS, SMP]
    layout = _by_name(benchmark(variants(layout_names), size=base, runs=max(3, runs - 2), macs=False, memory=False,
                                sizes={k: smp_base for k in variants([SMP])}))
    layout_train = _by_name(benchmark_training(variants(["mfnet_r50"]), size=base, batch=2, runs=max(2, runs // 2),
                                               memory=False))
    ctx = [_by_name(benchmark(contexts(), input_shape=shape, runs=r)) for shape, r in ((small_ctx, runs * 3),
                                                                                       (large_ctx, runs))]

    machine = (f"{cpu_name()}, {torch.get_num_threads()} threads, "
               f"torch {torch.__version__}, timm {timm.__version__}, smp {smp.__version__}, "
               f"torchvision {torchvision.__version__}, mfnet_zoo {mfnet_zoo.__version__}")
    lines = [
        "# Benchmarks", "",
        f"Written by `python benchmarks/run.py{' --quick' if args.quick else ''}` on {machine}. Random weights, "
        "batch 1, fp32 unless a row says otherwise; each table is one run of interleaved rounds (warm-up "
        "excluded), median latency. MACs from torch.utils.flop_counter. Peak MB: the tensors one call "
        "allocates (activations, and gradients in training; weights and input excluded), counted by "
        "`mfnet_zoo.profiling.peak_memory`. smp's DeepLabV3+ refuses 513 x 513, so it runs at 512 x 512.",
        "", f"## Whole models at {base[0]} x {base[1]}", "",
        f"Inference: eval mode, {runs} rounds. Training step: forward, `SegmentationLoss`, backward and SGD "
        f"on a batch of 2, {max(2, runs // 2)} rounds (folding is for inference only, so it has no row).", "",
        "![latency against MACs, point area ~ parameters](img/benchmarks.png)", "",
        "| model | params | GMACs | median ms | min ms | peak MB | vs our DeepLabV3+ | vs smp DeepLabV3+ "
        "| train step ms | train peak MB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in main_table.items():
        step = train.get(name)
        lines.append(f"| {name} | {r['parameters']:,} | {r['macs'] / 1e9:.1f} | {r['median_ms']:.0f} | "
                     f"{r['min_ms']:.0f} | {r['peak_memory_mb']:.0f} | {_ratio(main_table, name, OURS)} | "
                     f"{_ratio(main_table, name, SMP)} | "
                     + (f"{step['median_ms']:.0f} | {step['peak_memory_mb']:.0f} |" if step else "— | — |"))
    lines += ["", f"The headline pair again, alone, in {ab_rounds} interleaved rounds (fewer models, less drift "
              "between the rows):", "", "| model | median ms | min ms | vs our DeepLabV3+ |", "|---|---:|---:|---:|"]
    lines += [f"| {name} | {r['median_ms']:.0f} | {r['min_ms']:.0f} | {_ratio(ab, name, OURS)} |"
              for name, r in ab.items()]
    lines += ["", f"The light model and smp's DeepLabV3+ at the same {smp_base[0]} x {smp_base[1]} input, alone, in "
              f"{ab_rounds} interleaved rounds (at {base[0]} our deepest features are {-(-base[0] // 16)} x "
              f"{-(-base[0] // 16)}, smp's at {smp_base[0]} are {smp_base[0] // 16} x {smp_base[0] // 16}):", "",
              "| model | median ms | min ms | vs smp DeepLabV3+ |", "|---|---:|---:|---:|"]
    lines += [f"| {name} | {r['median_ms']:.0f} | {r['min_ms']:.0f} | {_ratio(ab_lite, name, SMP)} |"
              for name, r in ab_lite.items()]
    lines += ["", f"The fast model and smp's DeepLabV3+ alone, at {smp_base[0]} x {smp_base[1]} unless the row says "
              "otherwise, interleaved; the ratio is the median over rounds of each round's pair "
              "(`mfnet_zoo.benchmark.paired_ratio`; docs/fast-design.md has the decoder widths and contexts):", "",
              "| setting | rounds | smp median ms | fast median ms | fast / smp (paired) |", "|---|---:|---:|---:|---:|"]
    for setting, results in fast_pairs.items():
        table = _by_name(results)
        lines.append(f"| {setting} | {len(table[SMP]['rounds_ms'])} | {table[SMP]['median_ms']:.0f} | "
                     f"{table[FAST]['median_ms']:.0f} | {paired_ratio(results, FAST, SMP):.3f}x |")
    lines += ["", f"## Whole models at {large[0]} x {large[1]}", "",
              f"{max(2, runs // 3)} interleaved rounds after one warm-up (seconds per forward here), so these rows "
              "are noisier than the ones above.", "",
              "| model | median ms | min ms | vs our DeepLabV3+ | vs smp DeepLabV3+ |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {name} | {r['median_ms']:.0f} | {r['min_ms']:.0f} | {_ratio(large_table, name, OURS)} | "
              f"{_ratio(large_table, name, SMP)} |" for name, r in large_table.items()]
    lines += ["", "## Memory layout and bf16 on this CPU", "",
              f"Inference at {base[0]} x {base[1]} ({smp_base[0]} for smp), interleaved; channels_last converts "
              "the model and, inside the timed call, the input. The ratio is to the same model in fp32 NCHW.", "",
              "| model, dtype, layout | median ms | vs fp32 NCHW |", "|---|---:|---:|"]
    for name, r in layout.items():
        lines.append(f"| {name} | {r['median_ms']:.0f} | {_ratio(layout, name, name.split(',')[0] + ', fp32')} |")
    lines += ["", f"Training steps of mfnet_r50 (batch 2, {base[0]} x {base[1]}), interleaved:", "",
              "| variant | step ms | vs fp32 NCHW |", "|---|---:|---:|"]
    lines += [f"| {name} | {r['median_ms']:.0f} | {_ratio(layout_train, name, 'mfnet_r50, fp32')} |"
              for name, r in layout_train.items()]
    lines += ["", "So on this CPU, channels_last alone " + verdict(
        [layout[f"{n}, fp32, channels_last"]["median_ms"] / layout[f"{n}, fp32"]["median_ms"] for n in layout_names]
        + [layout_train["mfnet_r50, fp32, channels_last"]["median_ms"] / layout_train["mfnet_r50, fp32"]["median_ms"]])
        + "; bf16 autocast with channels_last " + verdict(
        [layout[f"{n}, bf16, channels_last"]["median_ms"] / layout[f"{n}, fp32"]["median_ms"] for n in layout_names]
        + [layout_train["mfnet_r50, bf16, channels_last"]["median_ms"] / layout_train["mfnet_r50, fp32"]["median_ms"]])
        + " (ratios of the rows above, inference models then the training step)."]
    for shape, table in zip((small_ctx, large_ctx), ctx, strict=True):
        lines += ["", f"## Context blocks alone on {shape[1]} x {shape[2]} x {shape[3]}", "",
                  "| block | GMACs | median ms | peak MB | MACs vs ASPP | time vs ASPP |",
                  "|---|---:|---:|---:|---:|---:|"]
        lines += [f"| {name} | {r['macs'] / 1e9:.2f} | {r['median_ms']:.1f} | {r['peak_memory_mb']:.1f} | "
                  f"{_ratio(table, name, 'ASPP (256 out)', 'macs')} | {_ratio(table, name, 'ASPP (256 out)')} |"
                  for name, r in table.items()]
    nmf, aspp = "FactorizationContext nmf, width 512", "ASPP (256 out)"
    pixels = (large_ctx[2] * large_ctx[3]) / (small_ctx[2] * small_ctx[3])
    lines += ["", "NMF cost grows linearly with the number of pixels: "
              f"{ctx[1][nmf]['median_ms'] / ctx[0][nmf]['median_ms']:.2f}x the time and "
              f"{ctx[1][nmf]['macs'] / ctx[0][nmf]['macs']:.2f}x the MACs for {pixels:.2f}x the pixels."]
    headline = [
        "| ratio (CPU, batch 1, measured by benchmarks/run.py) | value |", "|---|---:|",
        f"| mfnet_r50 folded / deeplabv3plus_r50 latency at {base[0]} ({ab_rounds}-round A/B) | "
        f"{_ratio(ab, folded, OURS)} |",
        f"| mfnet_r50 / deeplabv3plus_r50 parameters | {_ratio(main_table, 'mfnet_r50', OURS, 'parameters')} |",
        f"| mfnet_lite_r50 folded / smp DeepLabV3Plus latency at {smp_base[0]} ({ab_rounds}-round A/B) | "
        f"{_ratio(ab_lite, lite, SMP)} |",
        f"| fast_deeplab_r50 / smp DeepLabV3Plus latency at {smp_base[0]} ({fast_rounds}-round A/B, paired; "
        f"target <= {FAST_TARGET}x) | {paired_ratio(fast_pairs['fp32'], FAST, SMP):.3f}x |",
        f"| folded context / ASPP time on 2048 x {small_ctx[2]} x {small_ctx[3]} | "
        f"{ctx[0]['FactorizationContext static, folded']['median_ms'] / ctx[0][aspp]['median_ms']:.3f}x |",
        f"| NMF context (width 512) / ASPP time on 2048 x {small_ctx[2]} x {small_ctx[3]} | "
        f"{_ratio(ctx[0], nmf, aspp)} |",
    ]
    lines += ["", "## Headline (also in README.md)", "", *headline, ""]
    out = Path(args.out)
    plot_models(main_table, out.parent / "img" / "benchmarks.png",
                f"Whole models at {base[0]} x {base[1]} ({smp_base[0]} for smp), random weights; "
                "point area ~ parameters")
    with atomic_path(out) as tmp:
        tmp.write_text(with_kept_blocks("\n".join(lines) + "\n", out.read_text() if out.is_file() else ""))
    readme = ROOT / "README.md"
    text = readme.read_text()
    block = "<!-- benchmarks:start -->\n" + "\n".join(headline) + "\n<!-- benchmarks:end -->"
    if not args.quick and "<!-- benchmarks:start -->" in text:
        with atomic_path(readme) as tmp:
            tmp.write_text(re.sub(r"<!-- benchmarks:start -->.*<!-- benchmarks:end -->", lambda _: block, text,
                                  flags=re.DOTALL))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
