"""The shelf rules of README's "How it fits together", checked on the code as written."""

from __future__ import annotations

import ast
from pathlib import Path

from tools.import_graph import ROOT, graph

MAX_FILE_LINES = 400
MAX_FUNCTION_LINES = 80


def test_api_does_not_reach_into_flows_or_deployments():
    assert not graph()["api"] & {"flows", "deployments"}


def test_domain_simulator_and_tools_import_no_prefect():
    g = graph()
    for package in ("core", "simulator", "tools"):
        assert not g[package] & {"prefect", "prefect_docker"}, package
        assert not g[package] & {"api", "flows", "deployments", "blocks"}, package


def test_only_the_gateway_and_the_app_start_up_import_prefect_in_the_api():
    from tools.import_graph import imported_modules

    users = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "api").rglob("*.py") if "prefect" in imported_modules(p))
    assert set(users) <= {"api/gateway.py", "api/main.py"}, users


def test_files_and_functions_stay_small():
    too_long = []
    for package in ("api", "core", "blocks", "flows", "deployments", "simulator", "tools"):
        for path in (ROOT / package).rglob("*.py"):
            text = path.read_text()
            if text.count("\n") > MAX_FILE_LINES:
                too_long.append(f"{path.relative_to(ROOT)}: {text.count(chr(10))} lines")
            for node in ast.walk(ast.parse(text)):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    length = node.end_lineno - node.lineno + 1
                    if length > MAX_FUNCTION_LINES:
                        too_long.append(f"{path.relative_to(ROOT)}:{node.name}: {length} lines")
    assert not too_long, too_long


def test_import_graph_reads_lazy_imports(tmp_path: Path):
    from tools.import_graph import imported_modules

    module = tmp_path / "m.py"
    module.write_text("def f():\n    from prefect import flow\n    import core.layout\n")
    assert imported_modules(module) == {"prefect", "core"}
