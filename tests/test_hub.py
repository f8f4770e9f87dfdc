"""Weights: Hub downloads through huggingface_hub's real code against a local server, cache and
offline use, save/from_pretrained/push_to_hub, model cards, safetensors-only loading, torch.hub."""
import json
from pathlib import Path

import huggingface_hub
import pytest
import timm
import torch
from huggingface_hub import constants
from safetensors.torch import save_file

import mfnet_zoo
from mfnet_zoo import create_model, from_pretrained, register_pretrained_cfgs, resolve_data_config
from mfnet_zoo import _registry
from mfnet_zoo.cli import main
from mfnet_zoo._pretrained import PretrainedCfg, encoder_only_cfg
from mfnet_zoo.hub import read_safetensors

from .conftest import TINY, TINY_IDS, randomize_bn_stats
from .mock_hub import MockHub

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """huggingface_hub pointed at a local MockHub, with an empty cache of its own."""
    with MockHub() as server:
        monkeypatch.setattr(constants, "ENDPOINT", server.url)
        monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", server.url + "/{repo_id}/resolve/{revision}/{filename}")
        monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        yield server


def offline(monkeypatch):
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)


@pytest.fixture
def temporary_tags():
    added = []

    def register(cfgs):
        register_pretrained_cfgs(cfgs)
        added.extend(cfgs)

    yield register
    for full_name in added:
        name, tag = full_name.split(".", 1)
        _registry._model_pretrained_cfgs[name].pop(tag)
        if not _registry._model_pretrained_cfgs[name]:
            del _registry._model_pretrained_cfgs[name]


def tiny(name="mfnet", **kwargs):
    model = create_model(name, **{"encoder": "test_resnet", "num_classes": 3, **kwargs}).eval()
    randomize_bn_stats(model)
    return model


def serve_timm_weights(server, tmp_path, timm_name):
    """Put (random) weights in timm's own Hub layout: timm/<arch.tag>/model.safetensors."""
    arch = timm_name.split(".")[0]
    state = {k: v.contiguous() for k, v in timm.create_model(arch).state_dict().items()}
    save_file(state, tmp_path / "timm.safetensors")
    server.files[(f"timm/{timm_name}", "model.safetensors")] = (tmp_path / "timm.safetensors").read_bytes()
    return state


def test_encoder_weights_come_through_timm_and_the_hub_cache(hub, tmp_path, monkeypatch):
    served = serve_timm_weights(hub, tmp_path, "test_resnet.r160_in1k")
    model = create_model("mfnet", encoder="test_resnet", encoder_weights="r160_in1k")
    encoder_state = model.encoder.model.state_dict()
    assert all(torch.equal(encoder_state[k], served[k]) for k in encoder_state)
    assert ("GET", "/timm/test_resnet.r160_in1k/resolve/main/model.safetensors") in hub.requests
    offline(monkeypatch)
    hub.requests.clear()
    again = create_model("mfnet", encoder="test_resnet", encoder_weights="r160_in1k")  # from the cache
    assert hub.requests == []
    assert all(torch.equal(v, served[k]) for k, v in again.encoder.model.state_dict().items())


TRAIN_TINY = ["train", "mfnet", "--encoder", "test_resnet", "--data", "synthetic", "--synthetic-size", "8",
              "--image-size", "32", "--crop-size", "32", "--epochs", "1", "--batch-size", "4", "--no-progress"]


def test_cli_train_starts_from_the_encoders_pretrained_weights(hub, tmp_path):
    served = serve_timm_weights(hub, tmp_path, "test_resnet.r160_in1k")  # timm's default tag of test_resnet
    out = tmp_path / "run"
    assert main(TRAIN_TINY + ["--lr", "0", "--out", str(out)]) == 0  # lr 0: the weights stay as loaded
    assert ("GET", "/timm/test_resnet.r160_in1k/resolve/main/model.safetensors") in hub.requests
    checkpoint = torch.load(out / "last.pt", weights_only=True)
    encoder = {k[len("encoder.model."):]: v for k, v in checkpoint["state_dict"].items() if k.startswith("encoder.")}
    learned = [k for k in encoder if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    assert len(learned) > 20 and all(torch.equal(encoder[k], served[k]) for k in learned)
    assert checkpoint["data_config"]["mean"] == (0.5, 0.5, 0.5)  # the tag's normalisation, saved with the run


def test_cli_train_without_the_hub_says_so_and_names_both_ways_out(hub, tmp_path, monkeypatch, capsys):
    offline(monkeypatch)  # and nothing cached
    assert main(TRAIN_TINY + ["--out", str(tmp_path / "run")]) == 2
    error = capsys.readouterr().err
    assert ("pretrained weights of timm encoder 'test_resnet' (Hub repo 'timm/test_resnet.r160_in1k') are not in "
            "the local Hugging Face cache, and offline mode is on (HF_HUB_OFFLINE=1)") in error
    assert "into the Hugging Face cache" in error and "HF_HUB_CACHE" in error and "--encoder-weights none" in error
    assert hub.requests == [] and not (tmp_path / "run" / "last.pt").exists()
    # a random encoder, as create_model's default: no Hub at all
    assert main(TRAIN_TINY + ["--encoder-weights", "none", "--epochs", "1", "--out", str(tmp_path / "run")]) == 0
    assert create_model("mfnet", encoder="test_resnet") is not None and hub.requests == []


def test_encoder_only_tag_warns_that_the_head_is_new(hub, tmp_path, temporary_tags):
    serve_timm_weights(hub, tmp_path, "test_resnet.r160_in1k")
    temporary_tags({"mfnet.test_in1k": encoder_only_cfg("test_resnet.r160_in1k")})
    assert "mfnet.test_in1k" in mfnet_zoo.list_models("mfnet*", pretrained=True)
    with pytest.warns(UserWarning, match="encoder weights from timm .*newly initialised"):
        model = create_model("mfnet.test_in1k", encoder="test_resnet", pretrained=True)
    assert model.pretrained_cfg.tag == "test_in1k"


@pytest.mark.slow
def test_paper_tag_mfnet_r50_tv_in1k(hub, tmp_path):
    served = serve_timm_weights(hub, tmp_path, "resnet50.tv_in1k")
    with pytest.warns(UserWarning, match="mfnet_r50.tv_in1k: encoder weights from timm"):
        model = create_model("mfnet_r50", pretrained=True)  # the default tag
    assert torch.equal(model.encoder.model.layer4[2].conv3.weight, served["layer4.2.conv3.weight"])
    assert [b.conv2.dilation[0] for b in model.encoder.model.layer4] == [2, 4, 8]


def test_whole_model_weights_from_the_hub_then_offline(hub, tmp_path, monkeypatch, temporary_tags):
    source = tiny()
    source.save_pretrained(tmp_path / "saved")
    hub.add_folder("org/mfnet-tiny", tmp_path / "saved")
    x = torch.randn(1, 3, 64, 64)
    expected = source(x).logits

    loaded = create_model("mfnet", encoder="test_resnet", num_classes=3, pretrained="hf-hub:org/mfnet-tiny").eval()
    torch.testing.assert_close(loaded(x).logits, expected, rtol=0, atol=0)
    rebuilt = from_pretrained("org/mfnet-tiny").eval()
    torch.testing.assert_close(rebuilt(x).logits, expected, rtol=0, atol=0)

    temporary_tags({"mfnet.tiny_hub": PretrainedCfg(hf_hub_id="org/mfnet-tiny", num_classes=3)})
    offline(monkeypatch)
    hub.requests.clear()
    cached = create_model("mfnet.tiny_hub", encoder="test_resnet", pretrained=True).eval()  # the tag's 3 classes
    assert cached.num_classes == 3
    torch.testing.assert_close(cached(x).logits, expected, rtol=0, atol=0)
    assert hub.requests == []  # offline: the cache only


def test_no_network_and_no_cache_names_repo_file_and_remedy(hub, monkeypatch, temporary_tags):
    temporary_tags({"mfnet.absent": PretrainedCfg(hf_hub_id="org/absent", num_classes=3)})
    offline(monkeypatch)
    with pytest.raises(FileNotFoundError, match=r"'model.safetensors' of Hub repo 'org/absent' is not in the local "
                                                r"cache.*pretrained='path/to/model.safetensors'.*pretrained_cfg_overlay"):
        create_model("mfnet.absent", encoder="test_resnet", num_classes=3, pretrained=True)


def test_missing_repo_and_pickle_only_repo(hub, tmp_path):
    with pytest.raises(FileNotFoundError, match="Hub repo 'org/nothing' does not exist"):
        create_model("mfnet", encoder="test_resnet", pretrained="hf-hub:org/nothing")
    hub.files[("org/pickled", "pytorch_model.bin")] = b"pickle"
    with pytest.raises(FileNotFoundError, match="'org/pickled' has no 'model.safetensors' .*only safetensors"):
        create_model("mfnet", encoder="test_resnet", pretrained="hf-hub:org/pickled")


def test_local_files_overlay_pickles_and_truncation(tmp_path):
    source = tiny()
    source.save_pretrained(tmp_path / "saved")
    weights = tmp_path / "saved" / "model.safetensors"
    for pretrained in (str(tmp_path / "saved"), str(weights)):
        model = create_model("mfnet", encoder="test_resnet", num_classes=3, pretrained=pretrained)
        assert torch.equal(model.context.Y, source.context.Y)
    model = create_model("mfnet", encoder="test_resnet", num_classes=3, pretrained=True,
                         pretrained_cfg_overlay=dict(file=str(weights)))
    assert torch.equal(model.context.Y, source.context.Y)
    pickled = tmp_path / "weights.pth"
    torch.save(source.state_dict(), pickled)
    with pytest.raises(ValueError, match="refusing to load 'weights.pth': pickled weights"):
        create_model("mfnet", encoder="test_resnet", num_classes=3, pretrained=str(pickled))
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(ValueError, match="truncated.safetensors' is not a readable safetensors file"):
        create_model("mfnet", encoder="test_resnet", num_classes=3, pretrained=str(truncated))


def test_class_count_mismatch_missing_keys_and_shapes(tmp_path):
    tiny().save_pretrained(tmp_path / "saved")
    with pytest.warns(UserWarning, match="3-class classifier, the model 5 classes: the classifier is newly"):
        model = create_model("mfnet", encoder="test_resnet", num_classes=5, pretrained=str(tmp_path / "saved"))
    assert model.num_classes == 5
    with pytest.raises(ValueError, match=r"3-class classifier, the model 5 classes \(strict=True\)"):
        create_model("mfnet", encoder="test_resnet", num_classes=5, pretrained=str(tmp_path / "saved"), strict=True)
    # the saved config.json describes another model: an error naming both sides, before any weight is read
    with pytest.raises(ValueError, match=r"\(taken as folder\) holds another model than the one asked for: "
                                         r"mode='static' \(saved\) vs 'nmf' \(asked for\).*check_config=False"):
        create_model("mfnet", encoder="test_resnet", num_classes=3, mode="nmf", pretrained=str(tmp_path / "saved"))
    with pytest.raises(ValueError, match=r"architecture 'mfnet' \(saved\) vs 'mfnet_lite' \(asked for\)"):
        create_model("mfnet_lite", encoder="test_resnet", num_classes=3, pretrained=str(tmp_path / "saved"))
    # asked to load anyway: the weights are still checked key by key
    with pytest.raises(ValueError, match=r"does not match the model: missing keys \['context.bases'\], "
                                         r"unexpected keys \['context.Y', 'context.Z'\]"):
        create_model("mfnet", encoder="test_resnet", num_classes=3, mode="nmf", pretrained=str(tmp_path / "saved"),
                     check_config=False)
    with pytest.raises(ValueError, match=r"wrong shape: \['context.Y: \(96, 64\) vs model \(96, 8\)'"):
        create_model("mfnet", encoder="test_resnet", num_classes=3, rank=8, pretrained=str(tmp_path / "saved"),
                     check_config=False)


@pytest.mark.parametrize("name,kwargs", TINY, ids=TINY_IDS)
def test_save_from_pretrained_round_trip_every_family(tmp_path, name, kwargs):
    model = tiny(name, **kwargs)
    model.pretrained_cfg = model.pretrained_cfg.replace(label_names=("a", "b", "c"))
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["architecture"] == name and config["id2label"] == {"0": "a", "1": "b", "2": "c"}
    assert config["model_args"]["encoder"] == "test_resnet" and config["library_name"] == "mfnet_zoo"
    assert set(read_safetensors(tmp_path / "model.safetensors")) == set(model.state_dict())
    restored = from_pretrained(tmp_path).eval()
    x = torch.randn(2, 3, 48, 64)
    torch.testing.assert_close(restored(x).logits, model(x).logits, rtol=0, atol=0)
    assert restored.pretrained_cfg.label_names == ("a", "b", "c")
    with pytest.warns(UserWarning, match="classifier is newly initialised"):
        assert from_pretrained(tmp_path, num_classes=2).num_classes == 2


def test_push_to_hub_uploads_weights_config_and_card(monkeypatch, hub):
    # huggingface_hub's real create_repo + upload_folder (preupload, commit) against the local stand-in
    monkeypatch.setenv("HF_TOKEN", "hf_test_token")
    model = tiny()
    model.push_to_hub("me/my-mfnet", private=True, commit_message="first weights",
                      model_card_kwargs={"metrics": {"mIoU": 0.7021, "fwIoU": 0.9025}, "dataset": "synthetic-shapes"})
    assert hub.repos["me/my-mfnet"] == {"private": True}
    assert [c["summary"] for c in hub.commits] == ["first weights"]
    assert hub.commits[0]["files"] == ["README.md", "config.json", "model.safetensors"]
    assert ("POST", "/api/models/me/my-mfnet/preupload/main") in hub.requests
    card = hub.files[("me/my-mfnet", "README.md")].decode()
    assert card.startswith("---\n") and "library_name: mfnet_zoo" in card and "- synthetic-shapes" in card
    assert "| mIoU | 0.7021 |" in card and 'from_pretrained("me/my-mfnet")' in card
    results = {r.metric_type: r.metric_value for r in huggingface_hub.ModelCard(card).data.eval_results}
    assert results == {"mean_iou": 0.7021, "frequency_weighted_iou": 0.9025}  # model-index, as the Hub reads it
    x = torch.randn(1, 3, 40, 40)
    torch.testing.assert_close(from_pretrained("me/my-mfnet").eval()(x).logits, model(x).logits, rtol=0, atol=0)


def test_hand_assembled_models_cannot_be_saved_without_a_name(tmp_path):
    model = mfnet_zoo.SegmentationModel(tiny().encoder, torch.nn.Identity(), tiny().decoder)
    with pytest.raises(ValueError, match="need a model built by create_model"):
        model.save_pretrained(tmp_path)


def test_resolve_data_config_and_pretrained_cfg():
    model = tiny()  # test_resnet: timm's default tag r160_in1k normalises with 0.5, not ImageNet's values
    assert resolve_data_config(model) == {"mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5),
                                          "interpolation": "bilinear", "input_size": (3, 513, 513)}
    # timm's own data-config functions read our pretrained_cfg as they read a timm model's
    assert timm.data.resolve_model_data_config(model) == {
        "input_size": (3, 513, 513), "interpolation": "bilinear", "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5),
        "crop_pct": 0.875, "crop_mode": "center"}
    assert model.pretrained_cfg["mean"] == model.pretrained_cfg.get("mean") == (0.5, 0.5, 0.5)
    assert model.pretrained_cfg.get("crop_pct") is None and "mean" in model.pretrained_cfg
    assert dict(model.pretrained_cfg)["interpolation"] == "bilinear"
    with pytest.raises(KeyError):
        model.pretrained_cfg["test_input_size"]
    assert resolve_data_config(PretrainedCfg()) == {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225),
                                                    "interpolation": "bilinear", "input_size": (3, 513, 513)}
    cfg = mfnet_zoo.get_pretrained_cfg("mfnet_r50")
    assert cfg.tag == "tv_in1k" and cfg.encoder_weights == "resnet50.tv_in1k" and cfg.license == "bsd-3-clause"
    with pytest.raises(TypeError, match=r"unknown pretrained config field\(s\) \['fille'\]"):
        cfg.replace(fille="x")


def test_normalisation_follows_the_encoders_timm_config():
    # resnet18d's tags: ra2_in1k (the default) ImageNet's mean/std, ra4_e3600_r224_in1k 0.5 (as BiT's goog_in21k)
    assert timm.models.get_pretrained_cfg("resnet18d.ra4_e3600_r224_in1k").mean == (0.5, 0.5, 0.5)
    default = create_model("emanet", encoder="resnet18d", output_stride=32, rank=8)
    tagged = create_model("emanet", encoder="resnet18d.ra4_e3600_r224_in1k", output_stride=32, rank=8)
    assert resolve_data_config(default)["mean"] == (0.485, 0.456, 0.406)
    assert resolve_data_config(tagged)["mean"] == resolve_data_config(tagged)["std"] == (0.5, 0.5, 0.5)
    assert resolve_data_config(default)["interpolation"] == "bicubic"
    assert tagged.model_args["encoder"] == "resnet18d"  # config.json stores the architecture; the data, its values
    # BiT's ImageNet-21k tag reads the same (its config only: the model has 25M parameters)
    assert resolve_data_config(timm.models.get_pretrained_cfg("resnetv2_50x1_bit.goog_in21k").to_dict())["mean"] \
        == (0.5, 0.5, 0.5)
    # a user-given mean/std wins over the encoder's
    given = tiny(pretrained_cfg_overlay=dict(mean=(0.1, 0.2, 0.3)))
    assert resolve_data_config(given)["mean"] == (0.1, 0.2, 0.3) and resolve_data_config(given)["std"] == (0.5,) * 3


def test_data_config_round_trips_through_save_and_from_pretrained(tmp_path):
    model = tiny(pretrained_cfg_overlay=dict(mean=(0.1, 0.2, 0.3), std=(0.4, 0.5, 0.6), interpolation="bicubic"))
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert (config["mean"], config["std"], config["interpolation"]) == ([0.1, 0.2, 0.3], [0.4, 0.5, 0.6], "bicubic")
    assert resolve_data_config(from_pretrained(tmp_path)) == resolve_data_config(model)
    # a config.json from before the data settings followed the encoder (ImageNet's, no interpolation): kept as saved
    del config["interpolation"]
    config.update(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])
    (tmp_path / "config.json").write_text(json.dumps(config))
    old = resolve_data_config(from_pretrained(tmp_path))
    assert old["mean"] == (0.485, 0.456, 0.406) and old["interpolation"] == "bilinear"  # test_resnet's own


def test_torch_hub_load_from_a_checkout():
    model = torch.hub.load(str(REPO_ROOT), "mfnet", source="local", encoder="test_resnet", num_classes=2)
    assert isinstance(model, mfnet_zoo.SegmentationModel) and model.num_classes == 2
    paper = torch.hub.load(str(REPO_ROOT), "emanet_r50", source="local")
    assert sum(p.numel() for p in paper.parameters()) == 34_657_621


@pytest.mark.parametrize("what", ["ours", "timm encoder"])
def test_unreachable_hub_fails_at_once_with_one_clear_error(what, tmp_path, monkeypatch):
    """No network (here: an endpoint that refuses connections) and nothing cached: one error naming the
    weights, the repo, the cause and the ways out, raised after one connection attempt, not minutes of retries.

    Counted, not timed (a loaded machine cannot fail it): the connection attempts (exactly one, the probe) and
    the sleeps of huggingface_hub's retries (none). The wall-clock bound is only a guard against a hang, with a
    wide margin: a refused connection takes milliseconds, and the probe gives up after PROBE_TIMEOUT_S (3 s)."""
    import socket
    import time

    from mfnet_zoo import hub as mfnet_hub

    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # the discard port: nothing listens
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", "http://127.0.0.1:9/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    mfnet_hub._can_connect.cache_clear()  # the probe's answer is remembered per process: make this test probe
    attempts, sleeps, connect, sleep = [], [], socket.socket.connect, time.sleep
    monkeypatch.setattr(socket.socket, "connect", lambda self, address: (attempts.append(address),
                                                                         connect(self, address))[1])
    monkeypatch.setattr(time, "sleep", lambda seconds: (sleeps.append(seconds), sleep(seconds))[1])
    start = time.perf_counter()
    with pytest.raises(FileNotFoundError) as error:
        if what == "ours":
            mfnet_hub.download_file("org/model", "model.safetensors")
        else:
            create_model("mfnet", encoder="test_resnet", encoder_weights=True)
    assert attempts == [("127.0.0.1", 9)] and sleeps == []  # one probe, then the cache only: no retry
    assert time.perf_counter() - start < 60
    mfnet_hub._can_connect.cache_clear()  # no remembered answer for the next test's endpoint
    message = str(error.value)
    assert "the Hub at http://127.0.0.1:9 cannot be reached" in message and "not in the local" in message
    assert "HF_HUB_OFFLINE=1" in message and "pretrained=False" in message
    if what == "ours":  # a saved model: a local copy, not a training flag
        assert "give a local copy as the model source" in message and "--encoder-weights" not in message
    else:
        assert "--encoder-weights none" in message
    assert ("org/model" if what == "ours" else "timm/test_resnet.r160_in1k") in message
    assert error.value.__cause__ is not None  # the original exception, chained
    assert constants.HF_HUB_OFFLINE is False  # the guard put offline mode back
