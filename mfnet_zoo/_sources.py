"""What a model source string names (as timm's ``parse_model_name``): a registry name, a pretrained
tag, a Hub repo, a local folder or file, a training checkpoint or run.

Kinds: ``name`` (``mfnet_r50``: a new model, random weights), ``tag`` (``mfnet_r50.tv_in1k``),
``hf-hub`` (``hf-hub:org/repo[@revision]``: the repo's config.json and model.safetensors), and for
``local-dir:PATH`` or an existing path: ``folder`` (``save_pretrained``: config.json +
model.safetensors), ``safetensors`` (a weights file, config.json beside it), ``checkpoint`` (a
training checkpoint ``.pt``) and ``run`` (a training run folder: its best.pt, else last.pt).

A registered name wins over a folder of the same name; ``local-dir:`` forces a path. A plain
``"org/repo"`` that is no existing path is a Hub repo, as huggingface_hub's ``from_pretrained`` takes it,
so it means the same in ``load_model``, ``create_model(pretrained=...)`` and ``from_pretrained``.
"""
from __future__ import annotations

import dataclasses
import difflib
from pathlib import Path
from typing import Literal

from huggingface_hub.errors import HFValidationError
from huggingface_hub.utils import validate_repo_id

from . import hub
from .checkpoint import RUN_CHECKPOINTS
from ._registry import is_model, list_models, list_pretrained_tags, split_model_name_tag

__all__ = ["ModelSource", "SourceKind", "parse_model_source", "CHECKPOINT_SUFFIX"]

SourceKind = Literal["name", "tag", "hf-hub", "folder", "safetensors", "checkpoint", "run"]
CHECKPOINT_SUFFIX = ".pt"  # what the Trainer writes; other pickles are refused like any pickle
HF_HUB_PREFIX, LOCAL_DIR_PREFIX = "hf-hub:", "local-dir:"


@dataclasses.dataclass(frozen=True)
class ModelSource:
    """A parsed model source: ``kind``, where it is (``location``: a name, repo id or path), the Hub
    ``revision``, and the ``text`` the user wrote (for error messages)."""

    kind: SourceKind
    location: str
    text: str
    revision: str | None = None

    def describe(self) -> str:
        """``'text' (taken as KIND)``: how errors name a source."""
        implicit = " repo: no registered name or local path of that name" if self.kind == "hf-hub" \
            and not self.text.startswith(HF_HUB_PREFIX) else ""
        return f"{self.text!r} (taken as {self.kind}{implicit})"

    def error(self, problem: str) -> ValueError:
        return ValueError(f"model source {self.describe()}: {problem}")


def _local(path: Path, text: str) -> ModelSource:
    if path.is_dir():
        if (path / hub.CONFIG_NAME).is_file() or (path / hub.WEIGHTS_NAME).is_file():
            return ModelSource("folder", str(path), text)
        if any((path / name).is_file() for name in RUN_CHECKPOINTS):
            return ModelSource("run", str(path), text)
        raise FileNotFoundError(f"model source {text!r} (taken as a local folder) has no readable {hub.CONFIG_NAME} "
                                f"and {hub.WEIGHTS_NAME} (a save_pretrained folder) and no "
                                f"{' or '.join(RUN_CHECKPOINTS)} (a training run)")
    if path.suffix == CHECKPOINT_SUFFIX:  # read with weights_only=True
        return ModelSource("checkpoint", str(path), text)
    hub.refuse_pickle(path.name)
    return ModelSource("safetensors", str(path), text)


def _is_repo_id(text: str) -> bool:
    try:
        validate_repo_id(text)
    except HFValidationError:
        return False
    return True


def parse_model_source(source: str | Path) -> ModelSource:
    """Classify ``source`` (see the module docstring); ValueError saying what was tried if nothing fits."""
    if isinstance(source, Path):
        return _local(source, str(source))
    if not isinstance(source, str) or not source:
        raise TypeError(f"a model source must be a non-empty str or Path, got {source!r}")
    if source.startswith(HF_HUB_PREFIX):
        repo_id, _, revision = source[len(HF_HUB_PREFIX):].partition("@")
        try:  # huggingface_hub's own rules, before any request
            validate_repo_id(repo_id)
        except HFValidationError as e:
            raise ValueError(f"model source {source!r} (taken as hf-hub, 'hf-hub:org/repo[@revision]'): {e}") from e
        return ModelSource("hf-hub", repo_id, source, revision or None)
    if source.startswith(LOCAL_DIR_PREFIX):
        path = Path(source[len(LOCAL_DIR_PREFIX):])
        if not path.exists():
            raise ValueError(f"model source {source!r} (taken as a local path): {str(path)!r} does not exist")
        return _local(path, source)
    name, tag = split_model_name_tag(source)
    if is_model(name):
        if not tag:
            return ModelSource("name", name, source)
        if tag not in list_pretrained_tags(name):
            raise ValueError(f"model source {source!r} (taken as a pretrained tag): {name!r} has no tag {tag!r}; "
                             f"available: {list_pretrained_tags(name) or 'none'}")
        return ModelSource("tag", source, source)
    if Path(source).exists():
        return _local(Path(source), source)
    if source.count("/") == 1 and _is_repo_id(source):  # huggingface_hub's convention, as from_pretrained takes it
        return ModelSource("hf-hub", source, source)
    close = difflib.get_close_matches(name, list_models(), n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else "."
    raise ValueError(f"unknown model {source!r}{hint} As a model source it is no registered name (mfnet-zoo list, "
                     f"or list_models() in Python, shows them), no existing file or folder and not "
                     f"'hf-hub:org/repo'")
