"""From a training run to a shared model (#24): model/ with its card, run.json and --config, mfnet-zoo push to a
local stand-in of the Hub (huggingface_hub's real upload code), and back by hf-hub:, by eval and by a tag."""
import json
import socket
from pathlib import Path

import pytest
import torch
from huggingface_hub import ModelCard, constants
from torch.utils.data import DataLoader

from mfnet_zoo import PretrainedCfg, SegmentationModel, create_model, load_model, register_pretrained_cfgs
from mfnet_zoo import _registry
from mfnet_zoo.cli import main, parse_args
from mfnet_zoo.data import SYNTHETIC_CLASSES, SyntheticShapes, train_transforms, write_synthetic_dataset
from mfnet_zoo.hub import read_safetensors
from mfnet_zoo.run_record import NOT_RERUN, dataclass_from_dict, read_run_file, rerun_config
from mfnet_zoo.train import PRESETS, TrainConfig, Trainer

from .mock_hub import MockHub

TRAIN = ["train", "mfnet", "--encoder", "test_resnet", "--encoder-weights", "none", "--crop-size", "32", "--epochs",
         "2", "--batch-size", "4", "--no-progress"]
EVAL_KEYS = {"mIoU": "mean_iou", "fwIoU": "frequency_weighted_iou", "pixel_acc": "accuracy",
             "mean_acc": "mean_accuracy"}


def _point_at(patch, server, cache: Path) -> None:
    patch.setattr(constants, "ENDPOINT", server.url)
    patch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", server.url + "/{repo_id}/resolve/{revision}/{filename}")
    patch.setattr(constants, "HF_HUB_CACHE", str(cache))
    patch.setattr(constants, "HF_HUB_OFFLINE", False)
    patch.setenv("HF_TOKEN", "hf_test_token")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One tiny run through the CLI on a folder dataset written here; shared by the tests of this module."""
    root = tmp_path_factory.mktemp("publish")
    data = write_synthetic_dataset(root / "data", {"train": 8, "val": 4}, size=32)
    out = root / "run"
    assert main(TRAIN + ["--data", "folder", "--data-root", str(data), "--out", str(out)]) == 0
    return {"root": root, "data": data, "out": out}


@pytest.fixture
def hub(tmp_path, monkeypatch):
    with MockHub() as server:
        _point_at(monkeypatch, server, tmp_path / "hf-cache")
        yield server


def _eval(source, data, capsys) -> dict:
    capsys.readouterr()
    assert main(["eval", str(source), "--data", "folder", "--data-root", str(data), "--batch-size", "4", "--json",
                 "--no-progress"]) == 0
    return json.loads(capsys.readouterr().out)


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_train_card_push_and_load_back_by_hub_eval_and_tag(run, hub, capsys):
    out, data = run["out"], run["data"]
    model_dir = out / "model"
    assert sorted(p.name for p in model_dir.iterdir()) == ["README.md", "config.json", "model.safetensors", "run.json"]
    config = json.loads((model_dir / "config.json").read_text())
    assert config["id2label"] == {str(i): name for i, name in enumerate(SYNTHETIC_CLASSES)}  # classes.txt
    # the card: huggingface_hub's own parser finds model-index results equal to the evaluation of the saved weights
    local = _eval(model_dir, data, capsys)
    card = ModelCard.load(model_dir / "README.md")
    results = {r.metric_type: r for r in card.data.eval_results}
    assert {k: results[v].metric_value for k, v in EVAL_KEYS.items()} == {k: local[k] for k in EVAL_KEYS}
    assert {r.dataset_split for r in results.values()} == {"val"} and results["mean_iou"].dataset_type == "folder"
    for name, iou in zip(SYNTHETIC_CLASSES, local["per_class_iou"]):
        assert f"| {name} | {'-' if iou is None else f'{iou:.4f}'} |" in card.text
    history = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    best = max(history, key=lambda h: h["val"]["mIoU"])
    assert best["val"] == local  # the kept weights are the best epoch's, evaluated exactly as eval does
    assert f"epoch {best['epoch']} of 2" in card.text and "- hardware: CPU" in card.text
    assert '"preset": "default"' in card.text and '"param_rules": [' in card.text  # the full run.json, collapsed

    before = _snapshot(out)
    capsys.readouterr()
    assert main(["push", str(out), "me/tiny-run", "--private", "--commit-message", "first weights"]) == 0
    printed = capsys.readouterr().out
    assert f"{hub.url}/me/tiny-run" in printed and "/me/tiny-run/commit/" in printed
    assert _snapshot(out) == before  # nothing local changed
    assert hub.repos["me/tiny-run"] == {"private": True}
    assert hub.commits[-1]["summary"] == "first weights"
    assert hub.commits[-1]["files"] == ["README.md", "config.json", "model.safetensors", "run.json"]
    pushed = hub.files[("me/tiny-run", "README.md")].decode()
    assert 'from_pretrained("me/tiny-run")' in pushed and ModelCard(pushed).data.model_name == "me/tiny-run"
    assert hub.files[("me/tiny-run", "model.safetensors")] == (model_dir / "model.safetensors").read_bytes()

    x = torch.randn(2, 3, 32, 32)
    expected = load_model(model_dir).eval()(x).logits
    from_hub = create_model("mfnet", encoder="test_resnet", num_classes=6, pretrained="hf-hub:me/tiny-run").eval()
    torch.testing.assert_close(from_hub(x).logits, expected, rtol=0, atol=0)
    assert _eval("hf-hub:me/tiny-run", data, capsys) == local

    # one register_pretrained_cfgs entry makes it a tag: listed, and loaded by name
    register_pretrained_cfgs({"mfnet.tiny_run": PretrainedCfg(hf_hub_id="me/tiny-run", num_classes=6)})
    try:
        assert main(["list", "mfnet*", "--pretrained"]) == 0
        assert "mfnet.tiny_run" in capsys.readouterr().out.split()
        tagged = create_model("mfnet.tiny_run", pretrained=True, encoder="test_resnet").eval()
        assert tagged.num_classes == 6  # the tag's class count when its weights are loaded
        torch.testing.assert_close(tagged(x).logits, expected, rtol=0, atol=0)
    finally:
        _registry._model_pretrained_cfgs.pop("mfnet")


def test_rerun_from_run_json_gives_the_same_weights_and_pushes_at_the_end(run, hub, capsys):
    out = run["out"]
    again = run["root"] / "again"
    assert main(["train", "--config", str(out / "run.json"), "--out", str(again), "--no-progress",
                 "--push-to-hub", "me/rerun"]) == 0
    first, second = read_safetensors(out / "model" / "model.safetensors"), \
        read_safetensors(again / "model" / "model.safetensors")
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)
    a, b = read_run_file(out), read_run_file(again)
    assert a["train_config"] == b["train_config"] and a["model"] == b["model"] and a["data"] == b["data"]
    assert {k: v for k, v in a["args"].items() if k not in NOT_RERUN} == \
        {k: v for k, v in b["args"].items() if k not in NOT_RERUN}
    assert b["argv"][:2] == ["train", "--config"] and a["versions"]["torch"] == torch.__version__
    assert f"{hub.url}/me/rerun" in capsys.readouterr().out  # --push-to-hub pushed the model folder
    assert hub.files[("me/rerun", "model.safetensors")] == (again / "model" / "model.safetensors").read_bytes()


def test_config_file_defaults_and_typed_overrides(run):
    path = str(run["out"] / "run.json")
    args = parse_args(["train", "--config", path, "--epochs", "5", "--lr", "0.5"])
    assert (args.model, args.encoder, args.data, args.epochs, args.lr) == ("mfnet", "test_resnet", "folder", 5, 0.5)
    assert args.data_root == str(run["data"].resolve()) and args.batch_size == 4
    assert args.out == "runs/train"  # where to write is never taken over
    # the recorded config, every field as it was (tuples, ParamRules), whatever the preset says today
    assert rerun_config(path, "default", PRESETS["default"]) == \
        PRESETS["default"].replace(epochs=2, batch_size=4, crop_size=32)
    assert rerun_config(path, "paper", PRESETS["paper"]) == PRESETS["paper"]  # another preset typed: that preset
    with pytest.raises(ValueError, match=r"TrainConfig has no field\(s\) \['epoch'\]"):
        dataclass_from_dict(TrainConfig, {"epoch": 3})
    assert main(["train", "--config", str(run["data"] / "classes.txt")]) == 2


def test_push_errors_are_one_line_and_change_nothing(run, hub, tmp_path, monkeypatch, capsys):
    out = run["out"]
    before = _snapshot(out)
    empty = tmp_path / "empty"
    empty.mkdir()
    with socket.socket() as s:  # a port nothing listens on: no network
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"

    def error(argv):
        capsys.readouterr()
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
        return err

    assert "invalid Hub repo id 'me/bad name'" in error(["push", str(out), "me/bad name"])
    assert "give 'namespace/name'" in error(["push", str(out), "just-a-name"])
    assert "holds no weights; expected a run folder" in error(["push", str(empty), "me/x"])
    hub.tokens = {"hf_good"}
    assert "refused the token (401)" in error(["push", str(out), "me/x", "--token", "hf_bad"])
    monkeypatch.setattr(constants, "ENDPOINT", closed)
    assert "cannot reach the Hub at" in error(["push", str(out), "me/x", "--token", "hf_good"])
    hub.requests.clear()
    monkeypatch.delenv("HF_TOKEN")
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    assert "no Hugging Face token: set HF_TOKEN" in error(["push", str(out), "me/x"])
    # --push-to-hub fails before training when it could not push
    assert "no Hugging Face token" in error(TRAIN + ["--out", str(tmp_path / "never"), "--push-to-hub", "me/x"])
    assert not (tmp_path / "never").exists() and hub.requests == []  # no request was sent without a token
    assert _snapshot(out) == before and not hub.commits


def test_push_a_checkpoint_to_a_branch(run, hub, capsys):
    checkpoint = torch.load(run["out"] / "last.pt", weights_only=True)
    assert main(["push", str(run["out"] / "last.pt"), "me/from-checkpoint", "--revision", "v1"]) == 0
    assert "/me/from-checkpoint/tree/v1" in capsys.readouterr().out
    assert ("me/from-checkpoint", "v1") in hub.branches and hub.commits[-1]["revision"] == "v1"
    files = {name: data for (repo, rev, name), data in hub.revision_files.items() if repo == "me/from-checkpoint"}
    assert sorted(files) == ["README.md", "config.json", "model.safetensors", "run.json"]
    assert json.loads(files["config.json"])["id2label"]["1"] == "circle"  # class names kept in the checkpoint
    card = ModelCard(files["README.md"].decode())
    assert card.data.model_name == "me/from-checkpoint"
    mious = {r.metric_type: r.metric_value for r in card.data.eval_results}
    assert mious["mean_iou"] == checkpoint["history"][-1]["val"]["mIoU"]
    model = load_model("hf-hub:me/from-checkpoint@v1")
    assert all(torch.equal(v, checkpoint["state_dict"][k]) for k, v in model.state_dict().items())


def test_a_run_without_validation_keeps_the_last_epoch(tmp_path):
    cfg = TrainConfig(epochs=1, batch_size=4, optimizer="adamw", lr=1e-3, crop_size=32)
    loader = DataLoader(SyntheticShapes(8, 32, transforms=train_transforms(32, None, True)), batch_size=4)
    model = create_model("mfnet", encoder="test_resnet", num_classes=6, decoder_channels=32, base_size=(2, 2))
    Trainer(model, loader, None, cfg, tmp_path, progress=False, class_names=SYNTHETIC_CLASSES).fit()
    card = ModelCard.load(tmp_path / "model" / "README.md")
    assert card.data.eval_results is None and "## Results" not in card.text
    assert "epoch 1 of 1 (the last; no validation set)" in card.text
    saved = read_safetensors(tmp_path / "model" / "model.safetensors")
    assert all(torch.equal(saved[k], v) for k, v in model.state_dict().items())
    record = read_run_file(tmp_path)
    assert dataclass_from_dict(TrainConfig, record["train_config"]) == cfg  # tuples and ParamRules come back
    assert record["model"]["model_args"]["decoder_channels"] == 32 and not list(tmp_path.glob(".model.*"))


def test_a_hand_assembled_model_trains_without_a_model_folder(tmp_path):
    parts = create_model("mfnet", encoder="test_resnet", num_classes=6, decoder_channels=32, base_size=(2, 2))
    model = SegmentationModel(parts.encoder, parts.context, parts.decoder)  # no registry name: no config.json
    loader = DataLoader(SyntheticShapes(4, 32, transforms=train_transforms(32, None, True)), batch_size=4)
    with pytest.warns(UserWarning, match="model' not written: save_pretrained needs a model built by create_model"):
        Trainer(model, loader, None, TrainConfig(epochs=1, batch_size=4, crop_size=32), tmp_path, progress=False).fit()
    assert (tmp_path / "last.pt").is_file() and (tmp_path / "run.json").is_file()
    assert not (tmp_path / "model").exists() and not list(tmp_path.glob(".model.*"))


def test_cpu_name_names_the_processor_model_not_only_the_architecture(monkeypatch):
    # platform.processor() is "" on Linux and platform.machine() "x86_64": neither tells an AVX2-only EPYC (bf16
    # emulated, ~6x slower) from an AMX Xeon, and run records and benchmark pages compare across such machines
    from mfnet_zoo import run_record

    capability = torch.backends.cpu.get_cpu_capability()
    cpuinfo = Path("/proc/cpuinfo")
    models = [line.split(":", 1)[1].strip() for line in (cpuinfo.read_text().splitlines() if cpuinfo.is_file() else ())
              if line.startswith("model name")]
    if models:
        assert run_record.cpu_name() == f"{models[0]}, {capability}"
    assert f"CPU ({run_record.cpu_name()}, " in run_record.hardware("cpu")

    def unreadable(self, *args, **kwargs):
        raise OSError("no /proc here")

    monkeypatch.setattr(Path, "read_text", unreadable)
    monkeypatch.setattr(run_record.platform, "processor", lambda: "")
    assert run_record.cpu_name() == f"{run_record.platform.machine()}, {capability}"
