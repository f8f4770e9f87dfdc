"""Model registry: architecture name -> entrypoint, pretrained tags, wildcard listing (as timm).

Every lookup first imports the built-in family modules (:data:`BUILTIN_FAMILIES`, by module path), so
the registry is complete whichever entry point a program came in by (``mfnet_zoo.convert``,
``mfnet_zoo._factory``, the CLI, the facade); importing them on demand keeps ``import mfnet_zoo`` and
``mfnet-zoo --help`` free of torch.
"""
from __future__ import annotations

import difflib
import fnmatch
import importlib
import inspect
import sys
import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ._pretrained import PretrainedCfg

__all__ = ["register_model", "register_pretrained_cfgs", "list_models", "is_model", "model_entrypoint",
           "list_pretrained_tags", "get_pretrained_cfg", "split_model_name_tag", "get_model_family", "get_test_configs",
           "untested_reason", "unregister_model", "default_encoder_weights", "register_model_deprecations",
           "get_family_options", "BUILTIN_FAMILIES"]

_model_entrypoints: dict[str, Callable] = {}
_model_to_module: dict[str, str] = {}
_model_pretrained_cfgs: dict[str, dict[str, PretrainedCfg]] = {}  # name -> tag -> cfg; the first tag is the default
_model_family: dict[str, str] = {}
_model_test_configs: dict[str, dict[str, dict[str, Any]]] = {}  # name -> test id -> kwargs of a tiny instance
_family_options: dict[str, tuple[str, ...]] = {}  # family -> its head function's keyword-only arguments

# the families that ship with the package; they register themselves when imported. Named by path, not
# imported statically: they sit above the registry (the one upward import, tests/test_architecture.py)
BUILTIN_FAMILIES: tuple[str, ...] = ("mfnet_zoo.models.mfnet", "mfnet_zoo.models.deeplabv3plus",
                                     "mfnet_zoo.models.emanet", "mfnet_zoo.models.context_deeplab",
                                     "mfnet_zoo.models.fast_deeplab")
_builtins_loaded = False
_deprecated_models: dict[str, str] = {}  # old name -> current name (register_model_deprecations)


def _load_builtin_families() -> None:
    """Import the built-in families once (each registers its models); a no-op after the first lookup."""
    global _builtins_loaded
    if not _builtins_loaded:  # a lookup made while a family imports gets that module as far as it is
        for module in BUILTIN_FAMILIES:
            importlib.import_module(module)
        _builtins_loaded = True


def register_model(fn: Callable | None = None, *, family: str | None = None,
                   test_configs: Mapping[str, Mapping[str, Any]] | None = None,
                   head: Callable | None = None) -> Callable:
    """Decorator: register ``fn`` under its ``__name__`` as a model entrypoint.

    ``@register_model`` alone, as timm's; or ``@register_model(family=..., test_configs=...)``:
    ``family`` names the generic model a fixed variant belongs to (default: the name itself) and
    ``test_configs`` maps a test id to the keyword arguments of a tiny instance (e.g.
    ``{"static": {"encoder": "test_resnet"}}``): the test suite builds its shared tiny-model set
    from them, so a newly registered family is covered by every test matrix. ``head``: the family's head
    function, whose keyword-only arguments are the block options a saved config may hold
    (:func:`get_family_options`); give it on the family's generic model, its variants share it.
    """
    def register(fn: Callable) -> Callable:
        name = fn.__name__
        if name in _model_entrypoints:
            raise ValueError(f"model {name!r} is already registered (by {_model_to_module[name]})")
        _model_entrypoints[name] = fn
        _model_to_module[name] = fn.__module__
        _model_family[name] = family or name
        if test_configs:
            _model_test_configs[name] = {key: dict(kwargs) for key, kwargs in test_configs.items()}
        if head is not None:
            _family_options[family or name] = tuple(p.name for p in inspect.signature(head).parameters.values()
                                                    if p.kind is p.KEYWORD_ONLY)
        module = sys.modules[fn.__module__]
        if hasattr(module, "__all__") and name not in module.__all__:
            module.__all__.append(name)
        return fn

    return register if fn is None else register(fn)


def register_model_deprecations(deprecated: Mapping[str, str]) -> None:
    """Old model names -> their current names, as timm's: an old name keeps working (configs and checkpoints
    that hold it load) with a FutureWarning naming the new one; ``list_models`` shows current names only."""
    for old, new in deprecated.items():
        if old in _model_entrypoints:
            raise ValueError(f"{old!r} is a registered model; a deprecated name must not be one")
        _deprecated_models[old] = new


def unregister_model(name: str) -> None:
    """Remove ``name`` and its tags from the registry (for tests and interactive sessions)."""
    for table in (_model_entrypoints, _model_to_module, _model_family, _model_test_configs, _model_pretrained_cfgs,
                  _family_options):
        table.pop(name, None)


def get_model_family(model_name: str) -> str:
    """The family of ``model_name``: the generic model a fixed variant belongs to, else the name itself."""
    return _model_family[model_entrypoint(model_name).__name__]  # unknown names: ValueError with close matches


def get_family_options(model_name: str) -> tuple[str, ...] | None:
    """The block options of ``model_name``'s family (its head function's keyword-only arguments), or None when
    the family was registered without ``head``."""
    return _family_options.get(get_model_family(model_name))


def get_test_configs(model_name: str) -> dict[str, dict[str, Any]]:
    """Test id -> keyword arguments of a tiny test instance of ``model_name`` (empty: none declared)."""
    model_entrypoint(model_name)
    configs = _model_test_configs.get(split_model_name_tag(model_name)[0], {})
    return {key: dict(kwargs) for key, kwargs in configs.items()}


def untested_reason(model_name: str) -> str | None:
    """Why ``model_name`` has no tiny test instance (None when it has one): a fixed variant is covered
    by its family's generic model, which shares its blocks; anything else has no reason."""
    _load_builtin_families()
    name = split_model_name_tag(model_name)[0]
    if get_test_configs(name):
        return None
    family = _model_family[name]
    if family != name and _model_test_configs.get(family):
        return f"a fixed-encoder variant of {family!r}, whose tiny instances test the same blocks"
    return None


def register_pretrained_cfgs(cfgs: dict[str, PretrainedCfg]) -> None:
    """Declare pretrained tags, ``{"name.tag": PretrainedCfg(...)}``; a model's first tag is its default.

    Register a tag only when its weights exist.
    """
    for full_name, cfg in cfgs.items():
        name, tag = split_model_name_tag(full_name)
        if not tag:
            raise ValueError(f"pretrained config name must be 'arch.tag', got {full_name!r}")
        _model_pretrained_cfgs.setdefault(name, {})[tag] = cfg.replace(tag=tag)


def split_model_name_tag(model_name: str) -> tuple[str, str]:
    """'mfnet_r50.voc_aug' -> ('mfnet_r50', 'voc_aug'); no tag -> ''."""
    name, _, tag = model_name.partition(".")
    return name, tag


def list_models(pattern: str | Iterable[str] = "*", pretrained: bool = False) -> list[str]:
    """Registered names matching fnmatch ``pattern`` (or any of several), sorted.

    With ``pretrained=True`` only models with pretrained weights are listed, as ``name.tag``.
    """
    _load_builtin_families()
    patterns = [pattern] if isinstance(pattern, str) else list(pattern)
    names = ([f"{n}.{t}" for n in _model_entrypoints for t in _model_pretrained_cfgs.get(n, {})]
             if pretrained else list(_model_entrypoints))
    return sorted({n for n in names for p in patterns if fnmatch.fnmatchcase(n, p)})


def list_pretrained_tags(model_name: str) -> list[str]:
    """Tags of ``model_name``, the default first."""
    _load_builtin_families()
    return list(_model_pretrained_cfgs.get(split_model_name_tag(model_name)[0], {}))


def get_pretrained_cfg(model_name: str, tag: str = "") -> PretrainedCfg | None:
    """The config of ``model_name.tag`` (``tag`` empty: the default tag), or None if there is none."""
    _load_builtin_families()
    name, name_tag = split_model_name_tag(model_name)
    cfgs = _model_pretrained_cfgs.get(name, {})
    tag = tag or name_tag or next(iter(cfgs), "")
    return cfgs.get(tag)


def default_encoder_weights(model_name: str, encoder: str | None = None) -> str | bool:
    """The encoder weights training starts from by default (``mfnet-zoo train`` without ``--encoder-weights``).

    - a model with a registered encoder-weights tag (the paper's ``mfnet_r50`` ...): that tag's timm
      weights, ``"resnet50.tv_in1k"``;
    - a generic family given an ``encoder``: True, timm's default pretrained tag of that encoder;
    - a generic family on its default encoder: the encoder-weights tag registered for that encoder in
      the family (``mfnet`` -> ``mfnet_r50.tv_in1k`` -> ``"resnet50.tv_in1k"``), else True.

    As a value of ``create_model(..., encoder_weights=...)``.
    """
    model_entrypoint(model_name)  # unknown names: ValueError with close matches
    name = split_model_name_tag(model_name)[0]
    parameter = inspect.signature(_model_entrypoints[name]).parameters.get("encoder")
    if parameter is None:  # a fixed-encoder variant: its own (default or named) tag
        cfg = get_pretrained_cfg(model_name)
        return cfg.encoder_weights if cfg is not None and cfg.encoder_weights else True
    if encoder is not None or not isinstance(parameter.default, str):
        return True
    family = _model_family[name]
    for member in [name] + sorted(n for n, f in _model_family.items() if f == family and n != name):
        for cfg in _model_pretrained_cfgs.get(member, {}).values():
            if cfg.encoder_weights and split_model_name_tag(cfg.encoder_weights)[0] == parameter.default:
                return cfg.encoder_weights
    return True


def is_model(model_name: str) -> bool:
    """Whether ``model_name`` (tag ignored) is registered."""
    _load_builtin_families()
    return split_model_name_tag(model_name)[0] in _model_entrypoints


def model_entrypoint(model_name: str) -> Callable:
    """The entrypoint of ``model_name`` (tag ignored); ValueError with close matches if unknown."""
    _load_builtin_families()
    name = split_model_name_tag(model_name)[0] if isinstance(model_name, str) else model_name
    if name in _deprecated_models:
        warnings.warn(f"model {name!r} is renamed {_deprecated_models[name]!r}", FutureWarning, stacklevel=2)
        name = _deprecated_models[name]
    if name not in _model_entrypoints:
        close = difflib.get_close_matches(str(name), list(_model_entrypoints), n=5, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"unknown model {model_name!r}{hint} (mfnet-zoo list, or list_models() in Python, shows "
                         f"all {len(_model_entrypoints)} names)")
    return _model_entrypoints[name]
