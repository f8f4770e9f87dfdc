"""Weights on the Hugging Face Hub and on disk: safetensors only, clear errors, model cards.

Downloads go through ``huggingface_hub.hf_hub_download`` (its cache, ``HF_HUB_OFFLINE``,
``HF_ENDPOINT``); saving and publishing through ``PyTorchModelHubMixin`` on
:class:`~mfnet_zoo.SegmentationModel` (``save_pretrained``, ``from_pretrained``, ``push_to_hub``).
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import ModelCard, ModelCardData, hf_hub_download
from huggingface_hub.errors import (EntryNotFoundError, HfHubHTTPError, LocalEntryNotFoundError,
                                    RepositoryNotFoundError)
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from ._io import atomic_path
from ._pretrained import PretrainedCfg
from .version import __version__

__all__ = ["WEIGHTS_NAME", "CONFIG_NAME", "read_safetensors", "write_safetensors", "download_file", "load_weights",
           "load_pretrained", "hub_config", "model_from_config", "model_card"]

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
PICKLE_SUFFIXES = (".bin", ".pth", ".pt", ".pkl", ".pickle", ".ckpt", ".tar")


def _refuse_pickle(name: str) -> None:
    if Path(name).suffix.lower() in PICKLE_SUFFIXES:
        raise ValueError(f"refusing to load {name!r}: pickled weights can run code when loaded; mfnet_zoo loads "
                         f"safetensors only (convert trusted files with safetensors.torch.save_file)")


def read_safetensors(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from a .safetensors file; pickled formats are refused, truncated files named."""
    path = Path(path)
    _refuse_pickle(path.name)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {str(path)!r} does not exist")
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as e:
        raise ValueError(f"{str(path)!r} is not a readable safetensors file (truncated or corrupt?): {e}") from e


def write_safetensors(state_dict: dict[str, torch.Tensor], path: str | Path, metadata: dict[str, str] | None = None):
    """Write ``state_dict`` as safetensors atomically (temp file, then rename)."""
    tensors = {k: v.detach().contiguous().cpu() for k, v in state_dict.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"format": "pt", **(metadata or {})})


def download_file(repo_id: str, filename: str = WEIGHTS_NAME, revision: str | None = None, **hf_kwargs: Any) -> str:
    """``hf_hub_download`` with errors that say what is missing and how to provide it."""
    _refuse_pickle(filename)
    hint = (f"Without network, use the cache (HF_HUB_OFFLINE=1 after one download) or give the weights yourself: "
            f"create_model(name, pretrained='path/to/{WEIGHTS_NAME}') or "
            f"pretrained_cfg_overlay=dict(file='path/to/{WEIGHTS_NAME}')")
    try:
        return hf_hub_download(repo_id, filename, revision=revision, **hf_kwargs)
    except LocalEntryNotFoundError as e:  # offline, or the Hub unreachable, and not cached
        raise FileNotFoundError(f"{filename!r} of Hub repo {repo_id!r} is not in the local cache and the Hub "
                                f"cannot be reached. {hint}") from e
    except RepositoryNotFoundError as e:
        raise FileNotFoundError(f"Hub repo {repo_id!r} does not exist (or is private). {hint}") from e
    except EntryNotFoundError as e:
        raise FileNotFoundError(f"Hub repo {repo_id!r} has no {filename!r} (mfnet_zoo loads only safetensors "
                                f"weights). {hint}") from e
    except (HfHubHTTPError, OSError) as e:
        raise FileNotFoundError(f"cannot download {filename!r} from Hub repo {repo_id!r}: {e}. {hint}") from e


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
            path = download_file(cfg.hf_hub_id, cfg.filename, cfg.revision)
        else:  # encoder-only tag: timm already loaded the encoder
            warnings.warn(f"{model.model_name}.{cfg.tag}: encoder weights from timm ({cfg.encoder_weights}); the "
                          f"context, decoder and classifier are newly initialised - train before use",
                          UserWarning, stacklevel=4)
            return
    elif isinstance(pretrained, str) and pretrained.startswith("hf-hub:"):
        repo_id, _, revision = pretrained[len("hf-hub:"):].partition("@")
        path = download_file(repo_id, WEIGHTS_NAME, revision or None)
    elif isinstance(pretrained, (str, Path)):
        path = Path(pretrained)
        path = path / WEIGHTS_NAME if path.is_dir() else path
    else:
        raise TypeError(f"pretrained must be a bool, 'hf-hub:org/repo' or a path, got {pretrained!r}")
    load_weights(model, read_safetensors(path), strict=strict, source=str(path))


def hub_config(model: nn.Module) -> dict[str, Any]:
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


MAX_CONFIG_INT = 1 << 16  # no size argument of any registered model comes near this


def _check_config_values(args: dict[str, Any], path: str = "model_args") -> None:
    """Reject values a config has no business holding, before anything is allocated: JSON data
    only (no objects), no sizes beyond MAX_CONFIG_INT (a rank of 10**9 would try to allocate
    terabytes)."""
    for key, value in args.items():
        where = f"{path}.{key}"
        if isinstance(value, dict):
            _check_config_values(value, where)
        elif isinstance(value, (list, tuple)):
            _check_config_values({str(i): v for i, v in enumerate(value)}, where)
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
    from ._factory import create_model

    if not isinstance(config, dict) or not isinstance(config.get("architecture"), str) \
            or not isinstance(config.get("model_args", {}), dict):
        raise ValueError(f"not an mfnet_zoo config (needs 'architecture' and 'model_args'): {str(config)[:200]}")
    _check_config_values(config.get("model_args", {}))
    model = create_model(config["architecture"], **config.get("model_args", {}))
    id2label = config.get("id2label")
    labels = tuple(id2label[str(i)] for i in range(len(id2label))) if id2label else None
    model.pretrained_cfg = model.pretrained_cfg.replace(
        label_names=labels, num_classes=model.num_classes,
        **{k: tuple(config[k]) for k in ("mean", "std", "input_size") if config.get(k)})
    return model


def read_config(path: str | Path) -> dict[str, Any]:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"cannot read model config {str(path)!r}: {e}") from e


CARD_TEMPLATE = """---
{{ card_data }}
---

# {{ model_id | default("mfnet_zoo model", true) }}

`{{ architecture }}` from mfnet_zoo (`pip install mfnet-zoo`): {{ description }}

- encoder: `{{ encoder }}` (timm), output stride {{ output_stride }}
- blocks: {{ blocks }}
- classes: {{ num_classes }}{% if labels %} ({{ labels }}){% endif %}
- parameters: {{ parameters }}
{% if metrics %}
## Results{% if dataset %} on {{ dataset }}{% endif %}

| metric | value |
|---|---:|
{% for name, value in metrics.items() %}| {{ name }} | {{ value }} |
{% endfor %}{% endif %}
## Usage

```python
import mfnet_zoo

model = mfnet_zoo.from_pretrained("{{ repo_id | default("path/to/this/folder", true) }}").eval()
logits = model(images).logits  # images: B x 3 x H x W, normalised with mean {{ mean }}, std {{ std }}
```
"""


def model_card(model: nn.Module, repo_id: str | None = None, metrics: dict[str, float] | None = None,
               dataset: str | None = None, license: str | None = None) -> ModelCard:
    """A model card with YAML metadata (library, tags, datasets, metrics) and a usage snippet."""
    from ._registry import model_entrypoint

    cfg: PretrainedCfg = model.pretrained_cfg
    metrics = metrics if metrics is not None else cfg.metrics
    dataset = dataset or cfg.dataset
    card_data = ModelCardData(library_name="mfnet_zoo", pipeline_tag="image-segmentation",
                              license=license or cfg.license,
                              tags=["image-segmentation", "mfnet_zoo", model.model_name],
                              datasets=[dataset] if dataset else None,
                              model_name=repo_id or model.model_name,
                              metrics=sorted(metrics) if metrics else None)
    labels = ", ".join(cfg.label_names) if cfg.label_names and len(cfg.label_names) == model.num_classes else None
    return ModelCard.from_template(
        card_data, template_str=CARD_TEMPLATE, model_id=repo_id, repo_id=repo_id,
        architecture=model.model_name,
        description=(model_entrypoint(model.model_name).__doc__ or "").strip().splitlines()[0],
        encoder=model.encoder.name, output_stride=model.output_stride,
        blocks=" -> ".join(type(m).__name__ for m in (model.encoder, model.context, model.decoder)),
        num_classes=model.num_classes, labels=labels, parameters=f"{sum(p.numel() for p in model.parameters()):,}",
        metrics={k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in (metrics or {}).items()},
        dataset=dataset, mean=list(cfg.mean), std=list(cfg.std))
