"""Submitting a job to a ``data: local`` host: its run waits for its inputs, a control flow stages them.

Why here: the job's id is its run's id (the API's contract), so the run is made at once, in the
AwaitingInputs state (core/states.py ``awaiting_inputs``); the control flow ``stage-host-data``
(flows/host_data.py) pushes the inputs, releases the run, and brings the outputs back.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from api.errors import ApiError
from api.gateway import PrefectGateway
from core.host_data import STAGE_FLOW
from core.hosts import CONTROL_POOL, Host
from core.states import awaiting_inputs


def first_state(host: Host) -> dict[str, Any] | None:
    """The run's first state on ``host``: AwaitingInputs on a data: local host, else Prefect's default."""
    return awaiting_inputs() if host.data == "local" else None


async def start_staging(gateway: PrefectGateway, host: Host, job_id: UUID) -> None:
    """The staging flow of a new job on a data: local host; without it the job could never start, so
    a failure to start it cancels the job and answers 503."""
    if host.data != "local":
        return
    try:
        await gateway.start_action(STAGE_FLOW, CONTROL_POOL, {"job_id": str(job_id)})
    except Exception as exc:
        await gateway.cancel_now(job_id, f"the copy of its inputs to host {host.name} could not start: {exc}")
        raise ApiError(503, f"host {host.name} has data: local and its staging flow could not start ({exc}); run `make setup`") from None


def shared_only(host: Host, what: str) -> None:
    """400 for work whose output must land in the shared data root but that no one would copy back
    from a data: local host (a dataset build writes datasets/<name> where it runs)."""
    if host.data == "local":
        raise ApiError(400, f"host {host.name!r} has data: local: {what} run on hosts that share the data root (docs/data-local.md)")
