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
import os
import random
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from ._atomic import atomic_path
from ._builder import model_from_checkpoint, read_checkpoint
from ._constants import AUGMENTATIONS, EVAL_PROTOCOLS, IMAGENET_MEAN, IMAGENET_STD, PRESET_DESCRIPTIONS
from ._pretrained import resolve_data_config
from .data.transforms import Augmentation, EvalProtocol, build_eval_transforms, build_train_transforms
from .inference import autocast, infer_probabilities, probabilities_to_classes
from .layers.context_protocol import ContextState, check_context_state, get_context_state, set_context_state
from .losses import SegmentationLoss
from .metrics import SegmentationMetrics
from .models.segmentation import SegmentationModel
from .optim import ParamRule, param_groups
from .publish import MODEL_DIR, RUN_FILE, run_record, write_json, write_model_folder

__all__ = ["TrainConfig", "PRESETS", "PRESET_DESCRIPTIONS", "DEFAULT_PARAM_RULES", "PAPER_PARAM_RULES",
           "PAPER_TEXT_PARAM_RULES", "load_checkpoint",
           "build_param_groups", "build_optimizer", "train_one_epoch", "evaluate", "Trainer", "seed_everything",
           "init_distributed", "shard_dataset"]


# ours: every parameter trained, context + decoder at 10x, no decay on norms, biases, Y and Z
DEFAULT_PARAM_RULES = (ParamRule("context.*", lr_mult=10.0), ParamRule("decoder.*", lr_mult=10.0))


@dataclasses.dataclass
class TrainConfig:
    """Everything that defines a training run; ``PRESETS`` holds the paper's (as its code ran, as its text
    describes) and ours. The data fields (``augmentation``, ``crop_size``, ``scale_range``, ``flip``,
    ``eval_protocol``) describe the transforms: :meth:`train_transforms`, :meth:`eval_transforms`."""

    epochs: int = 50
    batch_size: int = 8
    lr: float = 0.01
    optimizer: Literal["sgd", "adamw"] = "sgd"
    momentum: float = 0.9
    weight_decay: float = 1e-4
    poly_power: float = 0.9
    param_rules: tuple[ParamRule, ...] = DEFAULT_PARAM_RULES  # lr multipliers, decay, exclusions (first match)
    context_warmup_epochs: int = 0  # context "off" before this epoch
    context_state: ContextState | None = None  # the context's state after the warm-up; None: the model's own
    reconstruction_weight: float = 0.1
    batch_average: bool = False  # divide each loss term by the global batch, as the paper's code (by its batch)
    amp: Literal["none", "bf16", "fp16"] = "none"
    channels_last: bool = False
    grad_accum_steps: int = 1
    clip_grad_norm: float | None = None
    freeze_encoder: bool = False
    seed: int = 0
    augmentation: Augmentation = "deeplab"  # "deeplab", "paper" (the paper's code) or "none" (its text)
    crop_size: int = 513
    scale_range: tuple[float, float] | None = (0.5, 2.0)
    flip: bool = True
    eval_protocol: EvalProtocol = "full"  # "full" images, or "paper": the code's 513 centre crops

    def __post_init__(self) -> None:
        if self.augmentation not in AUGMENTATIONS:
            raise ValueError(f"augmentation must be one of {AUGMENTATIONS}, got {self.augmentation!r}")
        if self.eval_protocol not in EVAL_PROTOCOLS:
            raise ValueError(f"eval_protocol must be one of {EVAL_PROTOCOLS}, got {self.eval_protocol!r}")
        if self.context_state is not None:
            check_context_state(self.context_state)
        if isinstance(self.grad_accum_steps, bool) or not isinstance(self.grad_accum_steps, int) \
                or self.grad_accum_steps < 1:
            raise ValueError(f"grad_accum_steps must be a positive int, got {self.grad_accum_steps!r}")

    def replace(self, **changes: Any) -> TrainConfig:
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            valid = [f.name for f in dataclasses.fields(self)]
            raise TypeError(f"unknown TrainConfig field(s) {unknown}; valid: {valid}")
        return dataclasses.replace(self, **changes)

    def train_transforms(self, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                         interpolation: str = "bilinear"):
        """The training transform this config describes (:func:`mfnet_zoo.data.build_train_transforms`)."""
        return build_train_transforms(self.augmentation, self.crop_size, self.scale_range, self.flip, mean=mean,
                                      std=std, interpolation=interpolation)

    def eval_transforms(self, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD):
        """The validation transform of ``eval_protocol`` (:func:`mfnet_zoo.data.build_eval_transforms`; the
        paper protocol crops ``crop_size``)."""
        return build_eval_transforms(self.eval_protocol, self.crop_size, mean=mean, std=std)


# The paper's code (github:nageshgurram12/generic-semantic-segmentation, branch mfnet) builds its groups in
# modeling/__init__.py and then lets utils/lr_scheduler.py:63-70 set, every iteration, group 0 to lr and
# every later group to 10 x lr; these rules are the groups as they ran.
PAPER_PARAM_RULES = (
    # MFNet (modeling/__init__.py:47-48, MFNet.py:130-150): the backbone and Y, Z at 1x, the decoder at 10x,
    # weight decay on all; conv1 and conv2 (our context.embed, context.proj) in no group: never updated
    ParamRule("context.Y", family="mfnet*", weight_decay=True),
    ParamRule("context.Z", family="mfnet*", weight_decay=True),
    ParamRule("context.*", family="mfnet*", exclude=True),
    # EMANet (modeling/__init__.py:23-38, EMANet.py:330-344): conv weights 1x with decay; BN weights ("1y")
    # and every conv/BN bias ("2x") without decay, both run at 10x (the scheduler), the encoder's included
    ParamRule("*", kind="conv_weight", family="emanet*", weight_decay=True),
    ParamRule("*", kind="norm_weight", family="emanet*", lr_mult=10.0, weight_decay=False),
    ParamRule("*", kind="bias", family="emanet*", lr_mult=10.0, weight_decay=False),
    # DeepLabV3+ (modeling/__init__.py:13-14, deeplab.py:49-67): backbone 1x, context (its aspp) + decoder
    # 10x, decay on all; MFNet's decoder; any other family alike (its context with the head)
    ParamRule("context.*", lr_mult=10.0, weight_decay=True),
    ParamRule("decoder.*", lr_mult=10.0, weight_decay=True),
    ParamRule("*", weight_decay=True),
)

# the paper's text: every parameter trained (MFNet's 1x1 convs too, at 10x with the rest of the head, as the
# code treats every head but MFNet's); the multipliers and decay the text does not give are the code's
PAPER_TEXT_PARAM_RULES = tuple(rule for rule in PAPER_PARAM_RULES if not rule.exclude)

PRESETS: dict[str, TrainConfig] = {
    # what the paper's code ran, end to end (docs/reproduce.md has the table with file:line): the code's
    # augmentation and its validation crops, batch 4, 513, SGD momentum 0.9, wd 5e-4, poly 0.9 per iteration,
    # 50 epochs, lr 0.07 (Fig. 5; the code's default is 0.007 x batch / 4), CE and MSE divided by the batch,
    # the code's groups; MFNet's context pair-only (logits without it, 0.1 x MSE) from epoch 10
    "paper": TrainConfig(epochs=50, batch_size=4, lr=0.07, momentum=0.9, weight_decay=5e-4, poly_power=0.9,
                         param_rules=PAPER_PARAM_RULES, context_warmup_epochs=10, context_state="pair-only",
                         reconstruction_weight=0.1, batch_average=True, augmentation="paper", crop_size=513,
                         scale_range=(0.5, 2.0), flip=True, eval_protocol="paper"),
    # the method as the paper's text describes it: no augmentation, the context in the logits after the
    # 10-epoch warm-up, lambda 0.1, every parameter trained; where the text is silent, the "paper" value
    "paper-text": TrainConfig(epochs=50, batch_size=4, lr=0.07, momentum=0.9, weight_decay=5e-4, poly_power=0.9,
                              param_rules=PAPER_TEXT_PARAM_RULES, context_warmup_epochs=10, context_state="on",
                              reconstruction_weight=0.1, batch_average=True, augmentation="none", crop_size=513,
                              scale_range=None, flip=False, eval_protocol="paper"),
    # ours: every parameter trained, context + decoder at 10x, no decay on norms/biases/Y/Z, DeepLab's augmentation
    "default": TrainConfig(epochs=50, batch_size=8, lr=0.01, weight_decay=1e-4, context_warmup_epochs=0),
}



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


def _progress(iterable: Iterable, total: int | None, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, disable=not enabled, dynamic_ncols=True, leave=False)


def train_one_epoch(model: SegmentationModel, loader: Iterable, criterion: SegmentationLoss,
                    optimizer: torch.optim.Optimizer, scheduler: Any | None = None, *,
                    device: torch.device | str = "cpu",
                    amp: str = "none", scaler: torch.amp.GradScaler | None = None, grad_accum_steps: int = 1,
                    clip_grad_norm: float | None = None, channels_last: bool = False, freeze_encoder: bool = False,
                    progress: bool = True, desc: str = "train") -> dict[str, float]:
    """One pass over ``loader`` of (images B x 3 x H x W, masks B x H x W); returns mean loss terms.

    The scheduler steps once per optimizer step (poly decay per iteration, as the paper). Each
    micro-batch's loss is divided by ``grad_accum_steps`` (a mean over the accumulated micro-batches;
    DistributedDataParallel averages over processes), and a batch-averaging criterion gets the
    global batch, B x ``grad_accum_steps`` x processes, as its divisor: with either, one update
    equals one step on the whole batch, as the paper's code took it (its loss divided by its batch).
    """
    device = torch.device(device)
    global_batch_factor = grad_accum_steps * _world_size()
    model.train()
    if freeze_encoder:
        getattr(model, "module", model).encoder.eval()  # DistributedDataParallel wraps the model
    sums: dict[str, torch.Tensor] = {}
    steps, start = 0, time.perf_counter()
    total = len(loader) if hasattr(loader, "__len__") else None
    bar = _progress(loader, total, desc, progress)
    optimizer.zero_grad(set_to_none=True)
    for i, (images, masks) in enumerate(bar):
        images, masks = _to_device(images, device, channels_last), masks.to(device, non_blocking=True)
        with autocast(device, amp):
            output = model(images)
        terms = criterion.components(output, masks, batch_size=images.shape[0] * global_batch_factor)
        loss = sum(terms.values())
        (scaler.scale(loss) if scaler is not None else loss).div(grad_accum_steps).backward()
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
        for name, value in {"loss": loss, **terms}.items():
            sums[name] = sums.get(name, 0.0) + value.detach().float()
        steps += 1
        if progress and (steps % 10 == 0 or last):  # a host sync every 10 steps, for the progress bar only
            bar.set_postfix(loss=f"{(sums['loss'] / steps).item():.4f}", lr=f"{optimizer.param_groups[0]['lr']:.2e}")
    if steps == 0:
        raise ValueError("the training loader yielded no batch")
    elapsed = time.perf_counter() - start
    result = {name: (value / steps).item() for name, value in sums.items()}
    result.update(lr=optimizer.param_groups[0]["lr"], iterations=steps, it_per_s=steps / elapsed, seconds=elapsed)
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


def _write_curves(path: Path, history: Sequence[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, (ax_loss, ax_iou) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(epochs, [h["train"]["loss"] for h in history], marker="o", label="train loss")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("loss")
    ax_loss.legend()
    evaluated = [h for h in history if "val" in h]
    for key in ("mIoU", "fwIoU"):
        ax_iou.plot([h["epoch"] for h in evaluated], [h["val"][key] for h in evaluated], marker="o", label=key)
    ax_iou.set_xlabel("epoch")
    ax_iou.set_ylabel("IoU")
    ax_iou.set_ylim(0, 1)
    ax_iou.legend()
    fig.suptitle("training curves")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


def load_checkpoint(path: str | Path, device: torch.device | str = "cpu") -> tuple[SegmentationModel, dict]:
    """Rebuild the model of a :class:`Trainer` checkpoint (``weights_only`` load); returns (model, checkpoint).

    The same pieces as :func:`mfnet_zoo.load_model` of a ``.pt`` file, which gives the model alone.
    """
    checkpoint = read_checkpoint(path)
    return model_from_checkpoint(checkpoint, source=str(path)).to(device), checkpoint


def _rank() -> int:
    distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
    return torch.distributed.get_rank() if distributed else 0


def _world_size() -> int:
    distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
    return torch.distributed.get_world_size() if distributed else 1


def init_distributed() -> tuple[int, int]:
    """(rank, world size); joins the process group torchrun describes (gloo on CPU, nccl on CUDA)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return (torch.distributed.get_rank() if world > 1 else 0), world


def shard_dataset(dataset: Dataset, rank: int, world: int) -> Dataset:
    """Every world-th item from rank: each image evaluated once over all processes (no padding)."""
    return dataset if world == 1 else Subset(dataset, range(rank, len(dataset), world))


class Trainer:
    """Runs ``cfg.epochs`` epochs: warm-up switch, poly LR per iteration, evaluation, logs and checkpoints.

    Writes to ``out_dir``: ``metrics.jsonl`` (one line per epoch), ``curves.png`` (loss, mIoU,
    fwIoU per epoch, like the paper's Figures 8-10), ``last.pt`` and ``best.pt`` (atomically;
    model name, constructor arguments, weights, optimizer, scheduler, scaler and RNG states; load
    with weights_only=True). ``resume=True`` continues from ``out_dir/last.pt``: a run killed at
    any point and resumed ends with the same weights as an uninterrupted one (on the same machine).

    Also ``run.json`` (the resolved configuration: ``run_config``, what the caller knows, plus the
    model, this config and library versions) and ``model/`` (``save_pretrained`` of the best epoch's
    weights, the last epoch's without a validation set, with a card stating their evaluation),
    rewritten whenever the best checkpoint improves (:mod:`mfnet_zoo.publish`).

    Under torch.distributed (``torchrun``) the model is wrapped in DistributedDataParallel (with
    SyncBatchNorm on CUDA), the train loader should use a ``DistributedSampler`` (its epoch is set here),
    metrics are summed over processes, and only rank 0 writes files.
    """

    def __init__(self, model: SegmentationModel, train_loader: DataLoader, val_loader: DataLoader | None,
                 cfg: TrainConfig, out_dir: str | Path, *, device: torch.device | str = "cpu",
                 criterion: SegmentationLoss | None = None, class_names: Sequence[str] | None = None,
                 progress: bool = True, resume: bool = False, run_config: dict[str, Any] | None = None) -> None:
        self.model, self.cfg = model, cfg
        self.run_config = dict(run_config or {})
        self.train_loader, self.val_loader = train_loader, val_loader
        self.device = torch.device(device)
        self.out_dir = Path(out_dir)
        self.class_names = list(class_names) if class_names is not None else None
        if self.class_names and len(self.class_names) == model.num_classes:  # id2label for save_pretrained
            model.pretrained_cfg = model.pretrained_cfg.replace(label_names=tuple(self.class_names))
        self.is_main = _rank() == 0
        self.progress = progress and self.is_main
        self.criterion = criterion or SegmentationLoss(reconstruction_weight=cfg.reconstruction_weight,
                                                       mode="binary" if model.num_classes == 1 else "multiclass",
                                                       batch_average=cfg.batch_average)
        if cfg.freeze_encoder:
            model.encoder.requires_grad_(False)
        self.model.to(self.device)
        if cfg.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.train_model: nn.Module = model
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            if self.device.type == "cuda":  # SyncBatchNorm needs CUDA; on CPU (gloo) each process keeps its own
                self.model = model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
            # the warm-up leaves the context unused, EMANet's first EM conv never gets a gradient
            self.train_model = nn.parallel.DistributedDataParallel(
                model, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=True)
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
        if resume and (self.out_dir / "last.pt").is_file():
            self._restore(self.out_dir / "last.pt")

    def _state(self, epoch: int) -> dict[str, Any]:
        generator = getattr(self.train_loader, "generator", None)
        return {"model_name": getattr(self.model, "model_name", None),
                "model_args": getattr(self.model, "model_args", None),
                "data_config": resolve_data_config(self.model),  # the normalisation it was trained with
                "state_dict": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict() if self.scaler is not None else None,
                "epoch": epoch, "best_miou": self.best_miou, "history": self.history,
                "config": dataclasses.asdict(self.cfg), "class_names": self.class_names,
                "rng": {"torch": torch.get_rng_state(), "python": random.getstate(),
                        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None,
                        "loader": generator.get_state() if generator is not None else None}}

    def _restore(self, path: Path) -> None:
        try:
            state = torch.load(path, map_location=self.device, weights_only=True)
        except Exception as e:  # a truncated or foreign file: say which, keep nothing half-loaded
            raise ValueError(f"cannot resume from {str(path)!r}: {e}") from e
        if state.get("config") != dataclasses.asdict(self.cfg):
            changed = sorted(k for k, v in dataclasses.asdict(self.cfg).items() if state.get("config", {}).get(k) != v)
            raise ValueError(f"cannot resume from {str(path)!r}: the training config differs in {changed}")
        self.model.load_state_dict(state["state_dict"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler is not None and state["scaler"] is not None:
            self.scaler.load_state_dict(state["scaler"])
        self.start_epoch, self.best_miou, self.history = state["epoch"], state["best_miou"], list(state["history"])
        rng = state["rng"]
        torch.set_rng_state(rng["torch"].cpu())
        random.setstate(rng["python"])
        if rng["cuda"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all([s.cpu() for s in rng["cuda"]])
        generator = getattr(self.train_loader, "generator", None)
        if generator is not None and rng["loader"] is not None:
            generator.set_state(rng["loader"].cpu())

    def _save(self, name: str, state: dict[str, Any]) -> None:
        with atomic_path(self.out_dir / name) as tmp:
            torch.save(state, tmp)

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
                                  world_size=_world_size())
            write_json(self.out_dir / RUN_FILE, self.run)
        for epoch in range(self.start_epoch, cfg.epochs):
            epoch_start = time.perf_counter()
            if self.context_state is not None:  # blocks without the switch have nothing to warm up
                set_context_state(self.model.context, "off" if epoch < cfg.context_warmup_epochs else
                                  self.context_state)
            sampler = getattr(self.train_loader, "sampler", None)
            if hasattr(sampler, "set_epoch"):
                sampler.set_epoch(epoch)
            train = train_one_epoch(self.train_model, self.train_loader, self.criterion, self.optimizer,
                                    self.scheduler, device=self.device, amp=cfg.amp, scaler=self.scaler,
                                    grad_accum_steps=cfg.grad_accum_steps, clip_grad_norm=cfg.clip_grad_norm,
                                    channels_last=cfg.channels_last, freeze_encoder=cfg.freeze_encoder,
                                    progress=self.progress, desc=f"epoch {epoch + 1}/{cfg.epochs}")
            record: dict[str, Any] = {"epoch": epoch + 1, "train": train}
            if self.val_loader is not None:
                record["val"] = evaluate(self.model, self.val_loader, self.model.num_classes, device=self.device,
                                         amp=cfg.amp, channels_last=cfg.channels_last, progress=self.progress)
            record["seconds"] = time.perf_counter() - epoch_start  # training and evaluation
            self.history.append(record)
            miou = record.get("val", {}).get("mIoU", -1.0)
            improved = miou > self.best_miou
            self.best_miou = max(self.best_miou, miou)
            if self.is_main:
                with log.open("a") as f:
                    f.write(json.dumps(record) + "\n")
                state = self._state(epoch + 1)
                self._save("last.pt", state)
                if improved:
                    self._save("best.pt", state)
                if improved or self.val_loader is None:  # the weights kept, with the evaluation of exactly them
                    write_model_folder(self.out_dir / MODEL_DIR, self.model, record=record, history=self.history,
                                       run=self.run, class_names=self.class_names)
                _write_curves(self.out_dir / "curves.png", self.history)
                if on_epoch_end is not None:
                    on_epoch_end(record)
        return self.history
