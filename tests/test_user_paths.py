"""The user's paths against independent references (#35): ``predict``, ``eval`` and its protocols, sliding
windows, scales and flips. Every expected value here comes from the model's forward alone, with the input read
by PIL and normalised by numpy from the model's data config, the paper protocol cropped by the paper code's own
lines and the metrics counted by :class:`SegmentationMetrics` (tested on hand-counted matrices in
test_metrics.py), never through ``predict_files``, ``infer_probabilities`` or ``evaluate``: a bug those paths
share (a lost normalisation, an ignored protocol, a tile cut from the wrong place) cannot hide behind a
comparison of one with the other."""
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

from mfnet_zoo import create_model, load_model, resolve_data_config
from mfnet_zoo.cli import main
from mfnet_zoo.data import DataOptions
from mfnet_zoo.inference import infer_probabilities
from mfnet_zoo.metrics import SegmentationMetrics
from mfnet_zoo.predict import predict_files
from mfnet_zoo.workflows import evaluate

from .conftest import randomize_bn_stats

MEAN, STD = (0.3, 0.5, 0.6), (0.2, 0.25, 0.3)  # neither ImageNet's nor the encoder's: only the model's config has them
CLASSES = 3
SIZES = {"wide": (24, 36), "tall": (36, 24), "wide2": (24, 36)}  # H x W; 24 -> 32 upsamples: no PIL rounding ties


def varied_model() -> torch.nn.Module:
    """A tiny MFNet (eval mode, random BatchNorm statistics, the data config above) whose predictions use all
    classes: a random head predicts one class everywhere, which no metric could tell from another."""
    model = create_model("mfnet", encoder="test_resnet", num_classes=CLASSES,
                         pretrained_cfg_overlay=dict(mean=MEAN, std=STD)).eval()
    randomize_bn_stats(model)
    with torch.no_grad():
        x = torch.randn(2, 3, 32, 48, generator=torch.Generator().manual_seed(2))
        logits = model(x).logits
        head = model.decoder.classifier
        head.weight.mul_(3 / logits.std((0, 2, 3)).view(-1, 1, 1, 1))
        head.bias.copy_(3 * (head.bias - logits.mean((0, 2, 3))) / logits.std((0, 2, 3)))
        assert torch.bincount(model(x).logits.argmax(1).flatten(), minlength=CLASSES).min() > 0.1 * x[:, 0].numel()
    return model


def read_input(path, mean=MEAN, std=STD) -> torch.Tensor:
    """1 x 3 x H x W: the image upright (EXIF), RGB, scaled to [0, 1] and normalised, with PIL and numpy."""
    with Image.open(path) as image:
        rgb = ImageOps.exif_transpose(image).convert("RGB")
    return pil_to_input(rgb, mean, std)


def pil_to_input(rgb: Image.Image, mean=MEAN, std=STD) -> torch.Tensor:
    array = (np.asarray(rgb, np.float32) / np.float32(255) - np.array(mean, np.float32)) / np.array(std, np.float32)
    return torch.from_numpy(array).permute(2, 0, 1)[None]


@torch.no_grad()
def views_average(model, x, scales=(1.0,), flip=False) -> torch.Tensor:
    """The softmax of each view's logits (each scale, flipped or not; logits flipped back and resized to the
    image, bilinear), averaged: multi-scale and flip testing written out."""
    h, w = x.shape[-2:]
    probs = []
    for scale in scales:
        xs = x if scale == 1 else F.interpolate(x, size=(int(h * scale), int(w * scale)), mode="bilinear")
        probs.append(F.interpolate(model(xs).logits, size=(h, w), mode="bilinear").softmax(1))
        if flip:
            flipped = model(xs.flip(-1)).logits.flip(-1)
            probs.append(F.interpolate(flipped, size=(h, w), mode="bilinear").softmax(1))
    return torch.stack(probs).mean(0)


@torch.no_grad()
def tiled_logits(model, x) -> torch.Tensor:
    """Logits of a 24 x 36 or 36 x 24 image in windows of 24 overlapping by 1/3 (stride 16): two 24 x 24 tiles
    along the longer side, at 0 and 12 (the last one ends at the border), averaged where they overlap."""
    logits, counts = torch.zeros(1, CLASSES, *x.shape[-2:]), torch.zeros(1, 1, *x.shape[-2:])
    for top, left in ([(0, 0), (0, 12)] if x.shape[-1] > x.shape[-2] else [(0, 0), (12, 0)]):
        logits[..., top:top + 24, left:left + 24] += model(x[..., top:top + 24, left:left + 24]).logits
        counts[..., top:top + 24, left:left + 24] += 1
    return logits / counts


def write_data(root, sizes=SIZES):
    """A folder dataset (val split, classes.txt) of PNG images and masks: classes 0-2 in random blocks, 255 on
    a border row and on random pixels."""
    rng = np.random.default_rng(3)
    (root / "images" / "val").mkdir(parents=True)
    (root / "masks" / "val").mkdir(parents=True)
    (root / "classes.txt").write_text("a\nb\nc\n")
    for name, (h, w) in sizes.items():
        smooth = np.asarray(Image.fromarray((rng.random((h // 4, w // 4, 3)) * 255).astype(np.uint8)).resize((w, h)))
        image = np.clip(smooth + rng.normal(0, 20, (h, w, 3)), 0, 255).astype(np.uint8)
        mask = rng.integers(0, CLASSES, (h // 4, w // 4)).repeat(4, 0).repeat(4, 1).astype(np.uint8)
        mask[0], mask[rng.random((h, w)) < 0.05] = 255, 255
        Image.fromarray(image).save(root / "images" / "val" / f"{name}.png")
        Image.fromarray(mask).save(root / "masks" / "val" / f"{name}.png")
    return root


def fix_scale_crop(image: Image.Image, mask: Image.Image, crop_size: int) -> tuple[Image.Image, Image.Image]:
    """The paper code's validation transform, its lines (dataloaders/custom_transforms.py:125-149) on PIL."""
    w, h = image.size
    if w > h:
        oh = crop_size
        ow = int(1.0 * w * oh / h)
    else:
        ow = crop_size
        oh = int(1.0 * h * ow / w)
    image = image.resize((ow, oh), Image.BILINEAR)
    mask = mask.resize((ow, oh), Image.NEAREST)
    w, h = image.size
    x1 = int(round((w - crop_size) / 2.))
    y1 = int(round((h - crop_size) / 2.))
    image = image.crop((x1, y1, x1 + crop_size, y1 + crop_size))
    mask = mask.crop((x1, y1, x1 + crop_size, y1 + crop_size))
    return image, mask


@torch.no_grad()
def expected_metrics(model, root, crop_size=None, probabilities=None) -> dict:
    """SegmentationMetrics filled with ``model(x).logits.argmax(1)`` (or the argmax of ``probabilities(x)``) on
    each val image, read and normalised here; 255 ignored; ``crop_size``: the paper protocol, by hand."""
    metrics = SegmentationMetrics(CLASSES, ignore_index=255)
    for image_path in sorted((root / "images" / "val").iterdir()):
        with Image.open(image_path) as image, Image.open(root / "masks" / "val" / image_path.name) as mask:
            image, mask = image.convert("RGB"), mask.copy()
        if crop_size is not None:
            image, mask = fix_scale_crop(image, mask, crop_size)
        x = pil_to_input(image)
        scores = model(x).logits if probabilities is None else probabilities(x)
        metrics.update(scores.argmax(1), torch.from_numpy(np.asarray(mask, np.int64))[None])
    return metrics.compute()


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """(the model as saved and reloaded, its folder, a val folder dataset of differently sized images)."""
    folder = tmp_path_factory.mktemp("user_paths")
    varied_model().save_pretrained(folder / "model")
    model = load_model(folder / "model").eval()
    assert resolve_data_config(model)["mean"] == MEAN  # the saved config carries the normalisation
    return model, folder / "model", write_data(folder / "data")


def cli_eval(capsys, model_dir, root, *flags) -> dict:
    assert main(["eval", str(model_dir), "--data", "folder", "--data-root", str(root), "--json", "--no-progress",
                 "--device", "cpu", *flags]) == 0
    return json.loads(capsys.readouterr().out)


def test_predict_probabilities_are_the_softmax_of_the_normalised_image(saved, tmp_path):
    from .test_inference import _write_images  # RGB JPEG, grayscale and RGBA PNGs, an EXIF-rotated JPEG

    model, _, _ = saved
    _write_images(tmp_path / "in")
    predict_files(model, [str(tmp_path / "in")], tmp_path / "out", save_probs=True, progress=False)
    for stem, suffix in (("rgb", "jpg"), ("gray", "png"), ("rgba", "png"), ("exif", "jpg")):
        with torch.no_grad():
            expected = model(read_input(tmp_path / "in" / f"{stem}.{suffix}")).logits.softmax(1)[0]
        probs = torch.from_numpy(np.load(tmp_path / "out" / f"{stem}_probs.npy").astype(np.float32))
        torch.testing.assert_close(probs, expected, rtol=0, atol=1e-3, msg=stem)  # stored as float16


def test_cli_predict_with_scales_and_flip_is_the_hand_written_average(saved, tmp_path):
    model, model_dir, root = saved
    image = root / "images" / "val" / "wide.png"
    assert main(["predict", str(model_dir), str(image), "--out", str(tmp_path), "--probs", "--device", "cpu",
                 "--no-progress", "--scales", "0.75,1", "--flip"]) == 0
    expected = views_average(model, read_input(image), scales=(0.75, 1.0), flip=True)[0]
    probs = torch.from_numpy(np.load(tmp_path / "wide_probs.npy").astype(np.float32))
    torch.testing.assert_close(probs, expected, rtol=0, atol=1e-3)  # the CLI folds the model: the same logits
    assert not torch.allclose(expected, views_average(model, read_input(image)), atol=1e-2)  # the views matter


def test_cli_predict_in_windows_is_the_hand_tiled_softmax(saved, tmp_path):
    model, model_dir, root = saved
    image = root / "images" / "val" / "tall.png"
    assert main(["predict", str(model_dir), str(image), "--out", str(tmp_path), "--probs", "--device", "cpu",
                 "--no-progress", "--window", "24"]) == 0
    expected = tiled_logits(model, read_input(image)).softmax(1)[0]
    probs = torch.from_numpy(np.load(tmp_path / "tall_probs.npy").astype(np.float32))
    torch.testing.assert_close(probs, expected, rtol=0, atol=1e-3)
    assert not torch.allclose(expected, views_average(model, read_input(image))[0], atol=1e-2)  # tiles show


def test_cli_eval_and_evaluate_count_the_models_argmax(saved, capsys):
    model, model_dir, root = saved
    expected = expected_metrics(model, root)
    assert 0.1 < expected["mIoU"] < 0.9 and expected["per_class_iou"][0] > 0  # every class predicted and scored
    # the default batch of 8 on images of two sizes: a folder's full images go one at a time (was: "stack expects
    # each tensor to be equal size", a traceback)
    assert cli_eval(capsys, model_dir, root) == expected
    result = evaluate(model_dir, data=DataOptions("folder", root=root), device="cpu", progress=False)
    assert result.metrics == expected and result.classes == ["a", "b", "c"]


def test_paper_protocol_scores_the_papers_centre_crops(saved, capsys):
    model, model_dir, root = saved
    full = expected_metrics(model, root)
    expected = expected_metrics(model, root, crop_size=32)  # 24 x 36 -> 32 x 48 -> centre 32 x 32 (offset 8)
    assert expected["mIoU"] != full["mIoU"]
    assert cli_eval(capsys, model_dir, root, "--protocol", "paper", "--crop-size", "32") == expected
    result = evaluate(model_dir, data=DataOptions("folder", root=root), protocol="paper", crop_size=32,
                      device="cpu", progress=False)
    assert result.metrics == expected


def test_eval_with_scales_and_flip_is_the_hand_written_average(saved, capsys):
    model, model_dir, root = saved
    expected = expected_metrics(model, root, probabilities=lambda x: views_average(model, x, (0.75, 1.0), True))
    assert expected != expected_metrics(model, root)
    assert cli_eval(capsys, model_dir, root, "--scales", "0.75,1", "--flip") == expected


def test_eval_sliding_window_is_the_hand_tiled_logits(saved, capsys):
    model, model_dir, root = saved
    expected = expected_metrics(model, root, probabilities=lambda x: tiled_logits(model, x))
    assert expected != expected_metrics(model, root)
    assert cli_eval(capsys, model_dir, root, "--window", "24") == expected


def test_sliding_window_is_the_hand_tiled_logits_of_a_model_that_sees_its_tile():
    # the tiny MFNet's logits depend on every pixel of its input (the context factorises the whole tile): a
    # tile cut one pixel off, or placed back elsewhere, changes them
    model, x = varied_model(), torch.randn(1, 3, 100, 70, generator=torch.Generator().manual_seed(4))
    logits, counts = torch.zeros(1, CLASSES, 100, 70), torch.zeros(1, 1, 100, 70)
    with torch.no_grad():
        for top in (0, 20, 40, 60):  # window 40, overlap 0.5: stride 20; the last tiles end at the border
            for left in (0, 20, 30):
                logits[..., top:top + 40, left:left + 40] += model(x[..., top:top + 40, left:left + 40]).logits
                counts[..., top:top + 40, left:left + 40] += 1
    expected = (logits / counts).softmax(1)
    torch.testing.assert_close(infer_probabilities(model, x, window=40, overlap=0.5), expected)
    with torch.no_grad():
        whole = model(x).logits.softmax(1)
    assert (expected - whole).abs().max() > 0.1  # tiles are not the whole image: the tiling shows
