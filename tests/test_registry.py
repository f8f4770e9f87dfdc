"""Registry and create_model: names, wildcards, tags and every error message."""
import pytest
import torch

import mfnet_zoo
from mfnet_zoo import create_model, is_model, list_models, model_entrypoint, register_model
from mfnet_zoo._registry import default_encoder_weights, split_model_name_tag

ALL_NAMES = ["context_deeplab", "deeplabv3plus", "deeplabv3plus_r101", "deeplabv3plus_r50", "emanet", "emanet_r101",
             "emanet_r50", "fast_deeplab", "fast_deeplab_r50", "mfnet", "mfnet_lite", "mfnet_lite_r50", "mfnet_r101", "mfnet_r50"]


def test_list_models_and_wildcards():
    assert list_models() == ALL_NAMES
    assert list_models("mfnet*") == ["mfnet", "mfnet_lite", "mfnet_lite_r50", "mfnet_r101", "mfnet_r50"]
    assert list_models(["*_r50", "emanet"]) == ["deeplabv3plus_r50", "emanet", "emanet_r50", "fast_deeplab_r50",
                                                "mfnet_lite_r50", "mfnet_r50"]
    assert list_models("nothing*") == []
    assert list_models("mfnet_r*", pretrained=True) == ["mfnet_r101.tv_in1k", "mfnet_r50.tv_in1k"]
    assert len(list_models(pretrained=True)) == 8  # ImageNet encoder tags only, until VOC weights are published


def test_is_model_entrypoint_and_tags():
    assert is_model("mfnet_r50") and is_model("mfnet_r50.some_tag") and not is_model("mfnet_r5")
    assert model_entrypoint("emanet_r50") is mfnet_zoo.models.emanet.emanet_r50
    assert split_model_name_tag("mfnet_r50.voc_aug") == ("mfnet_r50", "voc_aug")
    assert split_model_name_tag("mfnet_r50") == ("mfnet_r50", "")


@pytest.mark.parametrize("name", ALL_NAMES)
def test_every_registered_name_builds_on_a_tiny_encoder(name):
    kwargs = {"encoder": "test_resnet"} if not name[-1].isdigit() else {}
    if kwargs:
        model = create_model(name, num_classes=3, **kwargs).eval()
        assert model(torch.randn(1, 3, 64, 64)).logits.shape == (1, 3, 64, 64)
    else:  # the fixed-encoder variants: construction only (ResNet-50/101 forwards are slow tests)
        model = create_model(name, num_classes=3)
        assert model.encoder.name in ("resnet50", "resnet101") and model.num_classes == 3


def test_block_options_pass_through():
    model = create_model("mfnet", encoder="test_resnet", mode="nmf", rank=32, width=48)
    assert (model.context.mode, model.context.rank, model.context.width) == ("nmf", 32, 48)
    model = create_model("emanet", encoder="test_resnet", rank=16, stages=2)
    assert (model.context.emau.rank, model.context.emau.stages) == (16, 2)
    model = create_model("deeplabv3plus", encoder="test_resnet", output_stride=8)
    assert model.context.atrous_rates == (12, 24, 36)


def test_unknown_name_lists_close_matches():
    with pytest.raises(ValueError, match=r"unknown model 'mfnet_r5'; did you mean mfnet_r50"):
        create_model("mfnet_r5")
    with pytest.raises(TypeError, match="model_name must be a str"):
        create_model(None)


def test_unknown_kwarg_names_the_valid_ones():
    with pytest.raises(TypeError, match=r"mfnet\(\) got unexpected keyword argument\(s\) \['ranks'\]; valid: .*'rank'"):
        create_model("mfnet", encoder="test_resnet", ranks=4)
    with pytest.raises(TypeError, match=r"emanet_r50.*\['mode'\].*'rank'"):
        create_model("emanet_r50", mode="nmf")


def test_fixed_encoder_variants_refuse_another_encoder():
    with pytest.raises(ValueError, match="mfnet_r50 fixes encoder='resnet50'.*create_model\\('mfnet', encoder='resnet18'\\)"):
        create_model("mfnet_r50", encoder="resnet18")


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"num_classes": 0}, "num_classes must be a positive int, got 0"),
        ({"num_classes": 2.5}, "num_classes must be a positive int, got 2.5"),
        ({"output_stride": 4}, r"output_stride must be one of \(8, 16, 32\), got 4"),
        ({"rank": 0}, "rank must be a positive int, got 0"),
        ({"rank": -3}, "rank must be a positive int, got -3"),
        ({"mode": "svd"}, "mode must be one of"),
        ({"in_chans": 0}, "in_chans must be a positive int, got 0"),
    ],
)
def test_bad_values_raise_value_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        create_model("mfnet", encoder="test_resnet", **kwargs)


def test_pretrained_errors_and_tags():
    with pytest.raises(ValueError, match="'mfnet' has no pretrained weights; models with weights: .*encoder_weights=True"):
        create_model("mfnet", encoder="test_resnet", pretrained=True)
    with pytest.raises(ValueError, match=r"unknown pretrained tag 'voc_aug' for 'mfnet_r50'; available: \['tv_in1k'\]"):
        create_model("mfnet_r50.voc_aug")
    model = create_model("mfnet_r50.tv_in1k")  # a tag without pretrained=True only names the config
    assert model.pretrained_cfg.encoder_weights == "resnet50.tv_in1k"
    with pytest.raises(ValueError, match="encoder_weights='resnet18.a1_in1k' are for 'resnet18'"):
        create_model("mfnet", encoder="test_resnet", encoder_weights="resnet18.a1_in1k")


def test_training_starts_from_imagenet_encoder_weights_by_default():
    # what `mfnet-zoo train` passes as encoder_weights without --encoder-weights
    for name in ("mfnet_r50", "mfnet_lite_r50", "deeplabv3plus_r50", "emanet_r50", "mfnet_r50.tv_in1k"):
        assert default_encoder_weights(name) == "resnet50.tv_in1k", name  # the registry's ImageNet tag
    assert default_encoder_weights("emanet_r101") == "resnet101.tv_in1k"
    for name in ("mfnet", "mfnet_lite", "deeplabv3plus", "emanet"):  # the family's tag for its default resnet50
        assert default_encoder_weights(name) == "resnet50.tv_in1k", name
        assert default_encoder_weights(name, encoder="convnext_tiny") is True  # timm's default tag
    with pytest.raises(ValueError, match="unknown model 'mfnet_r5'"):
        default_encoder_weights("mfnet_r5")


def test_register_model_adds_a_family_in_a_few_lines():
    from mfnet_zoo import _registry
    from mfnet_zoo.layers import ASPP, ClassifierDecoder
    from mfnet_zoo.models._family import build_segmentation_model

    def _head(encoder, num_classes, *, rates=(1, 2)):
        return ASPP(encoder.out_channels, 256, atrous_rates=rates), ClassifierDecoder(num_classes)

    def test_aspp_only(pretrained=False, encoder="test_resnet", **kwargs):
        return build_segmentation_model(_head, "test_aspp_only", pretrained, encoder=encoder, **kwargs)

    try:
        register_model(test_aspp_only)
        with pytest.raises(ValueError, match="already registered"):
            register_model(test_aspp_only)
        model = create_model("test_aspp_only", num_classes=2, rates=(3,)).eval()
        assert model(torch.randn(1, 3, 32, 32)).logits.shape == (1, 2, 32, 32)
        assert "test_aspp_only" in list_models("test_*")
    finally:
        _registry.unregister_model("test_aspp_only")
    assert not is_model("test_aspp_only")


def test_every_registered_model_is_in_the_tiny_set_or_says_why():
    from mfnet_zoo._registry import get_model_family, get_test_configs, untested_reason

    from .conftest import TINY

    for name in list_models():
        assert get_test_configs(name) or untested_reason(name), f"{name}: no test config and no reason"
        assert bool(get_test_configs(name)) == (name in {n for n, _ in TINY})
    assert untested_reason("mfnet_r50") == ("a fixed-encoder variant of 'mfnet', whose tiny instances test the "
                                            "same blocks")
    assert get_model_family("mfnet_lite_r50") == "mfnet_lite" and get_model_family("emanet") == "emanet"
    assert {n for n, _ in TINY} == {"mfnet", "mfnet_lite", "deeplabv3plus", "emanet", "context_deeplab", "fast_deeplab"}
    assert [kw.get("mode") for n, kw in TINY if n == "mfnet"] == [None, "nmf"]  # each context mode
