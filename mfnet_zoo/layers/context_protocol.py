"""The context protocol: all that the model, the loss and the training engine know of a context block.

A context block is any ``nn.Module`` mapping B x C_in x h x w to B x C x h x w. Two optional parts:

- **A reconstruction pair.** A block with ``provides_reconstruction = True`` takes
  ``forward(x, return_reconstruction=False)`` and, when asked, returns ``(features, Reconstruction | None)``;
  the loss adds ``lambda * MSE`` whenever the pair is there.
- **A three-state switch**, ``context_state`` (a constructor argument, saved in config.json):
  ``"on"``: the context is in the features and the pair is returned; ``"off"``: the input goes straight
  to the projection, no pair (warm-up epochs); ``"pair-only"``: the pair is computed and returned but the
  features bypass the context (what the paper's code ran: its logits never saw the context).

Blocks without the switch (ASPP, EM attention, a user's block) simply ignore it: the engine's
warm-up then has nothing to switch, and everything else works the same.

- **Parameters without a gradient.** A block (or any module inside it) whose state leaves some of its
  parameters out of the loss's graph names them in ``unused_parameters(reconstruction)`` (``reconstruction``:
  whether the loss uses the pair). :func:`unused_parameters` collects them, so that the engine asks
  DistributedDataParallel for its costlier ``find_unused_parameters`` only when some exist.
"""
from __future__ import annotations

from typing import Literal, NamedTuple, get_args

import torch
from torch import nn

__all__ = ["CONTEXT_STATES", "Reconstruction", "check_context_state", "get_context_state",
           "provides_reconstruction", "set_context_state", "unused_parameters"]

ContextState = Literal["on", "off", "pair-only"]
CONTEXT_STATES: tuple[str, ...] = get_args(ContextState)


class Reconstruction(NamedTuple):
    """Auxiliary reconstruction pair; the loss adds ``lambda * MSE(estimate, target)``.

    target: B x C x h x w, the features the context approximates.
    estimate: B x C x h x w (or 1 x C x h x w, broadcast over the batch), its low-rank estimate.
    """

    target: torch.Tensor
    estimate: torch.Tensor


def check_context_state(state: object) -> ContextState:
    """``state`` if it is one of :data:`CONTEXT_STATES`, else a ValueError naming what is allowed."""
    if state not in CONTEXT_STATES:
        raise ValueError(f"context_state must be one of {CONTEXT_STATES}, got {state!r}")
    return state  # type: ignore[return-value]


def provides_reconstruction(block: nn.Module) -> bool:
    """Whether ``block`` can return a reconstruction pair (``forward(x, return_reconstruction=True)``)."""
    return bool(getattr(block, "provides_reconstruction", False))


def get_context_state(block: nn.Module) -> ContextState | None:
    """The block's ``context_state``, or None for a block without the switch."""
    return getattr(block, "context_state", None)


def set_context_state(block: nn.Module, state: ContextState) -> bool:
    """Switch ``block`` to ``state``; False (and nothing changed) for a block without the switch."""
    check_context_state(state)
    if get_context_state(block) is None:
        return False
    block.context_state = state
    return True


def unused_parameters(block: nn.Module, reconstruction: bool = True) -> set[str]:
    """Names (relative to ``block``) of the trainable parameters that get no gradient in a training step in
    the current state, as the modules inside ``block`` declare them (``unused_parameters(reconstruction)``);
    ``reconstruction``: whether the loss uses the reconstruction pair. Empty for blocks that declare none."""
    names: set[str] = set()
    for prefix, module in block.named_modules():
        if callable(getattr(type(module), "unused_parameters", None)):
            names |= {f"{prefix}.{n}" if prefix else n for n in module.unused_parameters(reconstruction)}
    trainable = {n for n, p in block.named_parameters() if p.requires_grad}
    return names & trainable
