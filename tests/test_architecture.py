"""The package's layers (CONTRIBUTING.md, "Layers"): imports only point down, and there is no circle.

Every import counts, inside functions and under ``if TYPE_CHECKING:`` too (an annotation that names a
module above is a dependency on it all the same). Package ``__init__`` modules are the facade, not a
layer: they import their submodules, so nothing inside the package may import a package ``__init__``
that sits above it.

One upward dependency is allowed, and only this one: the registry imports the built-in family modules
by path (``_registry.BUILTIN_FAMILIES``, through ``importlib``) on its first lookup, so that the registry
is never empty whichever module a program imported first (timm's eager ``timm/models/__init__.py``, done
lazily to keep ``mfnet-zoo --help`` free of torch). The graph below holds those edges; only they may
point up, and they are the only reason a circle through the registry does not count.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

import mfnet_zoo
from mfnet_zoo._registry import BUILTIN_FAMILIES

PACKAGE = Path(mfnet_zoo.__file__).parent

# bottom to top; a module may import its own layer (no circle) or any layer below
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("blocks and small helpers", ("version", "_checks", "_atomic", "_constants", "_deprecations", "_extras", "layers",
                                  "data", "metrics", "visualize")),
    ("weights I/O (Hub and files)", ("hub",)),
    ("registry, pretrained configs, sources, checkpoints, builder, factory, card",
     ("_pretrained", "_registry", "_sources", "checkpoint", "_builder", "_factory", "card")),
    ("models and families", ("models", "losses")),
    ("inference", ("inference",)),
    ("engine and applications", ("optim", "presets", "distributed", "run_record", "publish", "train", "predict",
                                 "export", "benchmark", "profiling", "info", "demo", "convert", "workflows")),
    ("command line", ("cli", "__main__")),
]


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_package(module: str) -> bool:
    return (PACKAGE.parent / Path(*module.split(".")) / "__init__.py").is_file()


def _exists(module: str) -> bool:
    return _is_package(module) or (PACKAGE.parent / Path(*module.split("."))).with_suffix(".py").is_file()


def _imports(path: Path, module: str | None = None) -> set[str]:
    """The mfnet_zoo modules that ``path`` (the module ``module``, default: its own) imports, absolute,
    anywhere in the file."""
    module = module or _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.split(".")[0] == "mfnet_zoo"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            if source.split(".")[0] != "mfnet_zoo":
                continue
            for alias in node.names:  # `from . import hub` imports the module mfnet_zoo.hub
                found.add(f"{source}.{alias.name}" if _exists(f"{source}.{alias.name}") else source)
    return found - {module}


def _layer(module: str) -> int | None:
    """The index of ``module``'s layer; None for the package facade (``mfnet_zoo`` itself)."""
    parts = module.split(".")
    if len(parts) == 1:
        return None
    for index, (_, names) in enumerate(LAYERS):
        if parts[1] in names:
            return index
    raise AssertionError(f"{module} is in no layer: add it to LAYERS here and to CONTRIBUTING.md")


GRAPH = {_module_name(p): _imports(p) for p in sorted(PACKAGE.rglob("*.py"))}
# the sanctioned lazy import (see the module docstring): the registry loads the built-in families by path
ALLOWED_UPWARD = {("mfnet_zoo._registry", family) for family in BUILTIN_FAMILIES}
for _source, _target in ALLOWED_UPWARD:
    GRAPH[_source] = GRAPH[_source] | {_target}


def test_every_module_has_a_layer():
    for module in GRAPH:
        _layer(module)


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_imports_point_down(module):
    own = _layer(module)
    if own is None:  # the facade
        return
    upward = [f"{target} ({'the package facade' if _layer(target) is None else LAYERS[_layer(target)][0]})"
              for target in sorted(GRAPH[module]) if (_layer(target) is None or _layer(target) > own)
              and (module, target) not in ALLOWED_UPWARD]
    assert not upward, f"{module} ({LAYERS[own][0]}) imports upward: {upward}"


def test_no_import_circle():
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(module: str) -> None:
        state[module] = "open"
        stack.append(module)
        for target in sorted(GRAPH.get(module, ())):
            if (module, target) in ALLOWED_UPWARD:
                continue
            if state.get(target) == "open":
                cycle = stack[stack.index(target):] + [target]
                raise AssertionError(f"import circle: {' -> '.join(cycle)}")
            if target not in state:
                visit(target)
        stack.pop()
        state[module] = "done"

    for module in sorted(GRAPH):
        if module not in state:
            visit(module)


def test_the_checker_sees_function_level_type_checking_and_relative_imports(tmp_path):
    # the parser itself: an import inside a function counts, and so does one under TYPE_CHECKING
    assert "mfnet_zoo._atomic" in _imports(PACKAGE / "hub.py")
    assert {"mfnet_zoo.hub", "mfnet_zoo._builder"} <= _imports(PACKAGE / "models" / "segmentation.py")
    fake = tmp_path / "probe.py"  # read as if it were mfnet_zoo/probe.py
    fake.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import cli\n"
                    "def f():\n    from .train import Trainer\n")
    assert _imports(fake, module="mfnet_zoo.probe") == {"mfnet_zoo.cli", "mfnet_zoo.train"}


def test_the_lazy_family_import_is_the_only_dynamic_import():
    # importlib by module path hides a dependency from the graph: only the registry (the sanctioned one) and
    # the facade (which loads its public names lazily) may do it; _extras imports optional third-party modules
    # (the extras' onnx, scipy, ...), never one of the package's
    from mfnet_zoo._extras import EXTRAS

    dynamic = {module for module, path in ((_module_name(p), p) for p in PACKAGE.rglob("*.py"))
               if "importlib.import_module(" in path.read_text()}
    assert dynamic <= {"mfnet_zoo", "mfnet_zoo._registry", "mfnet_zoo.export", "mfnet_zoo._extras"}, dynamic
    assert not any(module.startswith("mfnet_zoo") for module in EXTRAS)
    assert all(_layer(family) > _layer("mfnet_zoo._registry") for family in BUILTIN_FAMILIES)


def test_the_model_loss_and_engine_know_the_context_protocol_only():
    concrete = {m for m in GRAPH if m.startswith("mfnet_zoo.layers")} - {"mfnet_zoo.layers.context_protocol"}
    for module in ("mfnet_zoo.train", "mfnet_zoo.optim", "mfnet_zoo.losses", "mfnet_zoo.models.segmentation"):
        assert not GRAPH[module] & concrete, f"{module} imports a concrete block: {GRAPH[module] & concrete}"
    engine = (PACKAGE / "train.py").read_text() + (PACKAGE / "optim.py").read_text()
    for needle in ("FactorizationContext", "EMAUnit", "ASPP", '"Y"', '"Z"', "hasattr(model.context"):
        assert needle not in engine, f"the engine names {needle}"


def test_the_facade_is_lazy_and_complete():
    import subprocess
    import sys

    code = ("import sys, mfnet_zoo; assert 'torch' not in sys.modules and 'timm' not in sys.modules; "
            "from mfnet_zoo.cli import build_parser; build_parser(); assert 'torch' not in sys.modules; "
            "mfnet_zoo.list_models(); assert 'timm' in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
    lazy = {name for names in mfnet_zoo._LAZY.values() for name in names}
    assert set(mfnet_zoo.__all__) == lazy | {"__version__", "from_pretrained", "reparameterize_model"}
    assert all(getattr(mfnet_zoo, name) is not None for name in mfnet_zoo.__all__)
