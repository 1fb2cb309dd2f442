"""The package's layout: no module imports one that imports it back (at any depth, imports inside functions
included), and the README's layout block names every top-level module and subpackage of `ecg_pma/`."""

import ast
import re
from pathlib import Path


PACKAGE_DIR = Path(__file__).resolve().parents[1] / "ecg_pma"
README = PACKAGE_DIR.parent / "README.md"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_modules() -> dict[str, Path]:
    # the metrics module is an `evaluate` script loaded by path, not imported as part of the package
    return {module_name(path): path for path in PACKAGE_DIR.rglob("*.py") if "ecg_multilabel" not in path.parts}


def imported_modules(path: Path, modules: dict[str, Path]) -> set[str]:
    """The package's modules that `path` imports anywhere in its body (resolved relative imports, `from X import
    submodule` counted as the submodule); package `__init__`s that merely lie on the way are not counted."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        found.update(target for target in targets if target in modules and target != name)
    return found


def test_no_module_imports_one_that_imports_it_back():
    modules = package_modules()
    graph = {name: imported_modules(path, modules) for name, path in modules.items()}
    # a package's __init__ re-exporting its own modules is not a circle through them
    graph = {
        name: {target for target in targets if not name.startswith(target + ".") and not target.startswith(name + ".")}
        for name, targets in graph.items()
    }
    cycles, state = [], {}

    def visit(name, stack):
        state[name] = "open"
        for target in sorted(graph[name]):
            if state.get(target) == "open":
                cycles.append([*stack[stack.index(target) :], target])
            elif target not in state:
                visit(target, [*stack, target])
        state[name] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert not cycles, "import circles: " + "; ".join(" -> ".join(cycle) for cycle in cycles)


def test_the_layout_walk_finds_a_circle_where_there_is_one(tmp_path, monkeypatch):
    package = tmp_path / "ecg_pma"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "first.py").write_text("def f():\n    from .second import g\n")
    (package / "second.py").write_text("from .first import f\n")
    monkeypatch.setattr(__import__(__name__), "PACKAGE_DIR", package)
    try:
        test_no_module_imports_one_that_imports_it_back()
    except AssertionError as error:
        assert "ecg_pma.first -> ecg_pma.second -> ecg_pma.first" in str(error)
    else:
        raise AssertionError("the circle first -> second -> first was not found")


def test_the_readme_layout_names_every_part_of_the_package():
    block = re.search(r"## Layout\n.*?```\n(.*?)```", README.read_text(), re.S).group(1)
    parts = {path.name for path in PACKAGE_DIR.iterdir() if path.suffix == ".py" and path.name != "__init__.py"}
    parts |= {f"{path.name}/" for path in PACKAGE_DIR.iterdir() if (path / "__init__.py").exists()}
    # the first column of each line: `name.py`, `a.py, b.py` or `folder/`
    named = {name for line in block.splitlines()[1:] for name in re.split(r"\s{2,}", line.strip())[0].split(", ")}
    named -= {"examples/", "benchmarks/", "tests/", "model_cards/", ""}
    assert parts <= named, f"not in the README's layout: {sorted(parts - named)}"
    assert named <= parts, f"named in the README's layout but not in ecg_pma/: {sorted(named - parts)}"
