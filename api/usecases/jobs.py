"""Simulation jobs: submit, read, list, stop, delete, queue (a job is a flow run)."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timezone
from typing import Any

from prefect.client.schemas.objects import FlowRun, StateType

from api.deps import known_host
from api.errors import ApiError
from api.gateway import SIMULATION_FLOW, PrefectGateway, Resources, opeva_status
from api.models import RunSimulationRequest
from api.security import User, require_manage
from api.stopper import kill_now
from api.responses import JobInfoBrief, JobInfoOut, JobItem, JobMessage, JobStatusOut, JobSubmitted, Message, PrefectState, QueueItem
from core.experiment import ExperimentConfigError, job_name_of, resolve_experiment
from core.hosts import Host, HostsFile, job_limits
from core import job_io
from core.layout import DataRoot

KINDS = {"run-simulation": "simulation", "build-dataset": "dataset"}
REQUEUED_FROM = "opeva.requeued_from"
QUEUED_TYPES = (StateType.SCHEDULED, StateType.PAUSED)


def iso(dt: datetime | None) -> str | None:
    return dt.astimezone(timezone.utc).isoformat() if dt else None


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    if start is None:
        return None
    return round(((end or datetime.now(timezone.utc)) - start).total_seconds(), 3)


def state_of(run: FlowRun) -> PrefectState:
    s = run.state
    return PrefectState(type=s.type.value if s else None, name=s.name if s else None, message=s.message if s else None)


def job_item(run: FlowRun, flow_name: str | None) -> JobItem:
    params = dict(run.parameters or {})
    status = opeva_status(run)
    started = run.start_time if run.run_count else None
    ended = run.end_time if status not in ("queued", "dispatched", "running", "stop_requested") else None
    return JobItem(
        job_id=str(run.id), status=status, job_name=run.name, host=run.work_pool_name, kind=KINDS.get(flow_name or "", flow_name),
        job_info=JobInfoBrief(
            job_name=params.get("job_name") or run.name, submitted_by=params.get("submitted_by"),
            config_path=params.get("config_path"), target_host=params.get("target_host") or run.work_pool_name,
            image=params.get("image"), image_tag=params.get("image_tag"),
        ),
        prefect_state=state_of(run), submitted_at=iso(run.created), started_at=iso(started), finished_at=iso(ended),
        queue_wait_seconds=_seconds(run.created, started) if started or status in ("queued", "dispatched") else None,
        run_duration_seconds=_seconds(started, ended) if started else None,
        run_count=run.run_count, requeued_from=(run.labels or {}).get(REQUEUED_FROM),
    )


def _check_reference_simulator(config: dict[str, Any], storage: DataRoot) -> None:
    """Refuse now what the reference simulator would refuse in its container."""
    from simulator.config import ConfigError, validate_config

    try:
        validate_config(config, storage.root)
    except ConfigError as exc:
        raise ExperimentConfigError(exc.field, str(exc)) from exc


LOWERED = ("pids", "nofile", "log_bytes", "disk_bytes")  # limits a job may lower (core/job_limits.py)


def job_variables_for(host: Host, resources: Resources | None, lowered: dict[str, Any] | None = None) -> dict[str, Any]:
    """Per-job job variables merged with the host's: Prefect replaces every variable but
    ``env`` whole, so a job's ``container_create_kwargs`` would drop a GPU host's devices."""
    variables = resources.job_variables() if resources else {}
    if lowered := {k: v for k, v in (lowered or {}).items() if k in LOWERED and v is not None}:
        variables["limits"] = lowered
    job_limits(host, variables, strict=True)  # a job may only lower its host's limits: 422 otherwise
    create = variables.get("container_create_kwargs")
    if create is not None and host.gpus is not None and "device_requests" not in create:
        create["device_requests"] = [host.gpus.device_request()]
    return variables


def _labels(body: RunSimulationRequest) -> dict[str, str]:
    labels: dict[str, str] = {}
    if body.target_worker_profile:
        labels["opeva.target_worker_profile"] = body.target_worker_profile
    if body.deucalion_options:
        labels["opeva.deucalion_options"] = json.dumps(body.deucalion_options, sort_keys=True)
    return labels


def _submitted(run: FlowRun, message: str) -> JobSubmitted:
    params = run.parameters or {}
    return JobSubmitted(job_id=str(run.id), status=opeva_status(run), host=run.work_pool_name or params.get("target_host") or "",
                        job_name=run.name, image=params.get("image"), image_tag=params.get("image_tag"), message=message)


async def submit_simulation(
    gateway: PrefectGateway, storage: DataRoot, hosts: HostsFile, body: RunSimulationRequest, idempotency_key: str | None
) -> JobSubmitted:
    host = known_host(body.target_host, hosts)
    _, accepted = await gateway.deployment(SIMULATION_FLOW, host.name)
    resolved = await asyncio.to_thread(
        resolve_experiment, storage, config=body.config, config_path=body.config_path, save_as=body.save_as, job_id=None
    )
    if body.command is None and body.image is None and body.image_tag is None:
        await asyncio.to_thread(_check_reference_simulator, resolved.config, storage)
    job_name = body.job_name or job_name_of(resolved.config)
    parameters: dict[str, Any] = {"target_host": host.name, "submitted_by": body.submitted_by, "job_name": job_name}
    if body.config is not None:
        parameters["config"] = resolved.config
        if body.save_as:
            parameters["save_as"] = body.save_as
    else:
        parameters["config_path"] = resolved.source
    for key in ("image", "image_tag", "command"):
        if getattr(body, key) is not None:
            parameters[key] = getattr(body, key)
    unknown = sorted(k for k in parameters if k not in accepted)
    if unknown:
        raise ApiError(422, f"the simulation deployment of host {host.name!r} does not take {', '.join(unknown)}; re-run `make setup` with this version")
    asked = body.resources.model_dump() if body.resources else {}
    resources = Resources(**{k: v for k, v in asked.items() if k not in LOWERED}) if body.resources else None
    submitted = await gateway.submit(
        SIMULATION_FLOW, host.name, parameters, name=job_name, retries=body.retries,
        job_variables=job_variables_for(host, resources, asked), idempotency_key=idempotency_key, labels=_labels(body),
        tags=[f"submitted-by:{body.submitted_by}"] if body.submitted_by else None,
    )
    if submitted.earlier is not None:  # a client's retry: the job its first attempt made
        return _submitted(submitted.earlier, "Job already submitted with this Idempotency-Key")
    return JobSubmitted(job_id=str(submitted.id), status=submitted.status, host=host.name, job_name=submitted.name,
                        image=parameters.get("image"), image_tag=parameters.get("image_tag"), message="Job submitted")


async def status(gateway: PrefectGateway, job_id: str) -> JobStatusOut:
    run = await gateway.read_run(job_id)
    return JobStatusOut(job_id=str(run.id), status=opeva_status(run), prefect_state=state_of(run), host=run.work_pool_name, job_name=run.name)


async def list_jobs(gateway: PrefectGateway, *, status: str | None, host: str | None, limit: int | None, offset: int) -> tuple[list[JobItem], int]:
    runs, total = await gateway.list_runs(status=status, host=host, limit=limit, offset=offset)
    names = await gateway.flow_names()
    return [job_item(r, names.get(r.flow_id)) for r in runs], total


async def job_info(gateway: PrefectGateway, storage: DataRoot, job_id: str) -> JobInfoOut:
    run = await gateway.read_run(job_id)
    names = await gateway.flow_names()
    item = job_item(run, names.get(run.flow_id))
    job = storage.job(str(run.id))
    info = await asyncio.to_thread(job_io.read_json, job.dir, "job_info.json")  # bounded, no link followed (core/job_io.py)
    info = info if isinstance(info, dict) else {}
    params = dict(run.parameters or {})
    reserved = set(JobInfoOut.model_fields) - {"config_path", "submitted_by"}
    return JobInfoOut(
        **item.model_dump(),
        config_path=info.get("config_path") or params.get("config_path"),
        target_host=run.work_pool_name, submitted_by=params.get("submitted_by"), parameters=params,
        deployment_id=str(run.deployment_id) if run.deployment_id else None, infrastructure_pid=run.infrastructure_pid,
        job_variables=run.job_variables, retries=run.empirical_policy.retries or 0, labels=dict(run.labels or {}), tags=list(run.tags),
        **{k: v for k, v in info.items() if k not in reserved and k not in ("config_path", "submitted_by")},
    )


async def stop(gateway: PrefectGateway, job_id: str, reason: str | None = None, user: User | None = None) -> tuple[JobMessage, FlowRun | None]:
    """Upstream's answers in every state; the run to watch (its container must go) when one was asked to stop.
    With a ``user``, only the job's owner or an admin may stop it (403)."""
    run = await gateway.read_run(job_id)
    if user is not None:
        require_manage(user, (run.parameters or {}).get("submitted_by"), str(run.id))
    jid = str(run.id)
    note = f": {reason}" if reason else ""
    if run.state and run.state.type in QUEUED_TYPES:
        await gateway.cancel_now(run.id, f"Canceled from the queue through the OPEVA API{note}")
        return JobMessage(message="Job canceled from queue", job_id=jid, status="canceled"), None
    if run.state and run.state.type in (StateType.PENDING, StateType.RUNNING):
        if await gateway.request_cancel(run.id, f"Stop requested through the OPEVA API{note}"):
            return JobMessage(message="Stop requested; worker should terminate the job", job_id=jid, status="stop_requested"), run
        run = await gateway.read_run(job_id)  # it ended meanwhile
    current = opeva_status(run)
    if current == "stop_requested":
        return JobMessage(message="Stop already requested", job_id=jid, status=current), None
    return JobMessage(message=f"Job already finished ({current})", job_id=jid, status=current), None


async def delete(gateway: PrefectGateway, storage: DataRoot, job_id: str, user: User | None = None) -> Message:
    """Run and files; the job folder is removed without following links a job left in it."""
    run = await gateway.read_run(job_id)
    if user is not None:
        require_manage(user, (run.parameters or {}).get("submitted_by"), str(run.id))
    current = opeva_status(run)
    if not run.state or not run.state.is_final():
        if current not in ("queued", "stop_requested"):
            raise ApiError(409, f"job {job_id} is {current}; stop it before deleting it", status=current, job_id=str(run.id))
        # As upstream: a queued job, or one whose stop is under way, is deleted at once (the
        # OPEVA clients delete right after a stop). Its run is ended first, its container killed.
        await gateway.cancel_now(run.id, "Deleted through the OPEVA API")
        if current == "stop_requested":
            await kill_now(gateway, run.id)
    job_dir = storage.job(str(run.id)).dir
    if job_dir.exists() or job_dir.is_symlink():
        await asyncio.to_thread(storage.remove_inside, job_dir)
    await gateway.delete(str(run.id))
    return Message(message=f"Job {job_id} deleted successfully")


async def queue(gateway: PrefectGateway) -> list[QueueItem]:
    runs = await gateway.queued_runs([SIMULATION_FLOW])
    return [
        QueueItem(
            job_id=str(r.id), job_name=r.name, preferred_host=r.work_pool_name, require_host=True, enqueued_at=iso(r.created),
            submitted_by=(r.parameters or {}).get("submitted_by"), late=bool(r.state and r.state.name == "Late"), status=opeva_status(r),
        )
        for r in runs
    ]
