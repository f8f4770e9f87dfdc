"""Parameter and MAC counts (torch.utils.flop_counter), shared by the CLI, docs and benchmarks."""
from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

__all__ = ["count_parameters", "count_macs"]


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (buffers such as BN statistics or EM bases not included)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


@torch.no_grad()
def count_macs(model: nn.Module, input_size: tuple[int, int, int, int] = (1, 3, 513, 513)) -> int:
    """Multiply-accumulates of one eval forward on a B x C x H x W input (FLOPs / 2)."""
    was_training = model.training
    model.eval()
    try:
        param = next(model.parameters(), None)
        x = torch.zeros(input_size, device=param.device if param is not None else "cpu")
        with FlopCounterMode(display=False) as counter:
            model(x)
    finally:
        model.train(was_training)
    return counter.get_total_flops() // 2
