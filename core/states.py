"""Prefect states as OPEVA job states: the one mapping (seed 001, "Job Lifecycle & States").

Written against Prefect's state-type *names* (``"SCHEDULED"``, ``"RUNNING"``...)
so this module needs no Prefect import; the gateway passes ``run.state.type.value``.

A run being cancelled is ``stop_requested``; a cancelled one is ``stopped`` when the run had started and ``canceled`` when it
never did. ``run_count`` tells (it grows on entering Running); ``start_time``
does not, because Prefect also sets it when a run that never ran ends.

``setup`` (upstream: between dispatched and running: image check, staging) is a Running run
whose flow-run label ``opeva.phase`` is ``setup``. The simulation flow sets that label first
thing (config resolved, job folder made, image checked and the container created) and turns it
to ``running`` once the simulator's container (or process) has started. A label, not a custom
state name: a Running -> Running transition with another name is a second state (it would
reset Prefect's start time and count twice in its timeline), while a label is plain metadata,
readable in the Prefect UI (flow run > labels) and patched atomically (``PATCH
/flow_runs/{id}/labels`` merges). A run without the label (older runs, other flows) is running.

A run the platform creates (the API, a requeue, a move off a lost host) carries ``setup`` from
birth (:func:`fresh_labels`), so its flow writes the label once, to ``running``: a Running run never
reads ``running`` before ``setup``, and no ``setup`` write can land after ``running`` (a PATCH whose
answer was lost and whose retry went first did that once in CI). A run started another way
(``prefect deployment run``) or a retry gets ``setup`` from its flow (flows/phase.py).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

# The upstream OPEVA set (2026); launching is never reported here (a flow run exists from
# the moment it is submitted).
OPEVA_STATES = ("launching", "queued", "dispatched", "setup", "running", "stop_requested", "stopped", "finished",
                "failed", "canceled", "not_found", "unknown")
FILTERABLE = ("queued", "dispatched", "setup", "running", "stop_requested", "stopped", "finished", "failed", "canceled")
ACTIVE = frozenset({"queued", "dispatched", "setup", "running"})
STARTED = frozenset({"dispatched", "setup", "running", "stop_requested"})  # holds (or is getting) a host slot
PROFILE_LABEL = "opeva.target_worker_profile"  # the run label of an automatic choice by profile (cpu/gpu)
PLACEMENT_LABEL = "opeva.placement"  # "automatic": no target_host was given, so the job may move to another host
REQUEUED_FROM = "opeva.requeued_from"  # the run label of a requeued or moved job: the run it replaces
PHASE_LABEL = "opeva.phase"
AWAITING_INPUTS = "AwaitingInputs"  # a data: local job's run (Scheduled, far ahead) until its inputs are on its host (flows/host_data.py)
SETUP_PHASE, RUNNING_PHASE, DISPATCHED_PHASE = "setup", "running", "dispatched"
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
    "setup": frozenset({"RUNNING"}),
    "running": frozenset({"RUNNING"}),
    "finished": frozenset({"COMPLETED"}),
    "failed": frozenset({"FAILED", "CRASHED"}),
    "stop_requested": frozenset({"CANCELLING"}),
    "stopped": frozenset({"CANCELLED"}),
    "canceled": frozenset({"CANCELLED"}),
}


def fresh_labels(labels: dict[str, str] | None = None) -> dict[str, str]:
    """``labels`` for a run about to be created: its phase ``setup`` (whatever phase a run it copies had)."""
    return {**(labels or {}), PHASE_LABEL: SETUP_PHASE}


def opeva_status_of(state_type: str | None, run_count: int, phase: str | None = None) -> str:
    """The OPEVA status of a run in ``state_type`` that has entered Running ``run_count`` times
    (``phase``: its ``opeva.phase`` label)."""
    if state_type == "RUNNING" and phase == SETUP_PHASE:
        return "setup"
    if state_type == "RUNNING" and phase == DISPATCHED_PHASE:  # a Slurm job still PENDING in its cluster's queue
        return "dispatched"
    if state_type == "CANCELLING":
        return "stop_requested"
    if state_type == "CANCELLED":
        return "stopped" if run_count > 0 else "canceled"
    return _BY_TYPE.get(state_type or "", "unknown")


# -- Slurm jobs (core/slurm.py, flows/slurm_run.py) ----------------------------------------------
# Slurm's job states as OPEVA's. A job still waiting (PENDING...) is ``dispatched`` with Slurm's
# reason; an ended one is ``finished``, ``failed`` with an error_code per cause, or ``stopped``
# when the platform cancelled it (a cancel by anyone else is a failure that says so).
SLURM_WAITING = frozenset({"PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD", "SUSPENDED", "STOPPED"})
SLURM_RUNNING = frozenset({"RUNNING", "COMPLETING", "SIGNALING", "STAGE_OUT", "RESIZING"})
SLURM_FAILURES = {  # state -> (error_code, what happened)
    "FAILED": ("simulator_error", "the job exited non-zero"),
    "OUT_OF_MEMORY": ("out_of_memory", "Slurm killed the job: it went over its memory request"),
    "TIMEOUT": ("timed_out", "Slurm ended the job at its walltime (DUE TO TIME LIMIT)"),
    "DEADLINE": ("timed_out", "Slurm ended the job at its deadline"),
    "NODE_FAIL": ("node_fail", "the compute node failed while the job ran"),
    "BOOT_FAIL": ("node_fail", "the compute node failed to boot for the job"),
    "PREEMPTED": ("preempted", "Slurm preempted the job"),
    "REVOKED": ("slurm_cancelled", "the cluster revoked the job"),
}
SLURM_LOST = "slurm_job_lost"
# the job_info.json keys /status and /hosts repeat
SLURM_STATUS_FIELDS = ("slurm_job_id", "slurm_state", "slurm_reason", "slurm_partition", "slurm_nodes", "slurm_cpus", "slurm_gpus")  # neither the controller nor accounting knows the job any more


def slurm_status(state: str | None, *, stop_requested: bool = False, exit_code: int | None = None) -> tuple[str, str | None, str]:
    """(OPEVA status, error_code, message) of a Slurm job in ``state`` (None: Slurm forgot it).
    ``stop_requested``: the platform itself asked Slurm to cancel it."""
    base = (state or "").split()[0].rstrip("+").upper() if state else None
    if base is None:
        return "failed", SLURM_LOST, "Slurm no longer knows the job (past MinJobAge, no accounting) and it left no exit code"
    if base in SLURM_WAITING:
        return "dispatched", None, f"waiting in Slurm ({base})"
    if base in SLURM_RUNNING:
        return "running", None, base
    if stop_requested:  # whatever the job did with its TERM (exit 0, 143, CANCELLED), the platform stopped it
        return "stopped", None, f"stopped on request ({base})"
    if base == "COMPLETED":
        return "finished", None, "COMPLETED"
    if base == "CANCELLED":
        if stop_requested:
            return "stopped", None, "cancelled on request (scancel)"
        return "failed", "slurm_cancelled", "the job was cancelled in Slurm by someone other than the platform (scancel outside OPEVA)"
    code, what = SLURM_FAILURES.get(base, ("simulator_error", f"Slurm ended the job in state {base}"))
    if base == "FAILED" and exit_code is not None:
        what = f"exit code {exit_code}"
    return "failed", code, what


def awaiting_inputs(now: datetime | None = None) -> dict[str, Any]:
    """A ``data: local`` job's first state (Prefect's StateCreate as JSON): Scheduled ten years ahead
    (no worker takes it) and named AWAITING_INPUTS, until flows/host_data.py has pushed its inputs
    and reschedules it for now."""
    at = (now or datetime.now(timezone.utc)) + timedelta(days=3650)
    return {"type": "SCHEDULED", "name": AWAITING_INPUTS, "state_details": {"scheduled_time": at.isoformat()}}
