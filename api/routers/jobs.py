"""Jobs: OPEVA's job endpoints over Prefect flow runs (job_id = flow-run id)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import yaml
from fastapi import APIRouter, BackgroundTasks, Depends, Query, Request
from fastapi.responses import StreamingResponse
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterType
from prefect.client.schemas.objects import FlowRun
from prefect.client.schemas.sorting import ArtifactSort

from api.deps import get_gateway, get_hosts, get_settings, get_storage, known_host
from api.errors import ApiError
from api.gateway import SIMULATION_FLOW, PrefectGateway, Resources, epoch
from api.models import JobSubmitted, RunSimulationRequest
from api.gateway import opeva_status
from core.states import ACTIVE, OPEVA_STATES, STOPPABLE
from api.stopper import ensure_container_gone
from core.settings import PlatformSettings
from api.security import CurrentUser, require_manage, require_runtime_choice, submitter
from core.layout import DataRoot, canonical_job_id
from core.limits import LIMITS, FollowerLease
from core.safe_yaml import YamlRefused, load_yaml
from core.hosts import HostsFile
from core.experiment import ExperimentConfigError, check_experiment, default_job_name

router = APIRouter(tags=["jobs"])

FOLLOW_POLL_SECONDS = 0.5


def _state(run: FlowRun) -> dict[str, Any]:
    state = run.state
    return {"type": state.type.value if state else None, "name": state.name if state else None, "message": state.message if state else None}


def job_summary(run: FlowRun, kind: str | None = None) -> dict[str, Any]:
    return {
        "job_id": str(run.id),
        "job_name": run.name,
        "status": opeva_status(run),
        "prefect_state": _state(run),
        "host": run.work_pool_name,
        "kind": kind,
        "created": epoch(run.created),
        "started": epoch(run.start_time),
        "ended": epoch(run.end_time),
        "run_count": run.run_count,
    }


def _load_config(storage: DataRoot, body: RunSimulationRequest) -> dict[str, Any]:
    if body.config is not None:
        return check_experiment(body.config)
    path = storage.resolve(body.config_path or "", what="config_path")
    if not path.is_file():
        raise ExperimentConfigError("config_path", f"no config file {body.config_path!r} under the shared data root")
    try:  # confined to the data root; the error names line and column, never the file's content
        return check_experiment(load_yaml(storage.read_bytes_inside(path, max_bytes=LIMITS.max_yaml_bytes, what="config_path")))
    except YamlRefused as exc:
        raise ExperimentConfigError("config_path", f"{body.config_path!r}: {exc}") from None


def _check_reference_simulator(config: dict[str, Any], storage: DataRoot) -> None:
    """Refuse now what the reference simulator would refuse in its container."""
    from simulator.config import ConfigError, validate_config

    try:
        validate_config(config, storage.root)
    except ConfigError as exc:
        raise ExperimentConfigError(exc.field, str(exc)) from exc


def _image(body: RunSimulationRequest, settings: PlatformSettings, default: str | None) -> str | None:
    if body.image:
        return body.image
    if body.image_tag:
        repository = (default or settings.runtime_image).rsplit(":", 1)[0]
        return f"{repository}:{body.image_tag}"
    return None


@router.post("/run-simulation", response_model=JobSubmitted, summary="Launch a simulation job")
async def run_simulation(
    body: RunSimulationRequest,
    user: CurrentUser,
    gateway: PrefectGateway = Depends(get_gateway),
    storage: DataRoot = Depends(get_storage),
    hosts: HostsFile = Depends(get_hosts),
    settings: PlatformSettings = Depends(get_settings),
) -> JobSubmitted:
    require_runtime_choice(user, command=body.command, image=body.image)  # 403 unless a runner
    body.submitted_by = submitter(user, body.submitted_by)  # the token's user when auth is on
    host = known_host(body.target_host, hosts)
    config = _load_config(storage, body)
    if body.command is None:
        await asyncio.to_thread(_check_reference_simulator, config, storage)
    parameters: dict[str, Any] = {"target_host": host.name, "submitted_by": body.submitted_by}
    if body.config is not None and body.save_as:
        # OPEVA overwrote configs/<save_as>; the job then reads that file, so a rerun sees it.
        path = storage.write_atomic(storage.config_file(body.save_as), yaml.safe_dump(config, sort_keys=False))
        parameters["config_path"] = storage.relative(path)
    elif body.config is not None:
        parameters["config"] = config
    else:
        parameters["config_path"] = body.config_path
    image = _image(body, settings, host.image)
    if image:
        parameters["image"] = image
    if body.command:
        parameters["command"] = body.command
    job_name = body.job_name or default_job_name(config)
    parameters["job_name"] = job_name
    resources = Resources(**body.resources.model_dump()) if body.resources else None
    extra_vars = {"image": image} if image else {}
    run = await gateway.submit(
        SIMULATION_FLOW, host.name, parameters, name=job_name, retries=body.retries, resources=resources,
        job_variables=extra_vars, tags=[f"submitted-by:{body.submitted_by}"] if body.submitted_by else None,
    )
    return JobSubmitted(job_id=str(run.id), status=opeva_status(run), host=host.name, job_name=job_name)


@router.get("/status/{job_id}", summary="OPEVA status and Prefect state of a job")
async def status(job_id: str, gateway: PrefectGateway = Depends(get_gateway)) -> dict[str, Any]:
    run = await gateway.read_run(job_id)
    return {"job_id": job_id, "status": opeva_status(run), "prefect_state": _state(run), "host": run.work_pool_name}


async def _progress_artifact(gateway: PrefectGateway, run: FlowRun) -> dict[str, Any] | None:
    arts = await gateway.client.read_artifacts(
        artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run.id]), type=ArtifactFilterType(any_=["progress"])),
        sort=ArtifactSort.UPDATED_DESC,
        limit=1,
    )
    if not arts:
        return None
    return {"percent": arts[0].data, "stage": arts[0].description, "source": "prefect-artifact"}


@router.get("/progress/{job_id}", summary="Latest progress of a job")
async def progress(job_id: str, gateway: PrefectGateway = Depends(get_gateway), storage: DataRoot = Depends(get_storage)) -> dict[str, Any]:
    run = await gateway.read_run(job_id)
    data = storage.read_json(storage.job(job_id).progress_file)
    if not isinstance(data, dict):
        data = await _progress_artifact(gateway, run)
    if data is None:
        raise ApiError(404, f"job {job_id} has reported no progress yet (status: {opeva_status(run)})", status=opeva_status(run))
    return {"job_id": job_id, "status": opeva_status(run), **data}


@router.get("/result/{job_id}", summary="Final result of a job")
async def result(job_id: str, gateway: PrefectGateway = Depends(get_gateway), storage: DataRoot = Depends(get_storage)) -> dict[str, Any]:
    run = await gateway.read_run(job_id)
    data = storage.read_json(storage.job(job_id).result_file)
    if data is None:
        raise ApiError(404, f"job {job_id} has no result yet (status: {opeva_status(run)})", status=opeva_status(run))
    return data


@router.get("/logs/{job_id}", summary="The job's Prefect logs, streamed; follows while the job runs", response_class=StreamingResponse)
async def logs(
    job_id: str,
    request: Request,
    follow: bool = Query(True, description="Keep streaming until the job ends."),
    gateway: PrefectGateway = Depends(get_gateway),
) -> StreamingResponse:
    await gateway.read_run(job_id)  # 404 before the stream starts
    lease = _follower(request, job_id, follow)  # 429 over the follower caps

    async def lines() -> AsyncIterator[bytes]:
        try:
            async for entry in gateway.follow_logs(job_id, follow=follow, poll_seconds=FOLLOW_POLL_SECONDS):
                yield (entry.message + "\n").encode()
        finally:
            lease.release()

    return StreamingResponse(lines(), media_type="text/plain; charset=utf-8")


@router.get("/file-logs/{job_id}", summary="The job's log file, streamed; follows while the job runs", response_class=StreamingResponse)
@router.get("/logs/file/{job_id}", include_in_schema=False)
async def file_logs(
    job_id: str,
    request: Request,
    follow: bool = Query(True, description="Keep streaming until the job ends."),
    gateway: PrefectGateway = Depends(get_gateway),
    storage: DataRoot = Depends(get_storage),
) -> StreamingResponse:
    run = await gateway.read_run(job_id)
    path = storage.job(job_id).log_file
    if not path.exists() and opeva_status(run) not in ACTIVE:
        raise ApiError(404, f"job {job_id} has no log file (status: {opeva_status(run)})", status=opeva_status(run))
    await asyncio.to_thread(_read_from, storage, path, 0, 0)  # a log linked outside the root: 403 now, not mid-stream
    lease = _follower(request, job_id, follow)

    async def chunks() -> AsyncIterator[bytes]:
        offset = 0
        with lease.held():
            while True:
                active = opeva_status(await gateway.read_run(job_id)) in ACTIVE if follow else False
                data = await asyncio.to_thread(_read_from, storage, path, offset)
                if data:
                    offset += len(data)
                    yield data
                if not active:
                    rest = await asyncio.to_thread(_read_from, storage, path, offset)
                    if rest:
                        yield rest
                    return
                await asyncio.sleep(FOLLOW_POLL_SECONDS)

    return StreamingResponse(chunks(), media_type="text/plain; charset=utf-8")


def _read_from(storage: DataRoot, path, offset: int, size: int = 1 << 20) -> bytes:
    try:
        with storage.open_inside(path, what="log file") as f:
            f.seek(offset)
            return f.read(size)
    except FileNotFoundError:
        return b""


def _follower(request: Request, job_id: str, follow: bool) -> FollowerLease:
    """A follower slot (``?follow=true`` streams are capped per job and in all; 429 past them)."""
    return request.app.state.followers.lease(canonical_job_id(job_id), follow=follow)


@router.post("/stop/{job_id}", summary="Stop a queued, dispatched or running job")
async def stop(job_id: str, background: BackgroundTasks, user: CurrentUser, gateway: PrefectGateway = Depends(get_gateway)) -> dict[str, Any]:
    run = await gateway.read_run(job_id)
    require_manage(user, (run.parameters or {}).get("submitted_by"), job_id)  # owner or admin: else 403
    current = opeva_status(run)
    if current not in STOPPABLE:
        raise ApiError(409, f"job {job_id} is already {current}; only queued, dispatched or running jobs can be stopped", status=current)
    outcome = await gateway.stop(run)
    if outcome == "canceled":
        return {"job_id": job_id, "status": "canceled", "message": f"Job {job_id} canceled before it started"}
    background.add_task(ensure_container_gone, gateway, run.id)
    return {"job_id": job_id, "status": "stopping", "message": f"Stop requested for job {job_id}"}


@router.get("/jobs", summary="Jobs, newest first")
async def list_jobs(
    status: str | None = Query(None, description=f"One of {', '.join(OPEVA_STATES[:-2])}"),
    host: str | None = Query(None, max_length=63),
    limit: int = Query(50, ge=1, le=200),
    offset: int = Query(0, ge=0, le=1_000_000),
    gateway: PrefectGateway = Depends(get_gateway),
) -> dict[str, Any]:
    if status is not None and status not in OPEVA_STATES[:-2]:
        raise ApiError(422, f"status must be one of {', '.join(OPEVA_STATES[:-2])}")
    runs, total = await gateway.list_runs(status=status, host=host, limit=limit, offset=offset)
    names = await gateway.flow_names()
    return {
        "jobs": [job_summary(r, kind=_kind(names.get(r.flow_id))) for r in runs],
        "total": total,
        "limit": limit,
        "offset": offset,
    }


def _kind(flow_name: str | None) -> str | None:
    return {"run-simulation": "simulation", "build-dataset": "dataset"}.get(flow_name or "", flow_name)


@router.get("/job-info/{job_id}", summary="A job's metadata")
async def job_info(job_id: str, gateway: PrefectGateway = Depends(get_gateway), storage: DataRoot = Depends(get_storage)) -> dict[str, Any]:
    run = await gateway.read_run(job_id)
    names = await gateway.flow_names()
    info = storage.read_json_object(storage.job(job_id).job_info_file)  # a job may write anything there
    params = dict(run.parameters or {})
    return {
        **job_summary(run, kind=_kind(names.get(run.flow_id))),
        "job_name": info.get("job_name") or run.name,
        "config_path": info.get("config_path") or params.get("config_path"),
        "target_host": run.work_pool_name,
        "submitted_by": params.get("submitted_by"),
        "parameters": params,
        "deployment_id": str(run.deployment_id) if run.deployment_id else None,
        "infrastructure_pid": run.infrastructure_pid,
        "job_variables": run.job_variables,
        "retries": run.empirical_policy.retries or 0,
        **{k: v for k, v in info.items() if k not in ("job_name", "config_path")},
    }


@router.delete("/job/{job_id}", summary="Delete a finished job and its files")
async def delete_job(job_id: str, user: CurrentUser, gateway: PrefectGateway = Depends(get_gateway), storage: DataRoot = Depends(get_storage)) -> dict[str, Any]:
    run = await gateway.read_run(job_id)
    require_manage(user, (run.parameters or {}).get("submitted_by"), job_id)  # owner or admin: else 403
    current = opeva_status(run)
    if current in ACTIVE:
        raise ApiError(409, f"job {job_id} is {current}; stop it before deleting it", status=current)
    if not run.state or not run.state.is_final():
        raise ApiError(409, f"job {job_id} is still stopping (Prefect state {run.state.name if run.state else None}); try again shortly", status=current)
    job_dir = storage.job(job_id).dir  # canonical id: DELETE /job/<UPPER> cleans jobs/<lower>/
    if job_dir.exists() or job_dir.is_symlink():
        await asyncio.to_thread(storage.remove_inside, job_dir)
    await gateway.delete(job_id)
    return {"job_id": job_id, "message": f"Job {job_id} and its files deleted"}
