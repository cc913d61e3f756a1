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


def main() -> int:
    g = graph()
    width = max(map(len, PACKAGES))
    print(f"{'package':<{width}}  imports")
    for package, targets in g.items():
        print(f"{package:<{width}}  {', '.join(sorted(targets)) or '-'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
