"""The context protocol and timm's conventions: a user's own context block is first-class (warm-up,
parameter groups, save/load, timm's fold utility, export), and timm's own tools work on every family."""
import copy

import pytest
import torch
import torch.nn.functional as F
from timm.optim import create_optimizer_v2
from timm.utils import reparameterize_model
from torch import nn
from torch.utils.data import DataLoader

import mfnet_zoo
from mfnet_zoo import create_model, from_pretrained, load_model
from mfnet_zoo.layers import Reconstruction
from mfnet_zoo._registry import register_model, unregister_model
from mfnet_zoo.data import SyntheticShapes, eval_transforms, train_transforms
from mfnet_zoo.export import export_program
from mfnet_zoo.layers import DeepLabV3PlusDecoder
from mfnet_zoo.models._family import TEST_ENCODER, build_segmentation_model, require_low_level
from mfnet_zoo.train import TrainConfig, Trainer, build_param_groups

from .conftest import TINY, TINY_IDS, assert_context_visible, visible_context


class PlainContext(nn.Module):
    """A user's block knowing nothing of the protocol: B x C x h x w -> B x 256 x h x w."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, 256, 1)

    def forward(self, x):
        return F.relu(self.conv(x))


class GatedContext(nn.Module):
    """A user's block with the whole protocol: a pair, the three-state switch, no_weight_decay() and fuse()."""

    provides_reconstruction = True

    def __init__(self, in_channels: int, context_state: str = "on") -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_channels, 256, 1)
        self.gate = nn.Parameter(torch.zeros(1, 256, 1, 1))
        self.context_state = context_state

    def no_weight_decay(self):
        return {"gate"}

    def fuse(self):  # eval-mode: the gate is a constant bias
        if self.context_state != "on":
            return self
        fused = nn.Conv2d(self.proj.in_channels, 256, 1)
        fused.weight.data.copy_(self.proj.weight)
        fused.bias.data.copy_(self.proj.bias + self.gate.flatten())
        return nn.Sequential(fused, nn.ReLU())

    def forward(self, x, return_reconstruction=False):
        base = self.proj(x)
        out = F.relu(base + self.gate) if self.context_state == "on" else F.relu(base)
        pair = None if self.context_state == "off" else Reconstruction(base, base + self.gate)
        return (out, pair) if return_reconstruction else out


def _head(context_cls):
    def head(encoder, num_classes, *, context_state: str = "on"):
        kwargs = {"context_state": context_state} if context_cls is GatedContext else {}
        return context_cls(encoder.out_channels, **kwargs), \
            DeepLabV3PlusDecoder(require_low_level(encoder, "user"), num_classes, channels=32)
    return head


@pytest.fixture(params=[PlainContext, GatedContext], ids=["plain", "protocol"], scope="module")
def user_family(request):
    name = f"user_{request.param.__name__.lower()}"
    head = _head(request.param)

    def entry(pretrained=False, encoder=TEST_ENCODER, **kwargs):
        return build_segmentation_model(head, name, pretrained, encoder=encoder, **kwargs)

    entry.__name__ = name
    entry.__doc__ = "A user's context in a family registered by the test."
    register_model(entry)
    yield name, request.param
    unregister_model(name)


def test_a_user_context_trains_with_warm_up_saves_loads_folds_and_exports(user_family, tmp_path):
    name, cls = user_family
    model = create_model(name, num_classes=6, output_stride=8)
    train = SyntheticShapes(8, 32, seed=0, transforms=train_transforms(32, None, True))
    val = SyntheticShapes(4, 32, seed=1, transforms=eval_transforms())
    cfg = TrainConfig(epochs=2, batch_size=4, context_warmup_epochs=1, optimizer="adamw", lr=1e-3)
    history = Trainer(model, DataLoader(train, batch_size=4), DataLoader(val, batch_size=4), cfg, tmp_path / "run",
                      progress=False).fit()
    protocol = cls is GatedContext
    # warm-up: the protocol block is switched off for epoch 1 (no pair, no reconstruction term), on afterwards
    assert ("reconstruction" in history[0]["train"]) is False
    assert ("reconstruction" in history[1]["train"]) is protocol
    if protocol:  # the engine took its no-decay hook and the preset's rules, knowing no block type
        groups = build_param_groups(model, cfg)
        gate = next(g for g in groups if any(p is model.context.gate for p in g["params"]))
        assert gate["weight_decay"] == 0 and gate["lr"] == pytest.approx(10 * cfg.lr)
    model.eval()
    x = torch.randn(2, 3, 40, 48)
    expected = model(x).logits
    model.save_pretrained(tmp_path / "saved")
    torch.testing.assert_close(from_pretrained(tmp_path / "saved").eval()(x).logits, expected, rtol=0, atol=0)
    torch.testing.assert_close(load_model(str(tmp_path / "run" / "last.pt")).eval()(x).logits, expected, rtol=0, atol=0)
    folded = reparameterize_model(model)  # timm's own utility
    assert isinstance(folded.context, nn.Sequential) is protocol
    torch.testing.assert_close(folded(x).logits, expected, rtol=1e-5, atol=1e-5)
    program = export_program(folded, None, (32, 32))
    torch.testing.assert_close(program.module()(x), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name,kwargs", TINY, ids=TINY_IDS)
def test_timm_reparameterize_model_folds_every_family(name, kwargs):
    model = visible_context(create_model(name, **{"num_classes": 3, **kwargs}).eval())
    x = torch.randn(2, 3, 48, 64)
    expected = model(x).logits
    folded = reparameterize_model(model)  # timm's, not ours: it calls every submodule's fuse()
    ours = mfnet_zoo.reparameterize_model(model)
    assert folded is not model and ours is not model and not model.context.__class__.__name__.startswith("Folded")
    if kwargs.get("mode", "static") == "static" and name.startswith("mfnet"):
        assert type(folded.context).__name__ == "FoldedFactorizationContext" == type(ours.context).__name__
    torch.testing.assert_close(folded(x).logits, ours(x).logits, rtol=0, atol=1e-5)
    torch.testing.assert_close(folded(x).logits, expected, rtol=1e-5, atol=1e-5)
    allowed = 1e-5 + 1e-5 * expected.abs().max().item()
    assert_context_visible(model, x, allowed)  # a fold that lost a branch would fail the check above
    assert_context_visible(folded, x, allowed)  # and so would a constant bias map
    assert not any(hasattr(m, "fuse") and not callable(m.fuse) for m in model.modules())


def test_timm_optimizer_honours_no_weight_decay():
    model = create_model("mfnet", encoder=TEST_ENCODER, num_classes=3)
    assert model.no_weight_decay() == {"context.Y", "context.Z"}
    optimizer = create_optimizer_v2(model, "sgd", lr=0.01, weight_decay=1e-4)
    decay_of = {id(p): g["weight_decay"] for g in optimizer.param_groups for p in g["params"]}
    assert decay_of[id(model.context.Y)] == 0 and decay_of[id(model.context.Z)] == 0
    assert decay_of[id(model.context.embed.weight)] == 1e-4


def test_context_state_is_saved_in_config_and_checkpoints(tmp_path):
    model = create_model("mfnet", encoder=TEST_ENCODER, num_classes=6, output_stride=8, base_size=(4, 4))
    mfnet_zoo.layers.set_context_state(model.context, "pair-only")
    model.save_pretrained(tmp_path / "saved")
    assert from_pretrained(tmp_path / "saved").context.context_state == "pair-only"
    # a checkpoint written during the warm-up reloads as it was then: context off
    model = create_model("mfnet", encoder=TEST_ENCODER, num_classes=6, output_stride=8, base_size=(4, 4))
    train = SyntheticShapes(8, 32, seed=0, transforms=train_transforms(32, None, True))
    cfg = TrainConfig(epochs=1, batch_size=4, context_warmup_epochs=5, optimizer="adamw", lr=1e-3)
    Trainer(model, DataLoader(train, batch_size=4), None, cfg, tmp_path / "run", progress=False).fit()
    restored = load_model(str(tmp_path / "run" / "last.pt"))
    assert restored.context.context_state == "off" and restored.model_args["context_state"] == "off"
    x = torch.randn(1, 3, 32, 32)
    torch.testing.assert_close(restored.eval()(x).logits, copy.deepcopy(model).eval()(x).logits)


def _every_setting(name: str):
    """(block, label) for context ``name`` in each of its states and gradient modes, at width = in_channels (the
    static factorization's, where "off" skips the embedding) and at another width."""
    from mfnet_zoo.layers import BASES_GRAD, CONTEXT_STATES, create_context, get_context_state

    for width in (8, 12):
        probe = create_context(name, 8, 6, width=width, rank=3, base_size=(3, 3))
        states = CONTEXT_STATES if get_context_state(probe) is not None else (None,)
        iterative = [m for m in probe.modules() if hasattr(type(m), "bases_grad")]
        modes = BASES_GRAD if iterative and getattr(iterative[0], "mode", "nmf") != "static" else (None,)
        for state in states:
            for mode in modes:
                block = create_context(name, 8, 6, width=width, rank=3, base_size=(3, 3))
                if state is not None:
                    mfnet_zoo.layers.set_context_state(block, state)
                for module in block.modules():
                    if mode is not None and hasattr(type(module), "bases_grad"):
                        module.bases_grad = mode
                yield block, f"width={width} state={state} bases_grad={mode}"


@pytest.mark.parametrize("name", list(mfnet_zoo.layers.CONTEXTS))
def test_declared_unused_parameters_are_exactly_those_without_a_gradient(name):
    """What DistributedDataParallel's find_unused_parameters is decided from (the engine), against autograd."""
    from mfnet_zoo.layers import provides_reconstruction, unused_parameters

    torch.manual_seed(0)
    x = torch.rand(2, 8, 5, 5)
    checked = 0
    for block, label in _every_setting(name):
        for reconstruction in (True, False):
            block.zero_grad(set_to_none=True)
            block.train()
            if provides_reconstruction(block):
                out, pair = block(x, return_reconstruction=True)
            else:
                out, pair = block(x), None
            loss = out.square().mean()
            if reconstruction and pair is not None:
                loss = loss + F.mse_loss(pair.estimate.expand_as(pair.target), pair.target)
            loss.backward()
            without = {n for n, p in block.named_parameters() if p.grad is None}
            assert unused_parameters(block, reconstruction) == without, (label, reconstruction)
            checked += 1
    assert checked >= 4
