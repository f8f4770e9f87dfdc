"""``run.json``: a training run's resolved configuration, written by the engine, read by
``mfnet-zoo train --config`` to rerun it and by the model card to describe the training.

It holds the model's name and every constructor argument, the encoder and its weights, the preset and
every :class:`~mfnet_zoo.presets.TrainConfig` field, the data source and split, the seed, the hardware,
the library versions and the command line.
"""
from __future__ import annotations

import dataclasses
import datetime
import json
import os
import platform
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ._constants import DATASETS
from .version import __version__

__all__ = ["RUN_FILE", "library_versions", "cpu_name", "hardware", "data_record", "run_record", "read_run_file",
           "run_file_args", "rerun_config", "dataclass_from_dict"]

RUN_FILE = "run.json"  # a run's resolved configuration, in the run folder and in its model folder
RUN_FORMAT = 1
NOT_RERUN = ("config", "out", "resume", "push_to_hub")  # CLI options a rerun from run.json does not take over


def library_versions() -> dict[str, str]:
    """Versions of what a run depends on: mfnet_zoo, torch (and CUDA), timm, huggingface_hub, safetensors, python."""
    import huggingface_hub
    import safetensors
    import timm

    versions = {"mfnet_zoo": __version__, "torch": torch.__version__, "timm": timm.__version__,
                "huggingface_hub": huggingface_hub.__version__, "safetensors": safetensors.__version__,
                "python": platform.python_version()}
    if torch.version.cuda:
        versions["torch_cuda"] = torch.version.cuda  # the CUDA torch was built with
    return versions


def cpu_name() -> str:
    """The CPU's model name and torch's vector capability, e.g. "AMD EPYC, AVX2", for records and benchmark pages.

    ``platform.processor()`` is empty on Linux and ``platform.machine()`` says only "x86_64", which does not tell an
    AVX-512/AMX Xeon from an AVX2-only EPYC: on the latter bf16 autocast is emulated, ~6x slower than fp32."""
    name = platform.processor() or platform.machine()
    try:
        name = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{name}, {torch.backends.cpu.get_cpu_capability()}"


def hardware(device: torch.device | str, world_size: int = 1) -> str:
    """One line naming what a run ran on: the GPU model (times the process count) or the CPU and its threads."""
    device = torch.device(device)
    if device.type == "cuda" and torch.cuda.is_available():
        name = torch.cuda.get_device_name(device)
    elif device.type == "cpu":
        name = f"CPU ({cpu_name()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads)"
    else:
        name = str(device)
    return f"{world_size} x {name}" if world_size > 1 else name


def data_record(source: str, *, root: str | Path | None = None, sbd_root: str | Path | None = None,
                classes: Sequence[str] = (), train_images: int | None = None, eval_images: int | None = None,
                train_split: str = "train", eval_split: str = "val", **extra: Any) -> dict[str, Any]:
    """The data part of ``run.json``: the source (what ``--data`` takes), a name for the card, absolute roots,
    the splits and their sizes, the class names (``extra``: e.g. ``image_size``; None values are left out)."""
    name = DATASETS.get(source) or (f"folder dataset {Path(root).resolve().name!r}" if root else source)
    record = {"source": source, "name": name, "root": str(Path(root).resolve()) if root else None,
              "sbd_root": str(Path(sbd_root).resolve()) if sbd_root else None, "train_split": train_split,
              "eval_split": eval_split, "train_images": train_images, "eval_images": eval_images,
              "classes": list(classes), **extra}
    return {k: v for k, v in record.items() if v is not None}


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _jsonable(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (Path, torch.device, torch.dtype)):
        return str(value)
    return value


def run_record(model: nn.Module, train_config: Any, run_config: dict[str, Any] | None = None, *,
               device: torch.device | str = "cpu", world_size: int = 1) -> dict[str, Any]:
    """``run.json``: what the caller knows of the run (``run_config``: the CLI's arguments, data source and
    split, preset, ...) plus what the engine knows: the model's name and every constructor argument, the
    whole training config (a dataclass, serialised field by field), hardware and library versions."""
    model_args = dict(getattr(model, "model_args", {}) or {})
    record = {"mfnet_zoo_run": RUN_FORMAT, **_jsonable(run_config or {})}
    encoder = getattr(model, "encoder", None)
    record["model"] = {**record.get("model", {}), "name": getattr(model, "model_name", None),
                       "encoder": model_args.get("encoder"), "timm_encoder": getattr(encoder, "name", None),
                       "model_args": _jsonable(model_args)}
    record["train_config"] = _jsonable(train_config)
    record["seed"] = record["train_config"].get("seed")
    record["hardware"] = hardware(device, world_size)
    record["versions"] = library_versions()
    record["created"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    return record


def read_run_file(path: str | Path) -> dict[str, Any]:
    """A ``run.json`` (or the run folder holding one); ValueError naming the file when it is none."""
    path = Path(path)
    if path.is_dir():
        path = path / RUN_FILE
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"run configuration {str(path)!r} does not exist") from None
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"cannot read run configuration {str(path)!r}: {e}") from e
    if not isinstance(record, dict) or "mfnet_zoo_run" not in record:
        raise ValueError(f"{str(path)!r} is not an mfnet_zoo run configuration (no 'mfnet_zoo_run' key; "
                         f"mfnet-zoo train writes one as OUT/{RUN_FILE})")
    return record


def run_file_args(path: str | Path, known: Sequence[str]) -> dict[str, Any]:
    """The command-line options recorded in a run file, to rerun it: every option but ``NOT_RERUN`` (where
    to write, resuming, pushing). ``known``: the options this version's command takes; one it lacks is an
    error (the run cannot be reproduced without it)."""
    record = read_run_file(path)
    args = record.get("args")
    if not isinstance(args, dict):
        raise ValueError(f"{str(path)!r} records no command-line arguments ('args'): it was not written by "
                         f"mfnet-zoo train, so --config cannot rerun it")
    unknown = sorted(set(args) - set(known) - set(NOT_RERUN))
    if unknown:
        raise ValueError(f"{str(path)!r} sets option(s) {unknown} that this mfnet_zoo ({__version__}) does not "
                         f"have; it was written by mfnet_zoo {record.get('versions', {}).get('mfnet_zoo')}")
    return {k: v for k, v in args.items() if k not in NOT_RERUN}


def rerun_config(path: str | Path | None, preset: str, base: Any) -> Any:
    """The training config a rerun starts from: the one ``path`` (a run.json) records, every field as it was,
    when it was trained with ``preset``; else ``base`` (the preset's, for no file or another preset)."""
    if not path:
        return base
    record = read_run_file(path)
    if record.get("preset") != preset or not isinstance(record.get("train_config"), dict):
        return base
    return dataclass_from_dict(type(base), record["train_config"])


def _convert(value: Any, hint: Any) -> Any:
    """JSON data back to the type ``hint`` names: tuples (of dataclasses) from lists, dataclasses from dicts."""
    origin, params = typing.get_origin(hint), typing.get_args(hint)
    if value is None:
        return None
    if origin in (typing.Union, types.UnionType):
        options = [p for p in params if p is not type(None)]
        return _convert(value, options[0]) if len(options) == 1 else value
    if origin is tuple and isinstance(value, list):
        if len(params) == 2 and params[1] is Ellipsis:
            return tuple(_convert(v, params[0]) for v in value)
        return tuple(_convert(v, p) for v, p in zip(value, params)) if params else tuple(value)
    if dataclasses.is_dataclass(hint) and isinstance(value, dict):
        return dataclass_from_dict(hint, value)
    return value


def dataclass_from_dict(cls: type, data: dict[str, Any]) -> Any:
    """A dataclass (a :class:`~mfnet_zoo.presets.TrainConfig`) from its ``dataclasses.asdict`` JSON: fields the
    data lacks keep their defaults; a field the class lacks is a ValueError naming it."""
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - fields)
    if unknown:
        raise ValueError(f"{cls.__name__} has no field(s) {unknown} (a configuration from another mfnet_zoo "
                         f"version?); fields: {sorted(fields)}")
    hints = typing.get_type_hints(cls)
    return cls(**{k: _convert(v, hints[k]) for k, v in data.items()})
