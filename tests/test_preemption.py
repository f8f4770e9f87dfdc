"""Preemption, in-process: mid-epoch checkpoints that resume exactly, one command line for the first start and
every restart, save_every outside the run's config, a full disk, a changed process count, and
DistributedDataParallel's find_unused_parameters decided from the context's state. (The torchrun scenarios,
with real process deaths and restarts, are in test_resume_ddp.py.)"""
import errno
import json

import pytest
import torch

import mfnet_zoo.checkpoint
import mfnet_zoo.train
from mfnet_zoo import create_model
from mfnet_zoo.data import DataOptions, SyntheticShapes, train_transforms
from mfnet_zoo.layers import set_context_state
from mfnet_zoo.presets import TrainConfig
from mfnet_zoo.train import LAST, Trainer, load_checkpoint, seed_everything
from mfnet_zoo.workflows import train

from .conftest import TINY, TINY_IDS

# 24 scenes of 32 px in batches of 4: 6 micro-batches an epoch; the default augmentation draws from every RNG
CFG = TrainConfig(epochs=2, batch_size=4, crop_size=32, lr=0.02, context_warmup_epochs=1)
DATA = DataOptions("synthetic", synthetic_size=24, image_size=32)


class Preempted(Exception):
    """Stands for the process dying right after a checkpoint was written."""


def run(out, cfg=CFG, **kwargs):
    return train("mfnet", cfg, out, data=DATA, encoder="test_resnet", encoder_weights=None, device="cpu",
                 progress=False, **kwargs)


def preempt_after(monkeypatch, epoch, batches):
    """Die right after the checkpoint of ``epoch`` completed epochs and ``batches`` micro-batches is written."""
    write = mfnet_zoo.train.write_checkpoint

    def write_then_die(path, state):
        written = write(path, state)
        if state["epoch"] == epoch and (state["progress"] or {"batches": 0})["batches"] == batches:
            raise Preempted(path)
        return written

    monkeypatch.setattr(mfnet_zoo.train, "write_checkpoint", write_then_die)


def assert_same_weights(a_out, b_out):
    a, b = (load_checkpoint(out / LAST)[0].state_dict() for out in (a_out, b_out))
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


def records(out):
    """metrics.jsonl without its timings."""
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    for line in lines:
        line.pop("seconds")
        for key in ("seconds", "it_per_s"):
            line["train"].pop(key)
    return lines


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """The uninterrupted runs (accumulation 1 and 2), without mid-epoch saves."""
    outs = {}
    for accum in (1, 2):
        outs[accum] = tmp_path_factory.mktemp(f"straight{accum}")
        run(outs[accum], CFG.replace(grad_accum_steps=accum))
    return outs


@pytest.mark.parametrize("accum", [1, 2])
def test_a_run_killed_mid_epoch_resumes_to_the_same_weights_and_records(straight, tmp_path, monkeypatch, accum):
    cfg = CFG.replace(grad_accum_steps=accum, save_every=1)
    preempt_after(monkeypatch, epoch=1, batches=2 * accum)  # in the second epoch, after the context's warm-up
    with pytest.raises(Preempted):
        run(tmp_path, cfg)
    checkpoint = torch.load(tmp_path / LAST, weights_only=True)
    assert checkpoint["epoch"] == 1 and checkpoint["progress"]["batches"] == 2 * accum
    assert len(checkpoint["rng"]) == len(checkpoint["epoch_rng"]) == 1  # one per process
    monkeypatch.undo()
    run(tmp_path, cfg.replace(save_every=3), resume=True)  # save_every is not part of the run's config
    assert_same_weights(straight[accum], tmp_path)
    assert records(tmp_path) == records(straight[accum])


def test_resume_without_a_checkpoint_starts_afresh(straight, tmp_path):
    """One command line serves the first start and every restart."""
    run(tmp_path, resume=True)
    assert_same_weights(straight[1], tmp_path)


def test_a_full_disk_stops_the_run_and_keeps_the_last_good_checkpoint(straight, tmp_path, monkeypatch):
    save = torch.save

    def half_then_enospc(obj, f):
        if obj["epoch"] == 2:  # the second epoch's checkpoint: half written, then the disk is full
            save({"partial": torch.zeros(10)}, f)
            raise OSError(errno.ENOSPC, "No space left on device")
        save(obj, f)

    monkeypatch.setattr(mfnet_zoo.checkpoint.torch, "save", half_then_enospc)
    with pytest.raises(OSError, match=r"cannot write checkpoint .*last\.pt' \(No space left on device\); the "
                                      r"previous last\.pt is kept"):
        run(tmp_path)
    monkeypatch.undo()
    assert load_checkpoint(tmp_path / LAST)[1]["epoch"] == 1
    assert len(records(tmp_path)) == 1  # the log stays with the checkpoint that survived
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temporary left
    run(tmp_path, resume=True)  # space again: the run ends as if nothing happened
    assert_same_weights(straight[1], tmp_path)


def test_another_process_count_keeps_the_global_batch_or_refuses(tmp_path, monkeypatch):
    run(tmp_path, CFG.replace(epochs=1))
    monkeypatch.setattr(mfnet_zoo.train, "world_size", lambda: 2)  # a one-process checkpoint seen by two
    with pytest.raises(ValueError, match=r"on 2 processes: it was trained on 1 process\(es\) x 1 accumulation "
                                         r"step\(s\), a global batch of 1 x 4 images"):
        run(tmp_path, CFG.replace(epochs=1), resume=True)


def _ddp_trainer(name, kwargs, cfg):
    model = create_model(name, **kwargs)
    data = SyntheticShapes(8, 32, seed=0, transforms=train_transforms(32, None, False))
    loader = torch.utils.data.DataLoader(data, batch_size=2, generator=seed_everything(0))
    return Trainer(model, loader, None, cfg, "unused"), loader


@pytest.fixture
def process_group():
    """A one-process gloo group: DDP checks for parameters without a gradient as it would with many."""
    torch.distributed.init_process_group("gloo", store=torch.distributed.HashStore(), rank=0, world_size=1)
    yield
    torch.distributed.destroy_process_group()


@pytest.mark.parametrize("name,kwargs", TINY, ids=TINY_IDS)
def test_find_unused_parameters_only_while_the_context_leaves_some(name, kwargs, process_group):
    """Every family trains under DDP through the warm-up switch; DDP itself fails if the flag is off where
    needed ("Expected to have finished reduction in the prior iteration")."""
    trainer, loader = _ddp_trainer(name, kwargs, CFG)
    flags = []
    for state in ("off", "on"):
        set_context_state(trainer.model.context, state)
        trainer._wrap()
        flags.append(trainer.train_model.find_unused_parameters)
        mfnet_zoo.train.train_one_epoch(trainer.train_model, loader, trainer.criterion, trainer.optimizer,
                                        progress=False)
    family = name.split("_")[0]
    if family in ("mfnet",) and trainer.model.context.mode == "static":  # "off" skips Y, Z (and the embedding)
        assert flags == [True, False]
    if family in ("deeplabv3plus",):
        assert flags == [False, False]
    if family == "emanet":  # EMANet's conv1 gets no gradient in its published mode ("none")
        assert flags == [trainer.model.context.bases_grad == "none"] * 2
