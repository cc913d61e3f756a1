"""How a job's containers are labelled: one place for the names the flow writes and the
API reads (the API kills a stopped job's simulators by these labels; the flow removes
and reaps them).

A job has a supervisor container (the flow run, started by the host's Docker worker)
and a simulator container beside it (the user's image or command, sandboxed).
"""

from __future__ import annotations

ROLE = "opeva.role"
JOB_ID = "opeva.job_id"
FLOW_RUN_ID = "opeva.flow_run_id"
HOST = "opeva.host"
SUPERVISOR = "opeva.supervisor"
RUNTIME_IMAGE_ENV = "OPEVA_RUNTIME_IMAGE"  # set in the supervisor by deployments/setup.py: the image the reference simulator runs from

SIMULATOR_ROLE = "simulator"
SUPERVISOR_ROLE = "supervisor"


def simulators_of(flow_run_id: str) -> dict[str, list[str]]:
    """A docker-py ``filters`` argument: every simulator container of one flow run."""
    return {"label": [f"{ROLE}={SIMULATOR_ROLE}", f"{FLOW_RUN_ID}={flow_run_id}"]}
