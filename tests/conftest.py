import copy

import pytest
import torch
from torchvision.ops import Conv2dNormActivation

from mfnet_zoo import list_models
from mfnet_zoo.layers import ASPP, EMAUnit, FactorizationContext, FoldedFactorizationContext
from mfnet_zoo._registry import get_test_configs

# the shared tiny-model set, from the registry: every family with each of its declared test configs
# (context modes), so a newly registered family joins every matrix that uses TINY without an edit here
TINY = [(name, kwargs) for name in list_models() for kwargs in get_test_configs(name).values()]
TINY_IDS = [f"{name}-{key}" if key else name for name in list_models() for key in get_test_configs(name)]


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def randomize_bn_stats(model: torch.nn.Module) -> None:
    """Non-trivial BatchNorm statistics and affine params, so eval-mode checks mean something."""
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)


GAIN = 10.0


def visible_context(model: torch.nn.Module, gain: float = GAIN) -> torch.nn.Module:
    """:func:`randomize_bn_stats`, then every context branch made of the order of the features it joins, so that
    it moves the logits by about their own size: the static factorizations' Y and Z drawn at unit scale (relu(Y Z)
    ~ 1), and the BatchNorm gain after EM attention's reconstruction and after ASPP's image pooling times ``gain``.

    At initialisation Y Z is at most ~6e-4 and the static branch moves the logits by ~1e-5, under the tolerance
    of every export, compile or fold check, where a lost branch would hide; EM attention's reconstruction and
    ASPP's pooling move them by 2-15%, under bf16's. Returns ``model`` (changed in place)."""
    randomize_bn_stats(model)
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, FactorizationContext) and m.mode == "static":
                m.Y.copy_(torch.randn(m.Y.shape, generator=g))
                m.Z.copy_(torch.randn(m.Z.shape, generator=g) / m.rank ** 0.5)
            elif isinstance(m, EMAUnit):
                m.conv2[1].weight.mul_(gain)
            elif isinstance(m, ASPP):
                m.pool[1][1].weight.mul_(gain)
    return model


def _zero_output(module, args, output):
    return torch.zeros_like(output)


def _zero_input(module, args):
    return tuple(torch.zeros_like(a) for a in args)


def _knock_out(block: torch.nn.Module) -> str | None:
    """Remove ``block``'s context branch in place and say what was removed; None: a block without one."""
    with torch.no_grad():
        if isinstance(block, FactorizationContext) and block.context_state == "on":
            if block.mode == "static":
                block.Y.zero_()
                return "Y zeroed"
            block.bases.zero_()
            return "NMF bases zeroed"
        if isinstance(block, FoldedFactorizationContext):
            block.bias_map.copy_(block.bias_map.mean(dim=(2, 3), keepdim=True).expand_as(block.bias_map))
            return "bias map replaced by its spatial mean"
        if isinstance(block, EMAUnit):
            block.conv2.register_forward_pre_hook(_zero_input)
            return "EM reconstruction zeroed"
        if isinstance(block, ASPP):
            block.pool.register_forward_hook(_zero_output)
            return "image pooling zeroed"
    return None


def knockouts(model: torch.nn.Module) -> dict[str, torch.nn.Module]:
    """label -> a deep copy of ``model`` with one branch of its context removed, for every branch that carries
    context: a static factorization's Y zeroed (relu(Y Z) = 0), an NMF's initial bases zeroed (its estimate is 0),
    a folded factorization's bias map replaced by its spatial mean (the constant map no longer resized in the
    graph), EM attention's reconstruction zeroed (conv2 sees 0), ASPP's image-pooling branch zeroed. Empty only for
    a context without a global branch (the ``none`` context, a 1x1 conv + BN + ReLU); an unknown context block is
    an error, so that a new one gets its knockout here before the model-level checks take it."""
    found: dict[str, torch.nn.Module] = {}
    for path, block in model.context.named_modules():
        if not isinstance(block, (FactorizationContext, FoldedFactorizationContext, EMAUnit, ASPP)):
            continue
        knocked = copy.deepcopy(model)
        what = _knock_out(knocked.context.get_submodule(path))
        if what is not None:
            found[f"context{'.' + path if path else ''} ({what})"] = knocked
    if not found and not isinstance(model.context, Conv2dNormActivation):
        raise AssertionError(f"no knockout known for {type(model.context).__name__}: add one to tests/conftest.py")
    return found


def assert_context_visible(model: torch.nn.Module, x: torch.Tensor, allowed: float, run=None,
                           factor: float = 100) -> dict[str, float]:
    """Every knockout of ``model`` (:func:`knockouts`) moves its logits on ``x`` by more than ``factor`` x
    ``allowed``, the largest difference a check on this model tolerates, so that a transformation which lost the
    branch would fail that check (any factor above 2 guarantees it). ``run(model, x)``: the logits (default
    ``model(x).logits``, run without grad). Returns label -> the knockout's largest difference, divided by
    ``allowed``."""
    run = run or (lambda m, t: m(t).logits)
    with torch.no_grad():
        expected = run(model, x).float()
        margins = {label: (run(knocked, x).float() - expected).abs().max().item() / allowed
                   for label, knocked in knockouts(model).items()}
    hidden = {label: margin for label, margin in margins.items() if not margin > factor}
    assert not hidden, f"branches hidden under the tolerance {allowed:.3g} (difference / tolerance): {hidden}"
    return margins
