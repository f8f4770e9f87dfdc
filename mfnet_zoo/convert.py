"""Convert checkpoints of the paper's code and of EMANet's release into mfnet_zoo folders.

Sources (``source=``), see docs/convert.md for the key tables:

* ``"paper-mfnet"``, ``"paper-deeplab"``, ``"paper-emanet"``: the paper's code
  (github:nageshgurram12/generic-semantic-segmentation, branch ``mfnet``): ``MFNet``,
  ``DeepLab`` and its copy of ``EMANet``, all on its DeepLab ResNet (keys ``backbone.*``,
  7x7 stem, layer4 dilations 2, 4, 8 at output stride 16) = ``mfnet_r50``,
  ``deeplabv3plus_r50``, ``emanet_r50`` (``_r101`` when layer3 has 23 blocks).
* ``"emanet"``: EMANet's release (github:XiaLiPKU/EMANet, keys ``extractor.0..7``): deep 3x3
  stem (timm ``resnet50s``/``resnet101s``), layer4 multi-grid (1, 2, 4) with its first block at
  the previous dilation (2, 8, 16 at its default output stride 8) = ``create_model("emanet",
  encoder="resnet50s", output_stride=8, multi_grid=(1, 2, 4), encoder_kwargs=
  {"multi_grid_first_dilation": "previous"})`` (``resnet101s`` when layer3 has 23 blocks).

Every source key must match a rule and every model key must be filled, or a ValueError lists
the offenders; nothing is loaded partially or dropped.
"""
from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from ._builder import load_weights
from ._constants import CONVERT_SOURCES, IMAGENET_MEAN, IMAGENET_STD
from ._factory import create_model
from ._pretrained import PretrainedCfg
from .checkpoint import torch_load

__all__ = ["DEFAULT_OUTPUT_STRIDE", "RULES", "SOURCES", "convert_checkpoint", "load_source_state_dict",
           "map_state_dict"]

Source = Literal["paper-mfnet", "paper-deeplab", "paper-emanet", "emanet"]
SOURCES: tuple[str, ...] = CONVERT_SOURCES
# where training scripts put the weights: the paper's Saver ("state_dict"), EMANet's train.py ("net")
WRAPPER_KEYS = ("state_dict", "model", "net")

try:  # the paper's code stores best_pred as a numpy float64; allow numeric numpy scalars, nothing else
    from numpy._core.multiarray import scalar as _np_scalar  # numpy >= 2
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core.multiarray import scalar as _np_scalar
_NUMPY_SCALAR_GLOBALS = [(_np_scalar, "numpy.core.multiarray.scalar"), (_np_scalar, "numpy._core.multiarray.scalar"),
                         np.dtype, *(type(np.dtype(code)) for code in "?bhilqBHILQefd")]

# (source prefix, model prefix): a prefix ending in "." renames every key under it, any other
# entry one exact key; a key no rule matches is an error
_PAPER_BACKBONE = (("backbone.", "encoder.model."),)
_PAPER_DECODER = (
    ("decoder.conv1.", "decoder.low_level_proj.0."),
    ("decoder.bn1.", "decoder.low_level_proj.1."),
    ("decoder.last_conv.0.", "decoder.refine.0.0."),
    ("decoder.last_conv.1.", "decoder.refine.0.1."),
    ("decoder.last_conv.4.", "decoder.refine.2.0."),
    ("decoder.last_conv.5.", "decoder.refine.2.1."),
    ("decoder.last_conv.8.", "decoder.classifier."),
)
_EMA_HEAD = (
    ("fc0.conv.", "context.reduce.0."),
    ("fc0.bn.", "context.reduce.1."),
    ("emau.", "context.emau."),  # mu, conv1, conv2.0, conv2.1
    ("fc1.0.conv.", "context.proj.0."),
    ("fc1.0.bn.", "context.proj.1."),
    ("fc2.", "decoder.classifier."),
)
RULES: dict[str, tuple[tuple[str, str], ...]] = {
    "paper-mfnet": _PAPER_BACKBONE + (
        ("Y", "context.Y"),  # 1 x C x K -> C x K
        ("Z", "context.Z"),  # 1 x K x 33*33 -> K x 33*33
        ("conv1.", "context.embed."),
        ("conv2.0.", "context.proj.0."),
        ("conv2.1.", "context.proj.1."),
    ) + _PAPER_DECODER,
    "paper-deeplab": _PAPER_BACKBONE + tuple(
        rule for i in range(4) for rule in ((f"aspp.aspp{i + 1}.atrous_conv.", f"context.branches.{i}.0."),
                                            (f"aspp.aspp{i + 1}.bn.", f"context.branches.{i}.1."))
    ) + (
        ("aspp.global_avg_pool.1.", "context.pool.1.0."),
        ("aspp.global_avg_pool.2.", "context.pool.1.1."),
        ("aspp.conv1.", "context.project.0.0."),
        ("aspp.bn1.", "context.project.0.1."),
    ) + _PAPER_DECODER,
    "paper-emanet": _PAPER_BACKBONE + _EMA_HEAD,
    "emanet": (
        ("extractor.0.", "encoder.model.conv1."),  # a Sequential (deep stem) in the release
        ("extractor.1.", "encoder.model.bn1."),
        ("extractor.4.", "encoder.model.layer1."),
        ("extractor.5.", "encoder.model.layer2."),
        ("extractor.6.", "encoder.model.layer3."),
        ("extractor.7.", "encoder.model.layer4."),
    ) + _EMA_HEAD,
}
_FAMILY = {"paper-mfnet": "mfnet", "paper-deeplab": "deeplabv3plus", "paper-emanet": "emanet"}
_DEPTH = {6: 50, 23: 101}  # blocks in layer3 -> ResNet depth

# output stride assumed when convert_checkpoint gets none: neither source stores it
DEFAULT_OUTPUT_STRIDE = {"paper-mfnet": 16, "paper-deeplab": 16, "paper-emanet": 16, "emanet": 8}
# EMANet's release: ResNet with a deep stem and multi-grid (1, 2, 4) whose first block keeps the previous dilation
EMANET_RELEASE_KWARGS = {"multi_grid": (1, 2, 4), "encoder_kwargs": {"multi_grid_first_dilation": "previous"}}


def _check_source(source: str) -> None:
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, got {source!r}")


def _listing(keys: list[str]) -> str:
    return f"{keys[:10]}{f' (+{len(keys) - 10} more)' if len(keys) > 10 else ''}"


def _guess_source(keys: set[str]) -> str | None:
    """The layout a set of source keys looks like, for error hints."""
    if "Y" in keys and "Z" in keys:
        return "paper-mfnet"
    if "aspp.conv1.weight" in keys:
        return "paper-deeplab"
    if "emau.mu" in keys:
        return "emanet" if any(k.startswith("extractor.") for k in keys) else "paper-emanet"
    return None


def load_source_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The state dict in a training checkpoint of the paper's code or EMANet's release.

    Read with ``torch.load(weights_only=True)`` (numeric numpy scalars such as the paper's
    ``best_pred`` allowed). The file may hold a bare state dict or a dict with the weights under
    ``"state_dict"``, ``"model"`` or ``"net"`` next to ``epoch``/``optimizer``/``best_pred``;
    DataParallel's ``module.`` prefix is removed.
    """
    obj = torch_load(path, safe_globals=_NUMPY_SCALAR_GLOBALS)
    if isinstance(obj, Mapping):
        obj = next((obj[k] for k in WRAPPER_KEYS if isinstance(obj.get(k), Mapping)), obj)
    if not isinstance(obj, Mapping) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        found = sorted(map(str, obj))[:10] if isinstance(obj, Mapping) else type(obj).__name__
        raise ValueError(f"{str(path)!r} holds no state dict: expected a dict of tensors, or a dict with one under "
                         f"{list(WRAPPER_KEYS)}; found {found}")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def _rename(key: str, rules: tuple[tuple[str, str], ...]) -> str | None:
    for src, dst in rules:
        if key == src or (src.endswith(".") and key.startswith(src)):
            return dst + key[len(src):]
    return None


def map_state_dict(state_dict: Mapping[str, torch.Tensor], source: Source) -> dict[str, torch.Tensor]:
    """Rename every key of a ``source`` state dict to mfnet_zoo's layout (see :data:`RULES`).

    ``paper-mfnet``'s ``Y`` (1 x C x K) and ``Z`` (1 x K x N) lose their batch dimension.
    A key no rule matches is a ValueError listing them (and the layout the keys look like).
    """
    _check_source(source)
    mapped: dict[str, torch.Tensor] = {}
    unmapped: list[str] = []
    for key, value in state_dict.items():
        new = _rename(key, RULES[source])
        if new is None:
            unmapped.append(key)
        else:
            mapped[new] = value
    if unmapped:
        guess = _guess_source(set(state_dict))
        hint = f"; its keys look like source={guess!r}" if guess not in (None, source) else ""
        raise ValueError(f"{len(unmapped)} key(s) of the {source} checkpoint match no mapping rule: "
                         f"{_listing(unmapped)}{hint}")
    for name in ("context.Y", "context.Z") if source == "paper-mfnet" else ():
        tensor = mapped.get(name)
        if tensor is not None:
            if tensor.ndim != 3 or tensor.shape[0] != 1:
                raise ValueError(f"paper-mfnet {name[-1]} must be 1 x rows x cols (the paper's batch-1 "
                                 f"parameter), got shape {tuple(tensor.shape)}")
            mapped[name] = tensor[0]
    return mapped


def _model_name(mapped: Mapping[str, torch.Tensor], source: str) -> tuple[str, dict]:
    """Registry name and create_model kwargs for a mapped checkpoint: family from the source, depth
    from layer3 (EMANet's release: the generic ``emanet`` on timm's deep-stem ``resnet50s``/``resnet101s``)."""
    blocks = {k.split(".")[3] for k in mapped if k.startswith("encoder.model.layer3.")}
    if len(blocks) not in _DEPTH:
        raise ValueError(f"the {source} checkpoint's layer3 has {len(blocks)} blocks; supported: "
                         f"{', '.join(f'{n} (ResNet-{d})' for n, d in _DEPTH.items())}")
    depth = _DEPTH[len(blocks)]
    if source == "emanet":
        return "emanet", {**EMANET_RELEASE_KWARGS, "encoder": f"resnet{depth}s"}
    return f"{_FAMILY[source]}_r{depth}", {}


def convert_checkpoint(src: str | Path, dst: str | Path, source: Source, num_classes: int | None = None,
                       output_stride: int | None = None, context_in_logits: bool = False) -> Path:
    """Convert the training checkpoint ``src`` into an mfnet_zoo folder ``dst`` and return ``dst``.

    Builds ``mfnet_r50``/``deeplabv3plus_r50``/``emanet_r50`` (``_r101`` when layer3 has 23
    blocks; for ``source="emanet"``, EMANet's release, ``emanet`` on ``resnet50s``/``resnet101s``
    with the release's layer4 dilations) with the checkpoint's class count, loads every tensor
    (strict: any missing, unexpected or mis-shaped key is a ValueError naming it) and writes
    ``save_pretrained``'s model.safetensors + config.json + README.md, loadable by
    ``mfnet_zoo.from_pretrained(dst)``. ``num_classes``, if given, must equal the checkpoint's
    (re-head later with ``from_pretrained(dst, num_classes=...)``).

    ``output_stride``: no checkpoint stores it (the weights fit any stride). None takes the
    source's default: 16 for the paper's code, 8 for EMANet's release (its ``settings.STRIDE``);
    pass the stride the checkpoint was trained and evaluated at if it differs. Recorded in config.json.

    ``paper-mfnet``: by default config.json records ``context_state="pair-only"``, so the loaded model gives
    the logits the paper's runs produced: its train.py never passed ``epoch`` to ``MFNet.forward``
    (train.py:106; the context is added only ``if epoch >= self.mf_epoch``, MFNet.py:104-107), so its
    decoder was trained, and its mIoU measured, on ``relu(conv2(x))``; the pair (conv1(x), Y Z) is still
    returned, as the code's forward returns it. ``context_in_logits=True`` records ``"on"`` instead (the
    context in the logits, as the paper's text describes it, and as the code's forward at ``epoch >= 10``)
    and warns: the checkpoint's decoder was never trained on those features.
    """
    _check_source(source)
    if context_in_logits and source != "paper-mfnet":
        raise ValueError(f"context_in_logits applies to source='paper-mfnet' only (the factorization context), "
                         f"got source={source!r}")
    if output_stride is None:
        output_stride = DEFAULT_OUTPUT_STRIDE[source]
    if isinstance(output_stride, bool) or output_stride not in (8, 16):
        raise ValueError(f"output_stride must be 8 or 16 (the strides the sources train at) or None "
                         f"(the source's default, {DEFAULT_OUTPUT_STRIDE[source]}), got {output_stride!r}")
    mapped = map_state_dict(load_source_state_dict(src), source)
    name, kwargs = _model_name(mapped, source)
    if source == "paper-mfnet":
        kwargs["context_state"] = "on" if context_in_logits else "pair-only"
    classifier = mapped.get("decoder.classifier.weight")
    if classifier is None:
        key = next(s + "weight" for s, d in RULES[source] if d == "decoder.classifier.")
        raise ValueError(f"the {source} checkpoint {str(src)!r} has no classifier weight {key!r}")
    found = classifier.shape[0]
    if num_classes is not None and num_classes != found:
        raise ValueError(f"num_classes={num_classes!r} but the checkpoint's classifier has {found} classes; convert "
                         f"without num_classes and re-head with mfnet_zoo.from_pretrained(dst, num_classes=...)")
    model = create_model(name, num_classes=found, output_stride=output_stride, **kwargs)
    load_weights(model, mapped, strict=True, source=f"{str(src)!r} ({source}, mapped keys)")
    # not the registry tag's ImageNet-encoder config: no dataset or license claims in the model card; the
    # normalisation is ImageNet's, as the paper's dataloaders (EMANet's release: see docs/convert.md)
    model.pretrained_cfg = PretrainedCfg(num_classes=found, source=f"{source} checkpoint {Path(src).name}",
                                         mean=IMAGENET_MEAN, std=IMAGENET_STD, interpolation="bilinear")
    model.save_pretrained(dst)
    if context_in_logits:
        warnings.warn(f"{str(dst)!r} puts the factorization context into the logits (context_state='on'); the "
                      f"paper's runs never did (its train.py never passed the epoch to MFNet.forward), so this "
                      f"checkpoint's decoder was not trained for these features and its logits differ from the "
                      f"paper's; convert without context_in_logits for the logits its runs produced", UserWarning,
                      stacklevel=2)
    return Path(dst)
