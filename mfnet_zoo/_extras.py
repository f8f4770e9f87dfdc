"""Optional dependencies: the modules behind setup.cfg's extras, and one error naming the extra that installs
a missing one (instead of a traceback ending in ``No module named 'onnxscript'``)."""
from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["EXTRAS", "MissingExtraError", "require"]

# module -> the extra of setup.cfg that installs it (tests/test_own_data.py checks this against setup.cfg)
EXTRAS: dict[str, str] = {"onnx": "export", "onnxscript": "export", "onnxruntime": "export", "scipy": "data"}


class MissingExtraError(ModuleNotFoundError):
    """An optional dependency is not installed; the message says which extra installs it (the CLI prints it
    as one line)."""


def require(module: str, purpose: str) -> ModuleType:
    """Import ``module`` (one of :data:`EXTRAS` or a submodule, ``"scipy.io"``), or raise
    :class:`MissingExtraError` saying what needs it (``purpose``, e.g. ``"ONNX export"``) and the install
    command of its extra: mfnet_zoo is installed from a checkout (``pip install -e .``), not from an index."""
    package = module.partition(".")[0]
    extra = EXTRAS[package]
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise MissingExtraError(
            f"{purpose} needs {package}, which is not installed: pip install -e \".[{extra}]\" in the mfnet_zoo "
            f"checkout (the [{extra}] extra: {', '.join(m for m, x in EXTRAS.items() if x == extra)})",
            name=package) from e
