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


def _first_column(table: str) -> list[str]:
    return [line.split()[0] for line in table.splitlines()[1:]]


def test_list_with_pattern(capsys):
    assert main(["list", "emanet*"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["model", "family", "context", "encoder", "params", "pretrained", "tags"]
    assert _first_column("\n".join(lines)) == ["emanet", "emanet_r101", "emanet_r50"]
    assert lines[3].split() == ["emanet_r50", "emanet", "EMAContext", "resnet50", "34.66M", "tv_in1k"]


def test_list_json_counts_parameters_on_the_meta_device(capsys, monkeypatch):
    from mfnet_zoo import info

    counted, count = [], info.count_parameters  # the devices of the models whose parameters were counted
    monkeypatch.setattr(info, "count_parameters", lambda model: (counted.append({p.device.type for p in
                                                                                 model.parameters()}), count(model))[1])
    assert main(["list", "mfnet_r*", "--json"]) == 0
    # meta tensors: no memory, no initialisation (about 0.1 s a model); checked as such, not by a wall-clock
    # bound, which a loaded machine failed
    assert counted == [{"meta"}, {"meta"}]
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == ["mfnet_r101", "mfnet_r50"]
    assert rows[1] == {"name": "mfnet_r50", "family": "mfnet", "context": "FactorizationContext", "encoder": "resnet50",
                       "num_classes": 21, "parameters": 29_738_997, "pretrained_tags": ["tv_in1k"]}
    assert main(["list", "mfnet_r50*", "--pretrained"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[-1] == "weights"
    assert lines[1].split() == ["mfnet_r50.tv_in1k", "mfnet", "FactorizationContext", "resnet50", "29.74M", "encoder",
                                "only:", "resnet50.tv_in1k"]
    assert main(["list", "nothing*"]) == 0
    assert capsys.readouterr().err.strip() == "no model matches 'nothing*'"


def test_info_json_counts_parameters_and_macs(capsys):
    import torch

    from mfnet_zoo import create_model
    from mfnet_zoo.profiling import count_macs

    assert main(["info", "mfnet_r50", "--size", "65", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["parameters"] == 29_738_997
    assert info["blocks"] == {"encoder": "TimmEncoder", "context": "FactorizationContext",
                              "decoder": "DeepLabV3PlusDecoder"}
    assert info["input_size"] == [1, 3, 65, 65]
    # the counter on one conv, by hand: 8 outputs x 3 inputs x 3 x 3 taps at 10 x 12 positions (bias not counted)
    assert count_macs(torch.nn.Conv2d(3, 8, 3, padding=1), (1, 3, 10, 12)) == 8 * 3 * 9 * 10 * 12
    # the model: its encoder as counted, the context and the decoder by hand. 65 x 65 gives 5 x 5 at stride 16 and
    # 17 x 17 at stride 4. Context: embed 2048 -> 2048 and proj 2048 -> 256 (1x1) on 5 x 5, and Y Z (2048 x 64 x 1089)
    context = 25 * (2048 * 2048 + 2048 * 256) + 2048 * 64 * 33 * 33
    # decoder on 17 x 17: reduce 256 -> 48 (1x1), 3x3 304 -> 256, 3x3 256 -> 256, classifier 256 -> 21 (1x1)
    decoder = 17 * 17 * (256 * 48 + 304 * 256 * 9 + 256 * 256 * 9 + 256 * 21)
    encoder = count_macs(create_model("mfnet_r50").encoder, (1, 3, 65, 65))
    assert (context, decoder, encoder) == (260_702_208, 377_984_256, 734_663_872)
    assert info["macs"] == encoder + context + decoder


def test_info_text(capsys):
    assert main(["info", "emanet_r50", "--no-macs"]) == 0
    out = capsys.readouterr().out
    assert "34,657,621" in out and "EMAContext" in out and "ClassifierDecoder" in out


def test_user_errors_are_messages_not_tracebacks(capsys):
    assert main(["info", "mfnet_r5"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mfnet-zoo: error: unknown model 'mfnet_r5'; did you mean mfnet_r50")
    assert "mfnet-zoo list" in err and "Traceback" not in err


def test_module_entry_and_console_script():
    result = subprocess.run([sys.executable, "-m", "mfnet_zoo", "list", "mfnet_r*"], capture_output=True,
                            text=True, check=True)
    assert _first_column(result.stdout) == ["mfnet_r101", "mfnet_r50"]  # not mfnet_lite_r50: fnmatch pattern
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


def test_options_only_as_spelled_with_the_commands_usage_and_what_was_meant(capsys):
    from mfnet_zoo.cli.parser import build_parser

    parser = build_parser()
    assert not parser.allow_abbrev and all(not p.allow_abbrev for p in parser.commands.values())
    for argv, hint in [(["train", "mfnet", "--epocs", "1"], "(--epocs: did you mean --epochs?)"),
                       (["train", "mfnet", "--epoch", "1"], "(--epoch: did you mean --epochs?)"),  # no abbreviations
                       (["train", "mfnet", "--encoder-weight", "none"],
                        "(--encoder-weight: did you mean --encoder-weights?)"),
                       (["eval", "m", "--encoder-weights", "none"],
                        "(--encoder-weights is an option of train, not of this command)")]:
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        err = capsys.readouterr().err
        assert exit_info.value.code == 2
        assert err.startswith(f"usage: mfnet-zoo {argv[0]} ")  # the command's usage, not the top level's
        assert err.endswith(f"mfnet-zoo {argv[0]}: error: unrecognized arguments: {' '.join(argv[2:])} {hint}\n")


def test_help_is_plain_text(capsys):
    from mfnet_zoo.cli.parser import build_parser

    for command in [None, *build_parser().commands]:
        with pytest.raises(SystemExit):
            main([command, "--help"] if command else ["--help"])
        out = capsys.readouterr().out
        assert out.startswith("usage: mfnet-zoo")
        assert not [markup for markup in ("``", "`", ":func:", ":class:", ":mod:", ":data:", "**") if markup in out], \
            command


def test_progress_bars_only_when_stderr_is_a_terminal(monkeypatch):
    from mfnet_zoo.cli import _progress, parse_args

    for tty, argv, expected in [(True, [], True), (False, [], False), (False, ["--progress"], True),
                                (True, ["--no-progress"], False)]:
        monkeypatch.setattr(sys.stderr, "isatty", lambda tty=tty: tty)
        assert _progress(parse_args(["eval", "m", *argv])) is expected


def test_a_run_file_from_before_progress_options_reruns(tmp_path):
    from mfnet_zoo.cli import _recorded_args, parse_args

    (tmp_path / "run.json").write_text(json.dumps({"mfnet_zoo_run": 1, "args": {"model": "mfnet", "epochs": 3,
                                                                                 "no_progress": True}}))
    args = parse_args(["train", "--config", str(tmp_path / "run.json"), "--progress"])
    assert (args.model, args.epochs, args.progress) == ("mfnet", 3, True)
    assert "progress" not in _recorded_args(args) and "no_progress" not in _recorded_args(args)


def test_predict_on_a_missing_path_fails_before_loading_or_writing(tmp_path, capsys):
    assert main(["predict", "mfnet_r50", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out")]) == 2
    out, err = capsys.readouterr()
    assert out == "" and not (tmp_path / "out").exists()
    assert err.strip() == f"mfnet-zoo: error: no image to predict: {tmp_path / 'nowhere'}: no such file or folder"
