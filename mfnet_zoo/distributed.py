"""torch.distributed for the engine: joining torchrun's process group (restart-safe), rank and world size,
the samplers that split data over processes (training: shuffled shards; evaluation: every image once),
and gathering one object from every process.

**Restarts.** Under ``torchrun --max-restarts N`` the agent restarts every worker when one dies. Since
torch 2.5 the workers share the agent's TCPStore (``TORCHELASTIC_USE_AGENT_STORE``), and that store keeps
the previous round's keys: a restarted worker can read a dead peer's address and fail in
``init_process_group`` ("Gloo connectFullMesh failed ... Connection refused"; pytorch/pytorch#135712,
#167288). A prefix from ``TORCHELASTIC_RESTART_COUNT`` is not safe (the count is per agent). So
:func:`init_distributed` uses the agent's store only to find a store of this round: rank 0 serves a new
one on a free port and announces ``port:nonce``; the others connect and check the nonce, so an
announcement left by an earlier round (a dead port, or a reused one with another nonce) is skipped.
"""
from __future__ import annotations

import atexit
import datetime
import os
import socket
import time
import uuid
from typing import Any

import torch
from torch.utils.data import Dataset, DistributedSampler, Subset

__all__ = ["init_distributed", "rank", "world_size", "shard_dataset", "train_sampler", "all_gather", "barrier"]

_ANNOUNCE = "mfnet_zoo/round_store"  # in the agent's store: "port:nonce" of this round's store
_TIMEOUT = datetime.timedelta(minutes=30)  # init_process_group's own default
_round_store: Any = None  # rank 0's server of this round's store: alive as long as the process


def _initialized() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def rank() -> int:
    """This process's rank in the process group (0 without one)."""
    return torch.distributed.get_rank() if _initialized() else 0


def world_size() -> int:
    """The number of processes in the group (1 without one)."""
    return torch.distributed.get_world_size() if _initialized() else 1


def _fresh_store(rank: int, world: int, timeout: datetime.timedelta) -> torch.distributed.Store:
    """A store no earlier restart round has written to, found through the agent's shared store."""
    global _round_store
    host, port = os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"])
    agent = torch.distributed.TCPStore(host, port, None, False, timeout)
    if rank == 0:
        _round_store = torch.distributed.TCPStore(host, 0, world, True, timeout, wait_for_workers=False)
        nonce = uuid.uuid4().hex
        _round_store.set("nonce", nonce)
        agent.set(_ANNOUNCE, f"{_round_store.port}:{nonce}")
        return _round_store
    deadline = time.monotonic() + timeout.total_seconds()
    while True:
        announced_port, nonce = agent.get(_ANNOUNCE).decode().split(":")
        # an earlier round's port is dead (probed quietly: TCPStore would log its retries) or someone else's
        if _listening(host, int(announced_port)):
            try:
                store = torch.distributed.TCPStore(host, int(announced_port), None, False,
                                                   datetime.timedelta(seconds=5))
                if store.get("nonce").decode() == nonce:
                    store.set_timeout(timeout)
                    return store
            except RuntimeError:  # DistStoreError, DistNetworkError: not a store, or not this round's
                pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"rank {rank}: no store of this restart round announced by rank 0 within "
                               f"{timeout} (agent store {host}:{port})")
        time.sleep(0.2)


def _listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def init_distributed() -> tuple[int, int]:
    """(rank, world size); joins the process group torchrun describes (gloo on CPU, nccl on CUDA), safe
    under elastic restarts (see the module docstring), and leaves it when the process exits."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not _initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True":
            this = int(os.environ["RANK"])
            store = _fresh_store(this, world, _TIMEOUT)
            torch.distributed.init_process_group(backend, store=store, rank=this, world_size=world, timeout=_TIMEOUT)
        else:
            torch.distributed.init_process_group(backend)
        # a process that exits with a live gloo group can abort in the interpreter's finalization: gloo's worker
        # threads still hold work with Python references ("terminate called without an active exception",
        # SIGABRT; pytorch/pytorch#190489). Leave the group while the interpreter is whole.
        atexit.register(_leave)
    return (torch.distributed.get_rank() if world > 1 else 0), world


def _leave() -> None:
    if _initialized():
        torch.distributed.destroy_process_group()


def barrier() -> None:
    """Wait for every process (nothing without a process group)."""
    if _initialized():
        torch.distributed.barrier()


def all_gather(obj: Any) -> list[Any]:
    """``obj`` of every process, in rank order (``[obj]`` without a process group); picklable objects."""
    if not _initialized():
        return [obj]
    gathered: list[Any] = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(gathered, obj)
    return gathered


def shard_dataset(dataset: Dataset, rank: int, world: int) -> Dataset:
    """Every world-th item from rank: each image evaluated once over all processes (no padding)."""
    return dataset if world == 1 else Subset(dataset, range(rank, len(dataset), world))


def train_sampler(dataset: Dataset, rank: int, world: int, seed: int) -> DistributedSampler | None:
    """The training sampler for ``world`` processes: a shuffled shard per process (the same ``seed`` on
    every one, whole batches only); None for one process (the loader shuffles)."""
    return DistributedSampler(dataset, world, rank, shuffle=True, seed=seed, drop_last=True) if world > 1 else None
