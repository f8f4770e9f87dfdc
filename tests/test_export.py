"""Export at any batch and size (#20): the library's exporters and plain ``torch.onnx.export``, each
traced once per family from a batch-1 example, then run at batches 1-3 and at a size not traced."""
import warnings

import numpy as np
import pytest
import torch

from mfnet_zoo import create_model, export
from mfnet_zoo.export import LogitsOnly, export_onnx, export_program

from .conftest import TINY, TINY_IDS, assert_context_visible, visible_context

TRACED = (64, 64)
# batches 1-3 at the traced size, then one not traced (odd, not square)
SHAPES = [(1, 3, *TRACED), (2, 3, *TRACED), (3, 3, *TRACED), (2, 3, 97, 131)]
AXES = {0: "batch", 2: "height", 3: "width"}
# of the largest |logit| at each shape (the worst measured: 1.6e-6, mfnet_lite); absolute errors grow with the
# logits' scale, which the initialisation sets (He-initialised fast_deeplab: ~160 here, the others ~0.3)
ONNX_TOLERANCE = 1e-4


def _tiny(name: str, kwargs: dict, **overrides) -> torch.nn.Module:
    torch.manual_seed(0)  # module-scoped fixtures run outside the autouse seed
    return visible_context(create_model(name, num_classes=3, **{**kwargs, **overrides}).eval())


def _session(path):
    ort = pytest.importorskip("onnxruntime")
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _worst_onnx_error(session, model: torch.nn.Module) -> float:
    """The largest difference between the session's logits and the model's at every shape of SHAPES, relative to
    the largest |logit| there, after checking that a model without any one of its context branches differs by
    more than 100 x the tolerance there."""
    x = torch.randn(SHAPES[-1])
    with torch.no_grad():
        scale = model(x).logits.abs().max().item()
    assert_context_visible(model, x, ONNX_TOLERANCE * scale)
    worst = 0.0
    for shape in SHAPES:
        x = torch.randn(shape)
        out = session.run(["logits"], {"images": x.numpy()})[0]
        with torch.no_grad():
            expected = model(x).logits.numpy()
        assert out.shape == expected.shape == (shape[0], 3, *shape[2:])
        worst = max(worst, float(np.abs(out - expected).max() / np.abs(expected).max()))
    return worst


@pytest.fixture(scope="module", params=TINY, ids=TINY_IDS)
def model(request) -> torch.nn.Module:
    name, kwargs = request.param
    return _tiny(name, kwargs)


@pytest.fixture(scope="module")
def library_onnx(model, tmp_path_factory):
    pytest.importorskip("onnxscript")
    return _session(export_onnx(model, tmp_path_factory.mktemp("library") / "m.onnx", TRACED, batch_size=1))


@pytest.fixture(scope="module")
def plain_onnx(model, tmp_path_factory):
    # as users write it; in torch 2.14 that is the torch.export-based path (dynamo=True is the default),
    # turning dynamic_axes into Dim.DYNAMIC and tracing size-obliviously
    pytest.importorskip("onnxscript")
    path = tmp_path_factory.mktemp("plain") / "m.onnx"
    with warnings.catch_warnings():  # "'dynamic_axes' is not recommended when dynamo=True": users see it, we know
        warnings.filterwarnings("ignore", message=".*'dynamic_axes' is not recommended")
        torch.onnx.export(LogitsOnly(model).eval(), (torch.randn(1, 3, *TRACED),), str(path), input_names=["images"],
                          output_names=["logits"], dynamic_axes={"images": AXES, "logits": AXES})
    return _session(path)


@pytest.mark.slow
def test_library_onnx_from_batch_1_runs_at_any_batch_and_size(model, library_onnx):
    assert _worst_onnx_error(library_onnx, model) < ONNX_TOLERANCE
    # named dimensions, as deployment tools show them (not the exporter's s77, s53, s0)
    assert [(v.name, v.shape) for v in library_onnx.get_inputs() + library_onnx.get_outputs()] == [
        ("images", ["batch", 3, "height", "width"]), ("logits", ["batch", 3, "height", "width"])]


def test_onnx_dims_are_named_after_the_export_on_torch_2_6(tmp_path):
    # torch < 2.7 takes no names in dynamic_shapes: the exporter's symbols are renamed in the file, everywhere
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    def value(name, dims):
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, dims)

    graph = helper.make_graph([helper.make_node("Relu", ["images"], ["hidden"]),
                               helper.make_node("Relu", ["hidden"], ["logits"])], "g",
                              [value("images", ["s77", 3, "s53", "s0"])], [value("logits", ["s77", 3, "s53", "s0"])],
                              value_info=[value("hidden", ["s77", 3, "s53", "s0"])])
    onnx.save(helper.make_model(graph), tmp_path / "m.onnx")
    export._name_onnx_dims(tmp_path / "m.onnx")
    renamed = onnx.load(tmp_path / "m.onnx").graph
    for v in (renamed.input[0], renamed.output[0], renamed.value_info[0]):
        assert [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim] == ["batch", 3, "height", "width"]


@pytest.mark.slow
def test_plain_torch_onnx_export_from_batch_1_runs_at_any_batch_and_size(model, plain_onnx):
    assert _worst_onnx_error(plain_onnx, model) < ONNX_TOLERANCE


@pytest.mark.parametrize("name,kwargs", TINY, ids=TINY_IDS)
def test_torch_export_program_round_trip(tmp_path, name, kwargs):
    # resnet18: test_resnet's "same"-padded pooling puts math.ceil in the graph, which .pt2 cannot serialise
    # (folded models: tests/test_models.py)
    model = _tiny(name, kwargs, encoder="resnet18")
    export_program(model, tmp_path / "m.pt2", TRACED, batch_size=1)
    program = torch.export.load(tmp_path / "m.pt2")
    for shape in SHAPES:
        x = torch.randn(shape)
        expected = model(x).logits
        torch.testing.assert_close(program.module()(x), expected, rtol=1e-4, atol=1e-5)
    # the largest difference assert_close allowed on the last (untraced) shape
    assert_context_visible(model, x, 1e-5 + 1e-4 * expected.abs().max().item())


def test_export_refuses_old_opsets_and_bad_batches(tmp_path):
    model = _tiny("mfnet", {"encoder": "test_resnet"})
    with pytest.raises(ValueError, match="opset must be >= 17"):
        export_onnx(model, tmp_path / "old.onnx", opset=13)
    for bad in (0, 1.0):
        with pytest.raises(ValueError, match=f"batch_size must be a positive int, got {bad!r}"):
            export_program(model, batch_size=bad)
        with pytest.raises(ValueError, match="batch_size must be a positive int"):
            export_onnx(model, tmp_path / "bad.onnx", batch_size=bad)
    assert not (tmp_path / "old.onnx").exists() and not (tmp_path / "bad.onnx").exists()


def test_batch_1_traces_size_obliviously_or_falls_back_to_2(monkeypatch):
    batch, tracing = export._tracing(1)
    with tracing:
        assert batch == 1 and torch.fx.experimental._config.backed_size_oblivious
    assert not torch.fx.experimental._config.backed_size_oblivious
    assert export._tracing(3)[0] == 3
    monkeypatch.setattr(export.importlib, "import_module", lambda name: object())  # a torch without the setting
    assert export._tracing(1)[0] == 2
