"""create_model and load_model: the entries users type (as timm.create_model and its model sources)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from ._builder import load_saved_model
from ._registry import list_pretrained_tags, model_entrypoint, split_model_name_tag
from ._sources import HF_HUB_PREFIX, LOCAL_DIR_PREFIX, parse_model_source

__all__ = ["create_model", "load_model"]

HUB_KWARGS = ("revision", "cache_dir", "force_download", "local_files_only", "token")


def create_model(
    model_name: str,
    pretrained: bool | str = False,
    num_classes: int | None = None,
    encoder: str | None = None,
    encoder_weights: bool | str | None = None,
    output_stride: int | None = None,
    in_chans: int | None = None,
    pretrained_cfg_overlay: dict[str, Any] | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Create a registered model by name, e.g. ``create_model("mfnet_r50", num_classes=5)``.

    Args:
        model_name: a name from :func:`list_models`, optionally with a pretrained tag (``name.tag``);
            or, as timm, ``"hf-hub:org/repo"`` / ``"local-dir:PATH"``: the architecture saved there
            (random weights unless ``pretrained=True``).
        pretrained: True loads the tag's (or the default tag's) weights; also a saved source
            (``"hf-hub:org/repo"``, a ``save_pretrained`` folder, a ``.safetensors`` file, a training
            checkpoint or run, see :func:`load_model`) whose config must describe this model
            (``check_config=False`` loads the weights anyway).
        num_classes: classifier outputs (default 21 = PASCAL VOC; 1 = binary).
        encoder: timm encoder for the generic families (``mfnet``, ``deeplabv3plus``, ``emanet``).
        encoder_weights: timm ImageNet weights for the encoder: True (timm's default) or a tag.
        output_stride: 8, 16 (default) or 32, the stride of the deepest encoder features.
        in_chans: input channels (default 3).
        pretrained_cfg_overlay: fields replacing the tag's config, e.g. ``dict(file="w.safetensors")``
            to load a local file offline.
        **kwargs: block options of the family (``rank``, ``mode``, ``multi_grid``, ...); ``strict=True``
            makes a class-count mismatch with the weights an error.

    Arguments left at None take the family's defaults (or, for a saved source, the saved values).
    """
    if not isinstance(model_name, str):
        raise TypeError(f"model_name must be a str, got {type(model_name).__name__}")
    given = dict(num_classes=num_classes, encoder=encoder, encoder_weights=encoder_weights,
                 output_stride=output_stride, in_chans=in_chans, pretrained_cfg_overlay=pretrained_cfg_overlay)
    kwargs.update({k: v for k, v in given.items() if v is not None})
    if model_name.startswith((HF_HUB_PREFIX, LOCAL_DIR_PREFIX)):
        if not isinstance(pretrained, bool):
            raise TypeError(f"with a saved model as model_name ({model_name!r}) pretrained must be True or False, "
                            f"got {pretrained!r}")
        return _load_saved(parse_model_source(model_name), weights=pretrained, **kwargs)
    name, tag = split_model_name_tag(model_name)
    entrypoint = model_entrypoint(name)
    if tag and tag not in list_pretrained_tags(name):
        raise ValueError(f"unknown pretrained tag {tag!r} for {name!r}; available: {list_pretrained_tags(name)}")
    return entrypoint(pretrained=pretrained, pretrained_tag=tag, **kwargs)


def _load_saved(source, *, weights: bool = True, strict: bool = False, **kwargs: Any):
    hub_kwargs = {k: kwargs.pop(k) for k in HUB_KWARGS if k in kwargs}
    return load_saved_model(source, weights=weights, strict=strict, hub_kwargs=hub_kwargs, **kwargs)


def load_model(source: str | Path, **kwargs: Any) -> nn.Module:
    """One function for every model source: a new model, a pretrained tag, or saved weights.

    - a registry name (``"mfnet_r50"``): a new model with random weights, as ``create_model(name)``;
    - ``"name.tag"`` (``"mfnet_r50.tv_in1k"``): that pretrained tag, as ``create_model(name, pretrained=True)``;
    - ``"hf-hub:org/repo[@revision]"``, or ``"org/repo"`` when no such path exists (huggingface_hub's
      convention, as ``from_pretrained``): the repo's config.json decides architecture and arguments; its weights;
    - ``"local-dir:PATH"`` or a path: a ``save_pretrained`` folder, a ``.safetensors`` file with config.json
      beside it, a training checkpoint (``.pt``, read with ``weights_only=True``) or a training run folder
      (its ``best.pt``, else ``last.pt``).

    Keyword arguments apply on top (``num_classes=5``: a new head, the rest loaded; any constructor
    argument; ``strict=True``: a class-count mismatch is an error; for the Hub ``revision``,
    ``cache_dir``, ``force_download``, ``local_files_only``, ``token``). Errors name the source, the
    kind it was taken for and what was missing.
    """
    parsed = parse_model_source(source)
    if parsed.kind == "name":
        return create_model(parsed.location, **kwargs)
    if parsed.kind == "tag":
        return create_model(parsed.location, pretrained=True, **kwargs)
    return _load_saved(parsed, **kwargs)
