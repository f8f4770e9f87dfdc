"""Weights on the Hugging Face Hub and on disk: safetensors only, clear errors, model cards.

A leaf: file and Hub I/O only, it builds no model (loading weights into a model is
:mod:`mfnet_zoo._builder`'s job). Downloads go through ``huggingface_hub.hf_hub_download``
(its cache, ``HF_HUB_OFFLINE``, ``HF_ENDPOINT``); saving and publishing through
``PyTorchModelHubMixin`` on :class:`~mfnet_zoo.SegmentationModel`.
"""
from __future__ import annotations

import contextlib
import functools
import json
import math
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import torch
from huggingface_hub import EvalResult, ModelCard, ModelCardData, constants, hf_hub_download
from huggingface_hub.errors import (EntryNotFoundError, HfHubHTTPError, LocalEntryNotFoundError,
                                    RepositoryNotFoundError)
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ._atomic import atomic_path

__all__ = ["WEIGHTS_NAME", "CONFIG_NAME", "read_safetensors", "write_safetensors", "download_file", "model_card",
           "card_for_repo", "refuse_pickle", "hub_reachable", "offline_reason", "fail_fast_when_unreachable",
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


def ways_out(what: str) -> str:
    """The ways to go on without the Hub, for an error about ``what`` could not be downloaded."""
    return (f"Ways out: download {what} once where the Hub can be reached, into the Hugging Face cache used here "
            f"(HF_HOME / HF_HUB_CACHE), then set HF_HUB_OFFLINE=1; or do without them (pretrained=False, "
            f"encoder_weights=None; mfnet-zoo train --encoder-weights none); or give the weights yourself "
            f"(create_model(name, pretrained='path/to/{WEIGHTS_NAME}') or "
            f"pretrained_cfg_overlay=dict(file='path/to/{WEIGHTS_NAME}'))")


def download_file(repo_id: str, filename: str = WEIGHTS_NAME, revision: str | None = None, *, missing_ok: bool = False,
                  **hf_kwargs: Any) -> str | None:
    """``hf_hub_download`` with errors that say what is missing and how to provide it.

    ``missing_ok``: None when the repo exists but has no ``filename`` (an optional file such as config.json).
    """
    refuse_pickle(filename)
    hint = ways_out(f"{filename!r} of {repo_id!r}")
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


CARD_TEMPLATE = """---
{{ card_data }}
---

# {{ model_id | default("mfnet_zoo model", true) }}

`{{ architecture }}` from mfnet_zoo (`pip install mfnet-zoo`): {{ description }}

- encoder: `{{ encoder }}` (timm), output stride {{ output_stride }}
- blocks: {{ blocks }}
- classes: {{ num_classes }}{% if labels %} ({{ labels }}){% endif %}
- parameters: {{ parameters }}
{% if metrics %}
## Results{% if dataset %} on {{ dataset }}{% endif %}{% if split %}, {{ split }} split{% endif %}

{% if evaluation %}{{ evaluation }}

{% endif %}| metric | value |
|---|---:|
{% for name, value in metrics.items() %}| {{ name }} | {{ value }} |
{% endfor %}{% endif %}{% if class_iou %}
| class | IoU |
|---|---:|
{% for name, value in class_iou %}| {{ name }} | {{ value }} |
{% endfor %}{% endif %}{% if training %}
## Training

{% for name, value in training.items() %}- {{ name }}: {{ value }}
{% endfor %}{% endif %}{% if run_config %}
<details>
<summary>The run's resolved configuration (<code>run.json</code>; rerun: <code>mfnet-zoo train --config run.json</code>)
</summary>

```json
{{ run_config }}
```

</details>
{% endif %}
## Usage

```python
import mfnet_zoo

model = mfnet_zoo.from_pretrained("{{ repo_id | default(FOLDER_PLACEHOLDER, true) }}").eval()
logits = model(images).logits  # images: B x 3 x H x W, normalised with mean {{ mean }}, std {{ std }}
```
"""

FOLDER_PLACEHOLDER = "path/to/this/folder"  # the usage snippet of a card written before its repo is known
TITLE_PLACEHOLDER = "mfnet_zoo model"
# metrics (SegmentationMetrics' keys) -> (model-index metric type, display name); the Hub shows them as results
EVAL_METRICS = {"mIoU": ("mean_iou", "mIoU"), "fwIoU": ("frequency_weighted_iou", "fwIoU"),
                "pixel_acc": ("accuracy", "pixel accuracy"), "mean_acc": ("mean_accuracy", "mean accuracy")}


def _display(value: Any) -> Any:
    return f"{value:.4f}" if isinstance(value, float) else ("-" if value is None else value)


def model_card(config: dict[str, Any], *, description: str, blocks: str, parameters: int,
               repo_id: str | None = None, metrics: dict[str, Any] | None = None, dataset: str | None = None,
               license: str | None = None, dataset_id: str | None = None, split: str | None = None,
               evaluation: str | None = None, class_iou: dict[str, float | None] | None = None,
               training: dict[str, Any] | None = None, run_config: dict[str, Any] | None = None) -> ModelCard:
    """A model card with YAML metadata (library, tags, datasets, metrics, ``model-index``) and a usage snippet.

    ``config`` is what ``config.json`` holds (:func:`mfnet_zoo._builder.model_config`); the rest
    describes the model in words: its registry docstring, its blocks and parameter count. With
    ``metrics`` and ``dataset``, the float metrics named in :data:`EVAL_METRICS` become
    ``model-index`` results on ``dataset_id`` (default: ``dataset``) and ``split``, which the Hub
    shows. ``evaluation``: one sentence on how they were measured; ``class_iou``: class name ->
    IoU (None: absent); ``training``: label -> value lines; ``run_config``: the run's resolved
    configuration, shown as JSON in a collapsed block.
    """
    architecture = config["architecture"]
    results = [EvalResult(task_type="image-segmentation", task_name="Semantic segmentation",
                          dataset_type=dataset_id or dataset, dataset_name=dataset, dataset_split=split,
                          metric_type=EVAL_METRICS[key][0], metric_name=EVAL_METRICS[key][1], metric_value=value)
               for key, value in (metrics or {}).items()
               if dataset and key in EVAL_METRICS and isinstance(value, float) and math.isfinite(value)]
    card_data = ModelCardData(library_name="mfnet_zoo", pipeline_tag="image-segmentation", license=license,
                              tags=["image-segmentation", "mfnet_zoo", architecture],
                              datasets=[dataset] if dataset else None, model_name=repo_id or architecture,
                              metrics=sorted(metrics) if metrics else None, eval_results=results or None)
    id2label = config.get("id2label") or {}
    return ModelCard.from_template(
        card_data, template_str=CARD_TEMPLATE, model_id=repo_id, repo_id=repo_id, architecture=architecture,
        description=description, encoder=config["model_args"]["encoder"],
        output_stride=config["model_args"]["output_stride"], blocks=blocks, num_classes=config["num_classes"],
        labels=", ".join(id2label[str(i)] for i in range(len(id2label))) or None, parameters=f"{parameters:,}",
        metrics={k: _display(v) for k, v in (metrics or {}).items() if not isinstance(v, (list, dict))},
        dataset=dataset, split=split, evaluation=evaluation,
        class_iou=[(name, _display(v)) for name, v in (class_iou or {}).items()],
        training={k: _display(v) for k, v in (training or {}).items()},
        run_config=json.dumps(run_config, indent=2) if run_config else None,
        FOLDER_PLACEHOLDER=FOLDER_PLACEHOLDER, mean=config["mean"], std=config["std"])


def card_for_repo(text: str, repo_id: str) -> str:
    """A card written before its repo was known (``save_pretrained``), made to name ``repo_id``: the title,
    the usage snippet and the ``model-index`` name."""
    card = ModelCard(text)
    card.data.model_name = repo_id
    card.text = card.text.replace(f"# {TITLE_PLACEHOLDER}\n", f"# {repo_id}\n", 1) \
        .replace(f'"{FOLDER_PLACEHOLDER}"', f'"{repo_id}"')
    return str(card)
