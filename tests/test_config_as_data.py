"""A saved model is data, not instructions: loading a folder, a checkpoint or a Hub repo reads its own files
and nothing else, whatever its config says. Crafted configs are tried as an attacker would, against a local
HTTP server that counts requests (it also stands in for the Hub endpoint and timm's weight URLs)."""
import json
import re
import shutil
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import torch
from huggingface_hub import constants

from mfnet_zoo import create_model, from_pretrained, list_models, load_model
from mfnet_zoo import hub as mfnet_hub
from mfnet_zoo._builder import CONFIG_ARGS, model_from_checkpoint
from mfnet_zoo._registry import get_family_options
from mfnet_zoo.checkpoint import read_checkpoint

from .mock_hub import MockHub


class CountingServer:
    """http.server on 127.0.0.1 in a thread: every request is counted (and answered 404)."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def _answer(self) -> None:
                server.requests.append((self.command, self.path))
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_HEAD = do_POST = _answer

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def point_hub_at(url: str, tmp_path, monkeypatch) -> None:
    """huggingface_hub's endpoint at ``url``, online, with empty Hugging Face and torch caches."""
    monkeypatch.setattr(constants, "ENDPOINT", url)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", url + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))


@pytest.fixture
def attacker(tmp_path, monkeypatch):
    """The counting server, also as the Hub endpoint, with empty Hugging Face and torch caches."""
    server = CountingServer()
    point_hub_at(server.url, tmp_path, monkeypatch)
    yield server
    server.close()


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A complete save_pretrained folder of a tiny model, and the model."""
    model = create_model("mfnet", encoder="test_resnet", num_classes=3).eval()
    folder = tmp_path_factory.mktemp("saved") / "model"
    model.save_pretrained(folder)
    return folder, model


def crafted_args(url: str) -> dict[str, tuple[dict, str]]:
    """Changes to a saved config's model_args -> the key the refusal must name."""
    overlay = {"source": "", "hf_hub_id": None, "url": f"{url}/weights.pth"}
    return {
        "encoder_weights": ({"encoder_weights": True}, "model_args.encoder_weights"),
        "encoder_kwargs_overlay": ({"encoder_weights": True, "encoder_kwargs": {"pretrained_cfg_overlay": overlay}},
                                   "model_args.encoder_weights"),
        "encoder_kwargs_overlay_alone": ({"encoder_kwargs": {"pretrained_cfg_overlay": overlay}},
                                         "model_args.encoder_kwargs.pretrained_cfg_overlay makes timm load weights"),
        "encoder_kwargs_pretrained": ({"encoder_kwargs": {"pretrained": True}}, "model_args.encoder_kwargs.pretrained"),
        "pretrained_cfg_overlay": ({"pretrained_cfg_overlay": {"url": f"{url}/weights.pth"}},
                                   "model_args.pretrained_cfg_overlay"),
        "pretrained_tag": ({"pretrained_tag": "tv_in1k"}, "model_args.pretrained_tag"),
        "hf_hub_encoder": ({"encoder": "hf-hub:evil/encoder"}, "model_args.encoder='hf-hub:evil/encoder'"),
        "nested_file": ({"encoder_kwargs": {"drop_path_rate": 0.0, "x": {"file": "/etc/passwd"}}},
                        r"model_args.encoder_kwargs.x.file"),
        "unknown": ({"evil": 1}, r"model_args.evil is not a constructor argument of 'mfnet'"),
    }


CASES = sorted(crafted_args(""))


def write_crafted(folder, target, change: dict) -> None:
    shutil.copytree(folder, target)
    config = json.loads((target / "config.json").read_text())
    config["model_args"] = {**config["model_args"], **change}
    (target / "config.json").write_text(json.dumps(config))


@pytest.mark.parametrize("case", CASES)
def test_a_crafted_folder_is_refused_without_a_request(case, saved, attacker, tmp_path):
    change, key = crafted_args(attacker.url)[case]
    target = tmp_path / "crafted"
    write_crafted(saved[0], target, change)
    for load in (load_model, from_pretrained, lambda p: create_model(f"local-dir:{p}")):
        with pytest.raises(ValueError, match=rf"^{re.escape(str(target / 'config.json'))}: {key}.*refusing"):
            load(target)
    with pytest.raises(ValueError, match=rf"{key}.*refusing"):  # compared, not built from: still refused
        create_model("mfnet", encoder="test_resnet", num_classes=3, pretrained=str(target))
    assert attacker.requests == []


def test_a_crafted_checkpoint_is_refused_without_a_request(saved, attacker, tmp_path):
    model = saved[1]
    args = {**model.model_args, "encoder_weights": True,
            "encoder_kwargs": {"pretrained_cfg_overlay": {"source": "", "url": f"{attacker.url}/weights.pth"}}}
    path = tmp_path / "last.pt"
    torch.save({"model_name": "mfnet", "model_args": args, "state_dict": model.state_dict()}, path)
    refusal = rf"^{re.escape(str(path))}: model_args.encoder_weights chooses weights to fetch"
    with pytest.raises(ValueError, match=refusal):
        load_model(path)
    with pytest.raises(ValueError, match=refusal):  # what resuming and publishing a run call
        model_from_checkpoint(read_checkpoint(path), source=str(path))
    args.pop("encoder_weights")
    torch.save({"model_name": "mfnet", "model_args": args, "state_dict": model.state_dict()}, path)
    with pytest.raises(ValueError, match=rf"^{re.escape(str(path))}: model_args.encoder_kwargs.pretrained_cfg_overlay"):
        load_model(tmp_path)  # as a run folder
    assert attacker.requests == []


def files(server: MockHub) -> set[str]:
    """The repo files the mock Hub was asked for (huggingface_hub's own /api calls aside)."""
    return {path for _, path in server.requests if "/resolve/" in path}


def test_a_crafted_hub_repo_fetches_its_config_only(saved, tmp_path, monkeypatch):
    attacker = CountingServer()
    try:
        with MockHub() as server:
            point_hub_at(server.url, tmp_path, monkeypatch)
            server.add_folder("org/good", saved[0])
            write_crafted(saved[0], tmp_path / "crafted", crafted_args(attacker.url)["encoder_kwargs_overlay"][0])
            server.add_folder("org/crafted", tmp_path / "crafted")
            with pytest.raises(ValueError, match="^config.json of Hub repo 'org/crafted': model_args.encoder_weights"):
                load_model("hf-hub:org/crafted")
            assert files(server) == {"/org/crafted/resolve/main/config.json"}
            server.requests.clear()
            model = load_model("hf-hub:org/good").eval()  # the repo's own two files, nothing else
            assert files(server) == {"/org/good/resolve/main/config.json", "/org/good/resolve/main/model.safetensors"}
            x = torch.randn(1, 3, 64, 64)
            torch.testing.assert_close(model(x).logits, saved[1](x).logits)
        assert attacker.requests == []
    finally:
        attacker.close()


@pytest.mark.parametrize("hf_offline", [False, True])
def test_a_complete_folder_loads_with_the_network_cut(hf_offline, tmp_path, monkeypatch):
    model = create_model("mfnet", encoder="test_resnet", num_classes=3, encoder_kwargs={"drop_path_rate": 0.0}).eval()
    model.save_pretrained(tmp_path / "model")
    def blocked(*args, **kwargs):
        raise OSError("network access blocked in this test")

    monkeypatch.setattr(socket.socket, "connect", blocked)
    monkeypatch.setattr(socket, "getaddrinfo", blocked)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", hf_offline)
    mfnet_hub._can_connect.cache_clear()  # the Hub probe runs again, into the cut
    try:
        loaded = load_model(tmp_path / "model").eval()
    finally:
        mfnet_hub._can_connect.cache_clear()
    x = torch.randn(1, 3, 64, 64)
    torch.testing.assert_close(loaded(x).logits, model(x).logits)
    assert json.dumps(loaded.model_args) == json.dumps(model.model_args)  # encoder_kwargs too: legitimate data


def test_every_built_in_family_declares_its_allow_list():
    for name in list_models():
        options = get_family_options(name)
        assert options, name
        assert not set(options) & set(CONFIG_ARGS), name
