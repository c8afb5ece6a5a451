"""The package's layering, as the import-linter contracts in pyproject.toml state it: a change that
makes a lower part import a higher one fails here (move the code; never loosen a contract)."""
import pathlib
import shutil
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_the_import_contracts_hold():
    lint_imports = shutil.which("lint-imports")
    if lint_imports is None:
        pytest.fail("lint-imports is missing: pip install -e '.[test]' installs import-linter")
    result = subprocess.run([lint_imports, "--no-cache"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout


# fastwave.ops names each op after the module that defines it (ops.causal_attention is the op, as
# in flash-attn and torch.nn.functional); that API predates this check and users call it.
OPS_NAMED_AFTER_THEIR_MODULES = {"fastwave.ops.causal_attention", "fastwave.ops.decode_attention",
                                 "fastwave.ops.dilated_causal_conv1d", "fastwave.ops.wavenet_block"}


def test_no_package_exports_a_name_that_hides_one_of_its_modules():
    # `import fastwave.codes.kmeans as km` would bind a function if fastwave.codes exported one named
    # kmeans: the package attribute wins over the submodule.
    import importlib
    import pkgutil
    import types

    import fastwave

    hidden = []
    for info in pkgutil.walk_packages(fastwave.__path__, "fastwave."):
        if not info.ispkg:
            continue
        package = importlib.import_module(info.name)
        for sub in pkgutil.iter_modules(package.__path__):
            value = getattr(package, sub.name, None)
            if value is not None and not isinstance(value, types.ModuleType):
                hidden.append(f"{info.name}.{sub.name}")
    assert sorted(set(hidden) - OPS_NAMED_AFTER_THEIR_MODULES) == []
