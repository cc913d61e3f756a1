"""Prefect states as OPEVA job states: the one mapping (seed 001, "Job Lifecycle & States").

Written against Prefect's state-type *names* (``"SCHEDULED"``, ``"RUNNING"``...)
so this module needs no Prefect import; the gateway passes ``run.state.type.value``.

A cancellation is ``stopped`` when the run had started and ``canceled`` when it
never did. ``run_count`` tells (it grows on entering Running); ``start_time``
does not, because Prefect also sets it when a run that never ran ends.
"""

from __future__ import annotations

OPEVA_STATES = ("queued", "dispatched", "running", "finished", "failed", "stopped", "canceled", "not_found", "unknown")
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
    "stopped": frozenset({"CANCELLING", "CANCELLED"}),
    "canceled": frozenset({"CANCELLING", "CANCELLED"}),
}


def opeva_status_of(state_type: str | None, run_count: int) -> str:
    """The OPEVA status of a run in ``state_type`` that has entered Running ``run_count`` times."""
    if state_type in ("CANCELLED", "CANCELLING"):
        return "stopped" if run_count > 0 else "canceled"
    return _BY_TYPE.get(state_type or "", "unknown")
