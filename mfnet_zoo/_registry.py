"""Model registry: architecture name -> entrypoint, pretrained tags, wildcard listing (as timm)."""
from __future__ import annotations

import difflib
import fnmatch
import sys
from collections.abc import Callable, Iterable

__all__ = ["register_model", "list_models", "is_model", "model_entrypoint", "list_pretrained_tags",
           "split_model_name_tag"]

_model_entrypoints: dict[str, Callable] = {}
_model_to_module: dict[str, str] = {}
_model_pretrained_tags: dict[str, list[str]] = {}  # the first tag is the default


def register_model(fn: Callable) -> Callable:
    """Decorator: register ``fn`` under its ``__name__`` as a model entrypoint."""
    name = fn.__name__
    if name in _model_entrypoints:
        raise ValueError(f"model {name!r} is already registered (by {_model_to_module[name]})")
    _model_entrypoints[name] = fn
    _model_to_module[name] = fn.__module__
    module = sys.modules[fn.__module__]
    if hasattr(module, "__all__") and name not in module.__all__:
        module.__all__.append(name)
    return fn


def register_pretrained_tags(name: str, tags: Iterable[str]) -> None:
    """Declare the pretrained tags of a registered model (``name.tag``); the first is the default."""
    _model_pretrained_tags[name] = list(tags)


def split_model_name_tag(model_name: str) -> tuple[str, str]:
    """'mfnet_r50.voc_aug' -> ('mfnet_r50', 'voc_aug'); no tag -> ''."""
    name, _, tag = model_name.partition(".")
    return name, tag


def list_models(pattern: str | Iterable[str] = "*", pretrained: bool = False) -> list[str]:
    """Registered names matching fnmatch ``pattern`` (or any of several), sorted.

    With ``pretrained=True`` only models with pretrained weights are listed, as ``name.tag``.
    """
    patterns = [pattern] if isinstance(pattern, str) else list(pattern)
    names = ([f"{n}.{t}" for n in _model_entrypoints for t in _model_pretrained_tags.get(n, [])]
             if pretrained else list(_model_entrypoints))
    return sorted({n for n in names for p in patterns if fnmatch.fnmatchcase(n, p)})


def list_pretrained_tags(model_name: str) -> list[str]:
    return list(_model_pretrained_tags.get(split_model_name_tag(model_name)[0], []))


def is_model(model_name: str) -> bool:
    return split_model_name_tag(model_name)[0] in _model_entrypoints


def model_entrypoint(model_name: str) -> Callable:
    """The entrypoint of ``model_name`` (tag ignored); ValueError with close matches if unknown."""
    name = split_model_name_tag(model_name)[0] if isinstance(model_name, str) else model_name
    if name not in _model_entrypoints:
        close = difflib.get_close_matches(str(name), list(_model_entrypoints), n=5, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"unknown model {model_name!r}{hint} (list_models() shows all "
                         f"{len(_model_entrypoints)} names)")
    return _model_entrypoints[name]
