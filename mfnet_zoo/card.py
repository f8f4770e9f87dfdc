"""The model card (README.md of a model folder or Hub repo), written in one place.

:func:`model_card` renders it from config.json's content and what is known of the weights: YAML metadata
(library, tags, datasets, metrics, ``model-index``), the model's blocks and size, results, the training
and a usage snippet. :func:`model_card_for` describes a model (``SegmentationModel.generate_model_card``),
:func:`card_kwargs` a training run's saved weights, :func:`card_for_repo` names the repo in a card
written before the repo was known.
"""
from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData
from torch import nn

from ._builder import model_config
from ._registry import model_entrypoint

__all__ = ["CARD_TEMPLATE", "EVAL_METRICS", "model_card", "model_card_for", "card_kwargs", "card_for_repo"]


CARD_TEMPLATE = """---
{{ card_data }}
---

# {{ model_id | default("mfnet_zoo model", true) }}

`{{ architecture }}` from mfnet_zoo: {{ description }}

mfnet_zoo is installed from its source (no package index serves it yet): `pip install -e .` in a checkout of
the repository.

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


def model_card_for(model: nn.Module, **kwargs: Any) -> ModelCard:
    """The card of ``model`` (built by create_model): its registry description, blocks and parameter count;
    ``kwargs`` as :func:`model_card` takes them, the pretrained config's metrics, dataset and license by
    default."""
    cfg = model.pretrained_cfg
    kwargs.setdefault("metrics", cfg.metrics)
    kwargs["dataset"] = kwargs.get("dataset") or cfg.dataset
    kwargs["license"] = kwargs.get("license") or cfg.license
    return model_card(
        model_config(model), description=(model_entrypoint(model.model_name).__doc__ or "").strip().splitlines()[0],
        blocks=" -> ".join(type(m).__name__ for m in (model.encoder, model.context, model.decoder)),
        parameters=sum(p.numel() for p in model.parameters()), **kwargs)


def card_for_repo(text: str, repo_id: str) -> str:
    """A card written before its repo was known (``save_pretrained``), made to name ``repo_id``: the title,
    the usage snippet and the ``model-index`` name."""
    card = ModelCard(text)
    card.data.model_name = repo_id
    card.text = card.text.replace(f"# {TITLE_PLACEHOLDER}\n", f"# {repo_id}\n", 1) \
        .replace(f'"{FOLDER_PLACEHOLDER}"', f'"{repo_id}"')
    return str(card)


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
        kwargs["metrics"] = {k: val[k] for k in EVAL_METRICS if k in val}
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
