"""Which top-level package imports which: ``python -m tools.import_graph``.

Reads imports as written (``ast``), inside functions too, so a lazy import counts.
The shelf rules it prints are the ones ``tests/fast/test_shelves.py`` enforces.
"""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("api", "deployments", "flows", "blocks", "simulator", "tools", "core")
THIRD_PARTY_OF_NOTE = ("prefect", "prefect_docker")


def imported_modules(path: Path) -> set[str]:
    """Top-level names of every module ``path`` imports (absolute imports only)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def graph(root: Path = ROOT) -> dict[str, set[str]]:
    """Package -> the packages (and Prefect) its modules import, itself left out."""
    edges: dict[str, set[str]] = defaultdict(set)
    for package in PACKAGES:
        for path in (root / package).rglob("*.py"):
            wanted = set(PACKAGES) | set(THIRD_PARTY_OF_NOTE)
            edges[package] |= (imported_modules(path) & wanted) - {package}
    return {p: edges.get(p, set()) for p in PACKAGES}


def module_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """Module -> the project modules it imports (lazy imports included): the file-level view."""
    modules: dict[str, Path] = {}
    for package in PACKAGES:
        for path in (root / package).rglob("*.py"):
            name = ".".join(path.relative_to(root).with_suffix("").parts)
            modules[name.removesuffix(".__init__")] = path
    edges: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets.add(node.module)
                targets.update(f"{node.module}.{alias.name}" for alias in node.names)
        edges[name] = {t for t in targets if t in modules and t != name}
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Groups of modules that import each other, directly or round a circle (Tarjan's algorithm).

    A circle between files makes import order matter and hides which one is the lower floor;
    the shelf test keeps the list empty."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(edges.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def main() -> int:
    g = graph()
    width = max(map(len, PACKAGES))
    print(f"{'package':<{width}}  imports")
    for package, targets in g.items():
        print(f"{package:<{width}}  {', '.join(sorted(targets)) or '-'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
