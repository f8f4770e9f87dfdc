"""Input checks shared by the blocks: cheap Python checks on shapes and dtypes, skipped while tracing."""
from __future__ import annotations

import torch

__all__ = ["check_feature_map", "check_positive_int", "is_tracing"]


def is_positive_int(value: object) -> bool:
    """Whether ``value`` is an int > 0 (a bool is not one)."""
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def check_positive_int(name: str, value: object) -> None:
    """Raise ValueError unless ``value`` is an int > 0 (bools excluded), naming ``name``."""
    if not is_positive_int(value):
        raise ValueError(f"{name} must be a positive int, got {value!r}")


def is_tracing() -> bool:
    """True under torch.compile / torch.export / jit, where checks would add guards or break tracing."""
    return torch.compiler.is_compiling() or torch.jit.is_tracing() or torch.jit.is_scripting()


def check_feature_map(x: torch.Tensor, channels: int, block: str) -> None:
    """Raise TypeError/ValueError unless x is a floating B x ``channels`` x h x w tensor.

    No value checks (NaN/inf): those would need a device-to-host sync on every call.
    """
    if is_tracing():
        return
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{block} expects a torch.Tensor B x {channels} x h x w, got {type(x).__name__}")
    if x.ndim != 4 or x.shape[1] != channels:
        raise ValueError(f"{block} expects B x {channels} x h x w features, got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"{block} expects floating-point features, got dtype {x.dtype}")
