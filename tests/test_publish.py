"""From a training run to a shared model (#24): model/ with its card and run.json, written by the engine."""
from huggingface_hub import ModelCard
import torch
from torch.utils.data import DataLoader

from mfnet_zoo import create_model
from mfnet_zoo.data import SYNTHETIC_CLASSES, SyntheticShapes, train_transforms
from mfnet_zoo.hub import read_safetensors
from mfnet_zoo.publish import dataclass_from_dict, read_run_file
from mfnet_zoo.train import TrainConfig, Trainer


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
