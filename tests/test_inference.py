"""Inference (windows, scales, flips, files), the folded model's export and the CLI (more export: test_export.py)."""
import copy

import numpy as np
import pytest
import torch
from PIL import Image

from mfnet_zoo import create_model
from mfnet_zoo.cli import main
from mfnet_zoo.export import export_onnx
from mfnet_zoo.inference import infer_probabilities
from mfnet_zoo.predict import expand_inputs, predict_files

from .conftest import randomize_bn_stats


def tiny(name="mfnet", num_classes=3, encoder="test_resnet", **kwargs):
    model = create_model(name, encoder=encoder, num_classes=num_classes, **kwargs).eval()
    randomize_bn_stats(model)
    return model


def test_whole_image_probabilities_are_the_softmax():
    model, x = tiny(), torch.randn(2, 3, 48, 56)
    torch.testing.assert_close(infer_probabilities(model, x), model(x).logits.softmax(1))
    assert torch.allclose(infer_probabilities(model, x, window=64), model(x).logits.softmax(1))  # window >= image


def test_multi_scale_flip_is_the_mean_of_the_views():
    model, x = tiny(), torch.randn(1, 3, 64, 64)
    views = []
    for scale in (0.5, 1.0):
        xs = torch.nn.functional.interpolate(x, scale_factor=scale, mode="bilinear") if scale != 1 else x
        for flipped in (False, True):
            logits = model(xs.flip(-1) if flipped else xs).logits
            logits = logits.flip(-1) if flipped else logits
            views.append(torch.nn.functional.interpolate(logits, size=(64, 64), mode="bilinear").softmax(1))
    torch.testing.assert_close(infer_probabilities(model, x, scales=(0.5, 1.0), flip=True), torch.stack(views).mean(0))


def test_scales_resize_the_image_with_the_models_interpolation():
    x = torch.randn(1, 3, 64, 64)
    bicubic = tiny(pretrained_cfg_overlay=dict(interpolation="bicubic"))
    expected = torch.nn.functional.interpolate(bicubic(torch.nn.functional.interpolate(
        x, scale_factor=0.75, mode="bicubic")).logits, size=(64, 64), mode="bilinear").softmax(1)
    torch.testing.assert_close(infer_probabilities(bicubic, x, scales=(0.75,)), expected)
    assert not torch.allclose(infer_probabilities(bicubic, x, scales=(0.75,), interpolation="bilinear"), expected)
    with pytest.raises(ValueError, match=r"interpolation must be one of \('bilinear', 'bicubic', 'nearest'\)"):
        infer_probabilities(bicubic, x, scales=(0.75,), interpolation="lanczos")


def test_sliding_window_covers_every_pixel_once_averaged():
    calls = []

    class Constant(torch.nn.Module):  # logits = 1 everywhere the tile covers
        def forward(self, x):
            calls.append(tuple(x.shape[-2:]))
            return type("Out", (), {"logits": torch.ones(x.shape[0], 2, *x.shape[-2:])})()

    probs = infer_probabilities(Constant(), torch.randn(1, 3, 100, 70), window=40, overlap=0.5)
    assert probs.shape == (1, 2, 100, 70) and torch.allclose(probs, torch.full_like(probs, 0.5))
    assert set(calls) == {(40, 40)} and len(calls) == 4 * 3  # tops 0,20,40,60; lefts 0,20,30
    with pytest.raises(ValueError, match="scales must be positive"):
        infer_probabilities(Constant(), torch.randn(1, 3, 8, 8), scales=(0.0,))


def test_binary_model_gives_sigmoid():
    model, x = tiny(num_classes=1), torch.randn(1, 3, 32, 32)
    torch.testing.assert_close(infer_probabilities(model, x), torch.sigmoid(model(x).logits))


def _write_images(folder):
    folder.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((50, 70, 3)) * 255).astype(np.uint8)).save(folder / "rgb.jpg")
    Image.fromarray((rng.random((40, 40)) * 255).astype(np.uint8)).save(folder / "gray.png")
    Image.fromarray((rng.random((30, 20, 4)) * 255).astype(np.uint8)).save(folder / "rgba.png")
    rotated = Image.fromarray((rng.random((20, 30, 3)) * 255).astype(np.uint8))
    exif = rotated.getexif()
    exif[0x0112] = 6
    rotated.save(folder / "exif.jpg", exif=exif)
    (folder / "broken.png").write_bytes(b"not an image")


def test_expand_inputs(tmp_path):
    _write_images(tmp_path / "in")
    paths, problems = expand_inputs([str(tmp_path / "in"), str(tmp_path / "in" / "*.jpg"), "missing.png", "no*.tif"])
    assert [p.name for p in paths[:5]] == ["broken.png", "exif.jpg", "gray.png", "rgb.jpg", "rgba.png"]
    assert [p.name for p in paths[5:]] == ["exif.jpg", "rgb.jpg"]
    assert problems == ["missing.png: no such file or folder", "no*.tif: pattern matches no file"]


def test_predict_files_writes_outputs_at_original_size(tmp_path):
    _write_images(tmp_path / "in")
    model = tiny()
    report = predict_files(model, [str(tmp_path / "in"), str(tmp_path / "nope.jpg")], tmp_path / "out",
                           save_probs=True, progress=False)
    assert len(report.failed) == 2 and "broken.png" in report.failed[1] and "nope.jpg" in report.failed[0]
    sizes = {"rgb": (70, 50), "gray": (40, 40), "rgba": (20, 30), "exif": (20, 30)}  # exif: rotated 90 degrees
    for stem, size in sizes.items():
        index = Image.open(tmp_path / "out" / f"{stem}.png")
        assert index.mode == "P" and index.size == size
        assert Image.open(tmp_path / "out" / f"{stem}_overlay.png").size == size
        probs = np.load(tmp_path / "out" / f"{stem}_probs.npy")
        assert probs.shape == (3, size[1], size[0])
        assert (np.asarray(index) == probs.argmax(0)).mean() > 0.99  # float16 ties aside


@pytest.mark.slow
def test_predict_bf16_channels_last_and_folding_keep_the_probabilities(tmp_path):
    _write_images(tmp_path / "in")
    model = tiny()
    predict_files(model, [str(tmp_path / "in")], tmp_path / "fp32", save_probs=True, progress=False)
    predict_files(model, [str(tmp_path / "in")], tmp_path / "bf16", save_probs=True, progress=False, amp="bf16",
                  channels_last=True)
    predict_files(copy.deepcopy(model).reparameterize(), [str(tmp_path / "in")], tmp_path / "folded", save_probs=True,
                  progress=False)
    for stem in ("rgb", "gray", "rgba", "exif"):
        fp32 = np.load(tmp_path / "fp32" / f"{stem}_probs.npy").astype(np.float32)
        assert np.abs(np.load(tmp_path / "bf16" / f"{stem}_probs.npy") - fp32).max() < 0.05  # bf16: ~3 digits
        assert np.abs(np.load(tmp_path / "folded" / f"{stem}_probs.npy") - fp32).max() < 2e-3  # float16 storage
    with pytest.raises(ValueError, match="amp must be"):
        predict_files(model, [str(tmp_path / "in")], tmp_path / "bad", amp="int8")
    assert not (tmp_path / "bad").exists()


def test_cli_folds_for_inference_unless_told_not_to(tmp_path):
    tiny(encoder="resnet18").save_pretrained(tmp_path / "model")
    for flags, name in (([], "folded.pt2"), (["--no-fold", "--batch", "2"], "plain.pt2")):
        assert main(["export", str(tmp_path / "model"), "--format", "torch-export", "--size", "64",
                     "--out", str(tmp_path / name), *flags]) == 0
    folded = torch.export.load(tmp_path / "folded.pt2")
    plain = torch.export.load(tmp_path / "plain.pt2")
    assert "model.context.Y" in plain.state_dict and not any(k.endswith((".Y", ".Z")) for k in folded.state_dict)
    assert "model.context.conv.weight" in folded.state_dict
    x = torch.randn(3, 3, 48, 80)  # neither the traced batch (1, 2) nor the traced size
    torch.testing.assert_close(folded.module()(x), plain.module()(x), rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_folded_model_exports_to_onnx(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    model = tiny("mfnet_lite").reparameterize()
    export_onnx(model, tmp_path / "folded.onnx", (64, 64))
    session = ort.InferenceSession(str(tmp_path / "folded.onnx"), providers=["CPUExecutionProvider"])
    x = torch.randn(2, 3, 97, 131)  # not the traced size: the constant map is resized inside the graph
    out = session.run(["logits"], {"images": x.numpy()})[0]
    assert np.abs(out - model(x).logits.detach().numpy()).max() < 1e-4


def test_cli_predict_export_benchmark(tmp_path, capsys):
    tiny(encoder="resnet18").save_pretrained(tmp_path / "model")
    _write_images(tmp_path / "in")
    assert main(["predict", str(tmp_path / "model"), str(tmp_path / "in" / "rgb.jpg"), "--out",
                 str(tmp_path / "out"), "--device", "cpu", "--no-progress", "--flip", "--scales", "0.75,1"]) == 0
    assert (tmp_path / "out" / "rgb.png").is_file()
    assert main(["predict", str(tmp_path / "model"), str(tmp_path / "in"), "--out", str(tmp_path / "out"),
                 "--device", "cpu", "--no-progress"]) == 1  # broken.png: reported, the others written
    err = capsys.readouterr().err
    assert "cannot read image" in err and "broken.png" in err and "Traceback" not in err
    assert main(["export", str(tmp_path / "model"), "--format", "torch-export", "--size", "64",
                 "--out", str(tmp_path / "m.pt2")]) == 0
    assert (tmp_path / "m.pt2").is_file()
    assert main(["benchmark", "mfnet_r5"]) == 2
    assert "did you mean mfnet_r50" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["predict", "mfnet", "x.jpg", "--scales", "a,b"])
