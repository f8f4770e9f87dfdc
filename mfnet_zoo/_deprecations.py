"""What was renamed, in one place: old keyword arguments of the families (so that old config.json files and
checkpoints keep loading, with a one-line warning), moved public names, and removed module paths (refused
with a message naming the new one). Renamed model names go through the registry's
:func:`~mfnet_zoo._registry.register_model_deprecations`, as timm's."""
from __future__ import annotations

import importlib.abc
import sys
import warnings
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["RENAMED_ARGS", "MOVED_MODULES", "rename_args", "moved_names"]

# family -> old keyword -> new keyword (one word per quantity across the library)
RENAMED_ARGS: dict[str, dict[str, str]] = {
    "emanet": {"k": "rank"},
    "context_deeplab": {"channels": "decoder_channels"},
}

# module paths that no longer exist -> where their names are now
MOVED_MODULES: dict[str, str] = {
    "mfnet_zoo.layers.context": "mfnet_zoo.layers.context_protocol",
    "mfnet_zoo.layers.contexts": "mfnet_zoo.layers.create_context",
}


def rename_args(family: str, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """``kwargs`` with the family's renamed keywords under their new names (a FutureWarning each); an old and
    a new name together are a TypeError."""
    renamed = dict(kwargs)
    for old, new in RENAMED_ARGS.get(family, {}).items():
        if old in renamed:
            if new in renamed:
                raise TypeError(f"{family}: got both {old!r} and its new name {new!r}; give {new!r} only")
            warnings.warn(f"{family}: argument {old!r} is renamed {new!r} (config.json files keep loading; "
                          f"save again to update them)", FutureWarning, stacklevel=4)
            renamed[new] = renamed.pop(old)
    return renamed


def moved_names(module: str, moved: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` (PEP 562) for names that moved: ``moved`` maps a name to its new module.
    The old import keeps working, with a FutureWarning naming the new place."""
    def __getattr__(name: str) -> Any:
        if name not in moved:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        warnings.warn(f"{module}.{name} moved to {moved[name]}.{name}; import it from there", FutureWarning,
                      stacklevel=2)
        return getattr(__import__(moved[name], fromlist=[name]), name)  # sys.modules' module once imported

    return __getattr__


class _MovedModuleFinder(importlib.abc.MetaPathFinder):
    """Refuses a removed module path with an ImportError naming its new one (before Python says 'no module')."""

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> None:
        if fullname in MOVED_MODULES:
            raise ModuleNotFoundError(f"{fullname} was renamed {MOVED_MODULES[fullname]}: import from there (the "
                                      f"names are the same)", name=fullname)
        return None


if not any(isinstance(finder, _MovedModuleFinder) for finder in sys.meta_path):
    sys.meta_path.append(_MovedModuleFinder())
