"""Jobs: OPEVA's job endpoints over Prefect flow runs (job_id = flow-run id). Parse, call a use case, return."""

from __future__ import annotations

from typing import Annotated, Literal
from uuid import UUID

from fastapi import APIRouter, BackgroundTasks, Header, Query, Response

from api.deps import Gateway, Hosts, Images, Index, Settings, Storage
from api.models import RunSimulationRequest
from api.owners import Owned
from api.responses import JobInfoOut, JobItem, JobMessage, JobStatusOut, JobSubmitted, Message, QueueItem, errors
from api.security import CurrentUser, require_runtime_choice, submitter
from api.stopper import ensure_container_gone
from api.usecases import jobs
from core.states import FILTERABLE

router = APIRouter(tags=["jobs"])

IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", max_length=255, description=(
    "Same key, same body, same user: a repeated request answers the job made the first time; "
    "the same key with another body is a 409; keys are per user."))]


@router.post("/run-simulation", response_model=JobSubmitted, responses=errors(400, 403, 404, 409, 413), summary="Launch a simulation job")
async def run_simulation(body: RunSimulationRequest, gateway: Gateway, storage: Storage, hosts: Hosts, user: CurrentUser, own: Owned,
                         catalog: Images, settings: Settings, idempotency_key: IdempotencyKey = None) -> JobSubmitted:
    """``config`` inline or ``config_path``; no ``target_host``: automatic selection (by
    ``target_worker_profile``). 400 with upstream's texts for a profile with a chosen host, a GPU
    config on a CPU choice and a malformed ``image_tag``; 400 when the host may not run
    ``image``/``image_tag`` or its engine does not hold it (nothing is queued); 404 for an unknown host,
    409 when ``save_as`` names a different existing file, 422 for a config the reference simulator
    would refuse. The answer's ``image`` is the image that will run. With auth on, ``submitted_by`` is
    the token's user, and ``command``/``image`` need a runner (else 403)."""
    require_runtime_choice(user, command=body.command, image=body.image)
    body.submitted_by = submitter(user, body.submitted_by)
    return await jobs.submit_simulation(gateway, storage, hosts, body, idempotency_key, catalog, settings.runtime_image, user=user, own=own)


@router.get("/status/{job_id}", response_model=JobStatusOut, responses=errors(404), summary="OPEVA status and Prefect state of a job")
async def status(job_id: str, gateway: Gateway, storage: Storage) -> JobStatusOut:
    return await jobs.status(gateway, storage, job_id)


@router.get(
    "/jobs", response_model=list[JobItem], summary="Jobs, newest first (all by default)",
    responses={200: {"headers": {"X-Total-Count": {"schema": {"type": "integer"}, "description": "Jobs matching the filters, before limit/offset."}}}, **errors()},
)
async def list_jobs(
    response: Response,
    gateway: Gateway,
    storage: Storage,
    hosts: Hosts,
    index: Index,
    status: Literal[FILTERABLE] | None = Query(None, description="Only jobs in this status."),  # type: ignore[valid-type]
    host: str | None = Query(None, max_length=63),
    limit: int | None = Query(None, ge=1, le=1000, description="At most this many, 1 to 1000 (default: all, up to 10,000)."),
    offset: int = Query(0, ge=0, le=1_000_000),
    sweep_id: UUID | None = Query(None, description="Only the trials of this sweep (POST /sweeps)."),
    dataset: str | None = Query(None, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*(@[0-9a-fA-F]{1,64})?$",
                                description="Only the jobs that ran on this dataset, `name` or `name@<sha256 or its start>` (GET /dataset/{name}/lineage)."),
) -> list[JobItem]:
    items, total = await jobs.list_jobs(gateway, status=status, host=host, limit=limit, offset=offset, storage=storage, hosts=hosts, index=index,
                                        sweep_id=str(sweep_id) if sweep_id else None, dataset=dataset)
    response.headers["X-Total-Count"] = str(total)
    return items


@router.get("/job-info/{job_id}", response_model=JobInfoOut, responses=errors(404), summary="A job's metadata (job_info.json over Prefect's view)")
async def job_info(job_id: str, gateway: Gateway, storage: Storage, hosts: Hosts) -> JobInfoOut:
    return await jobs.job_info(gateway, storage, job_id, hosts)


@router.post("/stop/{job_id}", response_model=JobMessage, responses=errors(404), summary="Stop a job (200 in every state, with a message)")
async def stop(job_id: str, background: BackgroundTasks, gateway: Gateway, user: CurrentUser) -> JobMessage:
    answer, asked = await jobs.stop(gateway, job_id, user=user)
    if asked is not None:
        background.add_task(ensure_container_gone, gateway, asked.id)
    return answer


@router.delete("/job/{job_id}", response_model=Message, responses=errors(404, 409), summary="Delete a finished job and its files")
async def delete_job(job_id: str, gateway: Gateway, storage: Storage, user: CurrentUser) -> Message:
    return await jobs.delete(gateway, storage, job_id, user=user)


@router.get("/queue", response_model=list[QueueItem], responses=errors(), summary="Queued simulation jobs (Prefect Scheduled/Late runs), oldest first")
async def queue(gateway: Gateway, storage: Storage, hosts: Hosts, index: Index) -> list[QueueItem]:
    return await jobs.queue(gateway, storage, hosts, index)
