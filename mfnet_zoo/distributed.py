"""torch.distributed for the engine: joining torchrun's process group, rank and world size, and the
samplers that split data over processes (training: shuffled shards; evaluation: every image once)."""
from __future__ import annotations

import os

import torch
from torch.utils.data import Dataset, DistributedSampler, Subset

__all__ = ["init_distributed", "rank", "world_size", "shard_dataset", "train_sampler"]


def _initialized() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def rank() -> int:
    """This process's rank in the process group (0 without one)."""
    return torch.distributed.get_rank() if _initialized() else 0


def world_size() -> int:
    """The number of processes in the group (1 without one)."""
    return torch.distributed.get_world_size() if _initialized() else 1


def init_distributed() -> tuple[int, int]:
    """(rank, world size); joins the process group torchrun describes (gloo on CPU, nccl on CUDA)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not _initialized():
        torch.distributed.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return (torch.distributed.get_rank() if world > 1 else 0), world


def shard_dataset(dataset: Dataset, rank: int, world: int) -> Dataset:
    """Every world-th item from rank: each image evaluated once over all processes (no padding)."""
    return dataset if world == 1 else Subset(dataset, range(rank, len(dataset), world))


def train_sampler(dataset: Dataset, rank: int, world: int, seed: int) -> DistributedSampler | None:
    """The training sampler for ``world`` processes: a shuffled shard per process (the same ``seed`` on
    every one, whole batches only); None for one process (the loader shuffles)."""
    return DistributedSampler(dataset, world, rank, shuffle=True, seed=seed, drop_last=True) if world > 1 else None
