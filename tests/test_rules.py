"""Rules pinned against hand computations: EMAUnit's moving average of its bases, NMF's update counts in training
and in eval, the poly learning-rate schedule per parameter group through the Trainer. Each test also checks that
the likely wrong rules (another momentum, image 0's bases, one update more or less, steps counted per epoch) give
results far outside its tolerance, so that they would fail it."""
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from mfnet_zoo import create_model
from mfnet_zoo.data import SyntheticShapes, train_transforms
from mfnet_zoo.layers import EMAUnit, FactorizationContext, create_context
from mfnet_zoo.train import TrainConfig, Trainer

from .test_layers import hamburger_nmf2d


def _l2(t: torch.Tensor) -> torch.Tensor:
    return t / (1e-6 + t.norm(dim=1, keepdim=True))


def _em_bases(unit: EMAUnit, x: torch.Tensor, mu: torch.Tensor) -> torch.Tensor:
    """EMANet's EM stages written out: the per-image bases (B x C x K) after ``unit.stages`` iterations from ``mu``."""
    feats = unit.conv1(x).flatten(2)
    mu = mu.repeat(x.shape[0], 1, 1)
    for _ in range(unit.stages):
        z = torch.softmax(feats.transpose(1, 2) @ mu, dim=2)
        mu = _l2(feats @ (z / (1e-6 + z.sum(dim=1, keepdim=True))))
    return mu


def test_ema_unit_bases_follow_the_moving_average_of_the_batch_mean():
    unit = EMAUnit(8, rank=3, stages=2).train()
    assert unit.momentum == 0.9 and create_model("emanet", encoder="test_resnet", rank=8).context.emau.momentum == 0.9
    x = torch.randn(3, 8, 4, 5)
    before = unit.mu.clone()
    with torch.no_grad():
        per_image = _em_bases(unit, x, before)
    unit(x)
    expected = 0.9 * before + 0.1 * per_image.mean(dim=0, keepdim=True)  # mu = momentum mu + (1 - momentum) mean
    torch.testing.assert_close(unit.mu, expected, rtol=0, atol=1e-6)
    # the wrong rules are far outside that tolerance
    for wrong in (0.99 * before + 0.01 * per_image.mean(dim=0, keepdim=True),  # another momentum
                  0.9 * before + 0.1 * per_image[:1],  # image 0's bases
                  per_image.mean(dim=0, keepdim=True)):  # no average at all
        assert (wrong - expected).abs().max() > 100 * 1e-6
    # a second step averages from the updated bases; eval never changes them
    after_one = unit.mu.clone()
    with torch.no_grad():
        per_image = _em_bases(unit, x, after_one)
    unit(x)
    torch.testing.assert_close(unit.mu, 0.9 * after_one + 0.1 * per_image.mean(dim=0, keepdim=True), rtol=0, atol=1e-6)
    frozen = unit.mu.clone()
    unit.eval()(x)
    assert torch.equal(unit.mu, frozen)


@pytest.mark.parametrize("momentum", [0.5, 0.0, 1.0])
def test_ema_unit_momentum_is_the_weight_of_the_old_bases(momentum):
    unit = EMAUnit(8, rank=3, stages=2, momentum=momentum).train()
    x = torch.randn(2, 8, 3, 4)
    before = unit.mu.clone()
    with torch.no_grad():
        mean = _em_bases(unit, x, before).mean(dim=0, keepdim=True)
    unit(x)
    torch.testing.assert_close(unit.mu, momentum * before + (1 - momentum) * mean, rtol=0, atol=1e-6)


# the block's NMF (float32 throughout) against NMF2D written out in float64 (tests/test_layers.py), on values in
# [0, 1]: worst measured 3.0e-7; one update more or less moves the estimate by 0.038-0.045
NMF_TOLERANCE = 5e-7


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
def test_nmf_runs_exactly_its_train_and_eval_steps(train):
    """mfnet's NMF settings (6 updates in training, 7 in eval), then others: the block's estimate equals NMF2D with
    exactly that many updates (plus its final coefficient update), and one update more or less is far from it."""
    torch.manual_seed(0)
    v = torch.rand(2, 12, 30, dtype=torch.float64)
    default = create_context("nmf", 16, 8, width=12, rank=4)
    assert (default.train_steps, default.eval_steps) == (6, 7)
    for block in (default, FactorizationContext(16, 8, rank=4, mode="nmf", width=12, train_steps=2, eval_steps=4)):
        block = block.double().train(train)
        steps = block.train_steps if train else block.eval_steps
        bases = block.bases.unsqueeze(0).repeat(2, 1, 1)
        inv_t = 1 / v.amax(dim=(1, 2), keepdim=True)  # inv_t=None: the temperature of the unit-scale features

        def nmf(n):
            return hamburger_nmf2d(v, bases, steps=n, inv_t=inv_t)

        estimate = block._nmf(v).double()
        torch.testing.assert_close(estimate, nmf(steps), rtol=0, atol=NMF_TOLERANCE)
        for wrong in (steps - 1, steps + 1):
            assert (nmf(wrong) - nmf(steps)).abs().max() > 1000 * NMF_TOLERANCE, (steps, wrong)


def test_nmf_steps_reach_the_model_forward():
    """The model's context runs the same NMF as its block on its own: eval's forward equals proj(NMF2D(7) + target)."""
    model = create_model("mfnet", encoder="test_resnet", mode="nmf", width=16, rank=8, num_classes=3).eval()
    block = model.context
    features = torch.rand(2, block.in_channels, 5, 6)
    target = F.relu(block.embed(features))
    v = target.flatten(2)
    expected = hamburger_nmf2d(v, block.bases.unsqueeze(0).repeat(2, 1, 1), steps=7,
                               inv_t=1 / v.amax(dim=(1, 2), keepdim=True)).view_as(target)
    torch.testing.assert_close(block(features), block.proj(expected + target), rtol=1e-4, atol=1e-5)


def _poly(lr: float, step: int, total: int) -> float:
    return lr * (1 - step / total) ** 0.9


def test_poly_schedule_per_parameter_group_through_the_trainer(tmp_path):
    """lr x mult x (1 - step / total) ^ 0.9 per optimizer step (not per batch: gradient accumulation 2), with the
    default rules' 10 x for the context and the decoder, through Trainer(...).fit()."""
    cfg = TrainConfig(epochs=3, batch_size=2, lr=0.02, grad_accum_steps=2, context_warmup_epochs=0)
    train = SyntheticShapes(8, 32, seed=0, transforms=train_transforms(32, None, True))
    loader = DataLoader(train, batch_size=2)  # 4 batches: 2 optimizer steps an epoch, 6 in all

    def trainer(out):
        torch.manual_seed(0)
        model = create_model("mfnet", encoder="test_resnet", num_classes=6, output_stride=8, base_size=(4, 4))
        return Trainer(model, loader, None, cfg, tmp_path / out, progress=False)

    fresh = trainer("fresh")
    multipliers = []
    for group in fresh.optimizer.param_groups:
        names = {n for n, p in fresh.model.named_parameters() if any(p is q for q in group["params"])}
        assert all(n.startswith(("context.", "decoder.")) for n in names) or not any(
            n.startswith(("context.", "decoder.")) for n in names), names
        multipliers.append(10.0 if next(iter(names)).startswith(("context.", "decoder.")) else 1.0)
    assert sorted(set(multipliers)) == [1.0, 10.0]
    for step in range(7):  # the schedule's value before each optimizer step, and after the last
        for group, mult in zip(fresh.optimizer.param_groups, multipliers):
            assert group["lr"] == pytest.approx(_poly(cfg.lr * mult, step, 6), rel=1e-12, abs=1e-15)
        fresh.optimizer.step()
        fresh.scheduler.step()
    assert multipliers[0] == 1.0
    history = trainer("fit").fit()
    # the lr logged after each epoch (group 0: the encoder's, 1 x) is the schedule's after 2, 4 and 6 steps
    assert [h["train"]["lr"] for h in history] == pytest.approx([_poly(cfg.lr, s, 6) for s in (2, 4, 6)], abs=1e-15)
    # per batch (8 and 12 steps in all), or a power of 1, would log other figures
    assert abs(_poly(cfg.lr, 2, 12) - _poly(cfg.lr, 2, 6)) > 1e-4 and abs(cfg.lr * (1 - 2 / 6) - _poly(cfg.lr, 2, 6)) > 1e-4
