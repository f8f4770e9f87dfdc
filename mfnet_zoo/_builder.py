"""Weights into models and models from configs (as timm's ``_builder``): the layer between the
registry and the Hub I/O leaf.

- :func:`load_weights` checks a state dict against a model and loads it whole, re-heading a
  classifier of another class count;
- :func:`load_pretrained` resolves what ``pretrained=`` names (a tag, ``hf-hub:``, a path) to a file;
- :func:`model_config` / :func:`model_from_config` write and read ``config.json``: the registry
  name and every constructor argument, rebuilt through :func:`~mfnet_zoo.model_entrypoint`.

A saved config is data, not instructions: :func:`check_saved_args` admits only the family's constructor
arguments and refuses anything that would fetch weights, so loading a saved model reads its own files only.
"""
from __future__ import annotations

import json
import re
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import hub
from ._deprecations import RENAMED_ARGS
from ._pretrained import PretrainedCfg, resolve_data_config
from ._registry import get_family_options, get_model_family, model_entrypoint, split_model_name_tag
from ._sources import ModelSource, parse_model_source
from .checkpoint import RUN_CHECKPOINTS, checkpoint_config, read_checkpoint
from .version import __version__

__all__ = ["load_weights", "load_pretrained", "model_config", "model_from_config", "check_config_values",
           "check_saved_args", "model_from_checkpoint", "saved_files", "load_saved_model",
           "check_same_model", "CONFIG_ARGS", "WEIGHTS_ARGS"]

MAX_CONFIG_INT = 1 << 16  # no size argument of any registered model comes near this
# the common constructor arguments a saved config's model_args hold (model.model_args, besides the block options)
CONFIG_ARGS = ("num_classes", "encoder", "output_stride", "in_chans", "multi_grid", "encoder_kwargs")
# constructor arguments that choose weights to fetch: never taken from a saved config
WEIGHTS_ARGS = ("encoder_weights", "pretrained_tag", "pretrained_cfg_overlay")
FETCHING_KEYS = ("url", "file", "hf_hub_id")  # where a pretrained config says to fetch from: refused at any depth
TIMM_FETCHING_KWARGS = ("checkpoint_path", "cache_dir")  # timm.create_model's, with pretrained*: not in encoder_kwargs
TIMM_NAME = re.compile(r"[A-Za-z0-9_]+(\.[A-Za-z0-9_-]+)?")  # an architecture (and tag), never hf-hub:/local-dir:


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


def load_pretrained(model: nn.Module, pretrained: bool | str | Path, cfg: PretrainedCfg, strict: bool = False,
                    check_config: bool = True) -> None:
    """Load whole-model weights named by ``pretrained`` into ``model``: True (the tag's, ``cfg``) or a saved
    source (``"hf-hub:org/repo[@rev]"``, a ``save_pretrained`` folder, a ``.safetensors`` file, a training
    checkpoint or run; see :mod:`mfnet_zoo._sources`). A source whose config describes another model is an
    error naming both (:func:`check_same_model`) unless ``check_config=False``."""
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
        load_weights(model, hub.read_safetensors(path), strict=strict, source=str(path))
        return
    if not isinstance(pretrained, (str, Path)):
        raise TypeError(f"pretrained must be a bool, 'hf-hub:org/repo' or a path, got {pretrained!r}")
    source = parse_model_source(pretrained)
    config, state_dict = saved_files(source)
    if config is not None and check_config:
        if isinstance(config, dict) and config.get("architecture") == model.model_name \
                and isinstance(config.get("model_args"), dict):  # compared, never built from: still data only
            check_saved_args(model.model_name, config["model_args"], config_origin(source))
        check_same_model(model, config, source)
    load_weights(model, state_dict(), strict=strict, source=source.describe())


def model_config(model: nn.Module) -> dict[str, Any]:
    """What ``config.json`` holds: the registry name and every constructor argument, plus data settings."""
    cfg: PretrainedCfg = model.pretrained_cfg
    labels = cfg.label_names if cfg.label_names and len(cfg.label_names) == model.num_classes else None
    data = resolve_data_config(model)
    return {
        "architecture": model.model_name,
        "model_args": {**model.model_args, "num_classes": model.num_classes},
        "num_classes": model.num_classes,
        "id2label": {str(i): name for i, name in enumerate(labels)} if labels else None,
        "mean": list(data["mean"]),
        "std": list(data["std"]),
        "interpolation": data["interpolation"],
        "input_size": list(data["input_size"]),
        "reparameterized": bool(getattr(model, "reparameterized", False)),
        "library_name": "mfnet_zoo",
        "library_version": __version__,
    }


def check_config_values(args: dict[str, Any], path: str = "model_args", origin: str = "config") -> None:
    """Reject values a config has no business holding, before anything is allocated: JSON data
    only (no objects), no sizes beyond MAX_CONFIG_INT (a rank of 10**9 would try to allocate
    terabytes), no ``url``/``file``/``hf_hub_id`` key at any depth (where to fetch weights from).
    ``origin`` (the file) starts each message."""
    for key, value in args.items():
        where = f"{path}.{key}"
        if key in FETCHING_KEYS:
            raise ValueError(f"{origin}: {where} says where to fetch weights from; a saved model's config is data "
                             f"and loading reads only the model's own files: refusing it")
        if isinstance(value, dict):
            check_config_values(value, where, origin)
        elif isinstance(value, (list, tuple)):
            check_config_values({str(i): v for i, v in enumerate(value)}, where, origin)
        elif isinstance(value, bool) or value is None or isinstance(value, str):
            continue
        elif isinstance(value, int):
            if abs(value) > MAX_CONFIG_INT:
                raise ValueError(f"{origin}: config value {where}={value} is implausibly large (limit "
                                 f"{MAX_CONFIG_INT}); refusing to build it")
        elif not isinstance(value, float):
            raise ValueError(f"{origin}: config value {where} has type {type(value).__name__}; only JSON data is "
                             f"allowed")


def check_saved_args(model_name: str, args: dict[str, Any], origin: str) -> None:
    """Refuse, before anything is built, what the ``model_args`` of a saved config or checkpoint (``origin``)
    must not hold, each a one-line ValueError naming the key and the file: a key that is no constructor argument
    of the family (allowed: CONFIG_ARGS, the family's block options and their old names, RENAMED_ARGS); weights
    to fetch (WEIGHTS_ARGS; ``pretrained*``, ``checkpoint_path``, ``cache_dir`` in ``encoder_kwargs``; ``url``,
    ``file``, ``hf_hub_id`` anywhere); an encoder that is no timm name (timm fetches ``hf-hub:`` configs);
    values that are not JSON data or implausibly large (:func:`check_config_values`)."""
    entrypoint = model_entrypoint(model_name)
    options = get_family_options(entrypoint.__name__)
    family = get_model_family(entrypoint.__name__)
    allowed = set(CONFIG_ARGS) | set(options or ()) | set(RENAMED_ARGS.get(family, {}))
    for key in args:
        if key in WEIGHTS_ARGS:
            raise ValueError(f"{origin}: model_args.{key} chooses weights to fetch; a saved model's config is data "
                             f"and loading takes weights only from the model's own files: refusing it")
        if options is not None and key not in allowed:
            raise ValueError(f"{origin}: model_args.{key} is not a constructor argument of {family!r} (allowed: "
                             f"{', '.join(sorted(allowed))}): refusing it")
    encoder_kwargs = args.get("encoder_kwargs") or {}
    if not isinstance(encoder_kwargs, dict):
        raise ValueError(f"{origin}: model_args.encoder_kwargs must be a dict of timm options, got "
                         f"{type(encoder_kwargs).__name__}")
    for key in encoder_kwargs:
        if str(key).startswith("pretrained") or key in TIMM_FETCHING_KWARGS:
            raise ValueError(f"{origin}: model_args.encoder_kwargs.{key} makes timm load weights; a saved model's "
                             f"config is data and loading takes weights only from the model's own files: refusing it")
    encoder = args.get("encoder")
    if encoder is not None and not (isinstance(encoder, str) and TIMM_NAME.fullmatch(encoder)):
        raise ValueError(f"{origin}: model_args.encoder={encoder!r} is not a timm architecture name (a Hub repo or "
                         f"a path would make timm fetch it): refusing it")
    check_config_values(args, "model_args", origin)


def _check_config_shape(config: Any) -> None:
    if not isinstance(config, dict) or not isinstance(config.get("architecture"), str) \
            or not isinstance(config.get("model_args", {}), dict):
        raise ValueError(f"not an mfnet_zoo config (needs 'architecture' and 'model_args'): {str(config)[:200]}")


def model_from_config(config: dict[str, Any], *, origin: str = "config.json",
                      overrides: dict[str, Any] | None = None) -> nn.Module:
    """Rebuild the architecture described by a ``config.json`` or checkpoint (``origin``, for messages), as
    data: registered names only, ``model_args`` checked by :func:`check_saved_args`, no weights fetched (the
    caller loads the saved ones). ``overrides``: the caller's keyword arguments, applied on top as given."""
    _check_config_shape(config)
    name = split_model_name_tag(config["architecture"])[0]  # an architecture, never a tag to download
    entrypoint = model_entrypoint(name)
    args = dict(config.get("model_args", {}))
    check_saved_args(entrypoint.__name__, args, origin)
    model = entrypoint(pretrained=False, **{**args, **(overrides or {})})
    id2label = config.get("id2label")
    labels = tuple(id2label[str(i)] for i in range(len(id2label))) if id2label else None
    saved = {k: tuple(config[k]) for k in ("mean", "std", "input_size") if config.get(k)}
    if isinstance(config.get("interpolation"), str):
        saved["interpolation"] = config["interpolation"]
    # the saved data settings win over the encoder's (a config from before they followed the encoder: ImageNet's)
    model.pretrained_cfg = model.pretrained_cfg.replace(label_names=labels, num_classes=model.num_classes, **saved)
    if config.get("reparameterized"):  # saved folded for inference: the same structure, then its weights
        model.reparameterize()
    return model


def model_from_checkpoint(checkpoint: dict[str, Any], source: str = "checkpoint") -> nn.Module:
    """The model a training checkpoint (:func:`read_checkpoint`) holds: its architecture and arguments, its
    weights loaded whole (``strict``: the same model, so a key or shape that differs is an error)."""
    model = model_from_config(checkpoint_config(checkpoint), origin=source)
    load_weights(model, checkpoint["state_dict"], strict=True, source=source)
    return model


def _read_json(path: Path, source: ModelSource) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise source.error(f"cannot read {str(path)!r}: {e}") from e


def saved_files(source: ModelSource, **hub_kwargs: Any) -> tuple[dict[str, Any] | None, Callable[[], dict]]:
    """(config.json or None where the source has none, a function reading the state dict) of a saved source:
    a Hub repo, a ``save_pretrained`` folder, a ``.safetensors`` file, a checkpoint or a training run.

    The weights are read only when asked for, so a config alone costs no weights download.
    ``hub_kwargs`` go to ``hf_hub_download`` (``token``, ``cache_dir``, ``local_files_only``, ...).
    """
    if source.kind == "hf-hub":
        revision = hub_kwargs.pop("revision", None) or source.revision
        config_path = hub.download_file(source.location, hub.CONFIG_NAME, revision, missing_ok=True, **hub_kwargs)
        config = _read_json(Path(config_path), source) if config_path else None
        return config, lambda: hub.read_safetensors(
            hub.download_file(source.location, hub.WEIGHTS_NAME, revision, **hub_kwargs))
    if source.kind in ("folder", "safetensors"):
        path = Path(source.location)
        weights = path / hub.WEIGHTS_NAME if source.kind == "folder" else path
        config_path = weights.parent / hub.CONFIG_NAME
        return (_read_json(config_path, source) if config_path.is_file() else None), \
            lambda: hub.read_safetensors(weights)
    if source.kind in ("checkpoint", "run"):
        checkpoint = read_checkpoint(_checkpoint_path(source))
        return checkpoint_config(checkpoint), lambda: checkpoint["state_dict"]
    raise source.error("it names a model in the registry, not saved weights; use create_model or load_model")


def _checkpoint_path(source: ModelSource) -> Path:
    path = Path(source.location)
    return next(path / name for name in RUN_CHECKPOINTS if (path / name).is_file()) if source.kind == "run" else path


def config_origin(source: ModelSource) -> str:
    """Where a saved source's config comes from, as messages name it: the config.json or checkpoint file."""
    if source.kind == "hf-hub":
        return f"{hub.CONFIG_NAME} of Hub repo {source.location!r}"
    if source.kind in ("checkpoint", "run"):
        return str(_checkpoint_path(source))
    path = Path(source.location)
    return str((path if source.kind == "folder" else path.parent) / hub.CONFIG_NAME)


def load_saved_model(source: ModelSource, *, weights: bool = True, strict: bool = False,
                     hub_kwargs: dict[str, Any] | None = None, **model_kwargs: Any) -> nn.Module:
    """The model a saved source describes (its config.json, or a checkpoint's name and arguments), with
    ``model_kwargs`` applied on top (``num_classes=5``: a new head, the rest loaded), and its weights
    unless ``weights=False``."""
    config, state_dict = saved_files(source, **(hub_kwargs or {}))
    if config is None:
        raise FileNotFoundError(f"model source {source.describe()} has no readable {hub.CONFIG_NAME}, so its "
                                f"architecture is unknown; name it: create_model(NAME, pretrained={source.text!r})")
    model = model_from_config(config, origin=config_origin(source), overrides=model_kwargs)
    if weights:
        load_weights(model, state_dict(), strict=strict, source=source.describe())
    return model


def _normalised(value: Any) -> Any:
    return json.loads(json.dumps(value))  # tuples and lists alike, as config.json stores them


def check_same_model(model: nn.Module, config: dict[str, Any], source: ModelSource) -> None:
    """ValueError naming both sides when ``config`` (saved with the weights) describes another architecture
    or other constructor arguments than ``model`` (the class count aside: a new head is loading's job)."""
    theirs = config.get("model_args", {})
    differences = [] if config.get("architecture") == model.model_name else \
        [f"architecture {config.get('architecture')!r} (saved) vs {model.model_name!r} (asked for)"]
    differences += [f"{key}={_normalised(theirs[key])!r} (saved) vs {_normalised(model.model_args[key])!r} (asked for)"
                    for key in sorted(set(theirs) & set(model.model_args) - {"num_classes"})
                    if _normalised(theirs[key]) != _normalised(model.model_args[key])]
    if differences:
        raise ValueError(f"model source {source.describe()} holds another model than the one asked for: "
                         f"{'; '.join(differences)}. Load it as saved with mfnet_zoo.load_model({source.text!r}) "
                         f"(keyword arguments apply on top), or pass check_config=False to load its weights into "
                         f"the model asked for")
