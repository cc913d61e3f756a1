"""The Prefect server's flow policy keeps Failed/Crashed/Cancelled runs final, and a queued run
(Scheduled) safe from a Crashed report about an earlier attempt (deployments/keep_final.py).

Prefect's own CoreFlowPolicy (3.8.8) has no rule that stops a non-forced Running or Completed out of
those states, nor a Crashed out of Scheduled; the end-to-end proof that the server refuses a late
report is tests/e2e/test_restart_reconcile.py. Here: which transitions the rules govern, that the
server entry point installs them, and the fast tier's own Prefect server answering both ways.
"""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections.abc import Iterator

import httpx
import pytest
from prefect.server.schemas.states import StateType as S

from deployments.keep_final import KeepFinalStates, KeepQueuedRuns, OpevaFlowPolicy, install
from deployments.platform import Platform


@pytest.mark.parametrize("initial", [S.FAILED, S.CRASHED, S.CANCELLED])
@pytest.mark.parametrize("proposed", [S.RUNNING, S.COMPLETED])
def test_a_late_running_or_completed_out_of_a_final_failure_meets_the_rule(initial, proposed):
    from prefect.server.orchestration.core_policy import CoreFlowPolicy

    assert KeepFinalStates in OpevaFlowPolicy.compile_transition_rules(initial, proposed)
    assert KeepFinalStates not in CoreFlowPolicy.compile_transition_rules(initial, proposed)  # what stock Prefect lacks


@pytest.mark.parametrize("initial, proposed", [
    (S.FAILED, S.SCHEDULED),  # Prefect's retries and the UI's Retry
    (S.CRASHED, S.PENDING),
    (S.RUNNING, S.COMPLETED),  # the normal end
    (S.RUNNING, S.CRASHED),
    (S.CANCELLING, S.CANCELLED),
    (S.COMPLETED, S.RUNNING),  # Prefect's own rule governs Completed
    (S.PENDING, S.CRASHED),  # a worker that could not start the run
    (S.SCHEDULED, S.PENDING),
    (S.SCHEDULED, S.CANCELLED),
])
def test_other_transitions_are_left_to_prefect(initial, proposed):
    rules = OpevaFlowPolicy.compile_transition_rules(initial, proposed)
    assert KeepFinalStates not in rules and KeepQueuedRuns not in rules


def test_a_crashed_report_about_a_queued_run_meets_the_queued_rule():
    from prefect.server.orchestration.core_policy import CoreFlowPolicy

    assert KeepQueuedRuns in OpevaFlowPolicy.compile_transition_rules(S.SCHEDULED, S.CRASHED)
    assert KeepQueuedRuns not in CoreFlowPolicy.compile_transition_rules(S.SCHEDULED, S.CRASHED)


def test_the_rule_follows_prefects_terminal_state_rule_and_keeps_the_rest_in_order():
    from prefect.server.orchestration.core_policy import CoreFlowPolicy, HandleFlowTerminalStateTransitions

    ours, stock = OpevaFlowPolicy.priority(), CoreFlowPolicy.priority()
    assert ours.index(KeepFinalStates) == ours.index(HandleFlowTerminalStateTransitions) + 1
    assert ours.index(KeepQueuedRuns) == ours.index(KeepFinalStates) + 1
    assert [r for r in ours if r not in (KeepFinalStates, KeepQueuedRuns)] == stock


def test_install_makes_the_server_use_the_policy():
    from prefect.server.orchestration import dependencies

    before = dependencies.ORCHESTRATION_DEPENDENCIES["flow_policy_provider"]
    try:
        install()
        assert asyncio.run(dependencies.provide_flow_policy()) is OpevaFlowPolicy
    finally:
        dependencies.ORCHESTRATION_DEPENDENCIES["flow_policy_provider"] = before


@pytest.fixture(scope="module")
def prefect_rest(platform: Platform) -> Iterator[httpx.Client]:
    token = base64.b64encode(platform.prefect_auth_string.encode()).decode()
    with httpx.Client(base_url=platform.prefect_api_url, headers={"Authorization": f"Basic {token}"}, timeout=30) as client:
        yield client


def _run_in(client: httpx.Client, state: dict) -> str:
    flow = client.post("/flows/", json={"name": "keep-final-rules"}).raise_for_status().json()
    run = client.post("/flow_runs/", json={"flow_id": flow["id"], "name": f"r-{uuid.uuid4().hex[:6]}", "state": state})
    return run.raise_for_status().json()["id"]


def _propose(client: httpx.Client, run_id: str, state_type: str, force: bool = False) -> tuple[str, str]:
    answer = client.post(f"/flow_runs/{run_id}/set_state", json={"state": {"type": state_type, "message": "test"}, "force": force})
    now = client.get(f"/flow_runs/{run_id}").raise_for_status().json()["state"]
    return answer.raise_for_status().json()["status"], now["type"]


def test_the_server_keeps_a_requeued_run_queued_against_a_late_crash_report(prefect_rest):
    """The CI race: the worker's late Crashed landed on a run the re-attach pass had queued again."""
    run_id = _run_in(prefect_rest, {"type": "SCHEDULED", "name": "Re-attaching"})
    assert _propose(prefect_rest, run_id, "CRASHED") == ("REJECT", "SCHEDULED")
    assert prefect_rest.get(f"/flow_runs/{run_id}").json()["state"]["name"] == "Re-attaching"
    assert _propose(prefect_rest, run_id, "CRASHED", force=True) == ("ACCEPT", "CRASHED")  # an operator's forced move stands


def test_the_server_still_takes_a_crash_while_starting_and_keeps_a_failed_run_final(prefect_rest):
    assert _propose(prefect_rest, _run_in(prefect_rest, {"type": "PENDING"}), "CRASHED") == ("ACCEPT", "CRASHED")
    failed = _run_in(prefect_rest, {"type": "FAILED"})
    assert _propose(prefect_rest, failed, "COMPLETED") == ("REJECT", "FAILED")
