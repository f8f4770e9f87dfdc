"""Every script in examples/ runs, on tiny settings, and does what its docstring says."""
import importlib.util
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def load(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.__doc__ and len(module.__doc__.splitlines()) > 2  # says what it shows
    return module


def test_every_example_is_tested():
    tested = {"embed_in_training_loop", "custom_encoder", "context_in_smp", "publish_weights", "export_onnx"}
    assert {p.stem for p in EXAMPLES.glob("*.py")} == tested


def test_embed_in_training_loop():
    miou = load("embed_in_training_loop").main(["--epochs", "2", "--train-size", "32", "--size", "32"])
    assert 0 <= miou <= 1


@pytest.mark.parametrize("encoder,mode", [("convnext_atto", "nmf"), ("efficientnet_b0", "static")])
def test_custom_encoder(encoder, mode):
    shape = load("custom_encoder").main(["--encoder", encoder, "--size", "64", "--mode", mode])
    assert tuple(shape) == (2, 5, 64, 64)


def test_context_in_smp_learns():
    losses = load("context_in_smp").main(["--steps", "6", "--size", "64"])
    assert len(losses) == 6 and losses[-1] < losses[0]


def test_publish_weights_dry_run(tmp_path, capsys):
    out = load("publish_weights").main(["--out", str(tmp_path / "my-mfnet")])
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    assert "identical logits True" in capsys.readouterr().out


def test_export_onnx(tmp_path):
    pytest.importorskip("onnxruntime")
    assert load("export_onnx").main(["--out", str(tmp_path / "m.onnx")]) < 1e-4
