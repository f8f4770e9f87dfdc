"""Each public submodule works when it is the first thing a program imports (issue: the registry was
empty unless the facade or the CLI had imported the families). Every snippet runs in a fresh
interpreter that never touches a facade name before calling the submodule's entry point."""
from __future__ import annotations

import subprocess
import sys
import textwrap

TINY = "dict(encoder='test_resnet', num_classes=3)"

SNIPPETS = {
    "_factory.create_model": f"""
        from mfnet_zoo._factory import create_model
        assert create_model('mfnet', **{TINY}).model_name == 'mfnet'
    """,
    "_registry.list_models": """
        from mfnet_zoo._registry import BUILTIN_FAMILIES, is_model, list_models
        assert not any(m in sys.modules for m in BUILTIN_FAMILIES)
        assert 'mfnet_r50' in list_models('mfnet*') and is_model('deeplabv3plus_r50')
        assert all(m in sys.modules for m in BUILTIN_FAMILIES)
    """,
    "info.model_info": """
        from mfnet_zoo.info import model_info
        assert model_info('mfnet', size=64, macs=False)['parameters'] > 0
    """,
    "train.Trainer": f"""
        import tempfile, torch
        from torch.utils.data import DataLoader, TensorDataset
        from mfnet_zoo._factory import create_model
        from mfnet_zoo.train import PRESETS, Trainer
        model = create_model('deeplabv3plus', **{TINY})
        data = TensorDataset(torch.randn(2, 3, 32, 32), torch.randint(0, 3, (2, 32, 32)))
        cfg = PRESETS['default'].replace(epochs=1, batch_size=2)
        with tempfile.TemporaryDirectory() as out:
            history = Trainer(model, DataLoader(data, batch_size=2), None, cfg, out, progress=False).fit()
        assert history[0]['epoch'] == 1
    """,
    "predict and export": f"""
        import tempfile, torch
        from pathlib import Path
        from PIL import Image
        from mfnet_zoo._factory import load_model
        from mfnet_zoo.export import export_program
        from mfnet_zoo.predict import predict_files
        with tempfile.TemporaryDirectory() as tmp:  # load_model: a name, then a folder
            load_model('mfnet_lite', **{TINY}).save_pretrained(Path(tmp) / 'model')
            model = load_model(str(Path(tmp) / 'model')).eval()
            Image.new('RGB', (40, 32)).save(Path(tmp) / 'a.png')
            report = predict_files(model, [str(Path(tmp) / 'a.png')], Path(tmp) / 'out', progress=False)
            assert not report.failed and report.written
            assert export_program(model, None, (32, 32)) is not None
    """,
}


def test_every_submodule_entry_point_finds_the_registry_in_a_fresh_interpreter():
    guard = "import sys\nassert 'mfnet_zoo.models' not in sys.modules\n"
    processes = {name: subprocess.Popen([sys.executable, "-c", guard + textwrap.dedent(code)], text=True,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
                 for name, code in SNIPPETS.items()}
    failed = {name: p.communicate(timeout=300)[0] for name, p in processes.items()}
    failed = {name: out[-1500:] for name, out in failed.items() if processes[name].returncode != 0}
    assert not failed, "\n\n".join(f"{name}:\n{out}" for name, out in failed.items())

