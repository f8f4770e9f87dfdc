"""The README's main job: `mfnet-zoo demo`."""
import json

import pytest
from PIL import Image

from mfnet_zoo import from_pretrained
from mfnet_zoo.cli import main
from mfnet_zoo.demo import run_demo

PNG = b"\x89PNG\r\n\x1a\n"


def test_demo_smoke_writes_every_artifact(tmp_path, capsys):
    result = run_demo(tmp_path, epochs=2, train_size=16, val_size=8, image_size=32, progress=False)
    assert "demo: epoch 1/2 took" in capsys.readouterr().out  # an estimate after the first epoch
    assert json.loads((tmp_path / "model" / "config.json").read_text())["input_size"] == [3, 32, 32]
    assert set(result["metrics"]) >= {"mIoU", "fwIoU", "per_class_iou"}
    for name in ("predictions.png", "curves.png"):
        assert (tmp_path / name).read_bytes()[:8] == PNG
    with Image.open(tmp_path / "predictions.png") as panel:  # readable: 3 tiles of >= 128 px per row, 8 rows
        assert panel.width >= 3 * 128 and panel.height >= 8 * 128
    assert json.loads((tmp_path / "results.json").read_text())["epochs"] == 2
    assert (tmp_path / "best.pt").is_file() and (tmp_path / "last.pt").is_file()
    model = from_pretrained(tmp_path / "model")
    assert model.pretrained_cfg.label_names[1] == "circle"
    assert "| mIoU |" in (tmp_path / "model" / "README.md").read_text()


@pytest.mark.slow
def test_full_demo_reaches_the_promised_miou(tmp_path, capsys):
    # the README command as users run it: 104 s on the idle development machine, 6 min on slower ones
    assert main(["demo", "--out", str(tmp_path), "--no-progress"]) == 0
    result = json.loads((tmp_path / "results.json").read_text())
    assert result["metrics"]["mIoU"] >= 0.6
    assert "| **mIoU** |" in capsys.readouterr().out
