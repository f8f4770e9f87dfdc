"""The blocks on their own: shapes, the paper's formulas, EM and NMF behaviour, bad arguments."""
import re

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mfnet_zoo.layers import (ASPP, DeepLabV3PlusDecoder, EMAContext, EMAUnit, FactorizationContext,
                              FoldedFactorizationContext, TopDownDecoder)
from mfnet_zoo.layers import (CONTEXTS, NMF_SETTINGS, ClassifierDecoder, atrous_rates_for, create_context,
                              get_context_state, kaiming_init_)

from .conftest import randomize_bn_stats


def paper_mfnet_context(block: FactorizationContext, x: torch.Tensor) -> torch.Tensor:
    """The paper code's MFNet.forward between backbone and decoder, written out as it is there."""
    xin = block.embed(x)
    b, c, h, w = xin.shape
    low_rank = block.Y.unsqueeze(0).matmul(block.Z.unsqueeze(0)).repeat(b, 1, 1).view(b, c, h, w)
    out = F.relu(low_rank) + xin
    out = block.proj[1](block.proj[0](out))  # conv2 = Sequential(conv, BN)
    return F.relu(out)


@pytest.mark.parametrize("batch", [1, 3])
def test_static_context_equals_paper_formula_at_base_grid(batch):
    block = FactorizationContext(32, 16, rank=8).eval()
    randomize_bn_stats(block)
    x = torch.randn(batch, 32, 33, 33)
    out, rec = block(x, return_reconstruction=True)
    assert out.shape == (batch, 16, 33, 33)
    torch.testing.assert_close(out, paper_mfnet_context(block, x), rtol=0, atol=1e-6)
    torch.testing.assert_close(rec.target, block.embed(x))
    low_rank = (block.Y @ block.Z).view(1, 32, 33, 33)
    torch.testing.assert_close(rec.estimate, low_rank.expand(batch, -1, -1, -1), rtol=0, atol=0)


def test_static_context_resizes_relu_of_low_rank_at_other_sizes():
    block = FactorizationContext(8, 4, rank=2).eval()
    x = torch.randn(2, 8, 17, 23)
    out, rec = block(x, return_reconstruction=True)
    resized = F.interpolate(F.relu(block.low_rank()), size=(17, 23), mode="bilinear", align_corners=False)
    expected = block.proj(resized + block.embed(x))
    torch.testing.assert_close(out, expected)
    assert rec.target.shape == rec.estimate.shape == (2, 8, 17, 23)


def test_static_init_follows_paper_code():
    block = FactorizationContext(2048, rank=64)
    assert block.Y.shape == (2048, 64) and block.Z.shape == (64, 33 * 33)
    assert block.Y.abs().max() <= 1 / (2048 * 64) ** 0.5
    assert block.Z.abs().max() <= 1 / (64 * 33 * 33) ** 0.5
    assert block.Y.std() > 0.5 / (2048 * 64) ** 0.5  # uniform, not collapsed
    assert block.embed.bias is not None and block.proj[0].bias is None


def test_static_gradients_reach_y_and_z():
    block = FactorizationContext(16, 8, rank=4).train()
    x = torch.randn(2, 16, 33, 33)
    out, rec = block(x, return_reconstruction=True)
    (out.square().mean() + F.mse_loss(rec.estimate, rec.target)).backward()
    assert block.Y.grad.abs().sum() > 0 and block.Z.grad.abs().sum() > 0
    assert block.embed.weight.grad.abs().sum() > 0


def test_disabled_context_is_the_paper_warm_up():
    block = FactorizationContext(16, 8, rank=4, context_state="off").eval()
    x = torch.randn(2, 16, 9, 9)
    out, rec = block(x, return_reconstruction=True)
    assert rec is None
    torch.testing.assert_close(out, block.proj(x))
    block.context_state = "on"
    assert block(x, return_reconstruction=True)[1] is not None


@pytest.mark.parametrize("mode", ["static", "nmf"])
def test_pair_only_returns_the_pair_but_features_bypass_the_context(mode):
    block = FactorizationContext(16, 8, rank=4, mode=mode, width=16).eval()
    randomize_bn_stats(block)
    x = torch.randn(2, 16, 9, 9)
    on, on_pair = block(x, return_reconstruction=True)
    block.context_state = "pair-only"
    out, pair = block(x, return_reconstruction=True)
    torch.testing.assert_close(out, block.proj(x))  # as "off": the paper's logits never saw the context
    assert not torch.allclose(out, on)
    torch.testing.assert_close(pair.target, on_pair.target)
    torch.testing.assert_close(pair.estimate, on_pair.estimate)
    with pytest.raises(ValueError, match=r"context_state must be one of \('on', 'off', 'pair-only'\), got 'of'"):
        FactorizationContext(16, 8, context_state="of")


def test_nmf_recovers_a_low_rank_nonnegative_matrix():
    g = torch.Generator().manual_seed(0)
    v = torch.rand(2, 32, 3, generator=g) @ torch.rand(2, 3, 100, generator=g)  # rank 3
    block = FactorizationContext(32, 8, rank=4, mode="nmf", width=32, eval_steps=300).eval()
    estimate = block._nmf(v)
    assert (estimate >= 0).all()
    assert (estimate - v).norm() / v.norm() < 0.05
    few = FactorizationContext(32, 8, rank=4, mode="nmf", width=32, eval_steps=1).eval()._nmf(v)
    assert (estimate - v).norm() < (few - v).norm()  # more steps, better fit


def test_nmf_is_deterministic_in_eval_and_seeded():
    x = torch.randn(2, 16, 7, 5)
    a = FactorizationContext(16, 8, rank=4, mode="nmf", width=12, seed=3).eval()
    b = FactorizationContext(16, 8, rank=4, mode="nmf", width=12, seed=3).eval()
    b.load_state_dict(a.state_dict())
    torch.testing.assert_close(a(x), a(x), rtol=0, atol=0)
    torch.testing.assert_close(a(x), b(x), rtol=0, atol=0)
    c = FactorizationContext(16, 8, rank=4, mode="nmf", width=12, seed=4)
    assert not torch.equal(a.bases, c.bases)
    assert "bases" in a.state_dict()


def test_nmf_one_step_gradient_reaches_the_embedding():
    block = FactorizationContext(16, 8, rank=4, mode="nmf", width=12).train()
    out, rec = block(torch.randn(2, 16, 6, 6), return_reconstruction=True)
    assert rec.target.shape == rec.estimate.shape == (2, 12, 6, 6)
    assert rec.estimate.requires_grad
    F.mse_loss(rec.estimate, rec.target).backward()
    assert block.embed.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("scale", [0.0, 1e-6, 1.0, 1e4])
def test_nmf_finite_under_autocast(dtype, scale):
    block = FactorizationContext(64, 16, rank=8, mode="nmf", width=64).eval()
    x = torch.randn(2, 64, 9, 9) * scale
    with torch.autocast("cpu", dtype=dtype):
        out, rec = block(x, return_reconstruction=True)
    assert torch.isfinite(out).all() and torch.isfinite(rec.estimate).all()


def test_factorization_context_rejects_bad_arguments():
    with pytest.raises(ValueError, match="mode must be one of"):
        FactorizationContext(8, mode="svd")
    with pytest.raises(ValueError, match="rank must be a positive int, got 0"):
        FactorizationContext(8, rank=0)
    with pytest.raises(ValueError, match="width must be a positive int"):
        FactorizationContext(8, width=-1)
    with pytest.raises(ValueError, match="base_size"):
        FactorizationContext(8, base_size=(33,))


def test_ema_unit_updates_bases_in_training_only():
    unit = EMAUnit(16, rank=4, stages=3)
    x = torch.randn(2, 16, 5, 7)
    before = unit.mu.clone()
    unit.eval()
    out = unit(x)
    assert out.shape == x.shape and (out >= 0).all()
    torch.testing.assert_close(unit.mu, before, rtol=0, atol=0)
    unit.train()
    unit(x)
    assert not torch.equal(unit.mu, before)
    torch.testing.assert_close(unit.mu.norm(dim=1), torch.ones(1, 4), atol=0.1, rtol=0)


def test_ema_unit_matches_emanet_formula():
    unit = EMAUnit(8, rank=3, stages=2).eval()
    randomize_bn_stats(unit)
    x = torch.randn(2, 8, 4, 5)

    def l2(t):
        return t / (1e-6 + t.norm(dim=1, keepdim=True))

    feats = unit.conv1(x).view(2, 8, 20)
    mu = unit.mu.repeat(2, 1, 1)
    for _ in range(2):
        z = torch.softmax(torch.bmm(feats.permute(0, 2, 1), mu), dim=2)
        mu = l2(torch.bmm(feats, z / (1e-6 + z.sum(dim=1, keepdim=True))))
    expected = F.relu(unit.conv2(F.relu(mu.matmul(z.permute(0, 2, 1)).view(2, 8, 4, 5))) + x)
    torch.testing.assert_close(unit(x), expected)


def test_ema_context_shapes_and_bad_arguments():
    block = EMAContext(32, 16, width=24, rank=4).eval()
    assert block(torch.randn(3, 32, 6, 6)).shape == (3, 16, 6, 6)
    with pytest.raises(ValueError, match="rank must be a positive int"):
        EMAUnit(8, rank=0)
    with pytest.raises(ValueError, match="momentum"):
        EMAUnit(8, momentum=1.5)


def test_aspp_shapes_rates_and_pooling_branch():
    aspp = ASPP(32, 16, atrous_rates=(1, 2, 3)).eval()
    x = torch.randn(2, 32, 9, 11)
    assert aspp(x).shape == (2, 16, 9, 11)
    assert [b[0].dilation[0] for b in aspp.branches] == [1, 1, 2, 3]
    assert atrous_rates_for(16) == (6, 12, 18) and atrous_rates_for(8) == (12, 24, 36)
    with pytest.raises(ValueError, match="output_stride must be 8, 16 or 32"):
        atrous_rates_for(4)
    with pytest.raises(ValueError, match="atrous_rates"):
        ASPP(8, atrous_rates=(6, 0))


def test_separable_aspp_computes_smps_aspp():
    # the same tensors in the same order as smp's separable ASPP: loaded by position, the same outputs
    from segmentation_models_pytorch.decoders.deeplabv3.decoder import ASPP as SmpASPP
    torch.manual_seed(0)
    theirs = SmpASPP(24, 16, (1, 2, 3), separable=True, dropout=0.0).eval()
    ours = ASPP(24, 16, atrous_rates=(1, 2, 3), dropout=0.0, separable=True).eval()
    for module in theirs.modules():  # not the identity BN statistics of a fresh module
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-1, 1), module.running_var.uniform_(0.5, 2)
    ours.load_state_dict(dict(zip(ours.state_dict(), theirs.state_dict().values())))
    x = torch.randn(2, 24, 9, 11)
    torch.testing.assert_close(ours(x), theirs(x))
    assert [b[0].dilation[0] for b in ours.branches[1:]] == [1, 2, 3]
    assert ours.branches[1][0].groups == 24
    assert sum(p.numel() for p in ours.parameters()) < sum(p.numel() for p in ASPP(24, 16, (1, 2, 3)).parameters())


def test_aspp_parameter_count_matches_paper_code():
    # aspp1 (1x1), aspp2-4 (3x3), image pooling, conv1 1280->256, each conv with a BN
    assert sum(p.numel() for p in ASPP(2048).parameters()) == 15_535_104


def test_decoders_shapes_and_reset_classifier():
    decoder = DeepLabV3PlusDecoder(24, num_classes=5).eval()
    low, ctx = torch.randn(2, 24, 20, 30), torch.randn(2, 256, 5, 8)
    assert decoder(low, ctx).shape == (2, 5, 20, 30)
    decoder.reset_classifier(2)
    assert decoder(low, ctx).shape == (2, 2, 20, 30) and decoder.num_classes == 2
    assert sum(p.numel() for p in DeepLabV3PlusDecoder(256, 21).parameters()) == 1_309_045
    head = ClassifierDecoder(3)
    assert head(None, ctx).shape == (2, 3, 5, 8)
    with pytest.raises(ValueError, match="num_classes must be a positive int, got 0"):
        DeepLabV3PlusDecoder(24, num_classes=0)


@pytest.mark.parametrize("size", [(33, 33), (17, 25), (64, 128)])
def test_folded_static_context_matches_unfolded(size):
    block = FactorizationContext(64, 32, rank=8).eval()
    randomize_bn_stats(block)
    folded = block.fuse()
    assert isinstance(folded, FoldedFactorizationContext)
    assert sum(p.numel() for p in folded.parameters()) == 64 * 32  # one 1x1 conv
    x = torch.randn(2, 64, *size)
    expected = block(x)
    torch.testing.assert_close(folded(x), expected, rtol=0, atol=1e-5 * expected.abs().max().item())


def test_nmf_and_disabled_contexts_are_not_folded():
    nmf = FactorizationContext(16, 8, rank=4, mode="nmf", width=8).eval()
    assert nmf.fuse() is nmf
    for state in ("off", "pair-only"):
        disabled = FactorizationContext(16, 8, rank=4, context_state=state).eval()
        assert disabled.fuse() is disabled


def test_folding_in_training_mode_is_an_error():
    # BN would fold its running statistics while training mode normalises by the batch's: outputs would change
    with pytest.raises(RuntimeError, match=r"fuse\(\) needs eval mode: call .eval\(\) first"):
        FactorizationContext(16, 8, rank=4).train().fuse()


def test_top_down_decoder_reads_every_skip_and_classifies_at_the_finest():
    torch.manual_seed(0)
    decoder = TopDownDecoder((24, 16), num_classes=5, in_channels=32, channels=16).eval()
    randomize_bn_stats(decoder)
    s8, s4, context = torch.randn(2, 24, 8, 10), torch.randn(2, 16, 16, 20), torch.randn(2, 32, 2, 3)
    logits = decoder(s8, s4, context)
    assert logits.shape == (2, 5, 16, 20) and decoder.num_classes == 5
    for i, changed in enumerate([(s8 + 1, s4, context), (s8, s4 + 1, context), (s8, s4, context + 1)]):
        assert not torch.allclose(decoder(*changed), logits), i  # each input reaches the logits
    assert sum(p.numel() for p in decoder.parameters()) == 2_629  # 2,197 + the head's separable conv (432)
    assert isinstance(TopDownDecoder((512, 256), 21).context_proj, torch.nn.Identity)  # in_channels == channels
    with pytest.raises(ValueError, match="expects 2 skips and the context, got 1 skips"):
        decoder(s4, context)
    with pytest.raises(ValueError, match="skip features.*B x 24 x h x w.*got shape \\(2, 16, 16, 20\\)"):
        decoder(s4, s4, context)
    with pytest.raises(ValueError, match="at least one skip"):
        TopDownDecoder((), 5)


def test_top_down_decoder_stages_can_narrow_toward_the_finest():
    torch.manual_seed(0)
    decoder = TopDownDecoder((24, 16), num_classes=5, channels=(32, 8)).eval()
    randomize_bn_stats(decoder)
    assert decoder.channels == (32, 8) and decoder.in_channels == 32  # the context comes in at the first width
    assert isinstance(decoder.context_proj, torch.nn.Identity)
    # each refine brings its stage's sum to the next stage's width; the head and classifier are the last's
    assert [r[1][0].out_channels for r in decoder.refines] == [8, 8] and decoder.classifier.in_channels == 8
    assert [p[0].out_channels for p in decoder.skip_projs] == [32, 8]
    s8, s4, context = torch.randn(2, 24, 8, 10), torch.randn(2, 16, 16, 20), torch.randn(2, 32, 2, 3)
    assert decoder(s8, s4, context).shape == (2, 5, 16, 20)
    assert sum(p.numel() for p in decoder.parameters()) < sum(
        p.numel() for p in TopDownDecoder((24, 16), num_classes=5, channels=32).parameters())
    # one int is every stage's width; a list (as config.json gives it back) is a tuple
    assert TopDownDecoder((24, 16), 5, channels=16).channels == (16, 16)
    assert TopDownDecoder((24, 16), 5, channels=[32, 8]).channels == (32, 8)
    for bad in ((32,), (32, 8, 8), (32, 0), (32, 8.0), "32", True):
        with pytest.raises(ValueError,
                           match=f"channels must be a positive int or 2 of them.*got {re.escape(repr(bad))}"):
            TopDownDecoder((24, 16), 5, channels=bad)


def test_top_down_decoder_head_convs_refine_the_finest_stage_before_the_classifier():
    torch.manual_seed(0)
    features = torch.randn(2, 16, 16, 20), torch.randn(2, 32, 2, 3)
    plain = TopDownDecoder((16,), num_classes=5, in_channels=32, channels=16, head_convs=0).eval()
    deeper = TopDownDecoder((16,), num_classes=5, in_channels=32, channels=16, head_convs=2).eval()
    assert len(plain.head) == 0 and len(deeper.head) == 2
    # the shared modules carry over: only the head differs, and it changes the logits
    deeper.load_state_dict(plain.state_dict(), strict=False)
    randomize_bn_stats(deeper.head)
    assert deeper(*features).shape == plain(*features).shape == (2, 5, 16, 20)
    assert not torch.allclose(deeper(*features), plain(*features))
    # head_convs=0: the classifier reads the last fusion directly
    skip, context = features
    fused = plain.refines[0](F.interpolate(plain.context_proj(context), size=skip.shape[-2:], mode="bilinear",
                                           align_corners=True) + plain.skip_projs[0](skip))
    torch.testing.assert_close(plain(*features), plain.classifier(fused))
    torch.testing.assert_close(deeper(*features), deeper.classifier(deeper.head(fused)))
    for bad in (-1, 1.0, True, "1"):
        with pytest.raises(ValueError, match=f"head_convs must be an int >= 0, got {bad!r}"):
            TopDownDecoder((16,), 5, head_convs=bad)


def test_separable_single_conv_decoder():
    decoder = DeepLabV3PlusDecoder(24, num_classes=5, separable=True, num_convs=1).eval()
    assert decoder(torch.randn(1, 24, 20, 20), torch.randn(1, 256, 5, 5)).shape == (1, 5, 20, 20)
    # depthwise 304 x 9 + pointwise 304 -> 256 + BN, instead of a 304 x 256 x 9 conv
    assert sum(p.numel() for p in decoder.refine.parameters()) == 304 * 9 + 304 * 256 + 2 * 256
    with pytest.raises(ValueError, match="num_convs must be 1 or 2, got 3"):
        DeepLabV3PlusDecoder(24, num_classes=5, num_convs=3)


def hamburger_nmf2d(x: torch.Tensor, bases: torch.Tensor, steps: int, inv_t: float = 1.0) -> torch.Tensor:
    """Hamburger's NMF2D (Enjoy-Hamburger seg/HamNet/hamburger/ham.py) written out, on unscaled features:
    coefficients from softmax(inv_t x^T bases), ``steps`` multiplicative updates, one more coefficient update."""
    coef = torch.softmax(inv_t * x.transpose(1, 2) @ bases, dim=-1)
    for _ in range(steps):
        coef = coef * (x.transpose(1, 2) @ bases) / (coef @ (bases.transpose(1, 2) @ bases) + 1e-6)
        bases = bases * (x @ coef) / (bases @ (coef.transpose(1, 2) @ coef) + 1e-6)
    coef = coef * (x.transpose(1, 2) @ bases) / (coef @ (bases.transpose(1, 2) @ bases) + 1e-6)
    return bases @ coef.transpose(1, 2)


@pytest.mark.parametrize("scale", [0.3, 4.0])
def test_nmf_with_hamburgers_temperature_matches_nmf2d(scale):
    # inv_t applies to the features as they are: the per-image unit scaling inside must not change the result
    torch.manual_seed(0)
    block = FactorizationContext(16, 8, rank=4, mode="nmf", width=12, inv_t=1.0, eval_steps=6).eval().double()
    v = torch.rand(2, 12, 30, dtype=torch.float64) * scale
    expected = hamburger_nmf2d(v, block.bases.unsqueeze(0).repeat(2, 1, 1), steps=6)
    torch.testing.assert_close(block._nmf(v).double(), expected, rtol=1e-4, atol=1e-5 * scale)
    # the default (inv_t=None) is the temperature of the unit-scale features: NMF2D with inv_t = 1 / max
    default = FactorizationContext(16, 8, rank=4, mode="nmf", width=12, eval_steps=6).eval().double()
    per_image = 1 / v.amax(dim=(1, 2), keepdim=True)
    expected = hamburger_nmf2d(v, default.bases.unsqueeze(0).repeat(2, 1, 1), steps=6, inv_t=per_image)
    torch.testing.assert_close(default._nmf(v).double(), expected, rtol=1e-4, atol=1e-5 * scale)


def test_nmf_redraws_bases_in_training_only():
    kwargs = dict(rank=4, mode="nmf", width=12, seed=3)
    redraw = FactorizationContext(16, 8, redraw_bases=True, **kwargs)
    fixed = FactorizationContext(16, 8, **kwargs)
    fixed.load_state_dict(redraw.state_dict())
    x = torch.rand(2, 16, 5, 5)
    # eval starts from the seeded buffer either way, and does not touch the RNG
    state = torch.get_rng_state()
    torch.testing.assert_close(redraw.eval()(x), fixed.eval()(x))
    assert torch.equal(torch.get_rng_state(), state)
    torch.manual_seed(1)
    a = redraw.train()(x)
    b = redraw(x)  # other bases drawn: another estimate
    assert not torch.allclose(a, b)
    torch.manual_seed(1)
    torch.testing.assert_close(redraw(x), a)  # drawn from torch's RNG: seeded runs repeat
    assert not torch.allclose(fixed.train()(x), a)


def test_hamburger_settings_are_its_segmentation_config():
    # Enjoy-Hamburger seg/HamNet/settings.py: TRAIN_STEPS 6, EVAL_STEPS 6, INV_T 1, RAND_INIT True; D 512, R 64
    assert NMF_SETTINGS["hamburger"] == dict(train_steps=6, eval_steps=6, inv_t=1.0, redraw_bases=True)
    block = FactorizationContext(2048, mode="nmf", **NMF_SETTINGS["hamburger"])
    assert (block.width, block.rank, block.train_steps, block.eval_steps) == (512, 64, 6, 6)
    assert block.inv_t == 1.0 and block.redraw_bases and "redraw_bases=True" in repr(block)
    with pytest.raises(ValueError, match="inv_t must be a positive number or None"):
        FactorizationContext(8, mode="nmf", inv_t=0)
    with pytest.raises(TypeError, match="redraw_bases must be a bool"):
        FactorizationContext(8, mode="nmf", redraw_bases="yes")


def test_aspp_without_atrous_branches_is_projection_plus_image_pooling():
    aspp = ASPP(32, 16, atrous_rates=()).eval()
    randomize_bn_stats(aspp)
    x = torch.randn(2, 32, 7, 9)
    project = aspp.project[0]
    pooled = aspp.pool(x).expand(-1, -1, 7, 9)
    torch.testing.assert_close(aspp(x), project(torch.cat([aspp.branches[0](x), pooled], dim=1)))
    assert len(aspp.branches) == 1


@pytest.mark.parametrize("name", list(CONTEXTS))
def test_every_named_context_maps_features_to_out_channels(name):
    block = create_context(name, 24, 16, width=12, rank=4, base_size=(6, 6)).train()
    x = torch.randn(2, 24, 6, 6)
    out = block(x)
    assert out.shape == (2, 16, 6, 6) and torch.isfinite(out).all()
    out.mean().backward()
    # no gradient: the pair-only factors (the features bypass them; the loss's MSE trains them) and EMANet's
    # first EM conv (its output feeds only the EM iterations, which run without gradient, as in EMANet; with
    # ema-unrolled they carry it)
    no_gradient = {"pair-only": {"Y", "Z"}, "ema": {"1.conv1.weight", "1.conv1.bias"}}.get(name, set())
    assert {n for n, p in block.named_parameters() if p.grad is None} == no_gradient
    assert get_context_state(block) == ("pair-only" if name == "pair-only" else
                                        "on" if name in ("static", "nmf", "nmf-unrolled", "nmf-hamburger") else None)


def test_create_context_aspp_rates_and_separable_branches():
    # rates from the output stride unless given; separable only changes the dilated branches; pool takes neither
    assert create_context("aspp", 24, 16, output_stride=32).atrous_rates == (3, 6, 9)
    block = create_context("aspp", 24, 16, output_stride=32, atrous_rates=[6, 12, 18], separable=True)
    assert block.atrous_rates == (6, 12, 18) and block.separable
    assert [b[0].groups for b in block.branches[1:]] == [24, 24, 24]
    assert block(torch.randn(2, 24, 7, 7)).shape == (2, 16, 7, 7)
    assert create_context("pool", 24, 16, atrous_rates=(6,), separable=True).atrous_rates == ()
    with pytest.raises(ValueError, match="atrous_rates"):
        create_context("aspp", 24, 16, atrous_rates=(6, -1))


def test_kaiming_init_gives_he_variance_and_resets_batchnorm():
    torch.manual_seed(0)
    block = nn.Sequential(nn.Conv2d(128, 256, 3, bias=True), nn.BatchNorm2d(256))
    block[1].weight.data.fill_(3.0), block[1].bias.data.fill_(1.0)
    default_std = block[0].weight.std().item()
    assert kaiming_init_(block) is block
    he_std = (2 / (128 * 9)) ** 0.5
    assert abs(block[0].weight.std().item() / he_std - 1) < 0.02 and abs(default_std / he_std - 6 ** -0.5) < 0.02
    assert not block[0].bias.any() and (block[1].weight == 1).all() and not block[1].bias.any()


def test_create_context_rejects_unknown_names_and_bad_sizes():
    with pytest.raises(ValueError, match=r"unknown context 'gap'; available: \('none', 'pool'"):
        create_context("gap", 8)
    with pytest.raises(ValueError, match="width must be a positive int"):
        create_context("static", 8, width=0)


def test_context_names_and_their_descriptions_agree():
    # the builders (mfnet_zoo.layers.CONTEXTS) and the CLI's torch-free --context choices and help
    from mfnet_zoo._constants import CONTEXT_DESCRIPTIONS

    assert list(CONTEXTS) == list(CONTEXT_DESCRIPTIONS)
    assert all(callable(build) for build in CONTEXTS.values())
