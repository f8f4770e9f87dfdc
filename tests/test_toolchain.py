"""torch.compile, torch.export, channels_last, bf16 autocast and gradient checkpointing."""
import pytest
import torch

from mfnet_zoo import SegmentationOutput, create_model

from .conftest import TINY, TINY_IDS, assert_context_visible, visible_context


def tiny_eval(name, kwargs):
    """An eval-mode tiny model with non-trivial BN statistics and every context branch visible (tests/conftest.py)."""
    return visible_context(create_model(name, **{"encoder": "test_resnet", "num_classes": 3, **kwargs}).eval())


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
    expected = model(x).logits
    torch.testing.assert_close(out.logits, expected, rtol=1e-4, atol=1e-5)
    assert_context_visible(model, x, 1e-5 + 1e-4 * expected.abs().max().item())


def _training_gradients(compiled: bool) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    model = visible_context(create_model("mfnet", encoder="test_resnet", num_classes=3)).train()
    run = torch.compile(model, backend="aot_eager", fullgraph=True) if compiled else model
    out = run(torch.randn(2, 3, 64, 64))
    (out.logits.mean() + torch.nn.functional.mse_loss(*out.reconstruction)).backward()
    return {n: p.grad for n, p in model.named_parameters() if p.grad is not None}


# compiled (aot_eager) against eager gradients, relative to each parameter's largest gradient: worst measured 1.2e-6
# on 1 thread, 2.7e-6 on 2 (encoder.model.bn1.bias; 2-vCPU Xeon, torch 2.14): 1.5x the worst
COMPILED_GRADIENTS = 4e-6


def test_compile_fullgraph_training_step():
    compiled, eager = _training_gradients(compiled=True), _training_gradients(compiled=False)
    assert set(compiled) == set(eager) == {n for n, _ in create_model("mfnet", encoder="test_resnet").named_parameters()}
    for n, expected in eager.items():
        assert expected.abs().max() > 0, n  # a visible static context: Y and Z too
        torch.testing.assert_close(compiled[n], expected, rtol=0, atol=COMPILED_GRADIENTS * expected.abs().max().item(),
                                   msg=n)


@pytest.mark.slow
def test_compile_inductor():
    model = tiny_eval("mfnet", {})
    x = torch.randn(1, 3, 64, 64)
    out = torch.compile(model, fullgraph=True)(x)
    expected = model(x).logits
    torch.testing.assert_close(out.logits, expected, rtol=1e-3, atol=1e-4)
    assert_context_visible(model, x, 1e-4 + 1e-3 * expected.abs().max().item())


@pytest.mark.parametrize("name,kwargs", TINY, ids=TINY_IDS)
def test_export_dynamic_height_width(name, kwargs):
    model = tiny_eval(name, kwargs)
    auto = torch.export.Dim.AUTO
    program = torch.export.export(model, (torch.randn(2, 3, 64, 80),),
                                  dynamic_shapes={"x": {0: auto, 2: auto, 3: auto}})
    for shape in [(2, 3, 64, 80), (1, 3, 96, 72), (3, 3, 50, 130)]:
        x = torch.randn(shape)
        out = program.module()(x)
        expected = model(x).logits
        torch.testing.assert_close(out.logits, expected, rtol=1e-4, atol=1e-5)
        assert out.logits.shape == (shape[0], 3, *shape[2:])
    assert_context_visible(model, x, 1e-5 + 1e-4 * expected.abs().max().item())


@pytest.mark.parametrize("name,kwargs", TINY, ids=TINY_IDS)
def test_channels_last_matches_contiguous(name, kwargs):
    model = tiny_eval(name, kwargs)
    x = torch.randn(2, 3, 64, 48)
    expected = model(x).logits
    model = model.to(memory_format=torch.channels_last)
    out = model(x.to(memory_format=torch.channels_last)).logits
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-4)
    assert_context_visible(model, x, 1e-4 + 1e-4 * expected.abs().max().item())


# bf16 autocast's logits, relative to the float32 ones' largest value: worst measured 0.0225 (mfnet_lite); the smallest
# knockout moves them by 12%, so 3 x the tolerance is what can be asked of them
BF16_AUTOCAST = 0.034


@pytest.mark.parametrize("name,kwargs", TINY, ids=TINY_IDS)
def test_bf16_autocast_on_cpu(name, kwargs):
    model = tiny_eval(name, kwargs)
    x = torch.randn(2, 3, 64, 64)
    expected = model(x).logits
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x)
    assert out.logits.dtype == torch.bfloat16 and torch.isfinite(out.logits).all()
    torch.testing.assert_close(out.logits.float(), expected, rtol=0, atol=BF16_AUTOCAST * expected.abs().max().item())
    assert_context_visible(model, x, BF16_AUTOCAST * expected.abs().max().item(), factor=3)
    model.train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x)
    out.logits.float().mean().backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    assert grads and all(torch.isfinite(g).all() for g in grads.values())
    assert any(g.abs().max() > 0 for n, g in grads.items() if n.startswith("context."))


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
