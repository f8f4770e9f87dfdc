"""Documentation: every public symbol has a docstring, the zoo table matches the registry, README's commands."""
import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODULES = ["mfnet_zoo", "mfnet_zoo.layers", "mfnet_zoo.models", "mfnet_zoo.data", "mfnet_zoo.train",
           "mfnet_zoo.metrics", "mfnet_zoo.losses", "mfnet_zoo.hub", "mfnet_zoo.predict", "mfnet_zoo.export",
           "mfnet_zoo.convert", "mfnet_zoo.benchmark", "mfnet_zoo.profiling", "mfnet_zoo.visualize",
           "mfnet_zoo.inference", "mfnet_zoo.optim", "mfnet_zoo.layers.context_protocol", "mfnet_zoo.publish",
           "mfnet_zoo.workflows", "mfnet_zoo.presets", "mfnet_zoo.distributed", "mfnet_zoo.checkpoint",
           "mfnet_zoo.run_record", "mfnet_zoo.card", "mfnet_zoo.info"]


@pytest.mark.parametrize("module_name", MODULES)
def test_every_public_symbol_has_a_docstring(module_name):
    module = importlib.import_module(module_name)
    assert module.__doc__, module_name
    undocumented = [name for name in module.__all__
                    if callable(getattr(module, name)) and not (getattr(module, name).__doc__ or "").strip()]
    assert undocumented == []


def test_zoo_table_lists_every_model_with_its_parameter_count():
    import sys

    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from zoo_table import rows
    finally:
        sys.path.pop(0)
    text = (ROOT / "docs" / "zoo.md").read_text()
    for row in rows(macs=False):
        assert f"| `{row['name']}` |" in text and f"{row['parameters']:,}" in text, row["name"]


def test_readme_gives_the_two_fresh_machine_commands():
    readme = (ROOT / "README.md").read_text()
    assert "pip install -e . && mfnet-zoo demo" in readme
    assert 'pip install -e ".[test]" && python -m pytest -q' in readme
    ci = (ROOT / ".ci" / "run").read_text()
    assert "python -m pytest -q" in ci


def test_benchmark_headline_in_readme_is_generated():
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- benchmarks:start -->(.*)<!-- benchmarks:end -->", readme, re.S)
    assert block and "mfnet_r50 folded / deeplabv3plus_r50" in block.group(1)
    assert block.group(1).strip() in (ROOT / "docs" / "benchmarks.md").read_text()


NO_NETWORK = """
import socket
_connect = socket.socket.connect
def _loopback_only(self, address):  # the network is cut: only this machine answers
    if isinstance(address, tuple) and address[0] not in ("127.0.0.1", "::1", "localhost"):
        raise OSError(f"network access blocked in this test: {address}")
    return _connect(self, address)
socket.socket.connect = _loopback_only
"""


@pytest.mark.slow
@pytest.mark.parametrize("page", ["README.md", "docs/index.md"])
def test_python_snippets_run_as_written_without_network(page, tmp_path):
    """Every ```python block of the page, in order, in a fresh interpreter with the network cut."""
    import subprocess
    import sys

    blocks = re.findall(r"```python\n(.*?)```", (ROOT / page).read_text(), re.S)
    assert blocks, page
    script = tmp_path / "snippets.py"
    script.write_text(NO_NETWORK + "\n".join(blocks))
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=tmp_path,
                            env={**__import__("os").environ, "HF_HUB_CACHE": str(tmp_path / "cache")})
    assert result.returncode == 0, result.stderr[-3000:]
