"""Any timm backbone as a segmentation encoder: (*skip features, deepest features), the skips at stride 4 unless
a decoder asks for others (``TimmEncoder.use_skips``)."""
from __future__ import annotations

import difflib
from collections.abc import Sequence
from typing import Any, Literal

import timm
from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError
from timm.data import resolve_model_data_config
from timm.models import get_pretrained_cfg, split_model_name_tag
import torch
from torch import nn

from .. import hub
from .._checks import check_positive_int, is_positive_int

__all__ = ["TimmEncoder"]

OUTPUT_STRIDES = (8, 16, 32)
MULTI_GRID_FIRST_DILATIONS = ("grid", "previous")


def _create(name: str, **kwargs: Any) -> nn.Module:
    """``timm.create_model``; weights that cannot be fetched are one error naming them, the cause and the ways
    out, at once when the Hub cannot be reached (no minutes of retries)."""
    with hub.fail_fast_when_unreachable() as reason:
        try:
            return timm.create_model(name, **kwargs)
        except (LocalEntryNotFoundError, HfHubHTTPError) as e:
            repo = getattr(get_pretrained_cfg(name), "hf_hub_id", None) or f"timm/{name}"
            what = f"the pretrained weights of timm encoder {name!r} (Hub repo {repo!r})"
            if isinstance(e, LocalEntryNotFoundError):  # offline, or the Hub unreachable, and not cached
                raise FileNotFoundError(f"{what} are not in the local Hugging Face cache, and "
                                        f"{reason or 'the Hub cannot be reached'}. {hub.ways_out('them')}") from e
            raise FileNotFoundError(f"cannot download {what}: {e}. {hub.ways_out('them')}") from e


class TimmEncoder(nn.Module):
    """Wraps ``timm.create_model(name, features_only=True, output_stride=...)``.

    The stride-4 level (DeepLabV3+'s skip) and the deepest level are picked by
    ``feature_info.reduction()``, not by index: ConvNeXt has no stride-2 level, ResNet has.

    Args:
        name: a timm model name, optionally with a pretrained tag (``resnet50.tv_in1k``).
        pretrained: load timm's pretrained weights (timm fetches them from the Hub).
        output_stride: stride of the deepest features; 8 and 16 dilate the last stages.
        in_chans: input channels; timm adapts a pretrained stem when != 3.
        multi_grid: dilation multipliers for the blocks of a ResNet's last stage, e.g.
            (1, 2, 4) as DeepLabV3 and the paper's code (dilations 2, 4, 8 at stride 16).
        multi_grid_first_dilation: how multi_grid treats the first block of the last stage:
            ``"grid"`` (default) gives it base * grid[0] like the others (the paper's code: 2, 4, 8
            at stride 16, 4, 8, 16 at 8); ``"previous"`` keeps it at the stage's previous dilation
            (base // 2, or 1 at stride 32) and gives the others base * grid, as EMANet's release
            (github:XiaLiPKU/EMANet): 1, 4, 8 at stride 16, 2, 8, 16 at 8 for (1, 2, 4). Pass it
            through ``create_model(..., encoder_kwargs={"multi_grid_first_dilation": "previous"})``.
        **timm_kwargs: passed to ``timm.create_model`` (drop_path_rate, ...).

    ``data_config``: the mean, std and interpolation the encoder's weights expect, from timm's
    pretrained config of ``name`` (its tag, or the architecture's default tag), resolved by
    ``timm.data.resolve_model_data_config``; the same whether or not the weights are loaded.

    forward(x: B x in_chans x H x W) -> (B x low_level_channels x H/4 x W/4,
    B x out_channels x H/os x W/os), sizes rounded up as the encoder's convs do; the first is None when the
    encoder has no stride-4 level. A decoder that fuses other levels asks for them with :meth:`use_skips`.
    """

    def __init__(self, name: str, pretrained: bool = False, output_stride: int = 16, in_chans: int = 3,
                 multi_grid: Sequence[int] | None = None,
                 multi_grid_first_dilation: Literal["grid", "previous"] = "grid", **timm_kwargs: Any) -> None:
        super().__init__()
        if multi_grid_first_dilation not in MULTI_GRID_FIRST_DILATIONS:
            raise ValueError(f"multi_grid_first_dilation must be one of {MULTI_GRID_FIRST_DILATIONS}, "
                             f"got {multi_grid_first_dilation!r}")
        if multi_grid_first_dilation != "grid" and multi_grid is None:
            raise ValueError(f"multi_grid_first_dilation={multi_grid_first_dilation!r} needs multi_grid "
                             f"(e.g. multi_grid=(1, 2, 4)); without it timm's dilations are used")
        if output_stride not in OUTPUT_STRIDES:
            raise ValueError(f"output_stride must be one of {OUTPUT_STRIDES}, got {output_stride!r}")
        check_positive_int("in_chans", in_chans)
        if not isinstance(name, str) or not timm.is_model(split_model_name_tag(name)[0]):
            close = difflib.get_close_matches(str(name), timm.list_models(), n=5)
            raise ValueError(f"unknown timm encoder {name!r}; close timm names: {close}")
        kwargs = dict(timm_kwargs, pretrained=pretrained, features_only=True, in_chans=in_chans)
        try:
            # every timm model has its natural stride; only those that can dilate take output_stride
            self.model = _create(name, **kwargs, **({} if output_stride == 32 else {"output_stride": output_stride}))
        except TypeError as e:
            if "output_stride" not in str(e):
                raise
            self.model = _create(name, **kwargs)  # e.g. a ViT: stride 16 everywhere
        except (RuntimeError, AssertionError) as e:
            raise ValueError(f"timm cannot build {name!r} with features_only=True and "
                             f"output_stride={output_stride}: {e}") from e
        self.name = name
        data = resolve_model_data_config(self.model)
        self.data_config = {"mean": tuple(data["mean"]), "std": tuple(data["std"]),
                            "interpolation": data["interpolation"]}
        self.in_chans = in_chans
        reductions = self.model.feature_info.reduction()
        channels = self.model.feature_info.channels()
        if reductions[-1] != output_stride:
            raise ValueError(f"timm encoder {name!r} gives features at reductions {reductions}, so "
                             f"output_stride={output_stride} is not available; use output_stride={reductions[-1]}, "
                             f"or an encoder that can dilate (resnet50, convnext_tiny) for 8 or 16")
        self.output_stride = output_stride
        self.out_channels = channels[-1]
        self.deep_index = len(reductions) - 1
        # a missing stride-4 level is an error only for decoders that need it: see low_level_channels
        self.low_level_index = reductions.index(4) if 4 in reductions else None
        self.low_level_channels = channels[self.low_level_index] if self.low_level_index is not None else None
        self.skip_indices: tuple[int | None, ...] = (self.low_level_index,)  # what forward returns before the deepest
        if multi_grid is not None:
            self._apply_multi_grid(tuple(multi_grid), multi_grid_first_dilation)
        self.multi_grid = None if multi_grid is None else tuple(multi_grid)
        self.multi_grid_first_dilation = multi_grid_first_dilation

    def _apply_multi_grid(self, grid: tuple[int, ...], first: str = "grid") -> None:
        stage = getattr(self.model, "layer4", None)
        if stage is None or not all(hasattr(block, "conv2") for block in stage):
            raise ValueError(f"multi_grid needs a ResNet-style encoder with layer4 bottleneck blocks; "
                             f"{self.name!r} has none")
        if len(grid) != len(stage) or not all(is_positive_int(g) for g in grid):
            raise ValueError(f"multi_grid must be {len(stage)} positive ints for {self.name!r}, got {grid!r}")
        base = stage[-1].conv2.dilation[0]  # the stage's dilation (1 at stride 32, 2 at 16, 4 at 8)
        dilations = [base * g for g in grid]
        if first == "previous":  # EMANet's release: the first block stays at the previous stage's dilation
            dilations[0] = max(base // 2, 1)
        for block, d in zip(stage, dilations):
            conv = block.conv2
            conv.dilation = (d, d)
            conv.padding = (d * (conv.kernel_size[0] // 2),) * 2

    def use_skips(self, *strides: int) -> tuple[int, ...]:
        """From now on forward returns the features at ``strides`` (in this order) before the deepest ones,
        for a decoder that fuses several levels (``use_skips(8, 4)``: B x C8 x H/8 x W/8, B x C4 x H/4 x W/4,
        deepest). Returns their channels; a stride the encoder has no level at, the output stride itself or a stride
        given twice is a ValueError naming the strides it can give."""
        reductions, channels = self.model.feature_info.reduction(), self.model.feature_info.channels()
        available = sorted(set(reductions[:-1]) - {self.output_stride}, reverse=True)
        if not strides or any(s not in available for s in strides) or len(set(strides)) != len(strides):
            raise ValueError(f"use_skips needs distinct strides among {available} (the levels of timm encoder "
                             f"{self.name!r} finer than its output stride {self.output_stride}), got {strides!r}")
        self.skip_indices = tuple(reductions.index(s) for s in strides)
        return tuple(channels[i] for i in self.skip_indices)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.model.set_grad_checkpointing(enable)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        features = self.model(x)
        return (*(None if i is None else features[i] for i in self.skip_indices), features[self.deep_index])
