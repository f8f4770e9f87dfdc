"""A reproduction dry run of the `paper` preset on the three paper models (ResNet-50, output stride 16).

The optimizer groups are checked against the groups of the paper's code
(github:nageshgurram12/generic-semantic-segmentation, branch mfnet): `modeling/__init__.py` builds them,
`utils/lr_scheduler.py:63-70` then sets group 0 to lr and every later group to 10 x lr each iteration.
The counts below were taken by building the code's MFNet, DeepLab and EMANet on CPU (pretrained file
stubbed), running its LR_Scheduler once, and mapping every parameter name through mfnet_zoo.convert.RULES;
every name then had the multiplier and decay these rules give.
"""
from collections import defaultdict

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from mfnet_zoo import create_model
from mfnet_zoo.data import RandomGaussianBlur, RandomScaleCrop, VOCSegmentation
from mfnet_zoo.train import PRESETS, Trainer, build_param_groups, seed_everything

WD = 5e-4
# (lr multiplier, weight decay) -> (tensors, elements), as the paper's code runs them
CODE_GROUPS = {
    "mfnet_r50": {(1.0, WD): (161, 23_708_800), (10.0, WD): (11, 1_309_045)},  # conv1/conv2: 2,364,416 in none
    "deeplabv3plus_r50": {(1.0, WD): (159, 23_508_032), (10.0, WD): (29, 16_844_149)},
    "emanet_r50": {(1.0, WD): (58, 34_601_408), (10.0, 0.0): (56 + 58, 27_840 + 28_373)},  # BN weights, biases
}
LEFT_OUT = {"mfnet_r50": {"context.embed.weight", "context.embed.bias", "context.proj.0.weight",
                          "context.proj.1.weight", "context.proj.1.bias"},
            "deeplabv3plus_r50": set(), "emanet_r50": set()}
# grouped but never given a gradient, in the code too: EMAU's conv1 feeds only the EM iterations, which run
# without gradient (modeling/EMANet.py:222-238), so SGD skips it (no decay either)
NO_GRADIENT = {"mfnet_r50": set(), "deeplabv3plus_r50": set(),
               "emanet_r50": {"context.emau.conv1.weight", "context.emau.conv1.bias"}}


def code_group(model_name, name, module):
    """(lr multiplier, weight decay) the paper's code gives a parameter, None when it is in no group."""
    if model_name == "mfnet_r50":  # MFNet.py:130-150: backbone + Y, Z at 1x, decoder at 10x
        if name.startswith(("context.embed.", "context.proj.")):
            return None
        return (10.0, WD) if name.startswith("decoder.") else (1.0, WD)
    if model_name == "deeplabv3plus_r50":  # deeplab.py:49-67: backbone 1x, ASPP + decoder 10x
        return (1.0, WD) if name.startswith("encoder.") else (10.0, WD)
    # EMANet.py:330-344: '1x' conv weights, '1y' BN weights (decay 0), '2x' biases (decay 0); groups 1, 2 at 10x
    is_conv_weight = isinstance(module, torch.nn.Conv2d) and name.endswith(".weight")
    return (1.0, WD) if is_conv_weight else (10.0, 0.0)


@pytest.fixture(scope="module", params=["mfnet_r50", "deeplabv3plus_r50", "emanet_r50"])
def paper_model(request):
    torch.manual_seed(0)
    return request.param, create_model(request.param, num_classes=21)


def test_paper_preset_groups_are_the_code_groups(paper_model):
    model_name, model = paper_model
    cfg = PRESETS["paper"]
    groups = build_param_groups(model, cfg)
    got = {id(p): (g["lr"] / cfg.lr, g["weight_decay"]) for g in groups for p in g["params"]}
    modules = dict(model.named_modules())
    for name, param in model.named_parameters():
        expected = code_group(model_name, name, modules[name.rsplit(".", 1)[0]])
        actual = got.get(id(param))
        assert (actual is None) == (expected is None), name
        if expected is not None:
            assert actual == (pytest.approx(expected[0]), expected[1]), name
    left_out = {n for n, p in model.named_parameters() if id(p) not in got}
    assert left_out == LEFT_OUT[model_name]
    counts = defaultdict(lambda: [0, 0])
    for g in groups:
        key = (round(g["lr"] / cfg.lr, 6), g["weight_decay"])
        counts[key][0] += len(g["params"])
        counts[key][1] += sum(p.numel() for p in g["params"])
    assert {k: tuple(v) for k, v in counts.items()} == CODE_GROUPS[model_name]


def write_tiny_voc(root, train=4, val=2, seed=0):
    """A VOC 2012 tree (VOCdevkit/VOC2012/JPEGImages, SegmentationClass, ImageSets/Segmentation) of small
    random images of different sizes and masks with all 21 classes and void borders."""
    rng = np.random.default_rng(seed)
    base = root / "VOCdevkit" / "VOC2012"
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    ids = {"train": [f"2007_{i:06d}" for i in range(train)], "val": [f"2008_{i:06d}" for i in range(val)]}
    for split, names in ids.items():
        for name in names:
            h, w = rng.integers(40, 90, size=2)
            Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(base / "JPEGImages" / f"{name}.jpg")
            mask = rng.integers(0, 21, (h, w), dtype=np.uint8)
            mask[0, :] = 255
            Image.fromarray(mask, mode="L").convert("P").save(base / "SegmentationClass" / f"{name}.png")
        (base / "ImageSets/Segmentation" / f"{split}.txt").write_text("\n".join(names) + "\n")
    return root


class Recording(Dataset):
    """Keeps every image a dataset gave, per index."""

    def __init__(self, dataset):
        self.dataset, self.seen = dataset, defaultdict(list)

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        image, mask = self.dataset[index]
        self.seen[index].append(image.clone())
        return image, mask


@pytest.mark.slow
def test_paper_preset_dry_run(paper_model, tmp_path, monkeypatch):
    """Two iterations (one per epoch, batch 4) with 65-px crops; MFNet's warm-up takes the first."""
    model_name, model = paper_model
    # writing 120-160 MB checkpoints and a plot per epoch is I/O only (tests/test_train.py covers it on tiny
    # models); leaving it out takes a third off this test
    monkeypatch.setattr("mfnet_zoo.train.write_checkpoint", lambda path, state: None)
    monkeypatch.setattr("mfnet_zoo.train.write_curves", lambda path, history: None)
    root = write_tiny_voc(tmp_path / "voc")
    cfg = PRESETS["paper"].replace(epochs=2, context_warmup_epochs=1, crop_size=65)
    generator = seed_everything(cfg.seed)
    train_set = Recording(VOCSegmentation(root, "train", transforms=cfg.train_transforms()))
    steps = [type(t) for t in train_set.dataset.transforms.transforms]
    assert steps[1:4] == [v2.RandomHorizontalFlip, RandomScaleCrop, RandomGaussianBlur]  # the code's order
    val_set = VOCSegmentation(root, "val", transforms=cfg.eval_transforms())
    train_loader = DataLoader(train_set, batch_size=cfg.batch_size, shuffle=True, drop_last=True, generator=generator)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainer = Trainer(model, train_loader, DataLoader(val_set, batch_size=2), cfg, tmp_path / "run", progress=False)
    history = trainer.fit()
    assert [h["train"]["iterations"] for h in history] == [1, 1]
    assert all(0 <= h["val"]["mIoU"] <= 1 for h in history)
    # the augmentation ran: every image gave a different 65 x 65 crop in each epoch
    assert sorted(train_set.seen) == [0, 1, 2, 3]
    for views in train_set.seen.values():
        assert len(views) == 2 and views[0].shape == (3, 65, 65) and not torch.equal(views[0], views[1])
    # SGD keeps a momentum buffer for every parameter it updated; the code's left-out ones never move
    stepped = {n for n, p in model.named_parameters() if "momentum_buffer" in trainer.optimizer.state.get(p, {})}
    assert stepped == {n for n, _ in model.named_parameters()} - LEFT_OUT[model_name] - NO_GRADIENT[model_name]
    frozen = LEFT_OUT[model_name] | NO_GRADIENT[model_name]
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters() if n in frozen)
    if model_name == "mfnet_r50":  # the reconstruction term from the second epoch on, the logits without it
        assert "reconstruction" not in history[0]["train"] and "reconstruction" in history[1]["train"]
        assert model.context.context_state == "pair-only"
        model.eval()
        x = torch.randn(1, 3, 65, 65)
        with torch.no_grad():
            out = model(x)
            assert out.reconstruction is not None
            model.context.context_state = "off"  # the paper's forward with epoch 0: relu(conv2(x)) -> decoder
            torch.testing.assert_close(model(x).logits, out.logits, rtol=0, atol=0)
