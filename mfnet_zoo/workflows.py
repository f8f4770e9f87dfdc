"""Whole jobs from Python, as the command line runs them: train a registered model on a named dataset, and
evaluate any model source on one. ``mfnet-zoo train`` and ``mfnet-zoo eval`` parse their options and call
:func:`train` and :func:`evaluate`; nothing else happens there.

Each wires the same pieces a user would: the dataset (:class:`~mfnet_zoo.data.DataOptions`), the model
(:func:`~mfnet_zoo.create_model` / :func:`~mfnet_zoo.load_model`), transforms from the encoder's
normalisation and the preset, loaders (a ``DistributedSampler`` under torchrun, every evaluation image
once over all processes, full VOC or folder images one at a time since their sizes may differ), and for
training the run record and the :class:`~mfnet_zoo.train.Trainer`.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from ._factory import create_model, load_model
from ._pretrained import resolve_data_config
from .data import DataOptions, build_eval_transforms, read_class_names
from .distributed import init_distributed, shard_dataset, train_sampler
from .inference import resolve_device
from .presets import TrainConfig
from .run_record import data_record
from .train import Trainer, evaluate as evaluate_loader, seed_everything

__all__ = ["TrainResult", "EvalResult", "train", "evaluate"]


@dataclasses.dataclass
class TrainResult:
    """What :func:`train` returns: the epochs' records (metrics.jsonl), the class names, this process's rank
    (only rank 0 wrote files) and the run folder."""

    history: list[dict[str, Any]]
    classes: list[str]
    rank: int
    out: Path


@dataclasses.dataclass
class EvalResult:
    """What :func:`evaluate` returns: the metrics (summed over processes), the class names, this process's rank."""

    metrics: dict[str, Any]
    classes: list[str]
    rank: int


def _normalisation(mean: Sequence[float] | None, std: Sequence[float] | None) -> dict[str, tuple[float, ...]]:
    overlay = {k: tuple(v) for k, v in (("mean", mean), ("std", std)) if v is not None}
    for key, value in overlay.items():
        if len(value) != 3 or (key == "std" and min(value) <= 0):
            rule = "3 numbers > 0" if key == "std" else "3 numbers"
            raise ValueError(f"{key} takes {rule} (one per RGB channel), got {','.join(map(str, value))}")
    return overlay


def train(model_name: str, cfg: TrainConfig, out: str | Path, *, data: DataOptions = DataOptions(),
          encoder: str | None = None, context: str | None = None, encoder_weights: str | bool | None = None,
          mean: Sequence[float] | None = None, std: Sequence[float] | None = None, num_classes: int | None = None,
          output_stride: int = 16, device: str = "auto", workers: int = 0, resume: bool = False,
          progress: bool = True, run_config: dict[str, Any] | None = None,
          log: Callable[[str], None] | None = print) -> TrainResult:
    """Train ``model_name`` (a registry name) with ``cfg`` on ``data``; every file goes to ``out``.

    ``encoder``/``context``: the generic families' encoder and context block; ``encoder_weights``: a timm
    tag, True (timm's default) or None (random), recorded in run.json as given; ``mean``/``std``: the
    normalisation (default: the encoder's); ``num_classes``: default the dataset's (a folder without
    class names: the highest label in its train masks + 1, said in one line and recorded in run.json).
    ``run_config`` adds what the caller knows to run.json (the CLI: its arguments and preset name).
    ``log`` takes the run's one-line notes on the main process: where the class count came from when the
    masks gave it, and one summary line per epoch (None: silent). Under torchrun each process calls this;
    the result's ``rank`` says which one wrote the files.
    """
    generator = seed_everything(cfg.seed)
    val_set, classes = data.build("val")
    mask_labels = getattr(val_set, "mask_labels", None)  # a folder whose masks gave the class count
    model_kwargs = {k: v for k, v in (("encoder", encoder), ("context", context)) if v}
    model = create_model(model_name, num_classes=num_classes or len(classes), encoder_weights=encoder_weights,
                         output_stride=output_stride, pretrained_cfg_overlay=_normalisation(mean, std) or None,
                         **model_kwargs)
    norm = resolve_data_config(model)  # normalise as the encoder's pretrained weights expect
    train_set, _ = data.build("train", cfg.train_transforms(mean=norm["mean"], std=norm["std"],
                                                            interpolation=norm["interpolation"]))
    val_set.transforms = cfg.eval_transforms(mean=norm["mean"], std=norm["std"])
    rank, world = init_distributed()
    sampler = train_sampler(train_set, rank, world, cfg.seed)
    train_loader = DataLoader(train_set, batch_size=cfg.batch_size, shuffle=sampler is None, sampler=sampler,
                              drop_last=True, num_workers=workers, generator=generator,
                              persistent_workers=workers > 0)
    if len(train_loader) == 0:  # whole batches only: a small folder would train on nothing
        raise ValueError(f"{len(train_set)} training images make no whole batch of {cfg.batch_size}"
                         f"{f' on each of {world} processes' if world > 1 else ''}: lower --batch-size "
                         f"(batch_size) to at most {len(train_set) // world}, or add images")
    val_loader = DataLoader(shard_dataset(val_set, rank, world), num_workers=workers,
                            batch_size=1 if data.full_images(cfg.eval_protocol) else cfg.batch_size)
    record = dict(run_config or {})
    record["model"] = {**record.get("model", {}), "encoder_weights": encoder_weights or "none"}
    record["data"] = data_record(data.name, root=data.root, sbd_root=data.sbd_root, classes=classes,
                                 train_images=len(train_set), eval_images=len(val_set),
                                 image_size=getattr(train_set, "size", None) if data.name.startswith("synthetic")
                                 else None, classes_from=getattr(val_set, "class_source", None),
                                 unseen_classes=list(mask_labels.unseen) if mask_labels else None)
    log = log if rank == 0 else None
    if log is not None and mask_labels is not None:
        log(mask_labels.describe())
    trainer = Trainer(model, train_loader, val_loader, cfg, out, device=resolve_device(device, rank),
                      class_names=classes, progress=progress, resume=resume, run_config=record)
    history = trainer.fit(on_epoch_end=None if log is None else lambda epoch: log(_epoch_summary(epoch, cfg.epochs)))
    return TrainResult(history, list(classes), rank, Path(out))


def _epoch_summary(record: dict[str, Any], epochs: int) -> str:
    """One line on an epoch (a line of metrics.jsonl): its loss, validation mIoU and time."""
    val = record.get("val")
    return (f"epoch {record['epoch']}/{epochs}: loss {record['train']['loss']:.4f}"
            + (f", val mIoU {val['mIoU']:.3f}" if val else "") + f" ({record['seconds']:.1f} s)")


def evaluate(source: str | Path, *, data: DataOptions = DataOptions(), split: str = "val", protocol: str = "full",
             crop_size: int = 513, batch_size: int = 8, device: str = "auto", workers: int = 0, amp: str = "none",
             channels_last: bool = False, scales: Sequence[float] = (1.0,), flip: bool = False,
             window: int | None = None, progress: bool = True) -> EvalResult:
    """Metrics of the model ``source`` (any source :func:`~mfnet_zoo.load_model` takes) on ``split`` of
    ``data``, under ``protocol`` (``"full"`` images, or ``"paper"``: the paper code's ``crop_size`` centre
    crops), normalised as the model was trained. Under torchrun each process scores its share.

    A folder without class names (``classes``, classes.txt, ``num_classes``) takes the model's class count
    and names; one that names them must name as many as the model predicts."""
    rank, world = init_distributed()
    device = resolve_device(device, rank)
    model = load_model(source).to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    norm = resolve_data_config(model)
    unnamed = data.name == "folder" and data.root is not None and data.classes is None and data.num_classes is None \
        and read_class_names(data.root) is None
    if unnamed:  # the model's classes, not a scan of the masks
        data = dataclasses.replace(data, num_classes=model.num_classes)
    dataset, classes = data.build(split, build_eval_transforms(protocol, crop_size, mean=norm["mean"],
                                                               std=norm["std"]))
    if data.name == "folder" and len(classes) != model.num_classes:
        raise ValueError(f"model {str(source)!r} predicts {model.num_classes} classes, but the dataset "
                         f"{str(data.root)!r} has {len(classes)} ({dataset.class_source}: {classes})")
    labels = model.pretrained_cfg.label_names
    if unnamed and labels and len(labels) == model.num_classes:
        classes = list(labels)
    loader = DataLoader(shard_dataset(dataset, rank, world), num_workers=workers,
                        batch_size=1 if data.full_images(protocol) else batch_size)
    metrics = evaluate_loader(model, loader, model.num_classes, device=device, amp=amp, channels_last=channels_last,
                              progress=progress and rank == 0, scales=scales, flip=flip, window=window)
    return EvalResult(metrics, list(classes), rank)
