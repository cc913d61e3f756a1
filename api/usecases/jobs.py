"""Simulation jobs: submit, read, list, stop, delete, queue (a job is a flow run)."""

from __future__ import annotations

import asyncio
import hashlib
import json
from datetime import datetime, timezone
from typing import Any
from uuid import UUID

from prefect.client.schemas.objects import FlowRun, StateType

from api.deps import known_host
from api.errors import ApiError
from api.gateway import SIMULATION_FLOW, PrefectGateway, opeva_status
from api.job_index import JobIndex, matches
from core.limits import Resources
from core.placement import HostLoad, pick
from api.models import RunSimulationRequest
from api.idempotency import DIGEST_LABEL
from api.owners import Ownership
from api.security import User, require_manage
from api.stopper import kill_now
from api.usecases.mlflow_link import mlflow_link
from api.responses import JobInfoBrief, JobInfoOut, JobItem, JobMessage, JobStatusOut, JobSubmitted, Message, PrefectState, QueueItem
from core.experiment import ExperimentConfigError, job_name_of, resolve_experiment
from core.hosts import Host, HostsFile, job_limits
from core import job_io
from core.images import ImageCatalog
from api.usecases.images import chosen_image
from core.layout import DataRoot
from api.usecases import dataset_lineage as lineage, host_data, insight, notifications, organization
from api.models_notifications import NotificationFields
from core.states import ACTIVE, PLACEMENT_LABEL, PROFILE_LABEL, REQUEUED_FROM, fresh_labels
from api.usecases.slurm_hosts import slurm_fields
from core.submission import SubmissionRefused, check_image_tag, check_profile, check_profile_value, config_requires_gpu

KINDS = {"run-simulation": "simulation", "build-dataset": "dataset"}
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


def user_config_path(params: dict[str, Any]) -> str | None:
    """The config file the user chose (``configs/x.yaml``), never the job's own copy (upstream §1)."""
    if params.get("config_path"):
        return params["config_path"]
    return f"configs/{params['save_as']}" if params.get("save_as") else None


def job_item(run: FlowRun, flow_name: str | None) -> JobItem:
    params = dict(run.parameters or {})
    status = opeva_status(run)
    started = run.start_time if run.run_count else None
    ended = run.end_time if status not in ACTIVE and status != "stop_requested" else None
    return JobItem(
        job_id=str(run.id), status=status, job_name=run.name, host=run.work_pool_name, kind=KINDS.get(flow_name or "", flow_name),
        job_info=JobInfoBrief(
            job_name=params.get("job_name") or run.name, submitted_by=params.get("submitted_by"),
            config_path=user_config_path(params), target_host=params.get("target_host") or run.work_pool_name,
            image=params.get("image"), image_tag=params.get("image_tag"),
        ),
        prefect_state=state_of(run), submitted_at=iso(run.created), started_at=iso(started), finished_at=iso(ended),
        queue_wait_seconds=_seconds(run.created, started) if started or status in ("queued", "dispatched", "setup") else None,
        run_duration_seconds=_seconds(started, ended) if started else None,
        run_count=run.run_count, requeued_from=(run.labels or {}).get(REQUEUED_FROM), sweep_id=sweep_of(run),
    )


def sweep_of(run: FlowRun) -> str | None:
    """The sweep a run is a trial of, from its ``sweep:<id>`` tag (core/sweep.py)."""
    from core.sweep import SWEEP_TAG

    return next((t[len(SWEEP_TAG):] for t in run.tags or () if t.startswith(SWEEP_TAG)), None)


def _check_reference_simulator(config: dict[str, Any], storage: DataRoot) -> None:
    """Refuse now what the reference simulator would refuse in its container."""
    from simulator.config import ConfigError, validate_config

    try:
        validate_config(config, storage.root)
    except ConfigError as exc:
        raise ExperimentConfigError(exc.field, str(exc)) from exc


LOWERED = ("pids", "nofile", "log_bytes", "disk_bytes", "wall_seconds")  # limits a job may lower (core/job_limits.py)


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


def _labels(body: RunSimulationRequest, profile: str | None, automatic: bool) -> dict[str, str]:
    labels = fresh_labels({PLACEMENT_LABEL: "automatic"} if automatic else {})
    if profile:
        labels[PROFILE_LABEL] = profile
    if body.deucalion_options:
        labels["opeva.deucalion_options"] = json.dumps(body.deucalion_options, sort_keys=True)
    return labels


def _submitted(run: FlowRun, message: str) -> JobSubmitted:
    params = run.parameters or {}
    return JobSubmitted(job_id=str(run.id), status=opeva_status(run), host=run.work_pool_name or params.get("target_host") or "",
                        job_name=run.name, image=params.get("image"), image_tag=params.get("image_tag"),
                        target_worker_profile=(run.labels or {}).get(PROFILE_LABEL), message=message)


async def choose_host(gateway: PrefectGateway, hosts: HostsFile, profile: str | None) -> Host:
    """Automatic selection: among the profile's hosts (gpu: GPU-capable; cpu: not) with a worker
    online, the first with a free slot, else the shortest wait per slot (core/placement.py); with
    no worker online, the first of the profile (it waits there)."""
    candidates = [h for h in hosts.hosts if profile is None or (h.gpus is not None) == (profile == "gpu")]
    if not candidates:
        kind = "GPU-capable" if profile == "gpu" else "CPU-only"
        raise ApiError(400, f"no {kind} host is configured for target_worker_profile {profile!r}; hosts: {', '.join(hosts.names)}")
    workers = await asyncio.gather(*(gateway.hosts.workers(h.name) for h in candidates))
    online = [h for h, found in zip(candidates, workers) if any(w.status == "ONLINE" for w in found)]
    if len(online) <= 1:
        return online[0] if online else candidates[0]
    pools, active = await asyncio.gather(gateway.hosts.pools([h.name for h in online]), asyncio.gather(*(gateway.active_runs(h.name) for h in online)))
    loads = [HostLoad(h.name, pools[h.name].concurrency_limit if h.name in pools else None, len(runs)) for h, runs in zip(online, active)]
    return hosts.get(pick(loads)) or online[0]


async def _placement(gateway: PrefectGateway, hosts: HostsFile, body: RunSimulationRequest, config: dict[str, Any] | None) -> tuple[Host, str | None]:
    """(host, profile) under upstream's rules; ``config`` None: only the request's own checks."""
    chosen = body.target_host if body.target_host and body.target_host.strip() else None  # matched in full: "local\n" is unknown
    try:
        profile = check_profile_value(body.target_worker_profile)
        host = known_host(chosen, hosts) if chosen else None
        needs_gpu = config_requires_gpu(config) if config is not None else False
        check_profile(profile, chosen, needs_gpu, host.gpus is not None if host else None)
    except SubmissionRefused as exc:
        raise ApiError(400, str(exc)) from None
    if host is None:
        host = await choose_host(gateway, hosts, profile or ("gpu" if needs_gpu else None))
    return host, profile


def scoped_key(user: User | None, key: str | None) -> str | None:
    """An Idempotency-Key is the caller's own: the same key from two users is two keys
    (user names cannot hold ':', so ``alice:k`` is unambiguous)."""
    if not key:
        return None
    return f"{(user.name if user else None) or 'local'}:{key}"


def request_digest(body: RunSimulationRequest) -> str:
    """The request as received (``submitted_by`` already the token's user), canonical JSON."""
    return hashlib.sha256(json.dumps(body.model_dump(mode="json"), sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _save_as_new(storage: DataRoot, save_as: str | None) -> bool:
    return bool(save_as) and not storage.config_file(save_as).exists()  # type: ignore[arg-type]


async def submit_simulation(
    gateway: PrefectGateway, storage: DataRoot, hosts: HostsFile, body: RunSimulationRequest, idempotency_key: str | None,
    catalog: ImageCatalog, runtime_image: str, user: User | None = None, own: Ownership | None = None,
) -> JobSubmitted:
    try:
        image_tag = check_image_tag(body.image_tag)
    except SubmissionRefused as exc:
        raise ApiError(400, str(exc)) from None
    await _placement(gateway, hosts, body, None)  # a wrong host or profile answers before the config is read
    saves_new = await asyncio.to_thread(_save_as_new, storage, body.save_as)
    resolved = await asyncio.to_thread(
        resolve_experiment, storage, config=body.config, config_path=body.config_path, save_as=body.save_as, job_id=None
    )
    if saves_new and own is not None:  # save_as made a config: the caller owns it
        await asyncio.to_thread(own.made, "config", body.save_as)  # type: ignore[arg-type]
    host, profile = await _placement(gateway, hosts, body, resolved.config)
    chosen = await chosen_image(catalog, host, body, runtime_image)  # 400 before anything is queued
    _, accepted = await gateway.deployment(SIMULATION_FLOW, host.name)
    if body.command is None and chosen.reference:
        await asyncio.to_thread(_check_reference_simulator, resolved.config, storage)
    job_name = body.job_name or job_name_of(resolved.config)
    parameters: dict[str, Any] = {"target_host": host.name, "submitted_by": body.submitted_by, "job_name": job_name}
    if body.config is not None:
        parameters["config"] = resolved.config
        if body.save_as:
            parameters["save_as"] = body.save_as
    else:
        parameters["config_path"] = resolved.source
    from api.usecases.slurm_hosts import submit_options

    slurm_options = await submit_options(host, body)  # a Slurm host: 400 naming the limit, before anything is queued
    for key, value in (("image", body.image), ("image_tag", image_tag), ("command", body.command), ("slurm", slurm_options)):
        if value is not None:
            parameters[key] = value
    unknown = sorted(k for k in parameters if k not in accepted)
    if unknown:
        raise ApiError(422, f"the simulation deployment of host {host.name!r} does not take {', '.join(unknown)}; re-run `make setup` with this version")
    asked = body.resources.model_dump() if body.resources else {}
    resources = Resources(**{k: v for k, v in asked.items() if k not in LOWERED}) if body.resources else None
    submitted = await gateway.submit(
        SIMULATION_FLOW, host.name, parameters, name=job_name, retries=body.retries,
        job_variables=job_variables_for(host, resources, asked), idempotency_key=scoped_key(user, idempotency_key),
        labels={**_labels(body, profile, automatic=not (body.target_host and body.target_host.strip())), **({DIGEST_LABEL: request_digest(body)} if idempotency_key else {})},
        tags=[f"submitted-by:{body.submitted_by}"] if body.submitted_by else None, state=host_data.first_state(host),
    )
    if submitted.earlier is not None:  # a client's retry: the job its first attempt made
        return _submitted(submitted.earlier, "Job already submitted with this Idempotency-Key")
    await host_data.start_staging(gateway, host, submitted.id)
    return JobSubmitted(job_id=str(submitted.id), status=submitted.status, host=host.name, job_name=submitted.name,
                        image=chosen.image or host.image or runtime_image, image_tag=parameters.get("image_tag"), target_worker_profile=profile,
                        message="Job submitted")


async def status(gateway: PrefectGateway, storage: DataRoot, job_id: str) -> JobStatusOut:
    run = await gateway.read_run(job_id)
    current, params = opeva_status(run), dict(run.parameters or {})
    taken = current not in ("queued", "canceled", "unknown")  # a worker of the run's pool took it
    info = await asyncio.to_thread(storage.read_json_object, storage.job(str(run.id)).job_info_file) if taken else {}
    changed = iso(run.state.timestamp) if run.state else None
    out = JobStatusOut(
        job_id=str(run.id), status=current, worker_id=run.work_pool_name if taken else None,
        target_worker_profile=(run.labels or {}).get(PROFILE_LABEL),
        dispatched_image=(info.get("image") or params.get("image")) if taken else None,
        dispatched_image_tag=(info.get("image_tag") or params.get("image_tag")) if taken else None,
        status_updated_at=changed, last_status_at=changed,
        prefect_state=state_of(run), host=run.work_pool_name, job_name=run.name,
        **slurm_fields(info),
    )
    out = insight.with_failure(out, (await insight.failures(storage, [run])).get(out.job_id))
    notified = await _notified(gateway, run)
    return out.model_copy(update={k: getattr(notified, k) for k in notified.model_fields_set})


async def _notified(gateway: PrefectGateway, run: FlowRun) -> NotificationFields:
    """The job's notification attempts (only an ended run has any: no read for the others)."""
    return await notifications.job_attempts(gateway, run.id) if run.state and run.state.is_final() else NotificationFields()


async def list_jobs(gateway: PrefectGateway, *, status: str | None, host: str | None, limit: int | None, offset: int,
                    storage: DataRoot | None = None, hosts: HostsFile | None = None, index: JobIndex | None = None,
                    sweep_id: str | None = None, dataset: str | None = None) -> tuple[list[JobItem], int]:
    """One page of jobs, newest first, and the total; from the job index when it is built
    (api/job_index.py says why), else straight from Prefect. ``sweep_id``: a sweep's trials only (their tag).
    ``dataset``: ``name[@digest]``, the jobs that ran on it (the platform's lineage record)."""
    every: list[FlowRun] | None = None
    tag = f"sweep:{sweep_id}" if sweep_id else None
    only = await lineage.job_ids(storage, dataset) if dataset and storage is not None else None
    if only is not None:  # a handful of ids: read them, newest first
        found = [r for r in await gateway.runs_by_id(sorted(UUID(j) for j in only)) if matches(r, status, host, None, tag)]
        found.sort(key=lambda r: r.created or datetime.min.replace(tzinfo=timezone.utc), reverse=True)
        runs, total = found[offset:None if limit is None else offset + limit], len(found)
    elif index is not None and index.ready:
        every = await index.runs()
        matching = [r for r in every if matches(r, status, host, None, tag)]
        runs, total = matching[offset:None if limit is None else offset + limit], len(matching)
    else:
        runs, total = await gateway.list_runs(status=status, host=host, limit=limit, offset=offset, tag=tag)
        every = runs if status is None and host is None and tag is None and offset == 0 and len(runs) == total else None
    names = await gateway.flow_names()
    items = [index.memo(r, "item", lambda r=r: job_item(r, names.get(r.flow_id))) if index else job_item(r, names.get(r.flow_id)) for r in runs]
    if storage is not None and hosts is not None:  # estimates, failures, folders: a few batched reads in all
        estimates, failed, orgs = await asyncio.gather(insight.start_estimates(gateway, storage, hosts, every), insight.failures(storage, runs, index),
                                                       organization.organizations(storage))
        items = [insight.with_failure(insight.with_estimate(i, estimates), failed.get(i.job_id)) for i in items]
        items = [i.model_copy(update={"organization": orgs[i.job_id]}) if i.job_id in orgs else i for i in items]
    return items, total


async def job_info(gateway: PrefectGateway, storage: DataRoot, job_id: str, hosts: HostsFile | None = None) -> JobInfoOut:
    run = await gateway.read_run(job_id)
    names = await gateway.flow_names()
    item = job_item(run, names.get(run.flow_id))
    job = storage.job(str(run.id))
    info = await asyncio.to_thread(job_io.read_json, job.dir, "job_info.json")  # bounded, no link followed (core/job_io.py)
    info = info if isinstance(info, dict) else {}
    params = dict(run.parameters or {})
    reserved = set(JobInfoOut.model_fields) - {"config_path", "submitted_by"}
    link = await mlflow_link(str(run.id), run.created) if item.kind == "simulation" and run.run_count else None
    if link and link.available:  # the server's word over what the job wrote in job_info.json
        info.update(mlflow_run_id=link.run_id, mlflow_experiment_id=link.experiment_id, mlflow_run_url=link.url)
    extras = await asyncio.to_thread(insight.job_info_extras, storage, run, item.status, info.get("container_name"))
    estimate = (await insight.start_estimates(gateway, storage, hosts)).get(item.job_id) if hosts is not None and item.status == "queued" else None
    org = await asyncio.to_thread(organization.store_of(storage).organization, item.job_id)
    job_copy = info.get("config_path")  # the flow records the job's own copy (jobs/<id>/config.yaml)
    return JobInfoOut(
        **{**item.model_dump(), **extras, **insight.as_fields(estimate), "organization": org},
        config_path=user_config_path(params) or job_copy,
        resolved_config_path=job_copy,
        target_host=run.work_pool_name, submitted_by=params.get("submitted_by"), parameters=params,
        deployment_id=str(run.deployment_id) if run.deployment_id else None, infrastructure_pid=run.infrastructure_pid,
        job_variables=run.job_variables, retries=run.empirical_policy.retries or 0, labels=dict(run.labels or {}), tags=list(run.tags),
        mlflow=link, **{k: v for k, v in info.items() if k not in reserved and k not in ("config_path", "submitted_by", "resolved_config_path")},
        **(await _notified(gateway, run)).model_dump(exclude_unset=True),
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
    elif run.infrastructure_pid:
        # Final, yet its supervisor may still be finishing: a stop records Cancelled before the
        # supervisor's clean-up, which writes into the job folder. Killed first, or it writes back
        # the folder we remove (a no-op once the container has exited).
        await kill_now(gateway, run.id)
    job_dir = storage.job(str(run.id)).dir
    if job_dir.exists() or job_dir.is_symlink():
        await asyncio.to_thread(storage.remove_inside, job_dir)
    await gateway.delete(str(run.id))
    await organization.forget(storage, str(run.id))
    return Message(message=f"Job {job_id} deleted successfully")


async def _simulation_flow_ids(gateway: PrefectGateway) -> set[Any]:
    return {fid for fid, name in (await gateway.flow_names()).items() if name == SIMULATION_FLOW}


async def queue(gateway: PrefectGateway, storage: DataRoot | None = None, hosts: HostsFile | None = None, index: JobIndex | None = None) -> list[QueueItem]:
    """Queued simulations, next first, with their start estimates (from the job index when built)."""
    if index is not None and index.ready:
        every, simulation = await asyncio.gather(index.runs(), _simulation_flow_ids(gateway))
        runs = sorted((r for r in every if r.state and r.state.type == StateType.SCHEDULED and r.flow_id in simulation),
                      key=lambda r: (r.expected_start_time or r.created, r.id))
        estimates = await insight.start_estimates(gateway, storage, hosts, every) if storage is not None and hosts is not None else {}
    else:
        runs, estimates = await asyncio.gather(gateway.queued_runs([SIMULATION_FLOW]),
                                               insight.start_estimates(gateway, storage, hosts) if storage is not None and hosts is not None else asyncio.sleep(0, {}))
    return [insight.with_estimate(item, estimates) for item in [
        QueueItem(
            job_id=str(r.id), job_name=r.name, preferred_host=r.work_pool_name, require_host=True, enqueued_at=iso(r.created),
            submitted_by=(r.parameters or {}).get("submitted_by"), target_worker_profile=(r.labels or {}).get(PROFILE_LABEL),
            late=bool(r.state and r.state.name == "Late"), status=opeva_status(r),
        )
        for r in runs
    ]]
