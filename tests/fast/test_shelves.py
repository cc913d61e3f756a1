"""The shelf rules of README's "How it fits together", checked on the code as written."""

from __future__ import annotations

import ast
from pathlib import Path

from tools.import_graph import ROOT, cycles, graph, module_graph

MAX_FILE_LINES = 400
MAX_FUNCTION_LINES = 80


def test_api_does_not_reach_into_flows_or_deployments():
    assert not graph()["api"] & {"flows", "deployments"}


def test_domain_simulator_and_tools_import_no_prefect():
    g = graph()
    for package in ("core", "simulator", "tools"):
        assert not g[package] & {"prefect", "prefect_docker"}, package
        assert not g[package] & {"api", "flows", "deployments", "blocks"}, package


def _prefect_imports(path: Path) -> set[str]:
    return {
        node.module
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "prefect"
    } | {
        alias.name
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Import)
        for alias in node.names
        if alias.name.split(".")[0] == "prefect"
    }


def test_only_the_gateway_and_the_app_start_up_talk_to_prefect_in_the_api():
    """Use cases may name Prefect's schema types (a FlowRun, a StateType); only the
    gateway (its files: api/gateway.py and its doors api/gateway_<subject>.py, reached through
    PrefectGateway) and the lifespan that opens its client import anything that calls Prefect."""
    callers = {}
    for path in (ROOT / "api").rglob("*.py"):
        talking = {m for m in _prefect_imports(path) if not m.startswith("prefect.client.schemas")}
        if talking:
            callers[str(path.relative_to(ROOT))] = talking
    assert {c for c in callers if not c.startswith("api/gateway_")} <= {"api/gateway.py", "api/main.py"}, callers


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


def test_no_module_imports_round_a_circle():
    assert cycles(module_graph()) == []


def test_cycle_finder_sees_a_circle_of_three():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
