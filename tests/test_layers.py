"""The package's folders are its layers: imports only go down, there is no cycle, and the architecture page
lists every module."""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx

import culturesim

PACKAGE = Path(culturesim.__file__).parent
ARCHITECTURE = PACKAGE.parent / "docs" / "architecture.md"
# Floors from the bottom up, as docs/architecture.md names them; a module's floor is its folder's.
FLOORS = ("core", "schema", "parts", "simulation", "stats", "calibration", "checks", "study", "reports", "")


def modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def floor(module: str) -> int:
    """0 for culturesim.core.*, ..., the top for culturesim.cli and the package's own modules."""
    folder = module.split(".")[1] if module.count(".") >= 2 or module.split(".")[-1] in FLOORS else ""
    return FLOORS.index(folder if folder in FLOORS else "")


def imports(path: Path, *, top_level_only: bool) -> set[str]:
    """The culturesim modules a file imports (inside functions too, unless `top_level_only`)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    known, found = modules(), set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("culturesim"):
            for alias in node.names:
                child = f"{node.module}.{alias.name}"
                found.add(child if child in known else node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("culturesim"))
    return found


def test_every_import_goes_down_or_stays_on_its_floor() -> None:
    upward = [
        f"{module} ({FLOORS[floor(module)] or 'top'}) imports {target} ({FLOORS[floor(target)] or 'top'})"
        for module, path in modules().items()
        for target in imports(path, top_level_only=False)
        if floor(target) > floor(module) and target != "culturesim"
    ]
    assert not upward, upward


def test_there_is_no_import_cycle() -> None:
    graph = nx.DiGraph()
    for module, path in modules().items():
        graph.add_edges_from((module, target) for target in imports(path, top_level_only=True) if target != module)
    assert not list(nx.simple_cycles(graph))


def test_the_architecture_page_lists_every_module() -> None:
    page = ARCHITECTURE.read_text(encoding="utf-8")
    missing = [
        str(path.relative_to(PACKAGE))
        for path in modules().values()
        if path.name != "__init__.py" and f"`{path.relative_to(PACKAGE).as_posix()}`" not in page
    ]
    assert not missing, f"docs/architecture.md does not list: {missing}"


# The scripts beside the package: benchmarks may import its internals (they measure them); the analysis
# notebooks and paper scripts import only the public API, so the floors can move under them.
SCRIPT_FOLDERS = ("benchmarks", "analysis", "paper")
PUBLIC_API_FOLDERS = ("analysis", "paper")


def script_imports(folder: str) -> list[tuple[Path, str, str | None]]:
    """(file, module, name) for every culturesim import of the .py files under the repository's
    `folder`, inside functions too; name is None for `import culturesim.x`."""
    found: list[tuple[Path, str, str | None]] = []
    for path in sorted((PACKAGE.parent / folder).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                if node.module.split(".")[0] == "culturesim":
                    found.extend((path, node.module, alias.name) for alias in node.names)
            elif isinstance(node, ast.Import):
                found.extend((path, a.name, None) for a in node.names if a.name.split(".")[0] == "culturesim")
    return found


def resolves(module: str, name: str | None) -> bool:
    """Whether `from module import name` (or `import module`) would find what it names."""
    import importlib
    import importlib.util

    try:
        imported = importlib.import_module(module)
        return (
            name in (None, "*") or hasattr(imported, name) or importlib.util.find_spec(f"{module}.{name}") is not None
        )
    except ImportError:  # a missing module, or `name` looked up under a module that is not a package
        return False


def test_scripts_import_only_what_the_package_has() -> None:
    """`from culturesim import generation` after generation.py moved into simulation/ fails here, not
    when someone next runs the script."""
    imports = {folder: script_imports(folder) for folder in SCRIPT_FOLDERS}
    assert all(imports.values()), f"no culturesim import found in some of {SCRIPT_FOLDERS}: has a folder moved?"
    missing = [
        f"{path.relative_to(PACKAGE.parent)}: {module}" + (f" -> {name}" if name else "")
        for found in imports.values()
        for path, module, name in found
        if not resolves(module, name)
    ]
    assert not missing, f"imports of modules or names the package does not have: {missing}"


def test_notebooks_and_paper_scripts_import_only_the_public_api() -> None:
    private = [
        f"{path.relative_to(PACKAGE.parent)}: {module}" + (f" -> {name}" if name else "")
        for folder in PUBLIC_API_FOLDERS
        for path, module, name in script_imports(folder)
        if module != "culturesim.api" and (module, name) != ("culturesim", "api")
    ]
    assert not private, f"import these from culturesim.api (re-export them there if they are public): {private}"
