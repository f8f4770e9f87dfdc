"""One resolver for every model source: the same weights give the same logits through load_model,
create_model, from_pretrained and every CLI command that takes a model (Hub sources through MockHub)."""
import json

import numpy as np
import pytest
import torch
from huggingface_hub import constants

import mfnet_zoo
from mfnet_zoo import create_model, load_model, register_pretrained_cfgs
from mfnet_zoo._pretrained import PretrainedCfg
from mfnet_zoo._registry import register_model, unregister_model
from mfnet_zoo.cli import main
from mfnet_zoo.models._family import TEST_ENCODER, build_variant
from mfnet_zoo.models.mfnet import _mfnet_head

from .conftest import randomize_bn_stats
from .mock_hub import MockHub

ARCH = "tiny_sources_mfnet"
SAVED = ["tag", "hf-hub", "hf-hub-revision", "timm-style-hf-hub", "local-dir", "folder", "safetensors",
         "checkpoint", "run"]
DATA = ["--data", "synthetic", "--synthetic-size", "16", "--image-size", "32", "--no-progress"]


def tiny_sources_mfnet(pretrained=False, **kwargs):
    """MFNet on timm's test ResNet with 3 classes (registered by this test module only)."""
    return build_variant(_mfnet_head, ARCH, pretrained, kwargs, encoder=TEST_ENCODER, num_classes=3)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """One trained-looking model saved in every form, a local Hub serving it, a tag pointing at it."""
    root = tmp_path_factory.mktemp("sources")
    register_model(family="mfnet")(tiny_sources_mfnet)
    register_pretrained_cfgs({f"{ARCH}.hub": PretrainedCfg(hf_hub_id="org/tiny")})
    model = create_model(ARCH).eval()
    randomize_bn_stats(model)
    model.save_pretrained(root / "folder")
    (root / "run").mkdir()
    torch.save({"model_name": ARCH, "model_args": model.model_args, "state_dict": model.state_dict()},
               root / "run" / "best.pt")
    with MockHub() as hub, pytest.MonkeyPatch.context() as patch:
        patch.setattr(constants, "ENDPOINT", hub.url)
        patch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", hub.url + "/{repo_id}/resolve/{revision}/{filename}")
        patch.setattr(constants, "HF_HUB_CACHE", str(root / "hf-cache"))
        patch.setattr(constants, "HF_HUB_OFFLINE", False)
        hub.add_folder("org/tiny", root / "folder")
        sources = {"tag": f"{ARCH}.hub", "hf-hub": "hf-hub:org/tiny", "hf-hub-revision": "hf-hub:org/tiny@v1",
                   "timm-style-hf-hub": "hf-hub:org/tiny", "local-dir": f"local-dir:{root / 'folder'}",
                   "folder": str(root / "folder"), "safetensors": str(root / "folder" / "model.safetensors"),
                   "checkpoint": str(root / "run" / "best.pt"), "run": str(root / "run")}
        x = torch.randn(2, 3, 32, 32)
        yield {"model": model, "sources": sources, "root": root, "x": x, "logits": model(x).logits}
    unregister_model(ARCH)


def _logits(model, x):
    return model.eval()(x).logits


@pytest.mark.parametrize("kind", SAVED)
def test_every_saved_source_gives_the_same_logits(saved, kind, tmp_path, capsys):
    source, x, expected = saved["sources"][kind], saved["x"], saved["logits"]
    model = create_model(source, pretrained=True) if kind == "timm-style-hf-hub" else load_model(source)
    assert model.model_name == ARCH
    torch.testing.assert_close(_logits(model, x), expected, rtol=0, atol=0)
    if kind != "tag":  # weights of a saved source into the architecture asked for, and from_pretrained
        torch.testing.assert_close(_logits(create_model(ARCH, pretrained=source), x), expected, rtol=0, atol=0)
        torch.testing.assert_close(_logits(mfnet_zoo.from_pretrained(source), x), expected, rtol=0, atol=0)
    # keyword arguments apply on top: a new head, the rest loaded
    with pytest.warns(UserWarning, match="classifier is newly initialised"):
        assert load_model(source, num_classes=5).num_classes == 5

    # every CLI command that takes a model: the same metrics, probabilities, exported logits, parameters
    assert main(["eval", source, "--json", *DATA]) == 0
    metrics = json.loads(capsys.readouterr().out)
    reference = saved.setdefault("metrics", metrics)
    assert metrics == reference
    image = (saved["root"] / "image.png")
    if not image.exists():
        from PIL import Image

        Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(image)
    assert main(["predict", source, str(image), "--out", str(tmp_path / "pred"), "--probs", "--no-progress"]) == 0
    assert "wrote 1 prediction(s)" in capsys.readouterr().out
    probs = np.load(tmp_path / "pred" / "image_probs.npy")
    np.testing.assert_array_equal(probs, saved.setdefault("probs", probs))
    assert main(["info", source, "--json", "--no-macs"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["architecture"] == ARCH and info["parameters"] == sum(p.numel() for p in saved["model"].parameters())
    assert main(["benchmark", source, "--size", "32", "--runs", "1", "--warmup", "0", "--no-macs", "--json",
                 "--device", "cpu"]) == 0
    [row] = json.loads(capsys.readouterr().out)
    assert row["model"] == source and row["parameters"] == info["parameters"]


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["hf-hub", "run"])
def test_export_takes_any_source(saved, kind, tmp_path, capsys):
    ort = pytest.importorskip("onnxruntime")
    assert main(["export", saved["sources"][kind], "--out", str(tmp_path / "m.onnx"), "--size", "32"]) == 0
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    out = session.run(["logits"], {"images": saved["x"].numpy()})[0]
    np.testing.assert_allclose(out, saved["logits"].detach().numpy(), atol=1e-4)


def test_a_registry_name_is_a_new_model_and_a_tag_is_pretrained(saved):
    torch.manual_seed(1)  # the conftest seeds 0 before each test: the saved model may have been drawn from it
    fresh = load_model(ARCH)
    assert fresh.model_name == ARCH and not torch.equal(fresh.context.Y, saved["model"].context.Y)
    assert torch.equal(load_model(f"{ARCH}.hub").context.Y, saved["model"].context.Y)


def test_errors_name_the_source_its_kind_and_what_is_missing(saved, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match=r"'.*empty' \(taken as a local folder\) has no readable config.json"):
        load_model(str(empty))
    (tmp_path / "w.safetensors").write_bytes((saved["root"] / "folder" / "model.safetensors").read_bytes())
    with pytest.raises(FileNotFoundError, match=r"\(taken as safetensors\) has no readable config.json.*"
                                                r"create_model\(NAME, pretrained="):
        load_model(str(tmp_path / "w.safetensors"))
    with pytest.raises(ValueError, match=r"'mfnet_r50.nope' \(taken as a pretrained tag\): 'mfnet_r50' has no tag"):
        load_model("mfnet_r50.nope")
    with pytest.raises(ValueError, match=r"unknown model 'mfnett'; did you mean mfnet.*no existing file"):
        load_model("mfnett")
    with pytest.raises(ValueError, match=r"\(taken as hf-hub, 'hf-hub:org/repo\[@revision\]'\)"):
        load_model("hf-hub:a/b/c")
    with pytest.raises(FileNotFoundError, match="Hub repo 'org/absent' does not exist"):
        load_model("hf-hub:org/absent")
    with pytest.raises(ValueError, match=r"refusing to load 'w.pth': pickled weights"):
        (tmp_path / "w.pth").write_bytes(b"pickle")
        load_model(str(tmp_path / "w.pth"))
    pickled = tmp_path / "bad.pt"
    pickled.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="cannot read checkpoint .*bad.pt"):
        load_model(str(pickled))


def test_offline_without_cache_says_so(saved, monkeypatch, tmp_path):
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(FileNotFoundError, match="'config.json' of Hub repo 'org/tiny' is not in the local cache"):
        load_model("hf-hub:org/tiny")


def test_the_hub_options_are_the_same_for_every_way_in():
    import inspect

    from mfnet_zoo import SegmentationModel
    from mfnet_zoo._factory import HUB_KWARGS

    assert set(HUB_KWARGS) <= set(inspect.signature(SegmentationModel.from_pretrained).parameters)


def test_a_plain_repo_id_means_the_hub_everywhere(tmp_path, monkeypatch):
    # huggingface_hub's convention, for load_model and create_model(pretrained=) as for from_pretrained; a path
    # that exists wins, and a registered name is refused by from_pretrained with the functions that take it
    from mfnet_zoo._sources import parse_model_source

    assert parse_model_source("org/repo").kind == "hf-hub"
    assert "no registered name or local path" in parse_model_source("org/repo").describe()
    monkeypatch.chdir(tmp_path)
    (tmp_path / "org" / "repo").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="taken as a local folder"):
        parse_model_source("org/repo")
    with pytest.raises(ValueError, match=r"names a registered model: use mfnet_zoo.create_model\('mfnet_r50'\)"):
        mfnet_zoo.from_pretrained("mfnet_r50")
