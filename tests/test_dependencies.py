"""Every library the package imports is declared in pyproject.toml, with a floor (`make test-min` installs them)."""

import ast
import importlib.metadata
import re
import subprocess
import sys

from conftest import REPO_ROOT


def imported_top_level_modules():
    modules = set()
    for path in (REPO_ROOT / "ecg_pma").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules.add(node.module.split(".")[0])
    return modules - set(sys.stdlib_module_names) - {"ecg_pma"}


def normalized(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def test_every_imported_library_is_a_declared_dependency():
    floors = subprocess.run(
        # optional features (ONNX Runtime, the Gradio app, the readers of hospital ECG formats) import their
        # libraries lazily, from the extras
        [sys.executable, str(REPO_ROOT / ".ci" / "floors.py"), "onnx", "app", "formats"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    declared = {normalized(line.split("==")[0]) for line in floors if "==" in line} | {"torch"}
    distributions = importlib.metadata.packages_distributions()
    undeclared = {
        module: distributions.get(module, [module])
        for module in imported_top_level_modules()
        if not {normalized(name) for name in distributions.get(module, [module])} & declared
    }
    assert not undeclared, f"imported but not declared in pyproject.toml: {undeclared}"
    assert {"pandas", "transformers", "accelerate", "datasets"} <= declared
