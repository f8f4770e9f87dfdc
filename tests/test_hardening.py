"""Hardening: a clear error for every bad input to a block, property-based checks of the blocks,
hostile configs, bad data files skipped on request."""
import json

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from mfnet_zoo import ASPP, DeepLabV3PlusDecoder, EMAUnit, FactorizationContext, create_model, from_pretrained
from mfnet_zoo.layers import ClassifierDecoder, EMAContext
from mfnet_zoo.data import FolderDataset, write_synthetic_dataset

BLOCKS = {
    "static": lambda: FactorizationContext(16, 8, rank=4, base_size=(5, 5)),
    "nmf": lambda: FactorizationContext(16, 8, rank=4, mode="nmf", width=8),
    "folded": lambda: FactorizationContext(16, 8, rank=4, base_size=(5, 5)).eval().fuse(),
    "ema_unit": lambda: EMAUnit(16, rank=4),
    "ema_context": lambda: EMAContext(16, 8, width=8, rank=4),
    "aspp": lambda: ASPP(16, 8, atrous_rates=(1, 2)),
}


@pytest.mark.parametrize("name", sorted(BLOCKS))
@pytest.mark.parametrize("x,error,match", [
    (torch.randn(16, 5, 5), ValueError, r"expects B x 16 x h x w features, got shape \(16, 5, 5\)"),
    (torch.randn(1, 3, 5, 5), ValueError, r"expects B x 16 x h x w features, got shape \(1, 3, 5, 5\)"),
    (torch.zeros(1, 16, 5, 5, dtype=torch.uint8), TypeError, "expects floating-point features, got dtype torch.uint8"),
    ("not a tensor", TypeError, "expects a torch.Tensor B x 16 x h x w, got str"),
])
def test_every_block_names_the_bad_input(name, x, error, match):
    with pytest.raises(error, match=match):
        BLOCKS[name]().eval()(x)


def test_decoders_name_the_bad_input():
    decoder = DeepLabV3PlusDecoder(8, num_classes=3).eval()
    with pytest.raises(ValueError, match=r"DeepLabV3PlusDecoder \(low-level features\) expects B x 8 x h x w"):
        decoder(torch.randn(1, 4, 8, 8), torch.randn(1, 256, 2, 2))
    with pytest.raises(ValueError, match=r"ClassifierDecoder \(context features\) expects B x 256 x h x w"):
        ClassifierDecoder(3)(None, torch.randn(1, 255, 2, 2))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(sorted(BLOCKS)), batch=st.integers(1, 3), h=st.integers(1, 24), w=st.integers(1, 24),
       bf16=st.booleans())
def test_blocks_shapes_finiteness_and_eval_determinism(name, batch, h, w, bf16):
    torch.manual_seed(0)
    block = BLOCKS[name]().eval()
    x = torch.randn(batch, 16, h, w)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        first, second = block(x), block(x)
    channels = 16 if name == "ema_unit" else 8
    assert first.shape == (batch, channels, h, w)
    assert torch.isfinite(first).all()
    assert torch.equal(first, second)


@pytest.mark.parametrize("fill", [0.0, 1.0, 1e-30, 1e30, float("inf"), -float("inf"), float("nan")])
def test_nmf_stays_finite_on_degenerate_inputs(fill):
    block = FactorizationContext(16, 8, rank=4, mode="nmf", width=8).eval()
    x = torch.full((2, 16, 6, 6), fill)
    with torch.no_grad():
        block.embed.weight.abs_()  # non-negative embedding: the NMF input really is the constant
    out, rec = block(x, return_reconstruction=True)
    if fill == float("inf") or fill != fill:  # inf or NaN in: NaN everywhere out, never a finite map that looks right
        assert rec.estimate.isnan().all() and out.isnan().all()
        assert rec.target.isinf().all() if fill == float("inf") else rec.target.isnan().all()
        return
    assert torch.isfinite(out).all() and torch.isfinite(rec.estimate).all()
    if fill == -float("inf"):  # an all-zero NMF input (relu(-inf)): the estimate is exactly 0, out is proj(0)
        assert not rec.target.any() and not rec.estimate.any()
        torch.testing.assert_close(out, block.proj(torch.zeros_like(rec.target)), rtol=0, atol=0)
    else:  # a constant map per channel is rank 1: the estimate recovers it
        assert rec.target.amax() > 0
        torch.testing.assert_close(rec.estimate, rec.target, rtol=1e-3, atol=0)


def test_hostile_configs_are_rejected_before_building(tmp_path):
    model = create_model("mfnet", encoder="test_resnet", num_classes=3)
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    for change, match in [
        ({"architecture": "os.system"}, "unknown model 'os'"),
        ({"model_args": {**config["model_args"], "rank": 10**9}}, r"model_args.rank=1000000000 is implausibly large"),
        ({"model_args": {**config["model_args"], "base_size": [33, 10**12]}}, r"model_args.base_size.1="),
        ({"model_args": "rm -rf /"}, "not an mfnet_zoo config"),
    ]:
        (tmp_path / "config.json").write_text(json.dumps({**config, **change}))
        with pytest.raises(ValueError, match=match):
            from_pretrained(tmp_path)


def test_folder_skip_bad_counts_and_leaves_out(tmp_path):
    root = write_synthetic_dataset(tmp_path / "d", {"train": 4}, size=32)
    Image.fromarray(np.full((32, 32), 99, np.uint8)).save(root / "masks" / "train" / "00001.png")
    (root / "images" / "train" / "00002.png").write_bytes(b"corrupt")
    with pytest.warns(UserWarning, match="skipped 2 bad image/mask pair"):
        ds = FolderDataset(root, "train", skip_bad=True)
    assert len(ds) == 2 and len(ds.skipped) == 2
    assert "00001.png" in ds.skipped[0] and "00002.png" in ds.skipped[1]
    with pytest.raises(ValueError, match="00002.png"):
        FolderDataset(root, "train")[2]


def test_repo_ids_and_paths_are_validated_before_any_request():
    with pytest.raises(ValueError, match="Repo id must be in the form"):
        create_model("mfnet", encoder="test_resnet", pretrained="hf-hub:../../etc/passwd")
    with pytest.raises(FileNotFoundError, match="has no readable config.json"):
        from_pretrained("/")


def test_atomic_folder_replaces_whole_or_not_at_all(tmp_path):
    from mfnet_zoo._atomic import atomic_folder

    target = tmp_path / "model"
    with atomic_folder(target) as tmp:
        (tmp / "a.txt").write_text("first")
    assert (target / "a.txt").read_text() == "first"
    with pytest.raises(RuntimeError, match="interrupted"), atomic_folder(target) as tmp:
        (tmp / "a.txt").write_text("half")
        raise RuntimeError("interrupted")
    assert (target / "a.txt").read_text() == "first" and sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    with atomic_folder(target) as tmp:
        (tmp / "b.txt").write_text("second")
    assert sorted(p.name for p in target.iterdir()) == ["b.txt"] and sorted(p.name for p in tmp_path.iterdir()) == [
        "model"]
