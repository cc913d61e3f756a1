"""Operator actions on jobs and the queue (Prefect state changes with the reason recorded)."""

from __future__ import annotations

from typing import Any, TypeVar

from fastapi import APIRouter, BackgroundTasks, Depends

from api.deps import Gateway, Hosts, Storage
from api.gateway import PrefectGateway
from api.models import CancelRequest, FailRequest, JobsCleanupRequest, OpsStopRequest, QueueCleanupRequest, RequeueRequest
from api.security import require_admin
from api.responses import CleanupOut, JobMessage, RequeueOut, errors
from api.stopper import ensure_container_gone, kill_now
from api.usecases import jobs, ops

A = TypeVar("A")
router = APIRouter(prefix="/ops", tags=["ops"], dependencies=[Depends(require_admin)], responses={403: {"description": "Not an admin (when tokens are on)"}})


def _then_kill(background: BackgroundTasks, gateway: PrefectGateway, outcome: tuple[A, Any]) -> A:
    """The use case's answer; a run it ended while it had started gets its containers killed
    after the answer is sent (the supervisor cannot be trusted to exit by itself)."""
    answer, ended = outcome
    if ended is not None:
        background.add_task(kill_now, gateway, ended.id)
    return answer


@router.post("/jobs/{job_id}/requeue", response_model=RequeueOut, responses=errors(400, 404, 409, 413), summary="Run the job again as a new run linked to it")
async def requeue(job_id: str, background: BackgroundTasks, gateway: Gateway, hosts: Hosts, body: RequeueRequest | None = None) -> RequeueOut:
    return _then_kill(background, gateway, await ops.requeue(gateway, hosts, job_id, body or RequeueRequest()))


@router.post("/jobs/{job_id}/fail", response_model=JobMessage, responses=errors(400, 404, 409, 413), summary="Mark a job failed, with a reason")
async def fail(job_id: str, background: BackgroundTasks, gateway: Gateway, body: FailRequest | None = None) -> JobMessage:
    return _then_kill(background, gateway, await ops.fail(gateway, job_id, body or FailRequest()))


@router.post("/jobs/{job_id}/cancel", response_model=JobMessage, responses=errors(400, 404, 409, 413), summary="Cancel a queued job (others with force)")
async def cancel(job_id: str, background: BackgroundTasks, gateway: Gateway, body: CancelRequest | None = None) -> JobMessage:
    return _then_kill(background, gateway, await ops.cancel(gateway, job_id, body or CancelRequest()))


@router.post("/jobs/{job_id}/stop", response_model=JobMessage, responses=errors(400, 404, 413), summary="Stop a job, with a reason (as POST /stop)")
async def stop(job_id: str, background: BackgroundTasks, gateway: Gateway, body: OpsStopRequest | None = None) -> JobMessage:
    answer, asked = await jobs.stop(gateway, job_id, (body or OpsStopRequest()).reason)
    if asked is not None:
        background.add_task(ensure_container_gone, gateway, asked.id)
    return answer


@router.post("/jobs/{job_id}/recover", response_model=JobMessage, responses=errors(404, 409), summary="Mark Completed a lost job whose host came back with its results")
async def recover(job_id: str, gateway: Gateway, storage: Storage) -> JobMessage:
    return await ops.recover(gateway, storage, job_id)


@router.post("/queue/cleanup", response_model=CleanupOut, responses=errors(400, 413), summary="Cancel queued jobs that can never start (all with force)")
async def queue_cleanup(gateway: Gateway, hosts: Hosts, body: QueueCleanupRequest | None = None) -> CleanupOut:
    return await ops.queue_cleanup(gateway, hosts, body or QueueCleanupRequest())


@router.post("/jobs/cleanup", response_model=CleanupOut, responses=errors(400, 413), summary="Delete finished jobs and their files (active ones are kept)")
async def jobs_cleanup(gateway: Gateway, storage: Storage, body: JobsCleanupRequest | None = None) -> CleanupOut:
    return await ops.jobs_cleanup(gateway, storage, body or JobsCleanupRequest())
