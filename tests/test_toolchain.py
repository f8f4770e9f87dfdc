"""torch.compile, torch.export, channels_last, bf16 autocast and gradient checkpointing."""
import pytest
import torch

from mfnet_zoo import SegmentationOutput, create_model

from .conftest import TINY, TINY_IDS, randomize_bn_stats


def tiny_eval(name, kwargs):
    model = create_model(name, **{"encoder": "test_resnet", "num_classes": 3, **kwargs}).eval()
    randomize_bn_stats(model)
    return model


@pytest.fixture(autouse=True)
def _reset_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


@pytest.mark.parametrize("name,kwargs", TINY, ids=TINY_IDS)
def test_compile_fullgraph_eval(name, kwargs):
    model = tiny_eval(name, kwargs)
    x = torch.randn(2, 3, 64, 80)
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
    out = compiled(x)
    assert isinstance(out, SegmentationOutput)
    torch.testing.assert_close(out.logits, model(x).logits, rtol=1e-4, atol=1e-5)


def test_compile_fullgraph_training_step():
    model = create_model("mfnet", encoder="test_resnet", num_classes=3).train()
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
    out = compiled(torch.randn(2, 3, 64, 64))
    (out.logits.mean() + torch.nn.functional.mse_loss(*out.reconstruction)).backward()
    assert model.context.Y.grad is not None and model.context.Y.grad.abs().sum() > 0


@pytest.mark.slow
def test_compile_inductor():
    model = tiny_eval("mfnet", {})
    x = torch.randn(1, 3, 64, 64)
    out = torch.compile(model, fullgraph=True)(x)
    torch.testing.assert_close(out.logits, model(x).logits, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("name,kwargs", TINY, ids=TINY_IDS)
def test_export_dynamic_height_width(name, kwargs):
    model = tiny_eval(name, kwargs)
    auto = torch.export.Dim.AUTO
    program = torch.export.export(model, (torch.randn(2, 3, 64, 80),),
                                  dynamic_shapes={"x": {0: auto, 2: auto, 3: auto}})
    for shape in [(2, 3, 64, 80), (1, 3, 96, 72), (3, 3, 50, 130)]:
        x = torch.randn(shape)
        out = program.module()(x)
        torch.testing.assert_close(out.logits, model(x).logits, rtol=1e-4, atol=1e-5)
        assert out.logits.shape == (shape[0], 3, *shape[2:])


@pytest.mark.parametrize("name,kwargs", TINY, ids=TINY_IDS)
def test_channels_last_matches_contiguous(name, kwargs):
    model = tiny_eval(name, kwargs)
    x = torch.randn(2, 3, 64, 48)
    expected = model(x).logits
    model = model.to(memory_format=torch.channels_last)
    out = model(x.to(memory_format=torch.channels_last)).logits
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name,kwargs", TINY, ids=TINY_IDS)
def test_bf16_autocast_on_cpu(name, kwargs):
    model = tiny_eval(name, kwargs)
    x = torch.randn(2, 3, 64, 64)
    expected = model(x).logits
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x)
    assert out.logits.dtype == torch.bfloat16 and torch.isfinite(out.logits).all()
    error = (out.logits.float() - expected).abs().max() / expected.abs().max()
    assert error < 0.1
    model.train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x)
    out.logits.float().mean().backward()


def test_grad_checkpointing_gives_the_same_gradients():
    model = tiny_eval("mfnet", {})  # eval: no dropout, BN on running stats, so the runs are comparable
    x = torch.randn(2, 3, 64, 64)
    model(x).logits.square().mean().backward()
    expected = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    model.set_grad_checkpointing()
    assert model.encoder.model.grad_checkpointing
    model(x).logits.square().mean().backward()
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.grad, expected[n], rtol=1e-4, atol=1e-6, msg=n)
