"""Numerics on every device and dtype, for every registered family (the registry-built tiny set):
float32/float64, bf16 autocast and bf16 weights, fp16 autocast, channels_last, training steps, folding,
the meta device. The same matrix runs on CUDA (marker ``cuda``) where a GPU is present; docs/validation.md
lists what runs where."""
import copy
import warnings

import pytest
import torch

from mfnet_zoo import SegmentationLoss, create_model, from_pretrained

from .conftest import TINY, TINY_IDS, randomize_bn_stats

CUDA = torch.cuda.is_available()
DEVICES = ["cpu", pytest.param("cuda", marks=[pytest.mark.cuda, pytest.mark.skipif(not CUDA, reason="no GPU")])]
# (name, weights dtype, autocast dtype, channels_last, tolerance relative to the float32 logits' scale)
VARIANTS = {
    "float32": (torch.float32, None, False, 1e-5),
    "float64": (torch.float64, None, False, 1e-4),
    "bf16-autocast": (torch.float32, torch.bfloat16, False, 0.15),
    "bf16-weights": (torch.bfloat16, None, False, 0.15),
    "fp16-autocast": (torch.float32, torch.float16, False, 0.05),
    "channels-last": (torch.float32, None, True, 1e-5),
}


def _fp16_autocast_works(device: str) -> bool:
    try:
        with torch.autocast(device, dtype=torch.float16):
            torch.nn.functional.conv2d(torch.randn(1, 2, 4, 4, device=device), torch.randn(2, 2, 1, 1, device=device))
        return True
    except RuntimeError:
        return False


@pytest.fixture(scope="module", params=list(zip(TINY, TINY_IDS)), ids=TINY_IDS)
def family(request):
    """One eval-mode tiny model per family and context mode, with non-trivial BN statistics."""
    (name, kwargs), _ = request.param
    model = create_model(name, **{"num_classes": 3, **kwargs}).eval()
    randomize_bn_stats(model)
    return name, kwargs, model


def _run(model, x, autocast_dtype):
    with torch.no_grad(), torch.autocast(x.device.type, dtype=autocast_dtype or torch.float32,
                                         enabled=autocast_dtype is not None):
        return model(x).logits


def _variant(model, device, variant):
    dtype, autocast_dtype, channels_last, tolerance = VARIANTS[variant]
    if autocast_dtype is torch.float16 and not _fp16_autocast_works(device):
        pytest.skip(f"fp16 autocast is not supported on this {device}")
    model = copy.deepcopy(model).to(device=device, dtype=dtype)
    x = torch.randn(2, 3, 48, 64, generator=torch.Generator().manual_seed(0)).to(device=device, dtype=dtype)
    if channels_last:
        model, x = model.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    return model, x, autocast_dtype, tolerance


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("folded", [False, True], ids=["unfolded", "folded"])
def test_forward_every_dtype_and_layout(family, device, variant, folded):
    name, kwargs, reference_model = family
    model, x, autocast_dtype, tolerance = _variant(reference_model, device, variant)
    if folded:  # fold after moving, as users do: model.cuda().half() then model.reparameterize()
        model.reparameterize()
        assert all(p.device.type == device and p.dtype == VARIANTS[variant][0] for p in model.parameters())
    logits = _run(model, x, autocast_dtype)
    assert logits.shape == (2, 3, 48, 64) and logits.device.type == device
    expected_dtype = VARIANTS[variant][0] if autocast_dtype is None else logits.dtype
    assert logits.dtype == expected_dtype and torch.isfinite(logits).all()
    reference = _run(reference_model, x.to("cpu", torch.float32).contiguous(), None)
    scale = reference.abs().max().item()
    torch.testing.assert_close(logits.float().cpu(), reference, rtol=0, atol=tolerance * scale)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("autocast_dtype", [None, torch.bfloat16], ids=["float32", "bf16-autocast"])
def test_training_step(family, device, autocast_dtype):
    name, kwargs, reference_model = family
    model = copy.deepcopy(reference_model).to(device).train()
    x = torch.randn(2, 3, 48, 64, device=device)
    target = torch.randint(0, 3, (2, 48, 64), device=device)
    with torch.autocast(device, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None):
        output = model(x)
    loss = SegmentationLoss()(output, target)
    loss.backward()
    assert torch.isfinite(loss)
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


def test_meta_device_forward_and_fold(family):
    """No tensor in a forward or a fold is made without the input's device: the whole model runs on meta."""
    name, kwargs, _ = family
    with torch.device("meta"):
        model = create_model(name, **{"num_classes": 3, **kwargs}).eval()
    assert {p.device.type for p in model.state_dict().values()} == {"meta"}
    x = torch.empty(2, 3, 48, 64, device="meta")
    assert model(x).logits.shape == (2, 3, 48, 64)
    model.reparameterize()
    assert {p.device.type for p in model.state_dict().values()} == {"meta"}
    assert model(x).logits.shape == (2, 3, 48, 64)


def test_folding_a_model_in_training_mode_switches_to_eval_first(family):
    name, kwargs, reference_model = family
    model = copy.deepcopy(reference_model).train()
    model.reparameterize()  # the model-level method: eval() first, as its docstring says
    assert not model.training
    x = torch.randn(1, 3, 40, 40)
    torch.testing.assert_close(model(x).logits, reference_model(x).logits, rtol=1e-5, atol=1e-5)


def test_folded_model_saves_and_loads_with_the_same_logits(family, tmp_path):
    name, kwargs, reference_model = family
    folded = copy.deepcopy(reference_model).reparameterize()
    folded.save_pretrained(tmp_path)
    restored = from_pretrained(tmp_path).eval()
    assert type(restored.context) is type(folded.context)
    x = torch.randn(2, 3, 40, 56)
    torch.testing.assert_close(restored(x).logits, folded(x).logits, rtol=0, atol=0)


# -- GPU-only paths: run where a GPU is present (pytest -m cuda), skipped elsewhere -------------------
@pytest.mark.cuda
@pytest.mark.skipif(not CUDA, reason="no GPU")
@pytest.mark.parametrize("name,kwargs", TINY, ids=TINY_IDS)
def test_cuda_fp16_training_step_with_grad_scaler(name, kwargs):
    model = create_model(name, **{"num_classes": 3, **kwargs}).cuda().train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    scaler = torch.amp.GradScaler("cuda")
    x, target = torch.randn(2, 3, 64, 64, device="cuda"), torch.randint(0, 3, (2, 64, 64), device="cuda")
    for _ in range(2):
        with torch.autocast("cuda", dtype=torch.float16):
            loss = SegmentationLoss()(model(x), target)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
    assert torch.isfinite(loss)



@pytest.mark.cuda
@pytest.mark.skipif(not CUDA, reason="no GPU")
def test_cuda_sync_batchnorm_half_fold_predict_and_onnx(tmp_path):
    from mfnet_zoo.export import export_onnx
    from mfnet_zoo.predict import predict_files

    model = create_model("mfnet", encoder="test_resnet", num_classes=3).eval()
    randomize_bn_stats(model)
    x = torch.randn(2, 3, 64, 64)
    expected = model(x).logits
    synced = torch.nn.SyncBatchNorm.convert_sync_batchnorm(copy.deepcopy(model)).cuda().eval()
    torch.testing.assert_close(synced(x.cuda()).logits.cpu(), expected, rtol=1e-4, atol=1e-4)
    half = copy.deepcopy(model).cuda().half().reparameterize()  # the fold lands on the GPU, in fp16
    assert {p.device.type for p in half.parameters()} == {"cuda"} and {p.dtype for p in half.parameters()} == {
        torch.float16}
    torch.testing.assert_close(half(x.cuda().half()).logits.float().cpu(), expected, rtol=0.05,
                               atol=0.05 * expected.abs().max().item())
    from PIL import Image

    (tmp_path / "in").mkdir()
    Image.new("RGB", (70, 50), (120, 30, 200)).save(tmp_path / "in" / "a.png")
    report = predict_files(copy.deepcopy(model), [str(tmp_path / "in")], tmp_path / "out", device="cuda",
                           progress=False)
    assert not report.failed and (tmp_path / "out" / "a.png").is_file()
    ort = pytest.importorskip("onnxruntime")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_onnx(copy.deepcopy(model).cuda(), tmp_path / "m.onnx", (64, 64))
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    out = session.run(["logits"], {"images": x.numpy()})[0]
    assert abs(out - expected.detach().numpy()).max() < 1e-3
