"""From a training run to a shared, documented model: the model folder with its card, and the push.

- :func:`write_model_folder`: ``save_pretrained`` of the weights a run keeps, with a model card
  (:mod:`mfnet_zoo.card`) that states the evaluation of exactly those weights, the dataset, the
  training and ``model-index``, and the run's ``run.json`` (:mod:`mfnet_zoo.run_record`);
- :func:`push`: a run folder, a model folder or a training checkpoint to a Hub repo through
  huggingface_hub's own upload (its token sources, its endpoint), never changing anything local.

The engine (:class:`~mfnet_zoo.train.Trainer`) and the CLI call these; this module imports neither.
"""
from __future__ import annotations

import shutil
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import nn

from . import hub
from ._atomic import atomic_folder, write_json
from ._builder import model_from_checkpoint
from ._deprecations import moved_names
from .card import card_for_repo, card_kwargs
from .checkpoint import RUN_CHECKPOINTS, read_checkpoint
from .run_record import RUN_FILE, read_run_file

__all__ = ["MODEL_DIR", "write_model_folder", "push_source", "check_push", "push"]

MODEL_DIR = "model"  # the save_pretrained folder of a run

# names that lived here before the run record got a module of its own (card_kwargs: mfnet_zoo.card)
__getattr__ = moved_names(__name__, {
    **dict.fromkeys(("RUN_FILE", "library_versions", "hardware", "data_record", "run_record", "read_run_file",
                     "run_file_args", "rerun_config", "dataclass_from_dict"), "mfnet_zoo.run_record")})


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
        readme.write_text(card_for_repo(readme.read_text(encoding="utf-8"), repo_id), encoding="utf-8")
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
