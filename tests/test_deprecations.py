"""Renamed and moved things keep working, or are refused with a message naming the new place.

``fixtures/saved_v0/*.json``: what mfnet_zoo 0.1.0 (before ``k`` became ``rank`` and ``channels``
``decoder_channels``) saved for each registered family's tiny test config: its config.json, a training
checkpoint's model name and arguments, and the state dict's shapes. Loading them here rebuilds the same
architecture from the old arguments, with one warning per renamed argument.
"""
from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest
import torch

import mfnet_zoo
from mfnet_zoo import load_model
from mfnet_zoo._deprecations import RENAMED_ARGS
from mfnet_zoo._registry import get_model_family, register_model_deprecations
from mfnet_zoo.hub import write_safetensors

FIXTURES = sorted((Path(__file__).parent / "fixtures" / "saved_v0").glob("*.json"))


# families 0.1.0 did not have: nothing saved by it to load
NEWER_THAN_V0 = {"fast_deeplab"}


def test_every_family_has_a_fixture_saved_by_the_previous_version():
    families = {get_model_family(json.loads(p.read_text())["checkpoint"]["model_name"]) for p in FIXTURES}
    assert families == {get_model_family(n) for n in mfnet_zoo.list_models()} - NEWER_THAN_V0


@pytest.mark.parametrize("fixture", FIXTURES, ids=[p.stem for p in FIXTURES])
@pytest.mark.parametrize("kind", ["folder", "checkpoint"])
def test_a_model_saved_by_the_previous_version_loads(fixture, kind, tmp_path):
    saved = json.loads(fixture.read_text())
    state = {k: torch.randn(shape) if shape else torch.tensor(0) for k, shape in saved["state_dict_shapes"].items()}
    if kind == "folder":
        (tmp_path / "config.json").write_text(json.dumps(saved["config.json"]))
        write_safetensors(state, tmp_path / "model.safetensors")
        source = tmp_path
    else:
        source = tmp_path / "last.pt"
        torch.save({**saved["checkpoint"], "state_dict": state}, source)
    old_args = saved["checkpoint"]["model_args"]
    renamed = {old: new for old, new in RENAMED_ARGS.get(get_model_family(saved["checkpoint"]["model_name"]),
                                                           {}).items() if old in old_args}
    with pytest.warns(FutureWarning) if renamed else _no_future_warning():
        model = load_model(str(source))
    assert {k: list(v.shape) for k, v in model.state_dict().items()} == saved["state_dict_shapes"]
    for old, new in renamed.items():
        assert model.model_args[new] == old_args[old] and old not in model.model_args
    torch.testing.assert_close(model.state_dict()[next(iter(state))].float(), next(iter(state.values())).float())


class _no_future_warning:
    def __enter__(self):
        import warnings

        self._catch = warnings.catch_warnings()
        self._catch.__enter__()
        warnings.simplefilter("error", FutureWarning)

    def __exit__(self, *exc):
        return self._catch.__exit__(*exc)


def test_old_and_new_argument_together_is_an_error():
    with pytest.raises(TypeError, match="got both 'k' and its new name 'rank'"):
        mfnet_zoo.create_model("emanet", encoder="test_resnet", k=4, rank=4)


@pytest.mark.parametrize("module, name, new", [
    ("mfnet_zoo.train", "init_distributed", "mfnet_zoo.distributed"),
    ("mfnet_zoo.train", "PAPER_PARAM_RULES", "mfnet_zoo.presets"),
    ("mfnet_zoo.publish", "run_record", "mfnet_zoo.run_record"),
    ("mfnet_zoo.profiling", "model_info", "mfnet_zoo.info"),
    ("mfnet_zoo", "create_context", "mfnet_zoo.layers"),
    ("mfnet_zoo", "Reconstruction", "mfnet_zoo.layers"),
])
def test_moved_names_still_import_with_a_warning_naming_the_new_module(module, name, new):
    with pytest.warns(FutureWarning, match=f"{module}.{name} moved to {new}.{name}"):
        value = getattr(importlib.import_module(module), name)
    assert value is getattr(importlib.import_module(new), name)


def test_renamed_modules_are_refused_with_their_new_name():
    for old, new in (("context", "context_protocol"), ("contexts", "create_context")):
        with pytest.raises(ModuleNotFoundError, match=f"mfnet_zoo.layers.{old} was renamed mfnet_zoo.layers.{new}"):
            importlib.import_module(f"mfnet_zoo.layers.{old}")


def test_a_deprecated_model_name_resolves_with_a_warning():
    register_model_deprecations({"mfnet_lite_tiny_old": "mfnet_lite"})
    with pytest.warns(FutureWarning, match="'mfnet_lite_tiny_old' is renamed 'mfnet_lite'"):
        model = mfnet_zoo.create_model("mfnet_lite_tiny_old", encoder="test_resnet", num_classes=2)
    assert model.model_name == "mfnet_lite" and "mfnet_lite_tiny_old" not in mfnet_zoo.list_models()
    with pytest.raises(ValueError, match="must not be one"):
        register_model_deprecations({"mfnet": "mfnet_lite"})
