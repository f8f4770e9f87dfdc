"""Every script in examples/ runs, on tiny settings, and does what its docstring says."""
import importlib.util
import re
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
    tested = {"embed_in_training_loop", "custom_encoder", "context_in_smp", "publish_weights", "export_onnx",
              "own_data"}
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


def test_own_data_then_the_docs_onnxruntime_snippet_on_its_export(tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    with pytest.warns(UserWarning, match=r"no mask holds index\(es\) 2"):  # labels 0, 1, 3: the count is 4
        result = load("own_data").main(["--out", str(tmp_path)])
    assert result["classes"] == ["0", "1", "2", "3"] and len(result["metrics"]["per_class_iou"]) == 4
    assert len(result["predictions"]) == 8 and result["onnx_error"] < 1e-4  # 4 val images: mask + overlay each
    # docs/inference.md's onnxruntime session, as written, on that export (traced at 1 x 3 x 32 x 32)
    page = (EXAMPLES.parent / "docs" / "inference.md").read_text()
    (snippet,) = [block for block in re.findall(r"```python\n(.*?)```", page, re.S) if "InferenceSession" in block]
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(snippet, namespace)
    assert namespace["names"] == [("images", ["batch", 3, "height", "width"]),
                                  ("logits", ["batch", 4, "height", "width"])]
    assert namespace["logits"].shape == (2, 4, 200, 300) and namespace["classes"].shape == (2, 200, 300)
