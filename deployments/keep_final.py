"""Two Prefect server rules: a run that is Failed, Crashed or Cancelled stays so (a late report
from its container cannot make it Running or Completed again), and a run queued again
(Scheduled) is not Crashed by a report about an earlier attempt.

Why: Prefect 3.8.8's ``HandleFlowTerminalStateTransitions`` only refuses CRASHED, CANCELLING
and PAUSED out of a final state (and leaving a Completed one that holds a persisted result).
A *non-forced* ``Crashed -> Completed``, ``Failed -> Running`` or ``Cancelled -> Completed`` is
accepted. Those are exactly the proposals of a supervisor container that kept running while
its run was made final elsewhere: the zombie automation marked it Crashed after 90 s without
heartbeats (the platform was down, a host's link was cut), ``make up`` found it with no owner
at start (deployments/reconcile.py), or an operator failed it. The platform told the user
"failed" (and may have requeued the job); the old container must not turn that into
"finished" or "running" behind the user's back. ``tests/fast/test_keep_final.py`` shows the
stock policy accepting those proposals and this one refusing them.

Forced transitions (``force=True``) do not go through the core policy at all (Prefect uses
``MinimalFlowPolicy`` for them), so the platform's own deliberate moves stay possible:
``POST /ops/jobs/{id}/recover`` (Completed, results checked), a requeue (Scheduled),
recording a stop (Cancelled). Leaving a final state for Scheduled/Pending (Prefect's retries,
the UI's "Retry") is untouched: only Running and Completed are refused.

The second rule, :class:`KeepQueuedRuns`: a Scheduled run has no infrastructure, so a non-forced
Crashed about it can only describe an attempt that is over. Two such reports were seen or are
possible here: Prefect's worker proposes Crashed once more after the runner's own Crashed and the
crash hooks (a Slurm watcher killed alone), and that late proposal landed after the re-attach
pass had already made the run Scheduled again ("Re-attaching"), which left the run Crashed with
its Slurm job still running (tests/e2e/test_slurm.py met it in CI); and the zombie automation
(non-forced) crashes a run 90 s after its last heartbeat, which would also hit a re-attached or
requeued run that waits longer than that for a free slot. A worker that fails to start a run
proposes Crashed from Pending, not Scheduled, so that stays Prefect's. Forced moves stay possible.

The rules reject (the run keeps its state and the engine is told it) rather than abort:
the late engine then ends quietly instead of raising.
"""

from __future__ import annotations

from typing import Any

import prefect.server.models  # noqa: F401 (first: core_policy alone is a circular import in 3.8.8)
from prefect.server.orchestration.core_policy import CoreFlowPolicy, HandleFlowTerminalStateTransitions
from prefect.server.orchestration.rules import FlowRunOrchestrationRule
from prefect.server.schemas import states
from prefect.server.schemas.states import StateType

FINAL_NOT_COMPLETED = {StateType.FAILED, StateType.CRASHED, StateType.CANCELLED}
RESURRECTING = {StateType.RUNNING, StateType.COMPLETED}


class _RejectStaleReport(FlowRunOrchestrationRule):
    """Reject (keep the run's state, tell the proposer) every non-forced proposal the subclass governs."""

    def reason(self, initial: states.State[Any], proposed: states.State[Any]) -> str:
        raise NotImplementedError

    async def before_transition(self, initial_state: states.State[Any] | None, proposed_state: states.State[Any] | None,
                                context: Any) -> None:
        if initial_state is None or proposed_state is None:
            return
        await self.reject_transition(None, self.reason(initial_state, proposed_state))


class KeepFinalStates(_RejectStaleReport):
    """Refuse a non-forced Running/Completed proposal for a Failed, Crashed or Cancelled run."""

    FROM_STATES = FINAL_NOT_COMPLETED  # type: ignore[assignment]
    TO_STATES = RESURRECTING  # type: ignore[assignment]

    def reason(self, initial: states.State[Any], proposed: states.State[Any]) -> str:
        return f"Run is already {initial.type.value}: a late {proposed.type.value} report does not change a final state."


class KeepQueuedRuns(_RejectStaleReport):
    """Refuse a non-forced Crashed proposal for a Scheduled run (queued again: no infrastructure to crash)."""

    FROM_STATES = {StateType.SCHEDULED}  # type: ignore[assignment]
    TO_STATES = {StateType.CRASHED}  # type: ignore[assignment]

    def reason(self, initial: states.State[Any], proposed: states.State[Any]) -> str:
        return f"Run is {initial.name or 'Scheduled'} (queued for a new attempt): a Crashed report about an earlier attempt does not change it."


class OpevaFlowPolicy(CoreFlowPolicy):
    """Prefect's core flow policy with :class:`KeepFinalStates` and :class:`KeepQueuedRuns` right after
    its own terminal-state rule."""

    @staticmethod
    def priority() -> list[Any]:
        rules = list(CoreFlowPolicy.priority())
        at = rules.index(HandleFlowTerminalStateTransitions) + 1
        rules[at:at] = [KeepFinalStates, KeepQueuedRuns]
        return rules


def install() -> None:
    """Make the server's orchestration use :class:`OpevaFlowPolicy` (Prefect's own provider hook)."""
    from prefect.server.orchestration.dependencies import ORCHESTRATION_DEPENDENCIES

    async def provide() -> type[OpevaFlowPolicy]:
        return OpevaFlowPolicy

    ORCHESTRATION_DEPENDENCIES["flow_policy_provider"] = provide
