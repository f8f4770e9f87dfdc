"""What preemption safety costs in training, on the CPU, as markdown tables (docs/training.md quotes them).

    python benchmarks/preemption_cost.py save-every            # --save-every 50 against none, on the demo
    torchrun --standalone --nproc-per-node 2 benchmarks/preemption_cost.py find-unused   # DDP, 2 processes

save-every: the demo's training (``mfnet_zoo.demo``: the 0.6M-parameter mfnet, 64 x 64, batch 8, 200
optimizer steps an epoch) for one epoch, with checkpoints at epoch ends only and with one more every 50 steps
(3 mid-epoch ``last.pt``, each with every RNG state), in interleaved rounds. Each epoch's train seconds from
metrics.jsonl (the evaluation is the same in both and left out).

find-unused: the demo's model under DistributedDataParallel (gloo), one training step (forward, the zoo's loss,
backward with the all-reduce, AdamW) with ``find_unused_parameters=True`` (what the engine always used before)
and ``False`` (what it uses now when the context's state leaves no parameter without a gradient), interleaved
rounds of ``--steps`` steps each; rank 0 prints the median ms per step and the ratio.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from mfnet_zoo.run_record import cpu_name


def save_every(rounds: int, every: int) -> None:
    import json

    import mfnet_zoo.demo as demo

    seconds: dict[str, list[float]] = {"epoch ends only": [], f"every {every} steps": []}
    base = demo.DEMO_CONFIG
    for _ in range(rounds):
        for label, value in (("epoch ends only", None), (f"every {every} steps", every)):
            demo.DEMO_CONFIG = base.replace(save_every=value)
            with tempfile.TemporaryDirectory() as out:
                demo.run_demo(out, epochs=1, progress=False)
                record = json.loads((Path(out) / "metrics.jsonl").read_text().splitlines()[0])
            seconds[label].append(record["train"]["seconds"])
    demo.DEMO_CONFIG = base
    reference = statistics.median(seconds["epoch ends only"])
    print(f"demo epoch (200 steps), {cpu_name()}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{rounds} interleaved rounds\n")
    print("| checkpoints | train s / epoch (median) | min | ratio |\n|---|---|---|---|")
    for label, values in seconds.items():
        print(f"| {label} | {statistics.median(values):.2f} | {min(values):.2f} | "
              f"{statistics.median(values) / reference:.3f} |")


def find_unused(rounds: int, steps: int) -> None:
    from torch import nn

    from mfnet_zoo import create_model
    from mfnet_zoo.distributed import init_distributed
    from mfnet_zoo.losses import SegmentationLoss

    rank, world = init_distributed()
    torch.manual_seed(0)
    model = create_model("mfnet", encoder="test_resnet", num_classes=6, output_stride=8, base_size=(8, 8),
                         decoder_channels=64)
    criterion = SegmentationLoss()
    images, masks = torch.randn(8, 3, 64, 64), torch.randint(0, 6, (8, 64, 64))
    ms: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(rounds):
        for flag in (True, False):
            ddp = nn.parallel.DistributedDataParallel(model, find_unused_parameters=flag)
            optimizer = torch.optim.AdamW(ddp.parameters(), lr=1e-3)

            def step() -> None:
                loss = criterion(ddp(images), masks)
                loss.backward()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)

            step()  # warm-up (and DDP's first-iteration bookkeeping)
            torch.distributed.barrier()
            start = time.perf_counter()
            for _ in range(steps):
                step()
            ms[flag].append((time.perf_counter() - start) / steps * 1000)
    if rank == 0:
        before = statistics.median(ms[True])
        print(f"DDP (gloo), {world} processes, {cpu_name()}, torch {torch.__version__}, "
              f"{torch.get_num_threads()} thread(s) each, demo model, batch 8 x 64 x 64 per "
              f"process, {rounds} interleaved rounds of {steps} steps\n")
        print("| find_unused_parameters | ms / step (median) | min | ratio |\n|---|---|---|---|")
        for flag, values in ms.items():
            print(f"| {flag} | {statistics.median(values):.1f} | {min(values):.1f} | "
                  f"{statistics.median(values) / before:.3f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=("save-every", "find-unused"))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--every", type=int, default=50, help="save-every: steps between checkpoints")
    parser.add_argument("--steps", type=int, default=20, help="find-unused: timed steps per round")
    args = parser.parse_args()
    if args.what == "save-every":
        save_every(args.rounds, args.every)
    else:
        find_unused(args.rounds, args.steps)


if __name__ == "__main__":
    main()
