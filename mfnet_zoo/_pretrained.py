"""Pretrained configurations: where a tag's weights live and what they expect (as timm's PretrainedCfg)."""
from __future__ import annotations

import dataclasses
from typing import Any

from ._constants import IMAGENET_MEAN, IMAGENET_STD

__all__ = ["PretrainedCfg", "encoder_only_cfg", "resolve_data_config"]


@dataclasses.dataclass(frozen=True)
class PretrainedCfg:
    """One pretrained tag (``arch.tag``) or, with no weights, the model's input conventions.

    Whole-model weights come from ``hf_hub_id``/``filename`` (safetensors) or a local ``file``;
    ``encoder_weights`` names a timm tag for encoder-only weights (context and decoder new).
    """

    tag: str = ""
    hf_hub_id: str | None = None
    filename: str = "model.safetensors"
    revision: str | None = None
    file: str | None = None
    encoder_weights: str | None = None
    num_classes: int | None = None
    label_names: tuple[str, ...] | None = None
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    input_size: tuple[int, int, int] = (3, 513, 513)
    dataset: str | None = None
    license: str | None = None
    source: str | None = None
    metrics: dict[str, float] | None = None
    notes: str | None = None

    @property
    def has_weights(self) -> bool:
        return bool(self.hf_hub_id or self.file or self.encoder_weights)

    def replace(self, **changes: Any) -> PretrainedCfg:
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise TypeError(f"unknown pretrained config field(s) {unknown}; valid: "
                            f"{[f.name for f in dataclasses.fields(self)]}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def encoder_only_cfg(timm_tag: str, dataset: str = "imagenet-1k", license: str | None = None,
                     source: str | None = None) -> PretrainedCfg:
    """A tag whose weights are timm's encoder weights ``timm_tag`` (e.g. ``resnet50.tv_in1k``)."""
    return PretrainedCfg(encoder_weights=timm_tag, dataset=dataset, license=license,
                         source=source or f"timm {timm_tag} (Hugging Face Hub: timm/{timm_tag})",
                         notes="encoder weights only; context, decoder and classifier are newly initialised")


def resolve_data_config(model_or_cfg: Any) -> dict[str, Any]:
    """Normalisation and input size for a model (or a PretrainedCfg): {'mean', 'std', 'input_size'}."""
    cfg = model_or_cfg if isinstance(model_or_cfg, PretrainedCfg) else getattr(model_or_cfg, "pretrained_cfg", None)
    cfg = cfg or PretrainedCfg()
    return {"mean": tuple(cfg.mean), "std": tuple(cfg.std), "input_size": tuple(cfg.input_size)}
