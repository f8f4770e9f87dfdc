"""Parameter, MAC and peak-memory counts, shared by ``mfnet-zoo info``, the zoo table and the benchmarks."""
from __future__ import annotations

import weakref
from collections.abc import Callable

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch.utils.flop_counter import FlopCounterMode

from ._deprecations import moved_names

__all__ = ["count_parameters", "count_macs", "peak_memory"]

__getattr__ = moved_names(__name__, {"model_info": "mfnet_zoo.info"})  # what a model is: not a measurement


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (buffers such as BN statistics or EM bases not included)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


@torch.no_grad()
def count_macs(model: nn.Module, input_size: tuple[int, ...] = (1, 3, 513, 513)) -> int:
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


class _LiveStorages(TorchDispatchMode):
    """Bytes of the tensor storages that ops create, while they are alive; the high-water mark is ``peak``.

    Storages are keyed by identity (views share one) and released by a weakref finalizer, so this is what
    a caching allocator's "max allocated" would say for the same ops, on any device.
    """

    def __init__(self) -> None:
        super().__init__()
        self.current = self.peak = 0
        self._live: dict[int, int] = {}

    def _release(self, key: int) -> None:
        self.current -= self._live.pop(key, 0)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = {id(t.untyped_storage()) for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)}
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor) and t.device.type != "meta":
                storage = t.untyped_storage()
                key = id(storage)
                if key not in self._live and key not in inputs:  # views and in-place ops allocate nothing
                    self._live[key] = storage.nbytes()
                    self.current += self._live[key]
                    self.peak = max(self.peak, self.current)
                    weakref.finalize(storage, self._release, key)
        return out


def peak_memory(fn: Callable[[], object]) -> int:
    """Peak bytes of tensors allocated while ``fn()`` runs (activations, gradients, optimizer state; not
    the tensors that existed before). Works on CPU, where there is no allocator counter; slow, so
    call it outside timed runs. On CUDA, ``torch.cuda.max_memory_allocated`` gives the same figure
    plus what already existed."""
    with _LiveStorages() as live:
        fn()
    return live.peak
