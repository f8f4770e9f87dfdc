"""EMANet (Li et al. ICCV 2019): EM attention context + a 1x1 classifier at stride 16."""
from __future__ import annotations

from .._pretrained import encoder_only_cfg
from .._registry import register_model, register_pretrained_cfgs
from ..layers import ClassifierDecoder, EMAContext
from ..layers.factorization import BasesGrad
from ._family import TEST_ENCODER, build_segmentation_model, build_variant
from .encoder import TimmEncoder

__all__: list[str] = []

# the paper's starting point: torchvision's ImageNet ResNets, served by timm on the Hub
register_pretrained_cfgs({
    "emanet_r50.tv_in1k": encoder_only_cfg("resnet50.tv_in1k", license="bsd-3-clause"),
    "emanet_r101.tv_in1k": encoder_only_cfg("resnet101.tv_in1k", license="bsd-3-clause"),
})


def _emanet_head(encoder: TimmEncoder, num_classes: int, *, rank: int = 64, stages: int = 3,
                 momentum: float = 0.9, width: int = 512, bases_grad: BasesGrad = "none"):
    # bases_grad: what autograd sees of the EM stages, "none" (EMANet's), "one-step" or "unrolled" (see EMAUnit)
    context = EMAContext(encoder.out_channels, 256, width=width, rank=rank, stages=stages, momentum=momentum,
                         bases_grad=bases_grad)
    return context, ClassifierDecoder(num_classes, 256)


@register_model(test_configs={"": {"encoder": TEST_ENCODER, "rank": 8}}, head=_emanet_head)
def emanet(pretrained: bool = False, encoder: str = "resnet50", **kwargs):
    """EMANet on any timm encoder."""
    return build_segmentation_model(_emanet_head, "emanet", pretrained, encoder=encoder, **kwargs)


@register_model(family="emanet")
def emanet_r50(pretrained: bool = False, **kwargs):
    """EMANet-R50 as the paper's code: multi-grid (1, 2, 4), stride 16; 34,657,621 params."""
    return build_variant(_emanet_head, "emanet_r50", pretrained, kwargs, encoder="resnet50", multi_grid=(1, 2, 4))


@register_model(family="emanet")
def emanet_r101(pretrained: bool = False, **kwargs):
    """EMANet with ResNet-101, multi-grid (1, 2, 4), output stride 16."""
    return build_variant(_emanet_head, "emanet_r101", pretrained, kwargs, encoder="resnet101", multi_grid=(1, 2, 4))
