"""The training checkpoint (``.pt``): its layout, defined once, and the one place ``torch.load`` is called.

A checkpoint is a dict of tensors, numbers, strings and containers, read with ``weights_only=True``
(no code runs when it is loaded). :class:`~mfnet_zoo.train.Trainer` writes it; loading a model from
it (:mod:`mfnet_zoo._builder`) and publishing it (:mod:`mfnet_zoo.publish`) read it:

- ``model_name``, ``model_args``: the registry name and every constructor argument (as config.json);
- ``data_config``: the normalisation the model was trained with (mean, std, interpolation, input size);
- ``state_dict``: the weights; ``class_names``: the dataset's, or None;
- ``optimizer``, ``scheduler``, ``scaler`` (or None), ``rng``: what a resumed run continues from (``rng``: a
  list, every process's :func:`rng_state` in rank order; one dict, rank 0's, in older checkpoints);
- ``epoch`` (completed), ``best_miou``, ``history`` (metrics.jsonl's records), ``config`` (the TrainConfig)
  and ``world_size``, the process count its ``grad_accum_steps`` was meant for (the two give the global batch);
- ``progress``: None at an epoch's end; mid-epoch, how far the next epoch got (``batches`` done, their
  loss ``sums``, ``seconds``) and ``epoch_rng``, every process's RNG states at that epoch's start.
"""
from __future__ import annotations

import pickle
import random
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ._atomic import atomic_path
from ._pretrained import resolve_data_config

__all__ = ["LAST", "BEST", "RUN_CHECKPOINTS", "MODEL_KEYS", "torch_load", "read_checkpoint", "write_checkpoint",
           "checkpoint_config", "training_checkpoint", "rng_state", "restore_rng"]

LAST, BEST = "last.pt", "best.pt"  # in a run folder: the latest epoch's, the best validation mIoU's
RUN_CHECKPOINTS = (BEST, LAST)  # what loading a run folder looks for, the preferred first
MODEL_KEYS = ("model_name", "model_args", "data_config", "state_dict", "class_names")  # what rebuilds the model
DATA_KEYS = ("mean", "std", "interpolation", "input_size")  # data_config's, as config.json's


def torch_load(path: str | Path, *, safe_globals: Iterable[Any] = ()) -> Any:
    """``torch.load(path, map_location="cpu", weights_only=True)`` with errors that name the file: a missing
    file is FileNotFoundError, a pickle with objects beyond tensors and containers (``safe_globals`` allows
    more) or a truncated file is a ValueError saying which."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    try:
        with torch.serialization.safe_globals(list(safe_globals)):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        detail = str(e).split("WeightsUnpickler error:")[-1].split("Check the documentation")[0]
        raise ValueError(f"cannot read checkpoint {str(path)!r} with torch.load(weights_only=True) "
                         f"({' '.join(detail.split('. Please')[0].split())}): it pickles objects other than tensors, "
                         f"numbers and containers, or is corrupt. If you trust the file, re-save only its state "
                         f"dict with torch.save") from e
    except Exception as e:  # truncated or foreign: torch raises RuntimeError, EOFError, IndexError, ...
        raise ValueError(f"cannot read checkpoint {str(path)!r} (truncated or corrupt?): {type(e).__name__}: {e}") \
            from e


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """A training checkpoint, checked to hold ``model_name`` and ``state_dict``."""
    checkpoint = torch_load(path)
    if not isinstance(checkpoint, dict) or not checkpoint.get("model_name") or "state_dict" not in checkpoint:
        raise ValueError(f"{str(path)!r} is not an mfnet_zoo training checkpoint (no model_name/state_dict)")
    return checkpoint


def write_checkpoint(path: str | Path, checkpoint: dict[str, Any]) -> Path:
    """``torch.save`` of ``checkpoint`` to ``path``, atomically: a failed write leaves the old file whole."""
    with atomic_path(path) as tmp:
        torch.save(checkpoint, tmp)
    return Path(path)


def checkpoint_config(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """The config.json equivalent of a training checkpoint: its registry name and constructor arguments, and
    the data settings (``data_config``) where the checkpoint has them. Data, as a config.json: loading checks
    ``model_args`` against the family's allow-list and fetches nothing (``_builder.check_saved_args``)."""
    data = checkpoint.get("data_config") if isinstance(checkpoint.get("data_config"), dict) else {}
    return {"architecture": checkpoint["model_name"], "model_args": checkpoint.get("model_args") or {},
            **{k: data[k] for k in DATA_KEYS if k in data}}


def rng_state(generator: torch.Generator | None = None) -> dict[str, Any]:
    """Every random state a resumed run needs: torch's (CPU, CUDA), Python's and the loader's ``generator``."""
    return {"torch": torch.get_rng_state(), "python": random.getstate(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None,
            "loader": generator.get_state() if generator is not None else None}


def restore_rng(rng: dict[str, Any], generator: torch.Generator | None = None) -> None:
    """Put back the states :func:`rng_state` saved (the loader's into ``generator``)."""
    torch.set_rng_state(rng["torch"].cpu())
    random.setstate(rng["python"])
    if rng["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in rng["cuda"]])
    if generator is not None and rng["loader"] is not None:
        generator.set_state(rng["loader"].cpu())


def training_checkpoint(model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any, scaler: Any, *,
                        epoch: int, best_miou: float, history: Sequence[dict], config: dict[str, Any],
                        world_size: int, class_names: Sequence[str] | None, rng: Sequence[dict[str, Any]],
                        progress: dict[str, Any] | None = None,
                        epoch_rng: Sequence[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The checkpoint of a run after ``epoch`` completed epochs (and ``progress`` into the next), in the
    layout this module describes."""
    return {"model_name": getattr(model, "model_name", None), "model_args": getattr(model, "model_args", None),
            "data_config": resolve_data_config(model),  # the normalisation it was trained with
            "state_dict": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict() if scaler is not None else None, "epoch": epoch, "best_miou": best_miou,
            "history": list(history), "config": config, "world_size": world_size, "class_names": class_names,
            "rng": list(rng), "progress": progress, "epoch_rng": list(epoch_rng) if epoch_rng is not None else None}
