"""Pretrained configurations: where a tag's weights live and what they expect (as timm's PretrainedCfg)."""
from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from typing import Any

from ._constants import IMAGENET_MEAN, IMAGENET_STD

__all__ = ["DATA_FIELDS", "DEFAULT_INTERPOLATION", "PretrainedCfg", "encoder_only_cfg", "resolve_data_config"]

# what a model's input pipeline needs from its config; None in a PretrainedCfg: the encoder's (see below)
DATA_FIELDS = ("mean", "std", "interpolation")
DEFAULT_INTERPOLATION = "bilinear"  # where nothing says otherwise: what the transforms always used


@dataclasses.dataclass(frozen=True)
class PretrainedCfg(Mapping):
    """One pretrained tag (``arch.tag``) or, with no weights, the model's input conventions.

    Whole-model weights come from ``hf_hub_id``/``filename`` (safetensors) or a local ``file``;
    ``encoder_weights`` names a timm tag for encoder-only weights (context and decoder new).

    ``mean``, ``std`` and ``interpolation`` left at None mean "the encoder's": a built model's
    config has them filled from its timm encoder's pretrained config (the tag in use, or the
    architecture's default tag); values given here (or in ``pretrained_cfg_overlay``) win.

    Read-only dict access as timm's pretrained configs (``cfg["mean"]``, ``cfg.get("crop_pct")``,
    ``dict(cfg)``), so timm's ``resolve_data_config``/``resolve_model_data_config`` take a model's
    ``pretrained_cfg`` as they take a timm model's.
    """

    tag: str = ""
    hf_hub_id: str | None = None
    filename: str = "model.safetensors"
    revision: str | None = None
    file: str | None = None
    encoder_weights: str | None = None
    num_classes: int | None = None
    label_names: tuple[str, ...] | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    interpolation: str | None = None
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

    def with_data_defaults(self, data: Mapping[str, Any]) -> PretrainedCfg:
        """This config with the ``DATA_FIELDS`` it leaves at None taken from ``data`` (an encoder's)."""
        return self.replace(**{k: tuple(data[k]) if k in ("mean", "std") else data[k]
                               for k in DATA_FIELDS if getattr(self, k) is None and data.get(k) is not None})

    # -- read-only mapping over the fields, as timm's code reads its pretrained configs --------
    def __getitem__(self, key: str) -> Any:
        if key not in self._field_names():
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._field_names())

    def __len__(self) -> int:
        return len(self._field_names())

    @classmethod
    def _field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))


def encoder_only_cfg(timm_tag: str, dataset: str = "imagenet-1k", license: str | None = None,
                     source: str | None = None) -> PretrainedCfg:
    """A tag whose weights are timm's encoder weights ``timm_tag`` (e.g. ``resnet50.tv_in1k``)."""
    return PretrainedCfg(encoder_weights=timm_tag, dataset=dataset, license=license,
                         source=source or f"timm {timm_tag} (Hugging Face Hub: timm/{timm_tag})",
                         notes="encoder weights only; context, decoder and classifier are newly initialised")


def resolve_data_config(model_or_cfg: Any) -> dict[str, Any]:
    """How a model's input is prepared: ``{'mean', 'std', 'interpolation', 'input_size'}``.

    Takes a model (its ``pretrained_cfg``), a :class:`PretrainedCfg` or any mapping such as a timm
    pretrained config. A built model's values are its encoder's (see :class:`PretrainedCfg`);
    where none are known: ImageNet's mean/std, bilinear, 513 x 513.
    """
    cfg = model_or_cfg if isinstance(model_or_cfg, Mapping) else getattr(model_or_cfg, "pretrained_cfg", None)
    cfg = cfg if isinstance(cfg, Mapping) else {}
    return {"mean": tuple(cfg.get("mean") or IMAGENET_MEAN), "std": tuple(cfg.get("std") or IMAGENET_STD),
            "interpolation": cfg.get("interpolation") or DEFAULT_INTERPOLATION,
            "input_size": tuple(cfg.get("input_size") or PretrainedCfg.input_size)}
