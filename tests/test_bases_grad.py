"""bases_grad: what autograd sees of the iterative blocks (NMF, EM attention); the forward never changes.

"none" and "one-step" keep every output cell's gradient at its own position (the published designs);
"unrolled" lets distant positions reach it through the bases. Plus the numerical safety of the unrolled
gradient, and EMAUnit's ``k`` -> ``rank`` rename.
"""
import copy
import re
import warnings

import pytest
import torch
import torch.nn.functional as F

from mfnet_zoo import create_model
from mfnet_zoo.layers import CONTEXTS, NMF_SETTINGS, EMAContext, EMAUnit, FactorizationContext, create_context
from mfnet_zoo.layers.factorization import BASES_GRAD

from .conftest import TINY, TINY_IDS, randomize_bn_stats


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors: one intra-op thread is fastest, and keeps these tests quick on a loaded 2-core machine
    (OpenMP threads spinning against other processes made them 50x slower). Restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


C, SIZE, RANK = 16, 12, 4
CELL = (2, 3)  # the output cell whose gradient is taken; a corner region, so most positions are far from it
FAR = 5  # Chebyshev distance beyond every block's convolutions (EMAContext's two 3x3 convs reach 2 cells)


def _blocks() -> dict:
    """Every block with bases, by name: a builder returning (block, the submodule whose bases_grad to set)."""
    blocks = {f"FactorizationContext-nmf-{setting}": (lambda s=setting: FactorizationContext(
        C, 8, rank=RANK, mode="nmf", width=C, **NMF_SETTINGS[s])) for setting in NMF_SETTINGS}
    blocks["EMAUnit"] = lambda: EMAUnit(C, rank=RANK)
    blocks["EMAContext"] = lambda: EMAContext(C, 8, width=C, rank=RANK)
    return {name: (lambda b=build: _with_bases(b())) for name, build in blocks.items()}


def _bases_modules(block: torch.nn.Module) -> list:
    return [m for m in block.modules()
            if isinstance(m, EMAUnit) or (isinstance(m, FactorizationContext) and m.mode == "nmf")]


def _with_bases(block: torch.nn.Module):
    (owner,) = _bases_modules(block)
    return block, owner


# create_context names whose block has bases, found by looking inside each block (not listed by hand)
CONTEXTS_WITH_BASES = [name for name in CONTEXTS
                       if _bases_modules(create_context(name, C, 8, width=C, rank=RANK, base_size=(SIZE, SIZE)))]
BLOCKS = {**_blocks(), **{f"create_context-{name}": (lambda n=name: _with_bases(
    create_context(n, C, 8, width=C, rank=RANK, base_size=(SIZE, SIZE)))) for name in CONTEXTS_WITH_BASES}}


def _input(kind: str = "randn", seed: int = 0) -> torch.Tensor:
    x = torch.randn(1, C, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))
    if kind == "zeros":
        return torch.zeros_like(x)
    if kind == "spike":
        spike = torch.zeros_like(x)
        spike[..., 7, 4] = 5.0
        return spike
    return x * {"randn": 1.0, "1e-8": 1e-8, "1e4": 1e4}[kind]


def test_the_contexts_with_bases_include_the_unrolled_names():
    assert {"nmf-unrolled", "ema-unrolled"} <= set(CONTEXTS_WITH_BASES)
    for name in CONTEXTS_WITH_BASES:
        _, owner = BLOCKS[f"create_context-{name}"]()
        expected = "unrolled" if name.endswith("-unrolled") else "none" if isinstance(owner, EMAUnit) else "one-step"
        assert owner.bases_grad == expected, name


@pytest.mark.parametrize("name", list(BLOCKS))
def test_gradient_reaches_distant_positions_only_when_unrolled(name):
    torch.manual_seed(0)
    block, owner = BLOCKS[name]()
    block.eval()  # BatchNorm per position
    randomize_bn_stats(block)
    rows, cols = torch.meshgrid(torch.arange(SIZE), torch.arange(SIZE), indexing="ij")
    far = torch.maximum((rows - CELL[0]).abs(), (cols - CELL[1]).abs()) >= FAR
    for mode in BASES_GRAD:
        owner.bases_grad = mode
        x = _input().requires_grad_(True)
        block(x)[0, :, CELL[0], CELL[1]].sum().backward()
        grad = x.grad[0].abs().sum(0)  # SIZE x SIZE
        assert grad[CELL] > 0, mode
        if mode == "unrolled":
            assert (grad[far] > 0).any(), "the bases carry no gradient between positions"
        else:
            assert torch.equal(grad[far], torch.zeros_like(grad[far])), f"{mode}: gradient at distant positions"


@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("name", list(_blocks()))
def test_forward_is_the_same_in_every_mode(name, train):
    torch.manual_seed(0)
    base, _ = BLOCKS[name]()
    randomize_bn_stats(base)
    base.train(train)
    x = torch.randn(2, C, 7, 9, generator=torch.Generator().manual_seed(3)).requires_grad_(True)
    results = []
    for mode in BASES_GRAD:
        block = copy.deepcopy(base)  # training steps move EMA bases and BN statistics: the same start each time
        _owner = _bases_modules(block)[0]
        _owner.bases_grad = mode
        torch.manual_seed(1)  # redrawn NMF bases and dropout draw the same numbers
        out = block(x, return_reconstruction=True) if isinstance(block, FactorizationContext) else (block(x),)
        results.append((out, block.state_dict()))
        if isinstance(block, FactorizationContext):
            assert out[1].estimate.requires_grad == (mode != "none")
    (reference, state), others = results[0], results[1:]
    for outputs, other_state in others:
        for a, b in zip(torch.utils._pytree.tree_leaves(reference), torch.utils._pytree.tree_leaves(outputs)):
            assert torch.equal(a, b)  # bit for bit
        assert state.keys() == other_state.keys()
        assert all(torch.equal(state[k], other_state[k]) for k in state)


def test_state_dict_and_repr_do_not_change_with_the_mode():
    unit_keys = {"mu", "conv1.weight", "conv1.bias", "conv2.0.weight", "conv2.1.weight", "conv2.1.bias",
                 "conv2.1.running_mean", "conv2.1.running_var", "conv2.1.num_batches_tracked"}
    for mode in BASES_GRAD:
        assert set(EMAUnit(8, rank=2, bases_grad=mode).state_dict()) == unit_keys
        nmf = FactorizationContext(8, 4, rank=2, mode="nmf", width=8, bases_grad=mode)
        assert set(nmf.state_dict()) == {"embed.weight", "embed.bias", "bases", "proj.0.weight", "proj.1.weight",
                                         "proj.1.bias", "proj.1.running_mean", "proj.1.running_var",
                                         "proj.1.num_batches_tracked"}
        assert f"bases_grad={mode!r}" in repr(nmf) and f"bases_grad={mode!r}" in repr(EMAUnit(8, bases_grad=mode))
    assert EMAUnit(8).bases_grad == "none" and EMAContext(8, 4, width=8).bases_grad == "none"
    assert FactorizationContext(8, mode="nmf").bases_grad == "one-step"


def test_which_parameters_train_in_each_mode():
    for mode in BASES_GRAD:
        unit = EMAUnit(8, rank=2, bases_grad=mode).train()
        unit(torch.randn(2, 8, 5, 5)).square().mean().backward()
        assert (unit.conv1.weight.grad is None) == (mode == "none")  # EMANet's conv1 gets no gradient
        nmf = FactorizationContext(8, 4, rank=2, mode="nmf", width=8, bases_grad=mode).train()
        _, rec = nmf(torch.randn(2, 8, 5, 5), return_reconstruction=True)
        F.mse_loss(rec.estimate, rec.target).backward()
        assert nmf.embed.weight.grad.abs().sum() > 0  # through the target in every mode


def test_nmf_and_nmf_unrolled_differ_in_the_gradient_alone():
    blocks = []
    for name in ("nmf", "nmf-unrolled"):
        torch.manual_seed(0)
        blocks.append(create_context(name, C, 8, width=C, rank=RANK).train())
    one_step, unrolled = blocks
    assert repr(one_step) == repr(unrolled).replace("'unrolled'", "'one-step'")
    assert all(torch.equal(a, b) for a, b in zip(one_step.state_dict().values(), unrolled.state_dict().values()))
    x = _input()
    torch.testing.assert_close(one_step(x), unrolled(x), rtol=0, atol=0)


def _zero_biases(block: torch.nn.Module) -> None:
    """So that degenerate inputs reach the iterations as they are (a conv bias would lift them to its values)."""
    for m in block.modules():
        if isinstance(m, torch.nn.Conv2d) and m.bias is not None:
            torch.nn.init.zeros_(m.bias)


def _grad_norms(block, x, autocast):
    x = x.clone().requires_grad_(True)
    weight = torch.randn(1, 8 if not isinstance(block, EMAUnit) else C, SIZE, SIZE,
                         generator=torch.Generator().manual_seed(2))
    torch.manual_seed(5)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        if isinstance(block, FactorizationContext):
            out, rec = block(x, return_reconstruction=True)
            loss = (out.float() * weight).sum() + F.mse_loss(rec.estimate.float(), rec.target.float())
        else:
            out = block(x)
            loss = (out.float() * weight).sum()
    loss.backward()
    grads = [p.grad.float() for p in block.parameters() if p.grad is not None]
    assert torch.isfinite(out).all() and torch.isfinite(x.grad).all() and all(torch.isfinite(g).all() for g in grads)
    return x.grad.norm().item(), torch.stack([g.norm() for g in grads]).norm().item()


@pytest.mark.parametrize("autocast", [False, True], ids=["float32", "bf16"])
@pytest.mark.parametrize("name", list(_blocks()))
def test_unrolled_gradient_is_finite_and_within_10x_of_one_step(name, autocast):
    # inputs at the blocks' edges, with the blocks' biases as built and zeroed; train (batch statistics, the
    # training steps) and eval. EMAUnit's unrolled normalisation gradient is clipped (ema._NORM_FLOOR): without
    # that clip the zero-bias spike and 1e-8 cases came out 1e4 to 1e7 times the one-step gradient
    for train in (False, True):
        for zero_bias in (False, True):
            for kind in ("zeros", "spike", "1e-8", "1e4"):
                norms = {}
                for mode in BASES_GRAD:
                    torch.manual_seed(0)
                    block, owner = BLOCKS[name]()
                    owner.bases_grad = mode
                    if zero_bias:
                        _zero_biases(block)
                    norms[mode] = _grad_norms(block.train(train), _input(kind), autocast)
                case = f"train={train} zero_bias={zero_bias} {kind}: {norms}"
                for i in range(2):  # the input's gradient, then all the parameters'
                    assert norms["unrolled"][i] <= 10 * norms["one-step"][i], case
                    assert norms["one-step"][i] <= 10 * norms["unrolled"][i], case


@pytest.mark.parametrize("bad", ["unroll", "One-Step", "", None, True, 1])
def test_bad_bases_grad_is_rejected_by_name(bad):
    message = re.escape(f"bases_grad must be one of ('none', 'one-step', 'unrolled'), got {bad!r}")
    for build in (lambda: FactorizationContext(8, mode="nmf", bases_grad=bad), lambda: EMAUnit(8, bases_grad=bad),
                  lambda: EMAContext(8, 4, width=8, bases_grad=bad)):
        with pytest.raises(ValueError, match=message):
            build()
    for block in (FactorizationContext(8, mode="nmf"), EMAUnit(8), EMAContext(8, 4, width=8)):
        with pytest.raises(ValueError, match=message):
            block.bases_grad = bad


def test_static_mode_takes_only_the_default():
    static = FactorizationContext(8, 4, rank=2, bases_grad="one-step")  # the default: accepted
    assert static.bases_grad == "one-step" and "bases_grad" not in repr(static)
    for mode in ("none", "unrolled"):
        with pytest.raises(ValueError, match=f"bases_grad={mode!r} needs mode='nmf'"):
            FactorizationContext(8, 4, rank=2, bases_grad=mode)
        with pytest.raises(ValueError, match="static mode has no iterations"):
            static.bases_grad = mode


# every registered family's tiny instances (from the registry) whose context has bases
FAMILIES_WITH_BASES = [(name, kwargs) for name, kwargs in TINY
                       if _bases_modules(create_model(name, num_classes=2, **kwargs).context)]
FAMILY_IDS = [i for i, (name, kwargs) in zip(TINY_IDS, TINY) if (name, kwargs) in FAMILIES_WITH_BASES]


def test_every_family_with_bases_is_covered():
    families = {name for name, _ in FAMILIES_WITH_BASES}
    assert {"mfnet", "emanet", "context_deeplab"} <= families


@pytest.mark.parametrize("name, kwargs", FAMILIES_WITH_BASES, ids=FAMILY_IDS)
def test_a_family_context_reaches_distant_positions_only_when_unrolled(name, kwargs):
    torch.manual_seed(0)
    block = create_model(name, num_classes=2, **kwargs).context.eval()
    randomize_bn_stats(block)
    (owner,) = _bases_modules(block)
    c = next(m for m in block.modules() if isinstance(m, torch.nn.Conv2d)).in_channels
    x0 = torch.randn(1, c, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    rows, cols = torch.meshgrid(torch.arange(SIZE), torch.arange(SIZE), indexing="ij")
    far = torch.maximum((rows - CELL[0]).abs(), (cols - CELL[1]).abs()) >= FAR
    for mode in BASES_GRAD:
        owner.bases_grad = mode
        x = x0.clone().requires_grad_(True)
        block(x)[0, :, CELL[0], CELL[1]].sum().backward()
        grad = x.grad[0].abs().sum(0)
        assert ((grad[far] > 0).any() if mode == "unrolled" else not grad[far].any()), (name, mode)


def test_bases_grad_is_a_saved_model_argument(tmp_path):
    for name, kwargs, mode in (("mfnet", {"mode": "nmf", "width": 16, "rank": 4}, "unrolled"),
                               ("emanet", {"rank": 4}, "one-step")):
        model = create_model(name, encoder="test_resnet", num_classes=2, bases_grad=mode, **kwargs)
        assert _bases_modules(model.context)[0].bases_grad == mode and model.model_args["bases_grad"] == mode
        model.save_pretrained(tmp_path / name)
        from mfnet_zoo import load_model

        assert _bases_modules(load_model(str(tmp_path / name)).context)[0].bases_grad == mode


def test_ema_k_is_a_deprecated_alias_of_rank():
    for cls, args in ((EMAUnit, (8,)), (EMAContext, (8, 4, 8))):
        torch.manual_seed(0)
        with pytest.warns(FutureWarning, match=r"k=\.\.\.\) is deprecated, use rank="):
            old = cls(*args, k=3)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            torch.manual_seed(0)
            new = cls(*args, rank=3)
        assert repr(old) == repr(new) and "rank=3" in repr(new)
        assert old.state_dict().keys() == new.state_dict().keys()
        assert all(torch.equal(a, b) for a, b in zip(old.state_dict().values(), new.state_dict().values()))
        with pytest.raises(TypeError, match="both rank=3 and its deprecated alias k=3"):
            cls(*args, rank=3, k=3)
    unit = EMAUnit(8, rank=5)
    assert unit.rank == 5
    with pytest.warns(FutureWarning, match="EMAUnit.rank"):
        assert unit.k == 5
    assert EMAUnit(8).rank == 64 and EMAUnit(8, 7).rank == 7  # the default, and rank as the second positional
    with pytest.raises(ValueError, match="rank must be a positive int, got 0"):
        EMAUnit(8, rank=0)
