"""From a training run to a shared, documented model: the run file, the model folder with its card, the push.

- :func:`run_record` / :func:`write_json`: ``run.json``, a run's resolved configuration (model, encoder
  and its weights, preset and every :class:`~mfnet_zoo.train.TrainConfig` field, data source and
  split, seed, library versions, the command line), which ``mfnet-zoo train --config run.json`` reruns;
- :func:`write_model_folder`: ``save_pretrained`` of the weights a run keeps, with a model card that
  states the evaluation of exactly those weights, the dataset, the training and ``model-index``;
- :func:`push`: a run folder, a model folder or a training checkpoint to a Hub repo through
  huggingface_hub's own upload (its token sources, its endpoint), never changing anything local.

The engine (:class:`~mfnet_zoo.train.Trainer`) and the CLI call these; this module imports neither.
"""
from __future__ import annotations

import dataclasses
import datetime
import json
import os
import platform
import shutil
import tempfile
import types
import typing
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import hub
from ._atomic import atomic_folder, atomic_path
from ._builder import model_from_checkpoint, read_checkpoint
from ._sources import RUN_CHECKPOINTS
from .version import __version__

__all__ = ["RUN_FILE", "MODEL_DIR", "library_versions", "hardware", "data_record", "run_record", "write_json",
           "read_run_file", "run_file_args", "rerun_config", "dataclass_from_dict", "card_kwargs", "write_model_folder",
           "push_source", "check_push", "push"]

RUN_FILE = "run.json"  # a run's resolved configuration, in the run folder and in its model folder
MODEL_DIR = "model"  # the save_pretrained folder of a run
RUN_FORMAT = 1
NOT_RERUN = ("config", "out", "resume", "push_to_hub")  # CLI options a rerun from run.json does not take over
EVAL_KEYS = ("mIoU", "fwIoU", "pixel_acc", "mean_acc")
DATASET_NAMES = {"synthetic": "mfnet_zoo synthetic shapes", "synthetic-local": "mfnet_zoo context scenes (local)",
                 "synthetic-global": "mfnet_zoo context scenes (global)",
                 "synthetic-global-nocue": "mfnet_zoo context scenes (global, cue removed)", "voc": "PASCAL VOC 2012",
                 "voc-aug": "PASCAL VOC 2012 with SBD (train_aug)"}


# -- the run file ---------------------------------------------------------------------------------------------
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


def hardware(device: torch.device | str, world_size: int = 1) -> str:
    """One line naming what a run ran on: the GPU model (times the process count) or the CPU and its threads."""
    device = torch.device(device)
    if device.type == "cuda" and torch.cuda.is_available():
        name = torch.cuda.get_device_name(device)
    elif device.type == "cpu":
        cpu = platform.processor() or platform.machine()
        name = f"CPU ({cpu}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads)"
    else:
        name = str(device)
    return f"{world_size} x {name}" if world_size > 1 else name


def data_record(source: str, *, root: str | Path | None = None, sbd_root: str | Path | None = None,
                classes: Sequence[str] = (), train_images: int | None = None, eval_images: int | None = None,
                train_split: str = "train", eval_split: str = "val", **extra: Any) -> dict[str, Any]:
    """The data part of ``run.json``: the source (what ``--data`` takes), a name for the card, absolute roots,
    the splits and their sizes, the class names (``extra``: e.g. ``image_size``; None values are left out)."""
    name = DATASET_NAMES.get(source) or (f"folder dataset {Path(root).resolve().name!r}" if root else source)
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


def write_json(path: str | Path, data: Any) -> Path:
    """Write ``data`` as indented JSON, atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(_jsonable(data), indent=2) + "\n")
    return path


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
    """A dataclass (a :class:`~mfnet_zoo.train.TrainConfig`) from its ``dataclasses.asdict`` JSON: fields the
    data lacks keep their defaults; a field the class lacks is a ValueError naming it."""
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - fields)
    if unknown:
        raise ValueError(f"{cls.__name__} has no field(s) {unknown} (a configuration from another mfnet_zoo "
                         f"version?); fields: {sorted(fields)}")
    hints = typing.get_type_hints(cls)
    return cls(**{k: _convert(v, hints[k]) for k, v in data.items()})


# -- the model folder -----------------------------------------------------------------------------------------
def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min {secs:02d} s" if hours else f"{minutes} min {secs:02d} s"


def card_kwargs(record: dict[str, Any] | None, history: Sequence[dict[str, Any]], run: dict[str, Any],
                class_names: Sequence[str] | None = None) -> dict[str, Any]:
    """What the model card of a run's saved weights states (``model_card_kwargs`` of ``save_pretrained``).

    ``record``: the history entry of the saved epoch (``{"epoch", "train", "val"?}``), whose ``val``
    metrics are those of exactly these weights; ``history``: the epochs so far (wall time);
    ``run``: the run record (:func:`run_record`).
    """
    data, config = run.get("data", {}), run.get("train_config", {})
    epoch = record["epoch"] if record else None
    val = (record or {}).get("val")
    kwargs: dict[str, Any] = {"dataset": data.get("name"), "dataset_id": data.get("source"),
                              "split": data.get("eval_split") if val else None, "run_config": run}
    if val:
        names = list(class_names or [str(i) for i in range(len(val["per_class_iou"]))])
        kwargs["metrics"] = {k: val[k] for k in EVAL_KEYS if k in val}
        kwargs["class_iou"] = dict(zip(names, val["per_class_iou"]))
        images = f"{data['eval_images']} " if data.get("eval_images") else ""
        amp = config.get("amp", "none")
        kwargs["evaluation"] = (f"The weights in this folder, evaluated by the training engine after epoch {epoch} on "
                                f"the {images}{data.get('eval_split', 'validation')} images, each at its own size "
                                f"(single scale, no flip, {'float32' if amp == 'none' else 'autocast ' + amp}); "
                                f"`mfnet-zoo eval` of this folder with these settings gives the same numbers.")
    seconds = sum(h.get("seconds", h.get("train", {}).get("seconds", 0.0)) for h in history
                  if epoch is None or h["epoch"] <= epoch)
    kept = "the best validation mIoU" if val else "the last; no validation set"
    model = run.get("model", {})
    weights = model.get("encoder_weights", "not recorded") or "none (random initialisation)"
    training = {"preset": run.get("preset", "custom"),
                "model": f"`{model.get('name')}`, encoder `{model.get('encoder')}`, encoder weights {weights}",
                "data": f"{data.get('name', 'unknown')}"
                        + (f", {data['train_images']} {data.get('train_split', 'train')} images"
                           if data.get("train_images") else ""),
                "epochs": f"epoch {epoch} of {config.get('epochs')} ({kept})" if epoch else None,
                "optimizer": f"{config.get('optimizer')}, lr {config.get('lr')}, batch {config.get('batch_size')}, "
                             f"crop {config.get('crop_size')}" if config else None,
                "seed": run.get("seed"),
                "wall time": f"{_duration(seconds)} to this epoch" if epoch else None,
                "hardware": run.get("hardware"),
                "versions": ", ".join(f"{k} {v}" for k, v in run.get("versions", {}).items()) or None}
    kwargs["training"] = {k: v for k, v in training.items() if v is not None}
    return kwargs


def write_model_folder(folder: str | Path, model: nn.Module, *, record: dict[str, Any] | None,
                       history: Sequence[dict[str, Any]], run: dict[str, Any],
                       class_names: Sequence[str] | None = None, repo_id: str | None = None) -> Path | None:
    """``save_pretrained`` of ``model`` as it is now (model.safetensors, config.json with the label names,
    README.md: the card of :func:`card_kwargs`) plus ``run.json``, written beside ``folder`` and moved in
    whole. A model that cannot be saved so (not built by ``create_model``: config.json could not name
    it) gets a warning and no folder (None)."""
    folder = Path(folder)
    if not getattr(model, "model_name", None) or not hasattr(model, "save_pretrained"):
        warnings.warn(f"{str(folder)!r} not written: save_pretrained needs a model built by create_model (its "
                      f"registry name and arguments go into config.json); the checkpoints hold the weights",
                      UserWarning, stacklevel=2)
        return None
    with atomic_folder(folder) as tmp:
        card = card_kwargs(record, history, run, class_names)
        model.save_pretrained(tmp, model_card_kwargs={**card, **({"repo_id": repo_id} if repo_id else {})})
        write_json(tmp / RUN_FILE, run)
    return folder


# -- pushing --------------------------------------------------------------------------------------------------
def push_source(src: str | Path) -> tuple[str, Path]:
    """What ``src`` is for :func:`push`: ``("folder", path)`` (a save_pretrained folder, or a run's
    ``model/``) or ``("checkpoint", path)`` (a ``.pt``, or a run's best.pt, else last.pt); an error naming
    what was looked for when it holds no weights."""
    path = Path(src)
    expected = (f"expected a run folder (with {MODEL_DIR}/ or {' / '.join(RUN_CHECKPOINTS)}), a model folder "
                f"({hub.WEIGHTS_NAME} + {hub.CONFIG_NAME}) or a training checkpoint (.pt)")
    if not path.exists():
        raise FileNotFoundError(f"SRC {str(src)!r} does not exist; {expected}")
    if path.is_dir():
        for folder in (path, path / MODEL_DIR):
            if (folder / hub.WEIGHTS_NAME).is_file():
                if not (folder / hub.CONFIG_NAME).is_file():
                    raise ValueError(f"SRC {str(src)!r}: {str(folder / hub.WEIGHTS_NAME)!r} has no {hub.CONFIG_NAME} "
                                     f"beside it, so its architecture is unknown; {expected}")
                return "folder", folder
        for name in RUN_CHECKPOINTS:
            if (path / name).is_file():
                return "checkpoint", path / name
        raise ValueError(f"SRC {str(src)!r} holds no weights; {expected}")
    if path.suffix == ".pt":
        return "checkpoint", path
    raise ValueError(f"SRC {str(src)!r} is a file but not a training checkpoint (.pt); {expected}")


def _folder_from_checkpoint(checkpoint_path: Path, folder: Path, repo_id: str) -> None:
    checkpoint = read_checkpoint(checkpoint_path)
    model = model_from_checkpoint(checkpoint, source=str(checkpoint_path))
    beside = checkpoint_path.parent / RUN_FILE
    run = read_run_file(beside) if beside.is_file() else {"train_config": checkpoint.get("config", {})}
    names = checkpoint.get("class_names") or run.get("data", {}).get("classes")
    if names and len(names) == model.num_classes:
        model.pretrained_cfg = model.pretrained_cfg.replace(label_names=tuple(names))
    history = list(checkpoint.get("history") or [])
    record = next((h for h in history if h.get("epoch") == checkpoint.get("epoch")), None)
    write_model_folder(folder, model, record=record, history=history, run=run, class_names=names, repo_id=repo_id)


def _prepare(src: str | Path, repo_id: str, into: Path) -> Path:
    """A copy of what ``src`` holds, ready to upload as ``repo_id``, in the temporary folder ``into``."""
    kind, path = push_source(src)
    folder = into / MODEL_DIR
    if kind == "checkpoint":
        _folder_from_checkpoint(path, folder, repo_id)
        return folder
    shutil.copytree(path, folder, ignore=shutil.ignore_patterns(".*"))
    readme = folder / "README.md"
    if readme.is_file():  # the card of a folder written before its repo was known: name the repo
        readme.write_text(hub.card_for_repo(readme.read_text(encoding="utf-8"), repo_id), encoding="utf-8")
    return folder


def _is_network_error(error: BaseException) -> bool:
    names = {cls.__name__ for cls in type(error).__mro__}
    return isinstance(error, OSError) or bool(names & {"TransportError", "RequestError", "TimeoutException"})


def check_push(repo_id: str, token: str | None = None) -> str:
    """The token a push to ``repo_id`` would use (``token``, else huggingface_hub's: ``HF_TOKEN``, the login
    cache); ValueError for a repo id the Hub refuses or no token, before any request."""
    from huggingface_hub import get_token
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as e:
        raise ValueError(f"invalid Hub repo id {repo_id!r}: {e}") from None
    if repo_id.count("/") != 1:
        raise ValueError(f"invalid Hub repo id {repo_id!r}: give 'namespace/name' (your user or organisation name, "
                         f"a slash, then the model's name)")
    token = token or get_token()
    if not token:
        raise ValueError("no Hugging Face token: set HF_TOKEN, log in once with `hf auth login`, or pass --token "
                         "(a token with write access, https://huggingface.co/settings/tokens)")
    return token


def push(src: str | Path, repo_id: str, *, private: bool | None = None, revision: str | None = None,
         commit_message: str | None = None, token: str | None = None) -> dict[str, Any]:
    """Upload ``src`` (a run folder, a model folder or a training checkpoint, see :func:`push_source`) to the
    Hub repo ``repo_id`` (``"namespace/name"``), creating it (``private``) and the branch ``revision`` if
    needed, in one commit through ``HfApi.upload_folder``.

    The token: ``token``, else huggingface_hub's (``HF_TOKEN``, the login cache of ``hf auth login``).
    Files are prepared in a temporary folder (a checkpoint becomes a model folder with its card; a
    folder's card is made to name the repo): ``src`` is never changed, also when the push fails.
    Returns ``{"url", "commit_url", "repo_id", "revision", "files"}``. Errors users hit are one line:
    ValueError (repo id, SRC, no token, a refusal of the Hub), ConnectionError (no network).
    """
    from huggingface_hub import HfApi, constants
    from huggingface_hub.errors import HfHubHTTPError

    token = check_push(repo_id, token)
    push_source(src)  # SRC with no weights: an error before any request
    if constants.HF_HUB_OFFLINE:
        raise ConnectionError("HF_HUB_OFFLINE is set: pushing needs the Hub; unset it and retry")
    api = HfApi(token=token)
    revision = revision or None
    with tempfile.TemporaryDirectory(prefix="mfnet-zoo-push-") as tmp:
        folder = _prepare(src, repo_id, Path(tmp))
        files = sorted(p.name for p in folder.iterdir() if p.is_file())
        try:
            api.create_repo(repo_id, private=private, exist_ok=True)
            if revision and revision != constants.DEFAULT_REVISION:
                api.create_branch(repo_id, branch=revision, exist_ok=True)
            info = api.upload_folder(repo_id=repo_id, folder_path=folder, revision=revision,
                                     commit_message=commit_message or f"Upload {Path(src).name} with mfnet-zoo push")
        except HfHubHTTPError as e:
            status = getattr(getattr(e, "response", None), "status_code", None)
            if status == 401:
                raise ValueError(f"the Hub ({api.endpoint}) refused the token (401): give a valid token with write "
                                 f"access (HF_TOKEN, `hf auth login` or --token)") from None
            if status == 403:
                raise ValueError(f"the token may not write to {repo_id!r} (403): check the namespace and the "
                                 f"token's permissions") from None
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ValueError(f"the Hub ({api.endpoint}) refused the push to {repo_id!r}: {first}") from None
        except Exception as e:
            if not _is_network_error(e):
                raise
            raise ConnectionError(f"cannot reach the Hub at {api.endpoint} ({type(e).__name__}: {e}); nothing was "
                                  f"pushed and {str(src)!r} is unchanged: retry when online") from None
    tree = f"/tree/{revision}" if revision and revision != constants.DEFAULT_REVISION else ""
    return {"url": f"{api.endpoint}/{repo_id}{tree}", "commit_url": info.commit_url, "repo_id": repo_id,
            "revision": revision or constants.DEFAULT_REVISION, "files": files}
