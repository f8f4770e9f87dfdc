"""An embeddable training engine: param groups, poly schedule, AMP, one epoch, evaluation, a Trainer.

Use the pieces in your own loop (``build_param_groups``, ``train_one_epoch``, ``evaluate``) or
``Trainer(...).fit()``. The engine owns the context warm-up: it switches the context block to
``"off"`` for the first ``context_warmup_epochs`` epochs, then to the preset's ``context_state``
(None: the state the model was built in), through the context protocol
(:mod:`mfnet_zoo.layers.context_protocol`); it knows no block type, and parameter groups are rules in the
preset (:mod:`mfnet_zoo.optim`).
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import random
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Sampler

from ._atomic import atomic_path, write_json
from ._builder import model_from_checkpoint
from ._deprecations import moved_names
from .checkpoint import (BEST, LAST, read_checkpoint, restore_rng, rng_state, torch_load, training_checkpoint,
                         write_checkpoint)
from .distributed import all_gather, barrier, rank, world_size
from .inference import autocast, infer_probabilities, probabilities_to_classes
from .layers.context_protocol import get_context_state, set_context_state, unused_parameters
from .losses import SegmentationLoss
from .metrics import SegmentationMetrics
from .models.segmentation import SegmentationModel, is_binary
from .optim import param_groups
from .presets import PRESETS, TrainConfig
from .publish import MODEL_DIR, write_model_folder
from .run_record import RUN_FILE, run_record
from .visualize import write_curves

__all__ = ["TrainConfig", "PRESETS", "load_checkpoint", "build_param_groups", "build_optimizer", "train_one_epoch",
           "evaluate", "Trainer", "EpochProgress", "seed_everything"]

# names that lived here before the engine was split by job (import them from their new modules)
__getattr__ = moved_names(__name__, {
    **dict.fromkeys(("PRESET_DESCRIPTIONS", "DEFAULT_PARAM_RULES", "PAPER_PARAM_RULES", "PAPER_TEXT_PARAM_RULES"),
                    "mfnet_zoo.presets"),
    **dict.fromkeys(("init_distributed", "shard_dataset"), "mfnet_zoo.distributed")})


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, torch (and numpy if present); returns a generator for DataLoader shuffling."""
    random.seed(seed)
    torch.manual_seed(seed)
    with contextlib.suppress(ImportError):
        import numpy as np

        np.random.seed(seed % 2**32)
    return torch.Generator().manual_seed(seed)


def build_param_groups(model: SegmentationModel, cfg: TrainConfig) -> list[dict]:
    """Optimizer groups of ``model`` from the preset's ``param_rules`` (:func:`mfnet_zoo.optim.param_groups`);
    a frozen encoder is left out."""
    return param_groups(model, cfg.param_rules, cfg.lr, cfg.weight_decay,
                        exclude=("encoder.*",) if cfg.freeze_encoder else ())


def build_optimizer(model: SegmentationModel, cfg: TrainConfig) -> torch.optim.Optimizer:
    """SGD (momentum) or AdamW over :func:`build_param_groups`."""
    groups = build_param_groups(model, cfg)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr)
    raise ValueError(f"optimizer must be 'sgd' or 'adamw', got {cfg.optimizer!r}")


def _to_device(x: torch.Tensor, device: torch.device, channels_last: bool) -> torch.Tensor:
    x = x.to(device, non_blocking=True)
    return x.contiguous(memory_format=torch.channels_last) if channels_last and x.ndim == 4 else x


def _progress(iterable: Iterable, total: int | None, desc: str, enabled: bool, initial: int = 0):
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, disable=not enabled, dynamic_ncols=True, leave=False,
                initial=initial)


@dataclasses.dataclass
class EpochProgress:
    """How far an epoch got: micro-batches done, the sums of their loss terms, seconds spent. A mid-epoch
    checkpoint keeps it, so that the resumed epoch ends with the uninterrupted epoch's record."""

    batches: int = 0
    sums: dict[str, float] = dataclasses.field(default_factory=dict)
    seconds: float = 0.0


def train_one_epoch(model: SegmentationModel, loader: Iterable, criterion: SegmentationLoss,
                    optimizer: torch.optim.Optimizer, scheduler: Any | None = None, *,
                    device: torch.device | str = "cpu",
                    amp: str = "none", scaler: torch.amp.GradScaler | None = None, grad_accum_steps: int = 1,
                    clip_grad_norm: float | None = None, channels_last: bool = False, freeze_encoder: bool = False,
                    progress: bool = True, desc: str = "train", start: EpochProgress | None = None,
                    save_every: int | None = None,
                    on_save: Callable[[EpochProgress], None] | None = None) -> dict[str, float]:
    """One pass over ``loader`` of (images B x 3 x H x W, masks B x H x W); returns mean loss terms.

    The scheduler steps once per optimizer step (poly decay per iteration, as the paper). Each
    micro-batch's loss is divided by ``grad_accum_steps`` (a mean over the accumulated micro-batches;
    DistributedDataParallel averages over processes), and a batch-averaging criterion gets the
    global batch, B x ``grad_accum_steps`` x processes, as its divisor: with either, one update
    equals one step on the whole batch, as the paper's code took it (its loss divided by its batch).

    ``start``: the part of the epoch already done (a mid-epoch checkpoint's); ``loader`` then yields the
    rest. ``on_save(progress)`` is called after every ``save_every`` optimizer steps of the epoch (not
    after its last: the epoch's end is saved anyway).
    """
    device = torch.device(device)
    global_batch_factor = grad_accum_steps * world_size()
    model.train()
    if freeze_encoder:
        getattr(model, "module", model).encoder.eval()  # DistributedDataParallel wraps the model
    start = start or EpochProgress()
    sums = {name: torch.tensor(value, device=device) for name, value in start.sums.items()}
    begin, i = time.perf_counter(), start.batches - 1
    total = start.batches + len(loader) if hasattr(loader, "__len__") else None
    bar = _progress(loader, total, desc, progress, initial=start.batches)
    optimizer.zero_grad(set_to_none=True)
    for i, (images, masks) in enumerate(bar, start=start.batches):
        images, masks = _to_device(images, device, channels_last), masks.to(device, non_blocking=True)
        with autocast(device, amp):
            output = model(images)
        terms = criterion.components(output, masks, batch_size=images.shape[0] * global_batch_factor)
        loss = sum(terms.values())
        (scaler.scale(loss) if scaler is not None else loss).div(grad_accum_steps).backward()
        for name, value in {"loss": loss, **terms}.items():
            sums[name] = sums.get(name, 0.0) + value.detach().float()
        last = total is not None and i + 1 == total
        if (i + 1) % grad_accum_steps == 0 or last:
            if clip_grad_norm is not None:
                if scaler is not None:
                    scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(model.parameters(), clip_grad_norm)
            if scaler is not None:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if scheduler is not None:
                scheduler.step()
            if on_save is not None and save_every and not last and (i + 1) // grad_accum_steps % save_every == 0:
                on_save(EpochProgress(i + 1, {name: value.item() for name, value in sums.items()},
                                      start.seconds + time.perf_counter() - begin))
        if progress and ((i + 1) % 10 == 0 or last):  # a host sync every 10 steps, for the progress bar only
            bar.set_postfix(loss=f"{(sums['loss'] / (i + 1)).item():.4f}", lr=f"{optimizer.param_groups[0]['lr']:.2e}")
    batches = i + 1
    if batches == start.batches:
        raise ValueError("the training loader yielded no batch")
    elapsed = time.perf_counter() - begin
    result = {name: (value / batches).item() for name, value in sums.items()}
    result.update(lr=optimizer.param_groups[0]["lr"], iterations=batches,
                  it_per_s=(batches - start.batches) / elapsed, seconds=start.seconds + elapsed)
    if not all(math.isfinite(v) for v in result.values()):
        raise FloatingPointError(f"non-finite training loss {result}; lower the learning rate or check the data")
    return result


@torch.no_grad()
def evaluate(model: SegmentationModel, loader: Iterable, num_classes: int, *, device: torch.device | str = "cpu",
             amp: str = "none", channels_last: bool = False, ignore_index: int = 255, progress: bool = True,
             desc: str = "eval", scales: Sequence[float] = (1.0,), flip: bool = False,
             window: int | None = None) -> dict:
    """Metrics of ``model`` over what ``loader`` gives (see :class:`SegmentationMetrics`): the loader's
    transform is the protocol (full images, or the paper code's 513 centre crops:
    :func:`mfnet_zoo.data.build_eval_transforms`).

    ``scales``/``flip``/``window``: multi-scale, flipped and sliding-window inference, the same
    code as ``mfnet-zoo predict`` (:func:`mfnet_zoo.inference.infer_probabilities`).
    """
    device = torch.device(device)
    model.eval()
    metrics = SegmentationMetrics(num_classes, ignore_index, device=device)
    total = len(loader) if hasattr(loader, "__len__") else None
    for images, masks in _progress(loader, total, desc, progress):
        images, masks = _to_device(images, device, channels_last), masks.to(device, non_blocking=True)
        with autocast(device, amp):
            probs = infer_probabilities(model, images, scales, flip, window)
        metrics.update(probabilities_to_classes(probs), masks)
    metrics.all_reduce()
    return metrics.compute()


def load_checkpoint(path: str | Path, device: torch.device | str = "cpu") -> tuple[SegmentationModel, dict]:
    """Rebuild the model of a :class:`Trainer` checkpoint (``weights_only`` load); returns (model, checkpoint).

    The same pieces as :func:`mfnet_zoo.load_model` of a ``.pt`` file, which gives the model alone.
    """
    checkpoint = read_checkpoint(path)
    return model_from_checkpoint(checkpoint, source=str(path)).to(device), checkpoint


class _SkipBatches(Sampler[list[int]]):
    """``batch_sampler``'s batches from number ``skip`` on; the skipped ones are drawn (as indices: no image is
    read), so a shuffling sampler makes the permutation it made the first time, then ``then()`` runs."""

    def __init__(self, batch_sampler: Iterable[list[int]], skip: int, then: Callable[[], None]) -> None:
        self.batch_sampler, self.skip, self.then = batch_sampler, skip, then

    def __iter__(self) -> Iterator[list[int]]:
        batches = iter(self.batch_sampler)
        for _ in range(self.skip):
            next(batches)
        self.then()
        yield from batches

    def __len__(self) -> int:
        return len(self.batch_sampler) - self.skip


def _rest_of_epoch(loader: DataLoader, skip: int, then: Callable[[], None]) -> DataLoader:
    """``loader`` without its first ``skip`` batches (a mid-epoch resume); ``then`` as :class:`_SkipBatches`."""
    if not isinstance(loader, DataLoader) or loader.batch_sampler is None:
        raise ValueError(f"resuming mid-epoch needs a DataLoader with a batch sampler (a map-style dataset and a "
                         f"batch_size), got {type(loader).__name__}; or save at epoch ends only (save_every=None)")
    extra = {"prefetch_factor": loader.prefetch_factor} if loader.num_workers else {}
    if hasattr(loader, "in_order"):  # torch >= 2.6
        extra["in_order"] = loader.in_order
    return DataLoader(loader.dataset, batch_sampler=_SkipBatches(loader.batch_sampler, skip, then),
                      num_workers=loader.num_workers, collate_fn=loader.collate_fn, pin_memory=loader.pin_memory,
                      timeout=loader.timeout, worker_init_fn=loader.worker_init_fn,
                      multiprocessing_context=loader.multiprocessing_context, generator=loader.generator,
                      pin_memory_device=loader.pin_memory_device, **extra)


class Trainer:
    """Runs ``cfg.epochs`` epochs: warm-up switch, poly LR per iteration, evaluation, logs and checkpoints.

    Writes to ``out_dir``: ``last.pt`` and ``best.pt`` (atomically; model name, constructor arguments,
    weights, optimizer, scheduler, scaler and every process's RNG states; load with weights_only=True),
    ``metrics.jsonl`` (one line per epoch, written after the epoch's checkpoint), ``curves.png`` (loss,
    mIoU, fwIoU per epoch, like the paper's Figures 8-10). With ``cfg.save_every`` also ``last.pt`` every
    that many optimizer steps, mid-epoch, with the sampler's position. ``resume=True`` continues from
    ``out_dir/last.pt`` (and starts afresh without one): a run killed at any point and resumed ends with the
    same weights as an uninterrupted one (on the same machine, with the same process count and, mid-epoch,
    a loader without workers). A checkpoint that cannot be written (a full disk) stops the run with an
    OSError; the previous one stays whole.

    Also ``run.json`` (the resolved configuration: ``run_config``, what the caller knows, plus the
    model, this config and library versions) and ``model/`` (``save_pretrained`` of the best epoch's
    weights, the last epoch's without a validation set, with a card stating their evaluation),
    rewritten whenever the best checkpoint improves (:mod:`mfnet_zoo.publish`).

    Under torch.distributed (``torchrun``) the model is wrapped in DistributedDataParallel (with
    SyncBatchNorm on CUDA; ``find_unused_parameters`` only while the context's state leaves parameters
    without a gradient), the train loader should use a ``DistributedSampler`` (its epoch is set here),
    metrics are summed over processes, and only rank 0 writes files. A run resumed on another number of
    processes keeps its global batch by changing ``grad_accum_steps`` (and says so), or refuses when it
    cannot; the learning-rate schedule continues from the same optimizer step to the same end.
    """

    def __init__(self, model: SegmentationModel, train_loader: DataLoader, val_loader: DataLoader | None,
                 cfg: TrainConfig, out_dir: str | Path, *, device: torch.device | str = "cpu",
                 criterion: SegmentationLoss | None = None, class_names: Sequence[str] | None = None,
                 progress: bool = True, resume: bool = False, run_config: dict[str, Any] | None = None) -> None:
        self.model, self.cfg = model, cfg
        self.run_config = dict(run_config or {})
        self.train_loader, self.val_loader = train_loader, val_loader
        self.generator = getattr(train_loader, "generator", None)  # the loader's shuffling RNG, saved and restored
        self.device = torch.device(device)
        self.out_dir = Path(out_dir)
        self.class_names = list(class_names) if class_names is not None else None
        if self.class_names and len(self.class_names) == model.num_classes:  # id2label for save_pretrained
            model.pretrained_cfg = model.pretrained_cfg.replace(label_names=tuple(self.class_names))
        self.is_main = rank() == 0
        self.progress = progress and self.is_main
        self.criterion = criterion or SegmentationLoss(reconstruction_weight=cfg.reconstruction_weight,
                                                       mode="binary" if is_binary(model.num_classes) else "multiclass",
                                                       batch_average=cfg.batch_average)
        if cfg.freeze_encoder:
            model.encoder.requires_grad_(False)
        self.model.to(self.device)
        if cfg.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
        if self.distributed and self.device.type == "cuda":  # SyncBatchNorm needs CUDA; gloo: per-process BN
            self.model = model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        self.train_model: nn.Module = model
        self.optimizer = build_optimizer(model, cfg)
        steps_per_epoch = math.ceil(len(train_loader) / cfg.grad_accum_steps)
        self.scheduler = torch.optim.lr_scheduler.PolynomialLR(self.optimizer, total_iters=cfg.epochs * steps_per_epoch,
                                                               power=cfg.poly_power)
        self.scaler = torch.amp.GradScaler("cuda") if cfg.amp == "fp16" else None
        # the state after the warm-up: the preset's (the paper's code: "pair-only"), else the model's own;
        # None for a block without the switch (nothing to warm up)
        own = get_context_state(model.context)
        self.context_state = own if own is None or cfg.context_state is None else cfg.context_state
        self.history: list[dict] = []
        self.best_miou = -1.0
        self.start_epoch = 0
        # what checkpoints record as the run's config: the global batch is the config's with its process count
        self.saved_config, self.config_world = dataclasses.asdict(cfg), world_size()
        self.resume_at: EpochProgress | None = None  # a mid-epoch checkpoint's position, until its epoch runs
        self.resume_rng: dict[str, Any] | None = None  # its RNG states (this process's), to restore there
        self.epoch_rng: dict[str, Any] | None = None  # this process's RNG states at the current epoch's start
        if resume and (self.out_dir / LAST).is_file():
            self._restore(self.out_dir / LAST)

    def _wrap(self) -> None:
        """DistributedDataParallel around the model, with ``find_unused_parameters`` exactly when the context's
        current state leaves trainable parameters without a gradient; re-wrapped when that changes (DDP fixes
        the flag at construction). A frozen encoder needs nothing: DDP skips parameters without grad."""
        if not self.distributed:
            return
        uses_pair = isinstance(self.criterion, SegmentationLoss) and self.criterion.reconstruction_weight > 0
        find_unused = bool(unused_parameters(self.model.context, reconstruction=uses_pair))
        if getattr(self.train_model, "find_unused_parameters", None) != find_unused:
            self.train_model = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=find_unused)

    def _state(self, epoch: int, progress: EpochProgress | None = None) -> dict[str, Any] | None:
        """The checkpoint after ``epoch`` completed epochs (and ``progress`` into the next) on rank 0, None on
        the others; every process takes part (its RNG states are gathered)."""
        states = all_gather({"rng": rng_state(self.generator), "epoch_rng": self.epoch_rng})
        if not self.is_main:
            return None
        return training_checkpoint(self.model, self.optimizer, self.scheduler, self.scaler, epoch=epoch,
                                   best_miou=self.best_miou, history=self.history, config=self.saved_config,
                                   world_size=self.config_world, class_names=self.class_names,
                                   rng=[s["rng"] for s in states],
                                   progress=dataclasses.asdict(progress) if progress is not None else None,
                                   epoch_rng=[s["epoch_rng"] for s in states] if progress is not None else None)

    def _write(self, state: dict[str, Any] | None, *names: str) -> None:
        """Rank 0 writes ``state`` to each of ``names`` in out_dir; a failed write (a full disk) stops every
        process with one message, the previous file left whole."""
        error = None
        if state is not None:
            for name in names:
                try:
                    write_checkpoint(self.out_dir / name, state)
                except OSError as e:
                    kept = f"the previous {name} is kept" if (self.out_dir / name).is_file() else f"no {name} yet"
                    error = f"cannot write checkpoint {str(self.out_dir / name)!r} ({e.strerror or e}); {kept}"
                    break
        error = all_gather(error)[0]
        if error is not None:
            raise OSError(error)

    def _restore(self, path: Path) -> None:
        try:
            state = torch_load(path)
        except ValueError as e:  # a truncated or foreign file: say which, keep nothing half-loaded
            raise ValueError(f"cannot resume from {str(path)!r}: {e}") from e
        saved, current = dict(state.get("config", {})), dataclasses.asdict(self.cfg)
        saved_world, world = state.get("world_size", world_size()), world_size()
        # not part of the run's definition: how often it saves; its accumulation, when the process count changed
        exempt = {"save_every"} | ({"grad_accum_steps"} if saved_world != world else set())
        changed = sorted(k for k in (saved.keys() | current.keys()) - exempt if saved.get(k) != current.get(k))
        if changed:
            raise ValueError(f"cannot resume from {str(path)!r}: the training config differs in {changed}")
        self.model.load_state_dict(state["state_dict"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler is not None and state["scaler"] is not None:
            self.scaler.load_state_dict(state["scaler"])
        self.start_epoch, self.best_miou, self.history = state["epoch"], state["best_miou"], list(state["history"])
        progress = EpochProgress(**state["progress"]) if state.get("progress") else None
        if saved_world != world:
            self._keep_global_batch(path, saved, saved_world, progress)
        rngs = state["rng"] if isinstance(state["rng"], list) else [state["rng"]]  # one per process (else rank 0's)
        mine = rank() % len(rngs)
        if progress is None:
            restore_rng(rngs[mine], self.generator)
        else:  # the epoch restarts from its first state, and skips to the checkpoint's (see fit)
            self.resume_at, self.resume_rng = progress, rngs[mine]
            restore_rng(state["epoch_rng"][mine], self.generator)
            self.epoch_rng = state["epoch_rng"][mine]

    def _keep_global_batch(self, path: Path, saved: dict[str, Any], saved_world: int,
                           progress: EpochProgress | None) -> None:
        """Resuming on another process count: the global batch and the schedule's end stay the checkpoint's."""
        world = world_size()
        global_batch = saved_world * saved["grad_accum_steps"]  # micro-batches of batch_size per optimizer step
        if global_batch % world:
            raise ValueError(
                f"cannot resume from {str(path)!r} on {world} processes: it was trained on {saved_world} "
                f"process(es) x {saved['grad_accum_steps']} accumulation step(s), a global batch of "
                f"{global_batch} x {saved['batch_size']} images that {world} processes cannot keep; resume on a "
                f"process count that divides {global_batch}")
        accum = global_batch // world
        steps_done = progress.batches // saved["grad_accum_steps"] if progress is not None else 0
        if progress is not None:  # the same optimizer steps, counted in the new micro-batches
            progress.sums = {k: v * accum / saved["grad_accum_steps"] for k, v in progress.sums.items()}
            progress.batches = steps_done * accum
        self.cfg = self.cfg.replace(grad_accum_steps=accum)
        self.saved_config, self.config_world = saved, saved_world
        steps_per_epoch = math.ceil(len(self.train_loader) / accum)
        end = self.scheduler.last_epoch + (self.cfg.epochs - self.start_epoch) * steps_per_epoch - steps_done
        note = ""
        if end != self.scheduler.total_iters:  # rounding of the new shards: end the schedule with the run
            note = f"; the schedule now ends at step {end}, not {self.scheduler.total_iters}"
            self.scheduler.total_iters = end
        if self.is_main:
            warnings.warn(f"resuming a {saved_world}-process run on {world}: gradient accumulation "
                          f"{saved['grad_accum_steps']} -> {accum} keeps the global batch of {global_batch} x "
                          f"{saved['batch_size']} images; the schedule continues from step "
                          f"{self.scheduler.last_epoch}{note}", UserWarning, stacklevel=3)

    def fit(self, on_epoch_end: Callable[[dict[str, Any]], None] | None = None) -> list[dict]:
        """Run the remaining epochs; ``on_epoch_end(record)`` is called on the main process after each epoch's
        files are written (``record``: the epoch's line of metrics.jsonl). Returns the history."""
        cfg = self.cfg
        log = self.out_dir / "metrics.jsonl"
        if self.is_main:  # an unwritable output folder fails now, not after the first epoch
            try:
                self.out_dir.mkdir(parents=True, exist_ok=True)
                with atomic_path(self.out_dir / ".write-test") as tmp:
                    tmp.write_bytes(b"ok")
                (self.out_dir / ".write-test").unlink()
            except OSError as e:
                raise OSError(f"cannot write to the output folder {str(self.out_dir)!r}: {e}") from e
            with atomic_path(log) as tmp:  # the epochs a resumed run keeps
                tmp.write_text("".join(json.dumps(record) + "\n" for record in self.history))
            self.run = run_record(self.model, self.cfg, self.run_config, device=self.device,
                                  world_size=world_size())
            write_json(self.out_dir / RUN_FILE, self.run)
        for epoch in range(self.start_epoch, cfg.epochs):
            epoch_start = time.perf_counter()
            if self.context_state is not None:  # blocks without the switch have nothing to warm up
                set_context_state(self.model.context, "off" if epoch < cfg.context_warmup_epochs else
                                  self.context_state)
            self._wrap()
            sampler = getattr(self.train_loader, "sampler", None)
            if hasattr(sampler, "set_epoch"):
                sampler.set_epoch(epoch)
            start, loader = self.resume_at, self.train_loader
            if start is not None:  # a mid-epoch checkpoint: the same batches' indices, then its RNG states
                resume_rng, self.resume_at = self.resume_rng, None
                loader = _rest_of_epoch(loader, start.batches, lambda: restore_rng(resume_rng, self.generator))
            else:
                self.epoch_rng = rng_state(self.generator) if cfg.save_every else None
            train = train_one_epoch(self.train_model, loader, self.criterion, self.optimizer,
                                    self.scheduler, device=self.device, amp=cfg.amp, scaler=self.scaler,
                                    grad_accum_steps=self.cfg.grad_accum_steps, clip_grad_norm=cfg.clip_grad_norm,
                                    channels_last=cfg.channels_last, freeze_encoder=cfg.freeze_encoder,
                                    progress=self.progress, desc=f"epoch {epoch + 1}/{cfg.epochs}", start=start,
                                    save_every=cfg.save_every,
                                    on_save=lambda p, e=epoch: self._write(self._state(e, p), LAST))
            record: dict[str, Any] = {"epoch": epoch + 1, "train": train}
            if self.val_loader is not None:
                record["val"] = evaluate(self.model, self.val_loader, self.model.num_classes, device=self.device,
                                         amp=cfg.amp, channels_last=cfg.channels_last, progress=self.progress)
            record["seconds"] = time.perf_counter() - epoch_start  # training and evaluation
            self.history.append(record)
            miou = record.get("val", {}).get("mIoU", -1.0)
            improved = miou > self.best_miou
            self.best_miou = max(self.best_miou, miou)
            # the checkpoint first: the log and the model folder never run ahead of what a resume finds
            self._write(self._state(epoch + 1), LAST, *((BEST,) if improved else ()))
            if self.is_main:
                with log.open("a") as f:
                    f.write(json.dumps(record) + "\n")
                if improved or self.val_loader is None:  # the weights kept, with the evaluation of exactly them
                    write_model_folder(self.out_dir / MODEL_DIR, self.model, record=record, history=self.history,
                                       run=self.run, class_names=self.class_names)
                write_curves(self.out_dir / "curves.png", self.history)
                if on_epoch_end is not None:
                    on_epoch_end(record)
        barrier()  # the others wait for rank 0's files before their processes end
        return self.history
