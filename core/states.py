"""Prefect states as OPEVA job states: the one mapping (seed 001, "Job Lifecycle & States").

Written against Prefect's state-type *names* (``"SCHEDULED"``, ``"RUNNING"``...)
so this module needs no Prefect import; the gateway passes ``run.state.type.value``.

A run being cancelled is ``stop_requested``; a cancelled one is ``stopped`` when the run had started and ``canceled`` when it
never did. ``run_count`` tells (it grows on entering Running); ``start_time``
does not, because Prefect also sets it when a run that never ran ends.
"""

from __future__ import annotations

# The upstream OPEVA set (2026); launching and setup are never reported here (a flow run
# exists from the moment it is submitted, and setup happens inside Running).
OPEVA_STATES = ("launching", "queued", "dispatched", "setup", "running", "stop_requested", "stopped", "finished",
                "failed", "canceled", "not_found", "unknown")
FILTERABLE = ("queued", "dispatched", "running", "stop_requested", "stopped", "finished", "failed", "canceled")
ACTIVE = frozenset({"queued", "dispatched", "running"})
STOPPABLE = ACTIVE
FINAL_TYPES = frozenset({"COMPLETED", "FAILED", "CRASHED", "CANCELLED"})

_BY_TYPE = {
    "SCHEDULED": "queued",  # Scheduled, Late, AwaitingRetry
    "PENDING": "dispatched",
    "RUNNING": "running",
    "COMPLETED": "finished",
    "FAILED": "failed",
    "CRASHED": "failed",
    "PAUSED": "queued",
}

# OPEVA status -> the Prefect state types it covers (for filtering GET /jobs)
PREFECT_TYPES: dict[str, frozenset[str]] = {
    "queued": frozenset({"SCHEDULED", "PAUSED"}),
    "dispatched": frozenset({"PENDING"}),
    "running": frozenset({"RUNNING"}),
    "finished": frozenset({"COMPLETED"}),
    "failed": frozenset({"FAILED", "CRASHED"}),
    "stop_requested": frozenset({"CANCELLING"}),
    "stopped": frozenset({"CANCELLED"}),
    "canceled": frozenset({"CANCELLED"}),
}


def opeva_status_of(state_type: str | None, run_count: int) -> str:
    """The OPEVA status of a run in ``state_type`` that has entered Running ``run_count`` times."""
    if state_type == "CANCELLING":
        return "stop_requested"
    if state_type == "CANCELLED":
        return "stopped" if run_count > 0 else "canceled"
    return _BY_TYPE.get(state_type or "", "unknown")
