"""The mfnet-zoo command."""
import json
import subprocess
import sys
from importlib.metadata import entry_points

import pytest

from mfnet_zoo import __version__
from mfnet_zoo.cli import main


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"mfnet-zoo {__version__}"


def test_list_with_pattern(capsys):
    assert main(["list", "emanet*"]) == 0
    assert capsys.readouterr().out.split() == ["emanet", "emanet_r101", "emanet_r50"]


def test_info_json_counts_parameters_and_macs(capsys):
    assert main(["info", "mfnet_r50", "--size", "65", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["parameters"] == 29_738_997
    assert info["blocks"] == {"encoder": "TimmEncoder", "context": "FactorizationContext",
                              "decoder": "DeepLabV3PlusDecoder"}
    assert info["input_size"] == [1, 3, 65, 65] and info["macs"] > 1e9


def test_info_text(capsys):
    assert main(["info", "emanet_r50", "--no-macs"]) == 0
    out = capsys.readouterr().out
    assert "34,657,621" in out and "EMAContext" in out and "ClassifierDecoder" in out


def test_user_errors_are_messages_not_tracebacks(capsys):
    assert main(["info", "mfnet_r5"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mfnet-zoo: error: unknown model 'mfnet_r5'; did you mean mfnet_r50")
    assert "Traceback" not in err


def test_module_entry_and_console_script():
    result = subprocess.run([sys.executable, "-m", "mfnet_zoo", "list", "mfnet_r*"], capture_output=True,
                            text=True, check=True)
    assert result.stdout.split() == ["mfnet_r101", "mfnet_r50"]  # not mfnet_lite_r50: fnmatch pattern
    scripts = {e.name: e.value for e in entry_points(group="console_scripts")}
    assert scripts.get("mfnet-zoo") == "mfnet_zoo.cli:main"


def test_train_help_shows_the_three_presets(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    assert "{paper,paper-text,default}" in out
    assert "what the paper's code ran" in out and "as the paper's text describes" in out
    with pytest.raises(SystemExit):
        main(["eval", "--help"])
    assert "{full,paper}" in capsys.readouterr().out


def test_train_presets_named_for_the_parser_are_the_engines():
    from mfnet_zoo._constants import PRESET_DESCRIPTIONS
    from mfnet_zoo.train import PRESETS

    assert tuple(PRESET_DESCRIPTIONS) == tuple(PRESETS)  # --help describes them without importing torch
