"""The Prefect server's flow policy keeps Failed/Crashed/Cancelled runs final (deployments/keep_final.py).

Prefect's own CoreFlowPolicy (3.8.8) has no rule that stops a non-forced Running or Completed out of
those states; the end-to-end proof that the server refuses a late report is
tests/e2e/test_restart_reconcile.py. Here: which transitions the rule governs, and that the server
entry point installs it.
"""

from __future__ import annotations

import asyncio

import pytest
from prefect.server.schemas.states import StateType as S

from deployments.keep_final import KeepFinalStates, OpevaFlowPolicy, install


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
])
def test_other_transitions_are_left_to_prefect(initial, proposed):
    assert KeepFinalStates not in OpevaFlowPolicy.compile_transition_rules(initial, proposed)


def test_the_rule_follows_prefects_terminal_state_rule_and_keeps_the_rest_in_order():
    from prefect.server.orchestration.core_policy import CoreFlowPolicy, HandleFlowTerminalStateTransitions

    ours, stock = OpevaFlowPolicy.priority(), CoreFlowPolicy.priority()
    assert ours.index(KeepFinalStates) == ours.index(HandleFlowTerminalStateTransitions) + 1
    assert [r for r in ours if r is not KeepFinalStates] == stock


def test_install_makes_the_server_use_the_policy():
    from prefect.server.orchestration import dependencies

    before = dependencies.ORCHESTRATION_DEPENDENCIES["flow_policy_provider"]
    try:
        install()
        assert asyncio.run(dependencies.provide_flow_policy()) is OpevaFlowPolicy
    finally:
        dependencies.ORCHESTRATION_DEPENDENCIES["flow_policy_provider"] = before
