"""Numerics on every device and dtype, for every registered family (the registry-built tiny set):
float32/float64, bf16 autocast and bf16 weights, fp16 autocast, channels_last, training steps, folding,
the meta device. The same matrix runs on CUDA (marker ``cuda``) where a GPU is present; docs/validation.md
lists what runs where."""
import copy
import math
import warnings

import pytest
import torch

from mfnet_zoo import SegmentationLoss, create_model, from_pretrained
from mfnet_zoo.layers import unused_parameters

from .conftest import TINY, TINY_IDS, assert_context_visible, knockouts, visible_context

CUDA = torch.cuda.is_available()
CUDA_PARAM = pytest.param("cuda", marks=[pytest.mark.cuda, pytest.mark.skipif(not CUDA, reason="no GPU")])
DEVICES = ["cpu", CUDA_PARAM]
# The tolerances (relative to the float32 CPU logits' largest value) are 1.5 x the worst error measured over every
# family of the tiny set, unfolded and folded, on a 2-vCPU Intel Xeon (torch 2.14, CPU): run
# `python -m tests.test_numerics` to measure them again. Rows at float32 precision share one tolerance. The CUDA
# column has not been measured (no GPU run yet).
FLOAT32_PRECISION = 3e-6  # worst measured: 2.0e-6 (channels-last, mfnet nmf); float64 9.6e-7, float32 folded 9.2e-7
# (name, weights dtype, autocast dtype, channels_last, tolerance, how many times the tolerance every knockout of the
# context (tests/conftest.py) must move the logits, so that a variant losing a branch fails: 100 at float32
# precision; in low precision the rounding error is 1-2% of the logits and the smallest knockout 12%, so less)
VARIANTS = {
    "float32": (torch.float32, None, False, FLOAT32_PRECISION, 100),  # folded, or on another device, only
    "float64": (torch.float64, None, False, FLOAT32_PRECISION, 100),  # the float32 reference's own error
    "bf16-autocast": (torch.float32, torch.bfloat16, False, 0.022, 4),  # worst measured 0.0148 (mfnet nmf)
    "bf16-weights": (torch.bfloat16, None, False, 0.029, 4),  # worst measured 0.0193 (mfnet nmf)
    "fp16-autocast": (torch.float32, torch.float16, False, 0.0033, 30),  # worst measured 0.0022 (mfnet_lite folded)
    "channels-last": (torch.float32, None, True, FLOAT32_PRECISION, 100),
}
# every (device, variant, folded) but float32 unfolded on the CPU: a copy of the reference model run as it is
MATRIX = [pytest.param(device, variant, folded, id=f"{variant}-{'folded' if folded else 'unfolded'}-{device}",
                       marks=() if device == "cpu" else CUDA_PARAM.marks)
          for device in ("cpu", "cuda") for variant in VARIANTS for folded in (False, True)
          if (device, variant, folded) != ("cpu", "float32", False)]


def _fp16_autocast_works(device: str) -> bool:
    try:
        with torch.autocast(device, dtype=torch.float16):
            torch.nn.functional.conv2d(torch.randn(1, 2, 4, 4, device=device), torch.randn(2, 2, 1, 1, device=device))
        return True
    except RuntimeError:
        return False


def _input() -> torch.Tensor:
    return torch.randn(2, 3, 48, 64, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module", params=list(zip(TINY, TINY_IDS)), ids=TINY_IDS)
def family(request):
    """One eval-mode tiny model per family and context mode, with non-trivial BN statistics and every context
    branch visible (tests/conftest.py: visible_context)."""
    (name, kwargs), _ = request.param
    torch.manual_seed(0)  # module-scoped: outside the autouse seed
    model = visible_context(create_model(name, **{"num_classes": 3, **kwargs}).eval())
    return name, kwargs, model


@pytest.fixture(scope="module")
def knockout_effects(family):
    """folded -> label -> how far that knockout of the reference model moves the float32 logits on the matrix's
    input, relative to their largest value (the unit of the tolerances)."""
    _, _, model = family
    effects = {}
    for folded in (False, True):
        reference = copy.deepcopy(model).reparameterize() if folded else model
        expected = _run(reference, _input(), None)
        effects[folded] = {label: (_run(knocked, _input(), None) - expected).abs().max().item()
                           / expected.abs().max().item() for label, knocked in knockouts(reference).items()}
    return effects


def _run(model, x, autocast_dtype):
    with torch.no_grad(), torch.autocast(x.device.type, dtype=autocast_dtype or torch.float32,
                                         enabled=autocast_dtype is not None):
        return model(x).logits


def _variant(model, device, variant):
    dtype, autocast_dtype, channels_last, tolerance, _ = VARIANTS[variant]
    if autocast_dtype is torch.float16 and not _fp16_autocast_works(device):
        pytest.skip(f"fp16 autocast is not supported on this {device}")
    model = copy.deepcopy(model).to(device=device, dtype=dtype)
    x = _input().to(device=device, dtype=dtype)
    if channels_last:
        model, x = model.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    return model, x, autocast_dtype, tolerance


@pytest.mark.parametrize("device,variant,folded", MATRIX)
def test_forward_every_dtype_and_layout(family, knockout_effects, device, variant, folded):
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
    # a variant that lost a context branch (or, folded, resized a constant bias map) would fail the check above
    factor = VARIANTS[variant][4]
    hidden = {label: effect for label, effect in knockout_effects[folded].items() if not effect > factor * tolerance}
    assert not hidden, f"knockouts within {factor} x the tolerance {tolerance}: {hidden}"


def _training_step(model, device, autocast_dtype):
    """The loss and gradients (name -> grad, on the CPU) of one training step of a copy of ``model``, on a fixed
    batch, with torch's RNG (dropout, redrawn NMF bases) seeded the same for every run."""
    model = copy.deepcopy(model).to(device).train()
    g = torch.Generator().manual_seed(3)
    x, target = torch.randn(2, 3, 48, 64, generator=g), torch.randint(0, 3, (2, 48, 64), generator=g)
    torch.manual_seed(5)
    with torch.autocast(device, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None):
        output = model(x.to(device))
    loss = SegmentationLoss()(output, target.to(device))
    loss.backward()
    return loss.item(), {n: p.grad.cpu() for n, p in model.named_parameters() if p.grad is not None}


# bf16 autocast's training loss against float32's on the same device and batch: worst measured 0.0016 (deeplabv3plus,
# losses ~1.15; CPU). Its gradients differ from float32's by 17-54% in norm (BatchNorm's batch statistics in bf16):
# too far for a comparison that means something, so they are checked for finiteness and reach.
BF16_TRAINING_LOSS = 0.0025


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("autocast_dtype", [None, torch.bfloat16], ids=["float32", "bf16-autocast"])
def test_training_step(family, device, autocast_dtype):
    name, kwargs, reference_model = family
    loss, grads = _training_step(reference_model, device, autocast_dtype)
    # every trainable parameter but those the context declares unused (EMANet's conv1) has a finite gradient
    declared = {f"context.{n}" for n in unused_parameters(reference_model.context)}
    assert set(grads) == {n for n, p in reference_model.named_parameters() if p.requires_grad} - declared
    assert all(torch.isfinite(g).all() for g in grads.values()) and math.isfinite(loss)
    if autocast_dtype is not None:
        expected, _ = _training_step(reference_model, device, None)
        assert abs(loss - expected) < BF16_TRAINING_LOSS, (loss, expected)


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
    expected = reference_model(x).logits
    torch.testing.assert_close(model(x).logits, expected, rtol=1e-5, atol=1e-5)
    assert_context_visible(model, x, 1e-5 + 1e-5 * expected.abs().max().item())


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
    visible_context(model)
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


def measure() -> None:
    """Print the worst error of every variant over every family (unfolded and folded, CPU), and of bf16's training
    loss: what VARIANTS' and BF16_TRAINING_LOSS's tolerances are 1.5 x of. ``python -m tests.test_numerics``."""
    worst: dict[str, tuple[float, str]] = {}
    for (name, kwargs), test_id in zip(TINY, TINY_IDS):
        torch.manual_seed(0)
        reference_model = visible_context(create_model(name, **{"num_classes": 3, **kwargs}).eval())
        reference = _run(reference_model, _input(), None)
        for variant in VARIANTS:
            for folded in (False, True):
                model, x, autocast_dtype, _ = _variant(reference_model, "cpu", variant)
                if folded:
                    model.reparameterize()
                error = (_run(model, x, autocast_dtype).float() - reference).abs().max().item()
                error /= reference.abs().max().item()
                where = f"{test_id}{' folded' if folded else ''}"
                worst[variant] = max(worst.get(variant, (0.0, "")), (error, where))
        loss = abs(_training_step(reference_model, "cpu", torch.bfloat16)[0]
                   - _training_step(reference_model, "cpu", None)[0])
        worst["bf16 training loss"] = max(worst.get("bf16 training loss", (0.0, "")), (loss, test_id))
    for what, (error, where) in worst.items():
        print(f"{what:20s} worst {error:.3g} ({where}); 1.5 x: {1.5 * error:.2g}")


if __name__ == "__main__":
    measure()
