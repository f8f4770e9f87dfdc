"""DistributedDataParallel training equals one process on the same global batch, bit for bit.

Two gloo processes with batches of 2 against one process with accumulation 2 over the same micro-batches
(rank 0's batch, then rank 1's, as DistributedSampler deals them). What would differ for reasons other than
the engine is set aside, and said: no dropout (it draws the same masks in both processes, other masks in
one), no random augmentation, and the parameters are compared, not BatchNorm's running statistics (DDP
broadcasts rank 0's before every forward; one process updates them with both micro-batches). BatchNorm's
normalisation itself is per micro-batch in both, so it does not differ."""
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

from mfnet_zoo import create_model
from mfnet_zoo.data import SYNTHETIC_CLASSES, SyntheticShapes, eval_transforms
from mfnet_zoo.presets import TrainConfig
from mfnet_zoo.train import LAST, Trainer

CFG = TrainConfig(epochs=2, batch_size=2, lr=0.05, crop_size=32, seed=0)
WORLD = 2


def _model() -> nn.Module:
    torch.manual_seed(0)
    model = create_model("deeplabv3plus", encoder="test_resnet", num_classes=len(SYNTHETIC_CLASSES), decoder_channels=16, aspp_dropout=0.0)
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0
    return model


def _dataset():
    return SyntheticShapes(16, 32, seed=0, transforms=eval_transforms())


class _Interleaved:
    """One process's batch sampler for the global batches of ``WORLD`` processes: rank 0's batch k, rank 1's
    batch k, ...; a new epoch (the DistributedSamplers' set_epoch) each time it is iterated."""

    def __init__(self, dataset) -> None:
        self.samplers = [DistributedSampler(dataset, WORLD, r, shuffle=True, seed=CFG.seed, drop_last=True)
                         for r in range(WORLD)]
        self.epoch = 0

    def __iter__(self):
        shards = []
        for sampler in self.samplers:
            sampler.set_epoch(self.epoch)
            shards.append(list(sampler))
        self.epoch += 1
        for k in range(0, len(shards[0]), CFG.batch_size):
            for shard in shards:
                yield shard[k:k + CFG.batch_size]

    def __len__(self) -> int:
        return WORLD * len(self.samplers[0]) // CFG.batch_size


def _ddp_worker(rank: int, store: str, out: str) -> None:
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=WORLD)
    try:
        dataset = _dataset()
        sampler = DistributedSampler(dataset, WORLD, rank, shuffle=True, seed=CFG.seed, drop_last=True)
        loader = DataLoader(dataset, batch_size=CFG.batch_size, sampler=sampler, drop_last=True)
        Trainer(_model(), loader, None, CFG, out, progress=False).fit()
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.slow
def test_two_processes_equal_one_process_with_accumulation_on_the_same_global_batch(tmp_path):
    mp.spawn(_ddp_worker, args=(str(tmp_path / "store"), str(tmp_path / "ddp")), nprocs=WORLD, join=True)
    loader = DataLoader(_dataset(), batch_sampler=_Interleaved(_dataset()))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each DDP process: another thread count sums convolutions in another order
    try:
        Trainer(_model(), loader, None, CFG.replace(grad_accum_steps=WORLD), tmp_path / "one", progress=False).fit()
    finally:
        torch.set_num_threads(threads)
    ddp, one = (torch.load(Path(tmp_path, run, LAST), weights_only=True) for run in ("ddp", "one"))
    assert ddp["scheduler"]["last_epoch"] == one["scheduler"]["last_epoch"] == 8  # 2 epochs of 4 steps of 4 images
    parameters = {name for name, _ in _model().named_parameters()}
    moved = 0
    for name in parameters:
        assert torch.equal(ddp["state_dict"][name], one["state_dict"][name]), name
        moved += not torch.equal(ddp["state_dict"][name], _model().state_dict()[name])
    assert moved == len(parameters)  # every parameter trained: the comparison is not of untouched weights
