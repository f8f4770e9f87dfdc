"""Weights on the Hugging Face Hub and on disk: safetensors only, clear errors.

A leaf: file and Hub I/O only, it builds no model (loading weights into a model is
:mod:`mfnet_zoo._builder`'s job). Downloads go through ``huggingface_hub.hf_hub_download``
(its cache, ``HF_HUB_OFFLINE``, ``HF_ENDPOINT``); saving and publishing through
``PyTorchModelHubMixin`` on :class:`~mfnet_zoo.SegmentationModel`.
"""
from __future__ import annotations

import contextlib
import functools
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import torch
from huggingface_hub import constants, hf_hub_download
from huggingface_hub.errors import (EntryNotFoundError, HfHubHTTPError, LocalEntryNotFoundError,
                                    RepositoryNotFoundError)
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ._atomic import atomic_path

__all__ = ["WEIGHTS_NAME", "CONFIG_NAME", "read_safetensors", "write_safetensors", "download_file", "refuse_pickle", "hub_reachable", "offline_reason", "fail_fast_when_unreachable",
           "ways_out"]

PROBE_TIMEOUT_S = 3.0

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
PICKLE_SUFFIXES = (".bin", ".pth", ".pt", ".pkl", ".pickle", ".ckpt", ".tar")


def refuse_pickle(name: str) -> None:
    """ValueError for a pickled weights file (``.bin``, ``.pth``, ...): unpickling can run code."""
    if Path(name).suffix.lower() in PICKLE_SUFFIXES:
        raise ValueError(f"refusing to load {name!r}: pickled weights can run code when loaded; mfnet_zoo loads "
                         f"safetensors only (convert trusted files with safetensors.torch.save_file)")


def read_safetensors(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from a .safetensors file; pickled formats are refused, truncated files named."""
    path = Path(path)
    refuse_pickle(path.name)
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


@functools.lru_cache(maxsize=8)
def _can_connect(endpoint: str, timeout: float) -> bool:
    parts = urlsplit(endpoint)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname or "", port), timeout=timeout):
            return True
    except OSError:  # DNS failure, refused, unreachable, timed out
        return False


def hub_reachable(timeout: float = PROBE_TIMEOUT_S) -> bool:
    """Whether the Hub endpoint (``HF_ENDPOINT``) accepts a connection: one TCP connect, remembered per
    endpoint for the process, so a machine without network learns it once and not per file."""
    return _can_connect(constants.ENDPOINT, timeout)


def offline_reason() -> str | None:
    """Why downloads cannot reach the Hub: offline mode, or an endpoint that does not answer; None if they can."""
    if constants.HF_HUB_OFFLINE:
        return "offline mode is on (HF_HUB_OFFLINE=1)"
    if not hub_reachable():
        return f"the Hub at {constants.ENDPOINT} cannot be reached (no connection within {PROBE_TIMEOUT_S:.0f} s)"
    return None


@contextlib.contextmanager
def fail_fast_when_unreachable() -> Iterator[str | None]:
    """Downloads inside use the local cache only when the Hub cannot be reached (checked once), so that
    a file that is not cached fails at once, not after huggingface_hub's minutes of retries. Yields
    :func:`offline_reason`."""
    reason = offline_reason()
    if reason is None or constants.HF_HUB_OFFLINE:
        yield reason
        return
    constants.HF_HUB_OFFLINE = True  # read by huggingface_hub at each call: cached files only
    try:
        yield reason
    finally:
        constants.HF_HUB_OFFLINE = False


def ways_out(what: str, model: bool = False) -> str:
    """The ways to go on without the Hub, for an error about ``what`` could not be downloaded: encoder weights
    (training can start without them), or with ``model=True`` a saved model's files (what eval, predict and
    export load: a local copy is the way, not a training flag)."""
    cache = (f"Ways out: download {what} once where the Hub can be reached, into the Hugging Face cache used here "
             f"(HF_HOME / HF_HUB_CACHE), then set HF_HUB_OFFLINE=1; ")
    if model:
        return cache + (f"or give a local copy as the model source: a folder with {CONFIG_NAME} and {WEIGHTS_NAME} "
                        f"(mfnet-zoo eval/predict/export FOLDER, load_model('FOLDER')), or the weights file to "
                        f"create_model(name, pretrained='path/to/{WEIGHTS_NAME}') or "
                        f"pretrained_cfg_overlay=dict(file='path/to/{WEIGHTS_NAME}'); or build the model without "
                        f"them (pretrained=False)")
    return cache + (f"or do without them (pretrained=False, encoder_weights=None; mfnet-zoo train --encoder-weights "
                    f"none); or give the weights yourself (create_model(name, pretrained='path/to/{WEIGHTS_NAME}') or "
                    f"pretrained_cfg_overlay=dict(file='path/to/{WEIGHTS_NAME}'))")


def download_file(repo_id: str, filename: str = WEIGHTS_NAME, revision: str | None = None, *, missing_ok: bool = False,
                  **hf_kwargs: Any) -> str | None:
    """``hf_hub_download`` with errors that say what is missing and how to provide it.

    ``missing_ok``: None when the repo exists but has no ``filename`` (an optional file such as config.json).
    """
    refuse_pickle(filename)
    hint = ways_out(f"{filename!r} of {repo_id!r}", model=True)
    with fail_fast_when_unreachable() as reason:
        try:
            return hf_hub_download(repo_id, filename, revision=revision, **hf_kwargs)
        except LocalEntryNotFoundError as e:  # offline, or the Hub unreachable, and not cached
            raise FileNotFoundError(f"{filename!r} of Hub repo {repo_id!r} is not in the local cache, and "
                                    f"{reason or 'the Hub cannot be reached'}. {hint}") from e
        except RepositoryNotFoundError as e:
            raise FileNotFoundError(f"Hub repo {repo_id!r} does not exist (or is private). {hint}") from e
        except EntryNotFoundError as e:
            if missing_ok:
                return None
            raise FileNotFoundError(f"Hub repo {repo_id!r} has no {filename!r} (mfnet_zoo loads only safetensors "
                                    f"weights). {hint}") from e
        except (HfHubHTTPError, OSError) as e:
            raise FileNotFoundError(f"cannot download {filename!r} from Hub repo {repo_id!r}: {e}. {hint}") from e
