"""What a job run is to the API, with no Prefect call: its id, its OPEVA status, a run to create.

Why apart from the gateway: use cases, the job index and the responses need these values
without a door to Prefect; the gateway (the one module that calls Prefect) re-exports them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from prefect.client.schemas.actions import DeploymentFlowRunCreate
from prefect.client.schemas.objects import FlowRun, FlowRunPolicy

from core.states import PHASE_LABEL, opeva_status_of


class JobNotFound(LookupError):
    def __init__(self, job_id: str) -> None:
        super().__init__(f"no job with id {job_id!r}")
        self.job_id = job_id


class DeploymentMissing(LookupError):
    pass


class RunRefused(ValueError):
    """Prefect would not create the run (its parameters or job variables do not fit the deployment)."""


@dataclass(frozen=True)
class RunRequest:
    """One flow run to create from a deployment."""

    parameters: dict[str, Any]
    name: str | None = None
    job_variables: dict[str, Any] | None = None
    tags: tuple[str, ...] = ()
    idempotency_key: str | None = None
    labels: dict[str, str] | None = None
    retries: int = 0
    retry_delay_seconds: int = 5
    state: dict[str, Any] | None = None  # none: Scheduled now (Prefect's default); a data: local job: core.states.awaiting_inputs()

    def body(self) -> dict[str, Any]:
        # Flow retries are Prefect's own: the server's retry rule reads the run's policy.
        policy = FlowRunPolicy(retries=self.retries, retry_delay=self.retry_delay_seconds) if self.retries else FlowRunPolicy()
        create = DeploymentFlowRunCreate(
            parameters=self.parameters, name=self.name, job_variables=self.job_variables or None, tags=list(self.tags),
            idempotency_key=self.idempotency_key, labels=self.labels or {}, empirical_policy=policy,
        )
        body = create.model_dump(mode="json", exclude_unset=True)
        return {**body, "state": self.state} if self.state else body



@dataclass(frozen=True)
class Submitted:
    """A created run's id and name; ``earlier`` is the run when its Idempotency-Key had made one before."""

    id: UUID
    name: str
    earlier: FlowRun | None = None

    @property
    def status(self) -> str:
        return opeva_status(self.earlier) if self.earlier else "queued"


def opeva_status(run: FlowRun) -> str:
    return opeva_status_of(run.state.type.value if run.state else None, run.run_count, (run.labels or {}).get(PHASE_LABEL))


def parse_job_id(job_id: str) -> UUID:
    try:
        return UUID(str(job_id))
    except ValueError:
        raise JobNotFound(job_id) from None


def epoch(dt: datetime | None) -> float | None:
    return dt.timestamp() if dt else None
