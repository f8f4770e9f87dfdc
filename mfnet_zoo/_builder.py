"""Weights into models and models from configs (as timm's ``_builder``): the layer between the
registry and the Hub I/O leaf.

- :func:`load_weights` checks a state dict against a model and loads it whole, re-heading a
  classifier of another class count;
- :func:`load_pretrained` resolves what ``pretrained=`` names (a tag, ``hf-hub:``, a path) to a file;
- :func:`model_config` / :func:`model_from_config` write and read ``config.json``: the registry
  name and every constructor argument, rebuilt through :func:`~mfnet_zoo.model_entrypoint`.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import hub
from ._pretrained import PretrainedCfg
from ._registry import model_entrypoint, split_model_name_tag
from .version import __version__

__all__ = ["load_weights", "load_pretrained", "model_config", "model_from_config", "check_config_values"]

MAX_CONFIG_INT = 1 << 16  # no size argument of any registered model comes near this


def _classifier_prefix(model: nn.Module) -> str:
    classifier = model.get_classifier()
    return next(name for name, module in model.named_modules() if module is classifier)


def load_weights(model: nn.Module, state_dict: dict[str, torch.Tensor], *, strict: bool = False,
                 source: str = "checkpoint") -> None:
    """Load ``state_dict`` into ``model`` after checking it, never partially.

    A classifier of another class count is re-initialised with a warning (``strict=True``: an
    error); any other missing or unexpected key, or shape mismatch, is a ValueError listing them.
    """
    own = model.state_dict()
    prefix = _classifier_prefix(model) + "."
    state_dict = dict(state_dict)
    theirs, ours = state_dict.get(prefix + "weight"), own[prefix + "weight"]
    skipped: set[str] = set()
    if theirs is not None and theirs.shape != ours.shape:
        message = (f"{source} has a {theirs.shape[0]}-class classifier, the model {ours.shape[0]} classes")
        if strict:
            raise ValueError(f"{message} (strict=True)")
        warnings.warn(f"{message}: the classifier is newly initialised, the rest is loaded", UserWarning, stacklevel=3)
        skipped = {k for k in own if k.startswith(prefix)}
        for k in skipped:
            state_dict.pop(k, None)
    missing = sorted(set(own) - set(state_dict) - skipped)
    unexpected = sorted(set(state_dict) - set(own))
    if missing or unexpected:
        raise ValueError(f"{source} does not match the model: missing keys {missing[:10]}"
                         f"{f' (+{len(missing) - 10} more)' if len(missing) > 10 else ''}, unexpected keys "
                         f"{unexpected[:10]}{f' (+{len(unexpected) - 10} more)' if len(unexpected) > 10 else ''}")
    mismatched = [f"{k}: {tuple(v.shape)} vs model {tuple(own[k].shape)}" for k, v in state_dict.items()
                  if v.shape != own[k].shape]
    if mismatched:
        raise ValueError(f"{source} has tensors of the wrong shape: {mismatched[:10]}")
    model.load_state_dict(state_dict, strict=not skipped)


def load_pretrained(model: nn.Module, pretrained: bool | str, cfg: PretrainedCfg, strict: bool = False) -> None:
    """Load whole-model weights named by ``pretrained``: True (the tag's), 'hf-hub:org/repo[@rev]', or a path."""
    if pretrained is True:
        if cfg.file:
            path = cfg.file
        elif cfg.hf_hub_id:
            path = hub.download_file(cfg.hf_hub_id, cfg.filename, cfg.revision)
        else:  # encoder-only tag: timm already loaded the encoder
            warnings.warn(f"{model.model_name}.{cfg.tag}: encoder weights from timm ({cfg.encoder_weights}); the "
                          f"context, decoder and classifier are newly initialised - train before use",
                          UserWarning, stacklevel=4)
            return
    elif isinstance(pretrained, str) and pretrained.startswith("hf-hub:"):
        repo_id, _, revision = pretrained[len("hf-hub:"):].partition("@")
        path = hub.download_file(repo_id, hub.WEIGHTS_NAME, revision or None)
    elif isinstance(pretrained, (str, Path)):
        path = Path(pretrained)
        path = path / hub.WEIGHTS_NAME if path.is_dir() else path
    else:
        raise TypeError(f"pretrained must be a bool, 'hf-hub:org/repo' or a path, got {pretrained!r}")
    load_weights(model, hub.read_safetensors(path), strict=strict, source=str(path))


def model_config(model: nn.Module) -> dict[str, Any]:
    """What ``config.json`` holds: the registry name and every constructor argument, plus data settings."""
    cfg: PretrainedCfg = model.pretrained_cfg
    labels = cfg.label_names if cfg.label_names and len(cfg.label_names) == model.num_classes else None
    return {
        "architecture": model.model_name,
        "model_args": {**model.model_args, "num_classes": model.num_classes},
        "num_classes": model.num_classes,
        "id2label": {str(i): name for i, name in enumerate(labels)} if labels else None,
        "mean": list(cfg.mean),
        "std": list(cfg.std),
        "input_size": list(cfg.input_size),
        "library_name": "mfnet_zoo",
        "library_version": __version__,
    }


def check_config_values(args: dict[str, Any], path: str = "model_args") -> None:
    """Reject values a config has no business holding, before anything is allocated: JSON data
    only (no objects), no sizes beyond MAX_CONFIG_INT (a rank of 10**9 would try to allocate
    terabytes)."""
    for key, value in args.items():
        where = f"{path}.{key}"
        if isinstance(value, dict):
            check_config_values(value, where)
        elif isinstance(value, (list, tuple)):
            check_config_values({str(i): v for i, v in enumerate(value)}, where)
        elif isinstance(value, bool) or value is None or isinstance(value, str):
            continue
        elif isinstance(value, int):
            if abs(value) > MAX_CONFIG_INT:
                raise ValueError(f"config value {where}={value} is implausibly large (limit {MAX_CONFIG_INT}); "
                                 f"refusing to build it")
        elif not isinstance(value, float):
            raise ValueError(f"config value {where} has type {type(value).__name__}; only JSON data is allowed")


def model_from_config(config: dict[str, Any]) -> nn.Module:
    """Rebuild the architecture described by a ``config.json`` (registered names only, as data)."""
    if not isinstance(config, dict) or not isinstance(config.get("architecture"), str) \
            or not isinstance(config.get("model_args", {}), dict):
        raise ValueError(f"not an mfnet_zoo config (needs 'architecture' and 'model_args'): {str(config)[:200]}")
    check_config_values(config.get("model_args", {}))
    name = split_model_name_tag(config["architecture"])[0]  # an architecture, never a tag to download
    model = model_entrypoint(name)(pretrained=False, **config.get("model_args", {}))
    id2label = config.get("id2label")
    labels = tuple(id2label[str(i)] for i in range(len(id2label))) if id2label else None
    model.pretrained_cfg = model.pretrained_cfg.replace(
        label_names=labels, num_classes=model.num_classes,
        **{k: tuple(config[k]) for k in ("mean", "std", "input_size") if config.get(k)})
    return model
