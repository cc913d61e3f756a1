"""Operator actions: requeue, fail, cancel, stop a job; clean the queue and old jobs.

Every change is a Prefect state change through the gateway, with the reason in the
state's message (visible in the Prefect UI and in ``prefect_state.message``).

**Requeue is a new flow run**, linked to the old one: the new run carries the label
``opeva.requeued_from=<old id>`` and the tag ``requeued-from:<old id>``, the old one
the tag ``requeued-as:<new id>``. Why not re-schedule the same run: Prefect keeps one
state history and one ``run_count`` per run, so a second life of the same run would
blur "stopped" (it had run) and the attempt's logs; a new run keeps both jobs'
history intact, and ``GET /jobs`` shows ``requeued_from``.
"""

from __future__ import annotations

import asyncio
import shutil
from datetime import datetime, timezone

from prefect.client.schemas.objects import FlowRun, StateType

from api.errors import ApiError
from api.gateway import SIMULATION_FLOW, JobNotFound, PrefectGateway, opeva_status
from api.models import CancelRequest, FailRequest, JobsCleanupRequest, QueueCleanupRequest, RequeueRequest
from api.responses import CleanupOut, JobMessage, RequeueOut
from api.usecases import host_data
from api.usecases.jobs import QUEUED_TYPES
from core.states import REQUEUED_FROM
from core.states import fresh_labels
from core.hosts import HostsFile
from core.layout import DataRoot

STARTED_TYPES = (StateType.PENDING, StateType.RUNNING, StateType.CANCELLING)


def _final(run: FlowRun) -> bool:
    return bool(run.state and run.state.is_final())


def _why(action: str, reason: str | None) -> str:
    return f"{action} by an operator through the OPEVA API" + (f": {reason}" if reason else "")


def _refuse(run: FlowRun, action: str, hint: str) -> ApiError:
    current = opeva_status(run)
    return ApiError(409, f"job {run.id} is {current}; {action} needs \"force\": true {hint}".strip(), status=current, job_id=str(run.id))


async def requeue(gateway: PrefectGateway, hosts: HostsFile, job_id: str, body: RequeueRequest) -> tuple[RequeueOut, FlowRun | None]:
    """A new run of the job's flow with its parameters; the old run to stop, if it was active."""
    run = await gateway.read_run(job_id)
    if not _final(run) and not body.force:
        raise _refuse(run, "requeueing an active job", "(it is cancelled first)")
    names = await gateway.flow_names()
    flow_name = names.get(run.flow_id)
    if flow_name is None:
        raise ApiError(409, f"job {job_id} is not a simulation or dataset job; it cannot be requeued")
    host = body.preferred_host or run.work_pool_name or ""
    if hosts.get(host) is None:
        raise ApiError(404, f"unknown host {host!r}; known hosts: {', '.join(hosts.names)}", known_hosts=hosts.names)
    deployment_id, _ = await gateway.deployment(flow_name, host)
    stopped = None
    if not _final(run):
        await gateway.cancel_now(run.id, _why("Cancelled to requeue", None))
        stopped = run if run.state and run.state.type in STARTED_TYPES else None
    params = dict(run.parameters or {})
    if "target_host" in params:
        params["target_host"] = host
    staged = hosts.get(host) if flow_name == SIMULATION_FLOW else None  # a data: local host: the new run waits for its inputs
    new = await gateway.resubmit(run, deployment_id, params, tags=[*run.tags, f"requeued-from:{run.id}"],
                                 labels=fresh_labels({**(run.labels or {}), REQUEUED_FROM: str(run.id)}),
                                 state=host_data.first_state(staged) if staged else None)
    if staged is not None:
        await host_data.start_staging(gateway, staged, new.id)
    await gateway.add_tags(run, [f"requeued-as:{new.id}"])
    return RequeueOut(message="Job requeued as a new run", job_id=str(new.id), status=new.status, previous_job_id=str(run.id), host=host), stopped


async def fail(gateway: PrefectGateway, job_id: str, body: FailRequest) -> tuple[JobMessage, FlowRun | None]:
    run = await gateway.read_run(job_id)
    if _final(run) and not body.force:
        raise _refuse(run, "failing a finished job", "")
    await gateway.mark_failed(run.id, _why("Marked failed", body.reason))
    started = run if run.state and run.state.type in STARTED_TYPES else None
    return JobMessage(message="Job marked failed", job_id=str(run.id), status="failed"), started


async def cancel(gateway: PrefectGateway, job_id: str, body: CancelRequest) -> tuple[JobMessage, FlowRun | None]:
    run = await gateway.read_run(job_id)
    queued = bool(run.state and run.state.type in QUEUED_TYPES)
    if not queued and not body.force:
        hint = "(or POST /stop to stop it gracefully)" if not _final(run) else ""
        raise _refuse(run, "cancelling a job that is not queued", hint)
    await gateway.cancel_now(run.id, _why("Cancelled", body.reason))
    after = await gateway.read_run(job_id)
    started = run if run.state and run.state.type in STARTED_TYPES else None
    message = "Job canceled from queue" if queued else "Job cancelled"
    return JobMessage(message=message, job_id=str(run.id), status=opeva_status(after)), started


async def queue_cleanup(gateway: PrefectGateway, hosts: HostsFile, body: QueueCleanupRequest) -> CleanupOut:
    """Cancel queued runs that can never start (no deployment, or a host no longer in the
    hosts file); with ``force``, every queued run. Cancelled, not deleted: they stay visible."""
    removed = []
    for run in await gateway.queued_runs([SIMULATION_FLOW]):
        orphan = run.deployment_id is None or hosts.get(run.work_pool_name or "") is None
        if body.force or orphan:
            await gateway.cancel_now(run.id, _why("Removed from the queue", "queue cleanup"))
            removed.append(str(run.id))
    return CleanupOut(removed=removed, count=len(removed))


async def jobs_cleanup(gateway: PrefectGateway, storage: DataRoot, body: JobsCleanupRequest) -> CleanupOut:
    """Delete finished jobs (runs and files), never active ones."""
    if body.only is not None:
        runs = []
        for job_id in body.only:
            try:
                runs.append(await gateway.read_run(job_id))
            except JobNotFound:
                continue
    else:
        runs, _ = await gateway.list_runs(limit=None)
    keep = set(body.keep)
    now = datetime.now(timezone.utc)
    removed, active = [], []
    for run in runs:
        jid = str(run.id)
        if jid in keep:
            continue
        if not _final(run):
            active.append(jid)
            continue
        ended = run.end_time or (run.state.timestamp if run.state else None)
        if body.older_than_seconds is not None and ended is not None and (now - ended).total_seconds() < body.older_than_seconds:
            continue
        await asyncio.to_thread(shutil.rmtree, storage.job(jid).dir, ignore_errors=True)
        try:
            await gateway.delete(jid)
        except JobNotFound:
            pass
        removed.append(jid)
    return CleanupOut(removed=removed, count=len(removed), kept_active=active)


async def recover(gateway: PrefectGateway, storage: DataRoot, job_id: str) -> JobMessage:
    """A job whose host was lost (Prefect: Crashed or Failed) but whose folder holds a completed
    ``results/result.json`` (the host came back with its results) becomes Completed; 409 otherwise."""
    run = await gateway.read_run(job_id)
    jid, current = str(run.id), opeva_status(run)
    lost = bool(run.state and run.state.type in (StateType.CRASHED, StateType.FAILED))
    try:
        result = await asyncio.to_thread(storage.read_json, storage.job(jid).result_file)
    except ValueError:  # linked out of the data root: not a result
        result = None
    if not lost or not (isinstance(result, dict) and result.get("status") == "completed"):
        why = "it did not fail or crash" if not lost else "its results/result.json is not a completed result"
        raise ApiError(409, f"job {jid} is {current}; nothing to recover: {why}", status=current, job_id=jid)
    await gateway.mark_completed(run.id, _why("Recovered (results/result.json is complete)", None))
    return JobMessage(message="Job recovered: its results are complete", job_id=jid, status="finished")
