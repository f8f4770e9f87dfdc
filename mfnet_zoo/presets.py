"""Training recipes: :class:`TrainConfig` (everything that defines a run) and the named presets.

``PRESETS["paper"]`` is what the paper's code ran, ``"paper-text"`` what its text describes and
``"default"`` ours (docs/reproduce.md has their tables with the paper code's file:line). Parameter
groups are :class:`~mfnet_zoo.optim.ParamRule` lists: the engine knows no block type.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, Literal

from ._checks import check_positive_int
from ._constants import AUGMENTATIONS, EVAL_PROTOCOLS, IMAGENET_MEAN, IMAGENET_STD, PRESET_DESCRIPTIONS
from .data.transforms import Augmentation, EvalProtocol, build_eval_transforms, build_train_transforms
from .layers.context_protocol import ContextState, check_context_state
from .optim import ParamRule

__all__ = ["TrainConfig", "PRESETS", "PRESET_DESCRIPTIONS", "DEFAULT_PARAM_RULES", "PAPER_PARAM_RULES",
           "PAPER_TEXT_PARAM_RULES"]


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
    save_every: int | None = None  # also write last.pt every this many optimizer steps (None: epoch ends only)
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
        check_positive_int("grad_accum_steps", self.grad_accum_steps)
        if self.save_every is not None:
            check_positive_int("save_every", self.save_every)

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
