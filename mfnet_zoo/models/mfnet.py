"""MFNet: low-rank factorization context + DeepLabV3+ decoder (Gurram: *Learning context with factorization
techniques in semantic segmentation*; docs/models.md describes the blocks)."""
from __future__ import annotations

from typing import Literal

from .._pretrained import encoder_only_cfg
from .._registry import register_model, register_pretrained_cfgs
from ..layers import DeepLabV3PlusDecoder, FactorizationContext
from ..layers.context_protocol import ContextState
from ..layers.factorization import BasesGrad
from ._family import TEST_ENCODER, build_segmentation_model, build_variant, require_low_level
from .encoder import TimmEncoder

__all__: list[str] = []

# the paper's starting point: torchvision's ImageNet ResNets, served by timm on the Hub
register_pretrained_cfgs({
    "mfnet_r50.tv_in1k": encoder_only_cfg("resnet50.tv_in1k", license="bsd-3-clause"),
    "mfnet_r101.tv_in1k": encoder_only_cfg("resnet101.tv_in1k", license="bsd-3-clause"),
    "mfnet_lite_r50.tv_in1k": encoder_only_cfg("resnet50.tv_in1k", license="bsd-3-clause"),
})


def _mfnet_head(encoder: TimmEncoder, num_classes: int, *, rank: int = 64,
                mode: Literal["static", "nmf"] = "static", width: int | None = None,
                base_size: tuple[int, int] = (33, 33), train_steps: int = 6, eval_steps: int = 7,
                seed: int = 0, decoder_channels: int = 256, context_state: ContextState = "on",
                inv_t: float | None = None, redraw_bases: bool = False, bases_grad: BasesGrad = "one-step"):
    # context_state (saved in config.json, as the state the model is in when saved): "on", "off" (warm-up
    # epochs) or "pair-only" (the paper's code as it ran: the pair for the loss, logits without the context);
    # Hamburger's NMF: mode="nmf", **layers.NMF_SETTINGS["hamburger"]; bases_grad (nmf mode): what autograd sees of
    # the NMF iterations, "one-step" (Hamburger's), "none" or "unrolled" (see FactorizationContext)
    context = FactorizationContext(encoder.out_channels, 256, rank=rank, mode=mode, width=width,
                                   base_size=tuple(base_size), train_steps=train_steps,
                                   eval_steps=eval_steps, seed=seed, context_state=context_state,
                                   inv_t=inv_t, redraw_bases=redraw_bases, bases_grad=bases_grad)
    decoder = DeepLabV3PlusDecoder(require_low_level(encoder, "MFNet"), num_classes, channels=decoder_channels)
    return context, decoder


@register_model(test_configs={"static": {"encoder": TEST_ENCODER},
                              "nmf": {"encoder": TEST_ENCODER, "mode": "nmf", "width": 16, "rank": 8}},
                head=_mfnet_head)
def mfnet(pretrained: bool = False, encoder: str = "resnet50", **kwargs):
    """MFNet on any timm encoder with stride-4 features (``encoder="convnext_tiny"``)."""
    return build_segmentation_model(_mfnet_head, "mfnet", pretrained, encoder=encoder, **kwargs)


@register_model(family="mfnet")
def mfnet_r50(pretrained: bool = False, **kwargs):
    """The paper's MFNet: ResNet-50, multi-grid (1, 2, 4), output stride 16; 29,738,997 params."""
    return build_variant(_mfnet_head, "mfnet_r50", pretrained, kwargs, encoder="resnet50", multi_grid=(1, 2, 4))


@register_model(family="mfnet")
def mfnet_r101(pretrained: bool = False, **kwargs):
    """MFNet with ResNet-101, multi-grid (1, 2, 4), output stride 16."""
    return build_variant(_mfnet_head, "mfnet_r101", pretrained, kwargs, encoder="resnet101", multi_grid=(1, 2, 4))


def _mfnet_lite_head(encoder: TimmEncoder, num_classes: int, *, rank: int = 64, width: int = 256,
                     base_size: tuple[int, int] = (33, 33), decoder_channels: int = 256):
    # a 256-wide factorization (no C x C embedding) and one depthwise-separable decoder conv; call
    # model.reparameterize() for inference to fold the context into one 1x1 conv
    context = FactorizationContext(encoder.out_channels, 256, rank=rank, mode="static", width=width,
                                   base_size=tuple(base_size))
    decoder = DeepLabV3PlusDecoder(require_low_level(encoder, "MFNet-lite"), num_classes, channels=decoder_channels,
                                   separable=True, num_convs=1)
    return context, decoder


@register_model(test_configs={"": {"encoder": TEST_ENCODER}}, head=_mfnet_lite_head)
def mfnet_lite(pretrained: bool = False, encoder: str = "resnet50", **kwargs):
    """Light MFNet on any timm encoder: 256-wide static factorization, one separable decoder conv."""
    return build_segmentation_model(_mfnet_lite_head, "mfnet_lite", pretrained, encoder=encoder, **kwargs)


@register_model(family="mfnet_lite")
def mfnet_lite_r50(pretrained: bool = False, **kwargs):
    """Light MFNet with ResNet-50 at output stride 16 (timm's dilations): fewer parameters than smp's DeepLabV3+."""
    return build_variant(_mfnet_lite_head, "mfnet_lite_r50", pretrained, kwargs, encoder="resnet50")
