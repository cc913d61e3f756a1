"""Operator actions on jobs and the queue (Prefect state changes with the reason recorded)."""

from __future__ import annotations

from fastapi import APIRouter, BackgroundTasks

from api.deps import Gateway, Hosts, Storage
from api.models import CancelRequest, FailRequest, JobsCleanupRequest, OpsStopRequest, QueueCleanupRequest, RequeueRequest
from api.responses import CleanupOut, JobMessage, RequeueOut, errors
from api.stopper import ensure_container_gone, kill_now
from api.usecases import jobs, ops

router = APIRouter(prefix="/ops", tags=["ops"])


@router.post("/jobs/{job_id}/requeue", response_model=RequeueOut, responses=errors(400, 404, 409, 413), summary="Run the job again as a new run linked to it")
async def requeue(job_id: str, background: BackgroundTasks, gateway: Gateway, hosts: Hosts, body: RequeueRequest | None = None) -> RequeueOut:
    answer, stopped = await ops.requeue(gateway, hosts, job_id, body or RequeueRequest())
    if stopped is not None:
        background.add_task(kill_now, gateway, stopped.id)
    return answer


@router.post("/jobs/{job_id}/fail", response_model=JobMessage, responses=errors(400, 404, 409, 413), summary="Mark a job failed, with a reason")
async def fail(job_id: str, background: BackgroundTasks, gateway: Gateway, body: FailRequest | None = None) -> JobMessage:
    answer, started = await ops.fail(gateway, job_id, body or FailRequest())
    if started is not None:
        background.add_task(kill_now, gateway, started.id)
    return answer


@router.post("/jobs/{job_id}/cancel", response_model=JobMessage, responses=errors(400, 404, 409, 413), summary="Cancel a queued job (others with force)")
async def cancel(job_id: str, background: BackgroundTasks, gateway: Gateway, body: CancelRequest | None = None) -> JobMessage:
    answer, started = await ops.cancel(gateway, job_id, body or CancelRequest())
    if started is not None:
        background.add_task(kill_now, gateway, started.id)
    return answer


@router.post("/jobs/{job_id}/stop", response_model=JobMessage, responses=errors(400, 404, 413), summary="Stop a job, with a reason (as POST /stop)")
async def stop(job_id: str, background: BackgroundTasks, gateway: Gateway, body: OpsStopRequest | None = None) -> JobMessage:
    answer, asked = await jobs.stop(gateway, job_id, (body or OpsStopRequest()).reason)
    if asked is not None:
        background.add_task(ensure_container_gone, gateway, asked.id)
    return answer


@router.post("/queue/cleanup", response_model=CleanupOut, responses=errors(400, 413), summary="Cancel queued jobs that can never start (all with force)")
async def queue_cleanup(gateway: Gateway, hosts: Hosts, body: QueueCleanupRequest | None = None) -> CleanupOut:
    return await ops.queue_cleanup(gateway, hosts, body or QueueCleanupRequest())


@router.post("/jobs/cleanup", response_model=CleanupOut, responses=errors(400, 413), summary="Delete finished jobs and their files (active ones are kept)")
async def jobs_cleanup(gateway: Gateway, storage: Storage, body: JobsCleanupRequest | None = None) -> CleanupOut:
    return await ops.jobs_cleanup(gateway, storage, body or JobsCleanupRequest())
