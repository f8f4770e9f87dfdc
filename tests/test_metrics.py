"""SegmentationMetrics against hand-computed confusion matrices."""
import math

import pytest
import torch

from mfnet_zoo.metrics import SegmentationMetrics


def test_hand_computed_case():
    target = torch.tensor([[0, 0, 1, 1], [2, 2, 255, 1]])
    prediction = torch.tensor([[0, 1, 1, 1], [2, 0, 2, 1]])
    m = SegmentationMetrics(4)
    m.update(prediction.unsqueeze(0), target.unsqueeze(0))
    expected = torch.tensor([[1, 1, 0, 0], [0, 3, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0]])
    assert torch.equal(m.confusion, expected)
    r = m.compute()
    # IoU: class 0: 1 / (2 + 2 - 1) = 1/3; class 1: 3 / (3 + 4 - 3) = 3/4; class 2: 1 / (2 + 1 - 1) = 1/2
    assert r["per_class_iou"][:3] == pytest.approx([1 / 3, 3 / 4, 1 / 2]) and r["per_class_iou"][3] is None
    assert r["mIoU"] == pytest.approx((1 / 3 + 3 / 4 + 1 / 2) / 3)  # class 3 is in neither: excluded
    assert r["fwIoU"] == pytest.approx(2 / 7 * 1 / 3 + 3 / 7 * 3 / 4 + 2 / 7 * 1 / 2)
    assert r["pixel_acc"] == pytest.approx(5 / 7)
    assert r["mean_acc"] == pytest.approx((1 / 2 + 1 + 1 / 2) / 3)


def test_logits_accumulation_and_reset():
    m = SegmentationMetrics(3)
    logits = torch.zeros(1, 3, 2, 2)
    logits[0, 2] = 1.0
    m.update(logits, torch.full((1, 2, 2), 2))
    m.update(logits, torch.full((1, 2, 2), 2))
    assert m.confusion[2, 2] == 8 and m.compute()["mIoU"] == 1.0
    m.reset()
    assert m.confusion.sum() == 0 and math.isnan(m.compute()["mIoU"])


def test_an_empty_confusion_matrix_has_no_scores():
    # nothing counted (no image, or every pixel ignored): NaN for every summary, mIoU and fwIoU alike
    m = SegmentationMetrics(3)
    m.update(torch.zeros(1, 2, 2, dtype=torch.long), torch.full((1, 2, 2), 255))
    r = m.compute()
    assert m.confusion.sum() == 0 and r["per_class_iou"] == [None, None, None]
    assert all(math.isnan(r[key]) for key in ("mIoU", "fwIoU", "pixel_acc", "mean_acc"))


def test_predicted_but_absent_class_counts_as_zero():
    m = SegmentationMetrics(2)
    m.update(torch.tensor([[[0, 1]]]), torch.tensor([[[0, 0]]]))
    r = m.compute()
    assert r["per_class_iou"] == [0.5, 0.0] and r["mIoU"] == 0.25


def test_errors():
    with pytest.raises(ValueError, match="num_classes must be a positive int"):
        SegmentationMetrics(0)
    with pytest.raises(ValueError, match=r"prediction \(1, 2, 2\) and target \(1, 2, 3\)"):
        SegmentationMetrics(2).update(torch.zeros(1, 2, 2, dtype=torch.long), torch.zeros(1, 2, 3, dtype=torch.long))
