"""The benchmark and experiment scripts import what exists: every `from fastwave... import name` and
`import fastwave...` in them resolves (the scripts themselves take minutes to hours; their imports
are what a move of the package's modules breaks)."""
import ast
import importlib
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRIPTS = sorted((ROOT / "benchmarks").rglob("*.py"))


def _fastwave_imports(path: pathlib.Path) -> list[tuple[str, list[str]]]:
    imports = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "fastwave":
            imports.append((node.module, [alias.name for alias in node.names]))
        elif isinstance(node, ast.Import):
            imports += [(alias.name, []) for alias in node.names if alias.name.split(".")[0] == "fastwave"]
    return imports


def test_the_scripts_are_found():
    assert len(SCRIPTS) >= 15 and sum(bool(_fastwave_imports(path)) for path in SCRIPTS) >= 15


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: str(p.relative_to(ROOT / "benchmarks")))
def test_every_fastwave_import_resolves(script):
    for module_name, names in _fastwave_imports(script):
        module = importlib.import_module(module_name)
        for name in names:
            if not hasattr(module, name):
                importlib.import_module(f"{module_name}.{name}")  # a submodule: raises if missing
