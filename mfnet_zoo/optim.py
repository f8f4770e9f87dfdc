"""Optimizer parameter groups from rules: learning-rate multipliers, weight decay and exclusions as data.

A preset (``mfnet_zoo.presets.PRESETS``) lists :class:`ParamRule` s; the first rule that matches a
parameter decides its group. Nothing here knows a block type: rules match the parameter's full
name (``"decoder.*"``, ``"context.Y"``), its kind (a conv/linear weight, a norm weight, a bias) and
the model's family (``get_model_family``: ``"mfnet"`` for ``mfnet_r50``). Without a rule forcing
it, weight decay follows timm's convention: none on 1-d parameters (norms, biases) and on what
the model's ``no_weight_decay()`` names (the factorization's Y and Z).
"""
from __future__ import annotations

import dataclasses
import fnmatch
from collections.abc import Iterator, Sequence
from typing import Literal

from torch import nn

from ._registry import get_model_family, is_model

__all__ = ["ParamRule", "param_kind", "param_groups"]

ParamKind = Literal["conv_weight", "norm_weight", "bias", "other"]
_NORMS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm, nn.LocalResponseNorm)


@dataclasses.dataclass(frozen=True)
class ParamRule:
    """Where parameters go: those whose name matches ``pattern`` (fnmatch), of ``kind`` ("any", or a
    :data:`ParamKind`), in a model of a ``family`` matching that pattern.

    Args:
        lr_mult: learning rate = the config's lr times this.
        weight_decay: True/False forces decay on or off; None follows the convention (module docstring).
        exclude: True leaves the parameters out of the optimizer (never updated).
    """

    pattern: str
    kind: Literal["any", "conv_weight", "norm_weight", "bias", "other"] = "any"
    family: str = "*"
    lr_mult: float = 1.0
    weight_decay: bool | None = None
    exclude: bool = False

    def matches(self, name: str, kind: ParamKind) -> bool:
        return fnmatch.fnmatchcase(name, self.pattern) and self.kind in ("any", kind)


def param_kind(module: nn.Module, param_name: str) -> ParamKind:
    """What the parameter ``param_name`` of ``module`` (its direct owner) is."""
    if param_name == "bias":
        return "bias"
    if param_name == "weight" and isinstance(module, _NORMS):
        return "norm_weight"
    if param_name == "weight" and isinstance(module, (nn.modules.conv._ConvNd, nn.Linear)):
        return "conv_weight"
    return "other"


def _named_parameters(model: nn.Module) -> Iterator[tuple[str, nn.Parameter, ParamKind]]:
    for prefix, module in model.named_modules():
        for name, param in module.named_parameters(recurse=False):
            yield (f"{prefix}.{name}" if prefix else name), param, param_kind(module, name)


def param_groups(model: nn.Module, rules: Sequence[ParamRule], lr: float, weight_decay: float,
                 exclude: Sequence[str] = ()) -> list[dict]:
    """``torch.optim`` parameter groups of ``model``'s trainable parameters, one per (lr, decay) pair.

    ``exclude``: fnmatch patterns of parameters left out whatever the rules say (a frozen encoder).
    """
    name = getattr(model, "model_name", None)
    family = get_model_family(name) if isinstance(name, str) and is_model(name) else ""
    rules = [rule for rule in rules if fnmatch.fnmatchcase(family, rule.family)]
    no_decay = set(model.no_weight_decay()) if hasattr(model, "no_weight_decay") else set()
    groups: dict[tuple[float, bool], list[nn.Parameter]] = {}
    for full_name, param, kind in _named_parameters(model):
        if not param.requires_grad or any(fnmatch.fnmatchcase(full_name, p) for p in exclude):
            continue
        rule = next((r for r in rules if r.matches(full_name, kind)), None)
        if rule is not None and rule.exclude:
            continue
        decay = rule.weight_decay if rule is not None and rule.weight_decay is not None else \
            not (param.ndim <= 1 or full_name in no_decay)
        groups.setdefault((rule.lr_mult if rule is not None else 1.0, decay), []).append(param)
    return [{"params": params, "lr": lr * mult, "weight_decay": weight_decay if decay else 0.0}
            for (mult, decay), params in groups.items()]
