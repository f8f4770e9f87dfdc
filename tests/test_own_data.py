"""A user's own data on the first day (#32): a folder without classes.txt through train and eval, class names,
one-line errors naming the file to fix, and optional dependencies that say which extra installs them."""
import configparser
import json
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mfnet_zoo import _extras, create_model
from mfnet_zoo.cli import main
from mfnet_zoo.data import DataOptions, FolderDataset, VOCAugSegmentation, scan_mask_labels
from mfnet_zoo.data import folder as folder_module

ROOT = Path(__file__).resolve().parents[1]
TRAIN = ["train", "mfnet", "--encoder", "test_resnet", "--encoder-weights", "none", "--data", "folder",
         "--crop-size", "32", "--epochs", "1", "--batch-size", "4", "--no-progress"]


def write_folder(root: Path, labels=(0, 1, 3), sizes=(("train", 4), ("val", 2))) -> Path:
    """32 x 32 images and masks holding ``labels`` (one band each) and a row of 255; no classes.txt."""
    for split, count in sizes:
        (root / "images" / split).mkdir(parents=True)
        (root / "masks" / split).mkdir(parents=True)
        for i in range(count):
            mask = np.repeat(np.array(labels, np.uint8), -(-32 // len(labels)))[:32][:, None].repeat(32, 1)
            mask[0] = 255
            Image.fromarray((mask[..., None] * 40).repeat(3, 2)).save(root / "images" / split / f"{i}.png")
            Image.fromarray(mask).save(root / "masks" / split / f"{i}.png")
    return root


def test_without_classes_txt_the_train_masks_give_the_class_count(tmp_path):
    root = write_folder(tmp_path / "d")
    with pytest.warns(UserWarning, match=r"4 classes taken from the highest label in .*masks/train', but no mask "
                                         r"holds index\(es\) 2: a class these masks never show"):
        train = FolderDataset(root, "train")
    assert (train.classes, train.class_source, train.mask_labels.unseen) == (["0", "1", "2", "3"], "masks", (2,))
    assert train.mask_labels.describe() == (f"4 classes: the highest label in the 4 masks of "
                                            f"'{root / 'masks' / 'train'}' is 3 (no classes.txt or --classes to name "
                                            f"them)")
    read = []
    original = folder_module._mask_array
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the scan is remembered: no second pass, no second warning
        folder_module._mask_array = lambda path: read.append(path) or original(path)
        try:
            val = FolderDataset(root, "val")
        finally:
            folder_module._mask_array = original
    assert val.num_classes == 4 and val.mask_labels is train.mask_labels and read == []
    Image.fromarray(np.full((32, 32), 5, np.uint8)).save(root / "masks" / "train" / "1.png")  # changed: scanned again
    with pytest.warns(UserWarning, match=r"index\(es\) 2, 4"):
        assert scan_mask_labels(root / "masks" / "train").num_classes == 6
    Image.fromarray(np.full((32, 32), 7, np.uint8)).save(root / "masks" / "val" / "1.png")
    with pytest.raises(ValueError, match=r"masks/val/1.png: mask labels \[7\] are outside \[0, 6\) and not the "
                                         r"ignore index 255; the 6 classes are the highest label in .*masks/train' "
                                         r"\+ 1: name every class in classes.txt or with --classes"):
        FolderDataset(root, "val")[1]


def test_names_from_classes_or_classes_txt_and_one_error_per_mismatch(tmp_path):
    root = write_folder(tmp_path / "d")
    named = FolderDataset(root, "train", classes=("sky", "road", "car", "person"))
    assert (named.classes, named.class_source, named.num_classes) == (["sky", "road", "car", "person"], "classes", 4)
    (root / "classes.txt").write_text("sky\nroad\n\ncar\n")
    in_file = FolderDataset(root, "train")
    assert (in_file.classes, in_file.class_source) == (["sky", "road", "car"], "classes.txt")
    with pytest.raises(ValueError, match=r"masks/train/0.png: mask labels \[3\] are outside \[0, 3\) and not the "
                                         r"ignore index 255; 3 classes are named in .*classes.txt': fix the mask or "
                                         r"name the missing classes"):
        in_file[0]
    for kwargs, match in [({"classes": ("a", "b", "c")}, r"classes \['a', 'b', 'c'\] differ from .*classes.txt"),
                          ({"num_classes": 5}, r"num_classes=5, but .*classes.txt' name 3 classes")]:
        with pytest.raises(ValueError, match=match):
            FolderDataset(root, "train", **kwargs)
    (root / "classes.txt").unlink()
    with pytest.raises(ValueError, match=r"the classes given name\(s\) \['a'\] more than once"):
        FolderDataset(root, "train", classes=("a", "b", "a"))
    with pytest.raises(TypeError, match="classes takes a sequence of names, got the string 'a,b'"):
        FolderDataset(root, "train", classes="a,b")
    with pytest.raises(FileNotFoundError, match=r"dataset root '.*nowhere' does not exist or is not a folder"):
        FolderDataset(tmp_path / "nowhere", "val")
    with pytest.raises(ValueError, match="classes names a folder dataset's classes"):
        DataOptions("synthetic", classes=("a",))


def test_cli_trains_and_evaluates_a_folder_without_classes_txt(tmp_path, capsys):
    root, out = write_folder(tmp_path / "d"), tmp_path / "run"
    assert main(TRAIN + ["--data-root", str(root), "--out", str(out)]) == 0  # was: 'NoneType' ... integer
    printed, err = capsys.readouterr()
    lines = printed.splitlines()
    assert lines[0] == f"4 classes: the highest label in the 4 masks of '{root / 'masks' / 'train'}' is 3 (no " \
                       f"classes.txt or --classes to name them)"
    assert lines[1].startswith("epoch 1/1: loss ") and "val mIoU" in lines[1]
    warning = err.strip()
    assert warning.startswith("mfnet-zoo: warning: 4 classes taken from the highest label") and "\n" not in warning
    data = json.loads((out / "run.json").read_text())["data"]
    assert (data["classes"], data["classes_from"], data["unseen_classes"]) == (["0", "1", "2", "3"], "masks", [2])

    assert main(["eval", str(out), "--data", "folder", "--data-root", str(root), "--json", "--no-progress"]) == 0
    assert len(json.loads(capsys.readouterr().out)["per_class_iou"]) == 4  # the model's class count
    assert main(["eval", str(out), "--data", "folder", "--data-root", str(root), "--classes", "a,b,c"]) == 2
    assert capsys.readouterr().err == (f"mfnet-zoo: error: model '{out}' predicts 4 classes, but the dataset "
                                       f"'{root}' has 3 (classes: ['a', 'b', 'c'])\n")
    assert main(["eval", str(out), "--data", "folder", "--data-root", str(tmp_path / "nowhere")]) == 2
    assert "dataset root" in capsys.readouterr().err
    # more images per batch than the folder has: said, not "the training loader yielded no batch" after loading
    assert main(TRAIN + ["--data-root", str(root), "--out", str(tmp_path / "big"), "--batch-size", "5"]) == 2
    assert capsys.readouterr().err.endswith("mfnet-zoo: error: 4 training images make no whole batch of 5: lower "
                                            "--batch-size (batch_size) to at most 4, or add images\n")


def test_the_extras_cover_setup_cfgs_optional_modules():
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    extras = config["options.extras_require"]
    for extra in ("data", "export"):
        modules = {line.split(">")[0].split("=")[0].strip() for line in extras[extra].splitlines() if line.strip()}
        assert modules == {m for m, x in _extras.EXTRAS.items() if x == extra}


@pytest.mark.parametrize("module", sorted(_extras.EXTRAS))
def test_a_missing_optional_module_is_one_line_naming_its_extra(module, monkeypatch):
    monkeypatch.setitem(sys.modules, module, None)  # as if not installed
    with pytest.raises(_extras.MissingExtraError) as error:
        _extras.require(module, "this feature")
    extra = _extras.EXTRAS[module]
    assert str(error.value).startswith(f"this feature needs {module}, which is not installed: "
                                       f'pip install -e ".[{extra}]" in the mfnet_zoo checkout')
    assert "\n" not in str(error.value) and error.value.name == module


@pytest.mark.parametrize("module", ["onnx", "onnxscript", "onnxruntime", "scipy"])
def test_every_feature_behind_an_extra_says_so(module, tmp_path, monkeypatch, capsys):
    from mfnet_zoo.export import check_onnx, export_onnx

    monkeypatch.setitem(sys.modules, module, None)
    if module == "scipy":
        monkeypatch.setitem(sys.modules, "scipy.io", None)
        with pytest.raises(_extras.MissingExtraError, match=r"reading SBD's .mat masks \(--data voc-aug\) needs scipy"):
            VOCAugSegmentation(tmp_path / "voc", tmp_path / "sbd")
        return
    model = create_model("mfnet", encoder="test_resnet", num_classes=2)
    if module == "onnxruntime":
        with pytest.raises(_extras.MissingExtraError, match="checking an ONNX export needs onnxruntime"):
            check_onnx(model, tmp_path / "m.onnx")
        argv = ["export", "mfnet", "--check", "--out", str(tmp_path / "m.onnx")]
    else:
        with pytest.raises(_extras.MissingExtraError, match=f"ONNX export needs {module}"):
            export_onnx(model, tmp_path / "m.onnx")
        argv = ["export", "mfnet", "--out", str(tmp_path / "m.onnx")]
    assert main(argv) == 2  # before the model is built or anything written
    err = capsys.readouterr().err
    assert err.startswith("mfnet-zoo: error: ") and 'pip install -e ".[export]"' in err and err.count("\n") == 1
    assert not (tmp_path / "m.onnx").exists()
