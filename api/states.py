"""Prefect states as OPEVA job states: the one mapping (seed 001, "Job Lifecycle & States").

A cancellation is ``stopped`` when the run had started and ``canceled`` when it
never did. ``run_count`` tells (it grows on entering Running); ``start_time``
does not, because Prefect also sets it when a run that never ran ends.
"""

from __future__ import annotations

from prefect.client.schemas.objects import FlowRun, StateType

OPEVA_STATES = ("queued", "dispatched", "running", "finished", "failed", "stopped", "canceled", "not_found", "unknown")
ACTIVE = frozenset({"queued", "dispatched", "running"})
STOPPABLE = ACTIVE

_BY_TYPE = {
    StateType.SCHEDULED: "queued",  # Scheduled, Late, AwaitingRetry
    StateType.PENDING: "dispatched",
    StateType.RUNNING: "running",
    StateType.COMPLETED: "finished",
    StateType.FAILED: "failed",
    StateType.CRASHED: "failed",
    StateType.PAUSED: "queued",
}

# OPEVA status -> the Prefect state types it covers (for filtering GET /jobs)
PREFECT_TYPES: dict[str, set[StateType]] = {
    "queued": {StateType.SCHEDULED, StateType.PAUSED},
    "dispatched": {StateType.PENDING},
    "running": {StateType.RUNNING},
    "finished": {StateType.COMPLETED},
    "failed": {StateType.FAILED, StateType.CRASHED},
    "stopped": {StateType.CANCELLING, StateType.CANCELLED},
    "canceled": {StateType.CANCELLING, StateType.CANCELLED},
}


def opeva_status(run: FlowRun) -> str:
    state_type = run.state.type if run.state else None
    if state_type in (StateType.CANCELLED, StateType.CANCELLING):
        return "stopped" if run.run_count > 0 else "canceled"
    return _BY_TYPE.get(state_type, "unknown")
