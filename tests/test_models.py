"""SegmentationModel, the encoder wrapper and the paper's three models."""
import pytest
import torch

import mfnet_zoo
from mfnet_zoo import EMAUnit, FactorizationContext, SegmentationOutput, create_model, list_models
from mfnet_zoo.layers import provides_reconstruction
from mfnet_zoo.models import TimmEncoder

from .conftest import TINY, TINY_IDS, assert_context_visible, randomize_bn_stats, visible_context

def tiny(name, **kwargs):
    return create_model(name, **{"encoder": "test_resnet", **kwargs})


@pytest.mark.parametrize("name,kwargs", TINY, ids=TINY_IDS)
@pytest.mark.parametrize("batch,size", [(1, (97, 131)), (3, (64, 64)), (2, (33, 47))])
def test_forward_shapes_any_size(name, kwargs, batch, size):
    model = tiny(name, num_classes=5, **kwargs).eval()
    out = model(torch.randn(batch, 3, *size))
    assert isinstance(out, SegmentationOutput)
    assert out.logits.shape == (batch, 5, *size)
    grid = tuple(-(-s // model.output_stride) for s in size)  # 16 but for fast_deeplab (32)
    assert out.features.shape == (batch, model.decoder.in_channels, *grid)  # 256 but for the tiny test configs
    assert (out.reconstruction is not None) == provides_reconstruction(model.context)
    assert provides_reconstruction(model.context) == isinstance(model.context, FactorizationContext)
    assert torch.isfinite(out.logits).all()


@pytest.mark.parametrize("name,kwargs", TINY, ids=TINY_IDS)
def test_train_step_reaches_every_trained_parameter(name, kwargs):
    model = tiny(name, num_classes=3, **kwargs).train()
    out = model(torch.randn(2, 3, 64, 48))
    loss = torch.nn.functional.cross_entropy(out.logits, torch.randint(0, 3, (2, 64, 48)))
    if out.reconstruction is not None:
        loss = loss + torch.nn.functional.mse_loss(*out.reconstruction)
    loss.backward()
    # timm zero-initialises each ResNet block's last BN, so encoder grads may be exactly zero at init
    no_grad = [n for n, p in model.named_parameters()
               if p.grad is None or (not n.startswith("encoder.") and not p.grad.abs().sum() > 0)]
    # EMANet's EM iterations run without grad, so the conv1 of an EM unit gets none (as the original)
    expected = {f"{unit}.conv1.{p}" for unit, m in model.named_modules() if isinstance(m, EMAUnit) for p in ("weight", "bias")}
    assert set(no_grad) == expected and (name != "emanet" or expected)


def test_predict_gives_class_map_and_binary():
    model = tiny("mfnet", num_classes=4).train()
    x = torch.randn(2, 3, 40, 40)
    pred = model.predict(x)
    assert not model.training
    assert pred.shape == (2, 40, 40) and pred.dtype == torch.int64
    assert torch.equal(pred, model(x).logits.argmax(1))
    binary = tiny("deeplabv3plus", num_classes=1).eval()
    logits = binary(x).logits
    assert logits.shape == (2, 1, 40, 40)
    assert torch.equal(binary.predict(x), (logits[:, 0] > 0).long())


@pytest.mark.parametrize(
    "name,expected",
    [("mfnet_r50", 29_738_997), ("emanet_r50", 34_657_621), ("deeplabv3plus_r50", 40_352_181)],
)
def test_paper_parameter_counts_exact(name, expected):
    model = create_model(name)
    assert sum(p.numel() for p in model.parameters()) == expected
    assert model.num_classes == 21 and model.output_stride == 16


def test_r101_variants_build_and_are_larger():
    for family in ("mfnet", "deeplabv3plus", "emanet"):
        small = sum(p.numel() for p in create_model(f"{family}_r50").parameters())
        large = sum(p.numel() for p in create_model(f"{family}_r101").parameters())
        assert large - small == 42_500_160 - 23_508_032  # only the encoder differs


def test_paper_models_use_multi_grid_layer4():
    model = create_model("mfnet_r50")
    assert [b.conv2.dilation[0] for b in model.encoder.model.layer4] == [2, 4, 8]
    assert [b.conv2.padding[0] for b in model.encoder.model.layer4] == [2, 4, 8]
    os8 = create_model("mfnet_r50", output_stride=8)
    assert [b.conv2.dilation[0] for b in os8.encoder.model.layer4] == [4, 8, 16]
    plain = create_model("mfnet", encoder="resnet50")  # timm's own dilations
    assert [b.conv2.dilation[0] for b in plain.encoder.model.layer4] == [1, 2, 2]


@pytest.mark.slow
def test_mfnet_r50_full_size_forward_matches_paper_grid():
    model = create_model("mfnet_r50").eval()
    randomize_bn_stats(model)
    with torch.no_grad():
        out = model(torch.randn(1, 3, 513, 513))
    assert out.logits.shape == (1, 21, 513, 513)
    assert out.features.shape == (1, 256, 33, 33)  # the paper's 33 x 33 grid: no resize
    assert out.reconstruction.estimate.shape == (1, 2048, 33, 33)


def test_encoder_picks_levels_by_reduction():
    resnet = TimmEncoder("test_resnet", output_stride=16)
    convnext = TimmEncoder("test_convnext", output_stride=16)  # no stride-2 level
    assert resnet.model.feature_info.reduction()[resnet.low_level_index] == 4
    assert convnext.low_level_index == 0 and convnext.low_level_channels == convnext.model.feature_info.channels()[0]
    low, deep = convnext(torch.randn(1, 3, 64, 64))
    assert low.shape[-1] == 16 and deep.shape[-1] == 4
    assert deep.shape[1] == convnext.out_channels


def test_encoder_use_skips_returns_the_levels_asked_for_deepest_first():
    encoder = TimmEncoder("test_resnet", output_stride=32)
    assert encoder.use_skips(8, 4) == (48, 32)
    s8, s4, deep = encoder(torch.randn(2, 3, 64, 96))
    assert s8.shape == (2, 48, 8, 12) and s4.shape == (2, 32, 16, 24) and deep.shape == (2, 96, 2, 3)
    convnext = TimmEncoder("test_convnext", output_stride=16)  # levels at 4, 8, 16, 16 (dilated)
    for strides in [(16,), (2,), (), (8, 8)]:
        with pytest.raises(ValueError, match=r"distinct strides among \[8, 4\].*test_convnext.*output stride 16"):
            convnext.use_skips(*strides)
    assert convnext.use_skips(4) == (convnext.low_level_channels,)


def test_any_timm_encoder_and_in_chans():
    model = create_model("mfnet", encoder="test_efficientnet", output_stride=8, in_chans=4, num_classes=2).eval()
    out = model(torch.randn(1, 4, 64, 64))
    assert out.logits.shape == (1, 2, 64, 64) and out.features.shape[-1] == 8


def test_vit_encoder_without_stride4_level():
    # EMANet needs only the deepest level, so a ViT (stride 16 everywhere) works; MFNet does not
    model = create_model("emanet", encoder="test_vit", num_classes=3).eval()
    assert model(torch.randn(1, 3, 160, 160)).logits.shape == (1, 3, 160, 160)
    with pytest.raises(ValueError, match="needs stride-4 encoder features.*test_vit.*reductions"):
        create_model("mfnet", encoder="test_vit")
    with pytest.raises(ValueError, match="test_vit.*output_stride=32 is not available; use output_stride=16"):
        create_model("emanet", encoder="test_vit", output_stride=32)


def test_encoder_errors_name_the_problem():
    with pytest.raises(ValueError, match="unknown timm encoder 'resnet5'.*resnet50"):
        create_model("mfnet", encoder="resnet5")
    with pytest.raises(ValueError, match="multi_grid needs a ResNet-style encoder.*test_convnext"):
        create_model("mfnet", encoder="test_convnext", multi_grid=(1, 2, 4))
    with pytest.raises(ValueError, match="multi_grid must be 3 positive ints"):
        create_model("mfnet_r50", multi_grid=(1, 2))


@pytest.mark.parametrize(
    "x,error,match",
    [
        ([1.0], TypeError, "expected a torch.Tensor"),
        (torch.randn(3, 64, 64), ValueError, r"4-d input B x 3 x H x W, got shape \(3, 64, 64\)"),
        (torch.zeros(1, 3, 64, 64, dtype=torch.uint8), TypeError, "floating-point.*torch.uint8"),
        (torch.randn(1, 1, 64, 64), ValueError, "expected 3 input channels, got 1"),
        (torch.randn(1, 3, 8, 64), ValueError, "smaller than the output stride 16"),
    ],
)
def test_forward_rejects_bad_input(x, error, match):
    model = tiny("mfnet").eval()
    with pytest.raises(error, match=match):
        model(x)


def test_warm_up_switch_through_the_model():
    model = tiny("mfnet").eval()
    assert isinstance(model.context, FactorizationContext)
    mfnet_zoo.layers.set_context_state(model.context, "off")
    assert model(torch.randn(1, 3, 48, 48)).reconstruction is None
    mfnet_zoo.layers.set_context_state(model.context, "on")
    assert model(torch.randn(1, 3, 48, 48)).reconstruction is not None


def test_reset_classifier_keeps_everything_else():
    model = tiny("emanet", num_classes=21)
    before = {k: v.clone() for k, v in model.state_dict().items() if "classifier" not in k}
    model.reset_classifier(7)
    assert model.num_classes == 7 and model.get_classifier().out_channels == 7
    after = model.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in before.items())


def test_list_models_covers_the_paper_models():
    assert {"mfnet_r50", "deeplabv3plus_r50", "emanet_r50"} <= set(list_models())


@pytest.mark.parametrize("name", ["mfnet", "mfnet_lite"])
def test_reparameterized_model_gives_the_same_logits_and_exports(name):
    model = visible_context(tiny(name, num_classes=4).eval())
    x = torch.randn(2, 3, 70, 90)
    expected = model(x).logits
    folded = mfnet_zoo.reparameterize_model(model)
    assert type(folded.context).__name__ == "FoldedFactorizationContext"
    out = folded(x)
    assert out.reconstruction is None
    allowed = 1e-5 * expected.abs().max().item()
    torch.testing.assert_close(out.logits, expected, rtol=0, atol=allowed)
    assert_context_visible(model, x, allowed)  # a fold without relu(Y Z) would fail
    assert_context_visible(folded, x, allowed)  # and one with a constant bias map (its spatial mean)
    program = torch.export.export(folded, (x,), dynamic_shapes={"x": {0: torch.export.Dim.AUTO, 2: torch.export.Dim.AUTO,
                                                                      3: torch.export.Dim.AUTO}})
    y = torch.randn(1, 3, 64, 64)  # another size: the bias map is resized inside the graph
    expected = folded(y).logits
    torch.testing.assert_close(program.module()(y).logits, expected, rtol=0, atol=allowed)
    assert_context_visible(folded, y, allowed)


def test_lite_variant_is_smaller_than_smp_deeplabv3plus():
    import segmentation_models_pytorch as smp

    lite = create_model("mfnet_lite_r50")
    reference = smp.DeepLabV3Plus("resnet50", encoder_weights=None, encoder_output_stride=16, classes=21)
    trainable = sum(p.numel() for p in lite.parameters() if p.requires_grad)
    assert trainable == 24_283_557 < sum(p.numel() for p in reference.parameters()) == 26_682_725
    assert lite.eval()(torch.randn(1, 3, 97, 97)).logits.shape == (1, 21, 97, 97)  # any size, unlike smp


def test_fast_variant_runs_at_stride_32_and_is_smaller_than_smp_deeplabv3plus():
    model = create_model("fast_deeplab_r50").eval()
    assert model.output_stride == 32 and model.encoder.skip_indices == (3, 2, 1)  # ResNet levels at 16, 8, 4
    assert sum(p.numel() for p in model.parameters()) == 24_369_877  # smp's DeepLabV3Plus(resnet50): 26,682,725
    # two separable convs at stride 4 (head_convs=1), every stage 128 wide as the context; a narrower stride-4
    # stage is a choice (docs/fast-design.md: faster; docs/fast-accuracy.md: less accurate)
    assert len(model.decoder.head) == 1 and model.decoder.channels == (128, 128, 128)
    assert model.decoder.in_channels == 128 and sum(p.numel() for p in create_model(
        "fast_deeplab_r50", decoder_channels=(128, 128, 32)).parameters()) == 24_297_781
    # the head He-initialised (kaiming_init_), not torch's default (a sixth of the variance)
    for conv in (model.decoder.classifier, model.context.project[0][0]):
        assert abs(conv.weight.std().item() / (2 / conv.weight[0].numel()) ** 0.5 - 1) < 0.1
    out = model(torch.randn(1, 3, 97, 97))
    assert out.logits.shape == (1, 21, 97, 97) and out.features.shape == (1, 128, 4, 4)
    with pytest.raises(ValueError, match="use_skips needs distinct strides among.*test_vit"):
        create_model("fast_deeplab", encoder="test_vit", output_stride=16)


def test_fast_variant_fuses_the_levels_it_is_given():
    model = create_model("fast_deeplab", encoder="test_resnet", num_classes=3, decoder_channels=32,
                         skip_strides=(16, 8, 4)).eval()
    assert model.encoder.skip_indices == (3, 2, 1) and model.decoder.skip_channels == (192, 48, 32)
    assert model(torch.randn(1, 3, 64, 64)).logits.shape == (1, 3, 64, 64)
    with pytest.raises(ValueError, match=r"use_skips needs distinct strides among \[16, 8, 4, 2\].*\(32, 8\)"):
        create_model("fast_deeplab", encoder="test_resnet", skip_strides=(32, 8))
    # widths per stage: one per skip
    with pytest.raises(ValueError,
                       match=r"decoder_channels needs one width per skip stride \(8, 4\).*\(128, 128, 32\)"):
        create_model("fast_deeplab", encoder="test_resnet", skip_strides=(8, 4), decoder_channels=(128, 128, 32))
    assert create_model("fast_deeplab", encoder="test_resnet", skip_strides=(8, 4),
                        decoder_channels=(64, 32)).decoder.channels == (64, 32)
