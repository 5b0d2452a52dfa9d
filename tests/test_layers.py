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
FLOORS = ("core", "schema", "parts", "simulation", "stats", "checks", "study", "reports", "")


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
