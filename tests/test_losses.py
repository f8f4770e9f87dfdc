"""SegmentationLoss: CE + lambda * MSE, ignore index, binary mode, extra smp terms."""
import pytest
import torch
import torch.nn.functional as F

from mfnet_zoo import SegmentationLoss, SegmentationOutput
from mfnet_zoo.layers import Reconstruction


def output(logits, reconstruction=None):
    return SegmentationOutput(logits=logits, features=torch.zeros(1), reconstruction=reconstruction)


def test_ce_plus_weighted_mse_with_broadcast_estimate():
    logits = torch.randn(2, 4, 5, 6)
    target = torch.randint(0, 4, (2, 5, 6))
    target[0, 0, 0] = 255
    feats, estimate = torch.randn(2, 8, 3, 3), torch.randn(1, 8, 3, 3)
    loss = SegmentationLoss()(output(logits, Reconstruction(feats, estimate)), target)
    ce = F.cross_entropy(logits, target, ignore_index=255)
    mse = ((feats - estimate) ** 2).mean()
    torch.testing.assert_close(loss, ce + 0.1 * mse)
    assert SegmentationLoss().components(output(logits), target).keys() == {"ce"}
    torch.testing.assert_close(SegmentationLoss()(logits, target), ce)  # plain logits work too


def test_ignore_index_excludes_pixels():
    logits = torch.zeros(1, 2, 1, 2)
    logits[0, 0, 0, 0] = 10.0  # confident and right at pixel 0
    loss = SegmentationLoss()(logits, torch.tensor([[[0, 255]]]))
    assert loss.item() == pytest.approx(F.cross_entropy(torch.tensor([[10.0, 0.0]]), torch.tensor([0])).item())


def test_batch_average_as_the_paper_code():
    logits, target = torch.randn(4, 3, 2, 2), torch.randint(0, 3, (4, 2, 2))
    pair = Reconstruction(torch.randn(4, 5, 2, 2), torch.randn(4, 5, 2, 2))
    plain = SegmentationLoss()(output(logits, pair), target)
    averaged = SegmentationLoss(batch_average=True)(output(logits, pair), target)
    torch.testing.assert_close(averaged, plain / 4)
    # with gradient accumulation or several processes, the engine passes the global batch
    torch.testing.assert_close(SegmentationLoss(batch_average=True)(output(logits, pair), target, batch_size=16),
                               plain / 16)
    torch.testing.assert_close(SegmentationLoss()(output(logits, pair), target, batch_size=16), plain)  # unused
    with pytest.raises(ValueError, match="batch_size must be a positive int or None, got 0"):
        SegmentationLoss(batch_average=True)(logits, target, batch_size=0)
    double = torch.randn(2, 3, 2, 2, dtype=torch.float64)  # float64 stays float64 (exact accumulation tests)
    assert SegmentationLoss()(double, target[:2]).dtype == torch.float64
    assert SegmentationLoss()(double.to(torch.bfloat16), target[:2]).dtype == torch.float32


def test_binary_mode_masks_ignore():
    logits = torch.randn(2, 1, 4, 4)
    target = torch.randint(0, 2, (2, 4, 4))
    target[1] = 255
    loss = SegmentationLoss(mode="binary")(logits, target)
    expected = F.binary_cross_entropy_with_logits(logits[0, 0], target[0].float())
    torch.testing.assert_close(loss, expected)


def test_extra_terms_from_smp():
    logits, target = torch.randn(2, 3, 8, 8), torch.randint(0, 3, (2, 8, 8))
    loss = SegmentationLoss(extra={"dice": 0.5, "lovasz": 1.0})
    terms = loss.components(logits, target)
    assert set(terms) == {"ce", "dice", "lovasz"}
    from segmentation_models_pytorch.losses import DiceLoss
    torch.testing.assert_close(terms["dice"], 0.5 * DiceLoss("multiclass", ignore_index=255)(logits, target))
    torch.testing.assert_close(loss(logits, target), sum(terms.values()))


def test_loss_errors():
    with pytest.raises(ValueError, match=r"unknown extra loss term\(s\) \['dicee'\]; available: \['dice', 'focal', 'lovasz'\]"):
        SegmentationLoss(extra={"dicee": 1.0})
    with pytest.raises(ValueError, match="mode must be"):
        SegmentationLoss(mode="multilabel")
    with pytest.raises(ValueError, match=r"target shape \(2, 4, 4\) does not match logits \(2, 3, 8, 8\)"):
        SegmentationLoss()(torch.randn(2, 3, 8, 8), torch.zeros(2, 4, 4, dtype=torch.long))
