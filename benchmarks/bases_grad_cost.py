"""What each ``bases_grad`` mode costs in training: step time and peak memory on CPU, as a markdown table.

    python benchmarks/bases_grad_cost.py                 # (a) the context study's blocks, (b) mfnet_r50 NMF at 513
    python benchmarks/bases_grad_cost.py --skip-model    # (a) alone: seconds
    python benchmarks/bases_grad_cost.py --threads 1     # one intra-op thread (steadier on a busy machine)

(a) ``create_context`` blocks at the context study's size (benchmarks/context_study.py: test_resnet at 224 px,
output stride 16, so 96 x 14 x 14 features; width 96, rank 16, 64 output channels; its training batch, 8). One
step: forward, a loss (a fixed random projection of the output, plus the reconstruction MSE where the block
gives a pair), backward to the parameters and the input features.
(b) the whole ``mfnet_r50`` in NMF mode (2048 -> 512 channels, rank 64, 33 x 33 features), 513 x 513, batch 1:
:func:`mfnet_zoo.benchmark.benchmark_training`'s step (forward, the zoo's loss with its reconstruction term,
backward, SGD). ``model.context.bases_grad`` is set on the built model. Its context block alone, on the
1 x 2048 x 33 x 33 features, with the step of (a): the difference the mode makes, without the encoder's
seconds and their noise around it.

Time: median and min over interleaved rounds (each round runs every mode once, so machine drift hits all
alike), after a warm-up. Peak memory: :func:`mfnet_zoo.profiling.peak_memory`, the high-water mark of the
tensor storages one step allocates (activations, autograd's saved tensors, gradients; the weights and inputs
that existed before are not counted), measured by tracking every op's output storage until it is freed: what
a caching allocator's "max allocated" would say, without the allocator's own overhead or RSS noise.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
import torch.nn.functional as F

from mfnet_zoo import create_model
from mfnet_zoo.benchmark import benchmark_training
from mfnet_zoo.layers import EMAUnit, FactorizationContext, create_context
from mfnet_zoo.layers.factorization import BASES_GRAD
from mfnet_zoo.profiling import peak_memory
from mfnet_zoo.run_record import cpu_name

# the context study's block size (benchmarks/context_study.py: Study, ENCODER test_resnet, STRIDE 16)
STUDY = {"in_channels": 96, "out_channels": 64, "width": 96, "rank": 16, "grid": 224 // 16, "batch": 8}
BLOCKS = ("nmf", "nmf-hamburger", "ema")  # the -unrolled names are these with bases_grad="unrolled"


def _owner(block: torch.nn.Module) -> torch.nn.Module:
    (owner,) = [m for m in block.modules()
                if isinstance(m, EMAUnit) or (isinstance(m, FactorizationContext) and m.mode == "nmf")]
    return owner


def _block_step(name: str, mode: str):
    torch.manual_seed(0)  # the same weights in every mode: the same forward
    block = create_context(name, STUDY["in_channels"], STUDY["out_channels"], width=STUDY["width"],
                           rank=STUDY["rank"], base_size=(STUDY["grid"], STUDY["grid"]))
    return _step(block, mode, (STUDY["batch"], STUDY["in_channels"], STUDY["grid"], STUDY["grid"]),
                 STUDY["out_channels"])


def _step(block: torch.nn.Module, mode: str, shape: tuple[int, ...], out_channels: int):
    """One training step of ``block`` in ``mode`` on a fixed B x C x h x w input; (step, the block's default)."""
    block.train()
    default = _owner(block).bases_grad
    _owner(block).bases_grad = mode
    g = torch.Generator().manual_seed(1)
    x = torch.randn(*shape, generator=g)
    weight = torch.randn(1, out_channels, *shape[2:], generator=g)  # a fixed random projection of the output
    pair = isinstance(block, FactorizationContext)

    def step():
        features = x.clone().requires_grad_(True)  # as the encoder's output: its gradient is computed too
        if pair:
            out, rec = block(features, return_reconstruction=True)
            loss = (out * weight).mean() + F.mse_loss(rec.estimate, rec.target)
        else:
            loss = (block(features) * weight).mean()
        block.zero_grad(set_to_none=True)
        loss.backward()

    return step, default


def _interleaved(steps: dict, runs: int, warmup: int) -> dict:
    for step in steps.values():
        for _ in range(warmup):
            step()
    times = {key: [] for key in steps}
    for _ in range(runs):
        for key, step in steps.items():
            start = time.perf_counter()
            step()
            times[key].append(time.perf_counter() - start)
    return {key: (statistics.median(t) * 1e3, min(t) * 1e3) for key, t in times.items()}


def measure_blocks(runs: int) -> list[dict]:
    steps, defaults = {}, {}
    for name in BLOCKS:
        for mode in BASES_GRAD:
            steps[name, mode], defaults[name] = _block_step(name, mode)
    timed = _interleaved(steps, runs, warmup=2)
    rows = []
    for (name, mode), step in steps.items():
        rows.append({"what": f"`{name}` block, {STUDY['batch']} x {STUDY['in_channels']} x {STUDY['grid']}"
                             f" x {STUDY['grid']}", "mode": mode, "default": mode == defaults[name],
                     "median_ms": timed[name, mode][0], "min_ms": timed[name, mode][1],
                     "peak_mb": peak_memory(step) / 2**20, "group": name})
    return rows


def measure_model_context(runs: int) -> list[dict]:
    """mfnet_r50's context block (NMF) alone, on its 1 x 2048 x 33 x 33 features (513 px at stride 16)."""
    steps = {}
    for mode in BASES_GRAD:
        torch.manual_seed(0)
        steps[mode], _ = _step(FactorizationContext(2048, 256, mode="nmf"), mode, (1, 2048, 33, 33), 256)
    timed = _interleaved(steps, runs, warmup=2)
    return [{"what": "`mfnet_r50`'s context alone (NMF, width 512, rank 64), 1 x 2048 x 33 x 33", "mode": mode,
             "default": mode == "one-step", "median_ms": timed[mode][0], "min_ms": timed[mode][1],
             "peak_mb": peak_memory(step) / 2**20, "group": "mfnet_r50 context"} for mode, step in steps.items()]


def measure_model(runs: int) -> list[dict]:
    def build(mode: str):
        def make():
            torch.manual_seed(0)
            model = create_model("mfnet_r50", mode="nmf")
            model.context.bases_grad = mode  # not a create_model argument (yet): set on the block
            return model
        return make

    results = benchmark_training({mode: build(mode) for mode in BASES_GRAD}, size=513, batch=1, runs=runs,
                                 warmup=1)
    return [{"what": "`mfnet_r50` (NMF), 1 x 3 x 513 x 513", "mode": r["model"], "default": r["model"] == "one-step",
             "median_ms": r["median_ms"], "min_ms": r["min_ms"], "peak_mb": r["peak_memory_mb"], "group": "mfnet_r50"}
            for r in results]


def table(rows: list[dict]) -> str:
    lines = ["| what | bases_grad | step median ms | min ms | time / default | peak MB | peak / default |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for row in rows:
        ref = next(r for r in rows if r["group"] == row["group"] and r["default"])
        mode = f"{row['mode']} (default)" if row["default"] else row["mode"]
        lines.append(f"| {row['what']} | {mode} | {row['median_ms']:.1f} | {row['min_ms']:.1f} | "
                     f"{row['median_ms'] / ref['median_ms']:.2f} | {row['peak_mb']:.1f} | "
                     f"{row['peak_mb'] / ref['peak_mb']:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--block-runs", type=int, default=30, help="timed rounds for the blocks (a)")
    parser.add_argument("--model-runs", type=int, default=3, help="timed rounds for mfnet_r50 (b)")
    parser.add_argument("--skip-model", action="store_true", help="measure the blocks (a) only")
    parser.add_argument("--threads", type=int, default=None,
                        help="intra-op threads (default: torch's); 1 keeps a loaded machine's numbers steady")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    rows = measure_blocks(args.block_runs)
    if not args.skip_model:
        rows += measure_model_context(args.block_runs) + measure_model(args.model_runs)
    print(f"CPU: {cpu_name()}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads; "
          "float32, train mode\n")
    print(table(rows))


if __name__ == "__main__":
    main()
