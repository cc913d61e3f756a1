"""Compute hosts (work pools, online when a worker heartbeats) and the image tags on them."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timezone

from prefect.client.schemas.objects import FlowRun, WorkPool, Worker

from api.gateway import PrefectGateway, epoch, opeva_status
from api.job_index import JobIndex
from api.responses import ActiveJob, HostDetail, HostInfo, HostRef, HostsOut, HostsOut2025, ImageTag, ImageVersions
from core import images
from core.hosts import Host, HostsFile
from core.images import ImageCatalog
from core.settings import project_version
from core.states import STARTED

log = logging.getLogger("opeva.api")


def iso(dt: datetime | None) -> str | None:
    return dt.astimezone(timezone.utc).isoformat() if dt else None


PROVISIONING = ("dispatched", "setup")


def _active_jobs(statuses: list[tuple[FlowRun, str]]) -> list[ActiveJob]:
    """Running first, then provisioning, then the queue in start order (queue_pos 1 = next)."""
    out: list[ActiveJob] = []
    queued = [(r, s) for r, s in statuses if s == "queued"]
    for r, s in statuses:
        if s != "queued":
            phase = "provisioning" if s in PROVISIONING else "running"
            out.append(ActiveJob(job_id=str(r.id), job_name=r.name, status=s, phase=phase, updated_at=iso(r.state.timestamp if r.state else None)))
    for n, (r, s) in enumerate(queued):
        out.append(ActiveJob(job_id=str(r.id), job_name=r.name, status=s, phase="queued", queue_pos=n + 1, ahead=n,
                             updated_at=iso(r.state.timestamp if r.state else None)))
    return out


def _offline(host: Host) -> HostDetail:
    gpus = host.gpus.model_dump() if host.gpus else None
    return HostDetail(online=False, last_seen=None, info=HostInfo(gpu_enabled=gpus is not None, max_active_jobs=host.concurrency_limit),
                      running=0, queued=0, active_job_ids=[], current_job_id=None, current_job_status=None,
                      pool=None, pool_type=None, concurrency_limit=None, workers=[], gpus=gpus,
                      message=f"no work pool named {host.name!r}: run `python -m deployments.setup`")


def host_detail(host: Host, pool: WorkPool | None, workers: list[Worker], runs: list[FlowRun], last: FlowRun | None) -> HostDetail:
    """One host's card from what was read for all hosts at once: its pool, workers, active runs
    (oldest expected start first) and its last ended run."""
    if pool is None:
        return _offline(host)
    gpus = host.gpus.model_dump() if host.gpus else None
    online = [w for w in workers if w.status == "ONLINE"]
    beats = [w.last_heartbeat_time for w in workers if w.last_heartbeat_time]
    statuses = [(r, opeva_status(r)) for r in runs]
    started = [(str(r.id), s) for r, s in statuses if s in STARTED]
    queued = [str(r.id) for r, s in statuses if s == "queued"]
    active_ids = [j for j, _ in started] + queued
    info = HostInfo(
        executor=pool.type, worker_version=project_version() if online else None, gpu_enabled=gpus is not None,
        max_active_jobs=pool.concurrency_limit, active_job_count=len(active_ids),
        running_job_count=sum(1 for _, s in started if s in ("running", "stop_requested")),
        provisioning_job_count=sum(1 for _, s in started if s in PROVISIONING), active_job_ids=active_ids, active_jobs=_active_jobs(statuses),
        last_job_id=str(last.id) if last else None, last_terminal_status=opeva_status(last) if last else None,
        last_status_at=iso(last.state.timestamp if last and last.state else None),
        pool_type=pool.type, concurrency_limit=pool.concurrency_limit, paused=pool.is_paused, image=host.image,
    )
    return HostDetail(
        # A host with a started job counts as online (upstream's rule) only while Prefect has not seen
        # its workers stop heart-beating: a worker Prefect marked OFFLINE means the host (or its link)
        # is lost, and a lost busy host must show offline within Prefect's window, not when its job fails.
        online=bool(online) or (bool(started) and not workers), last_seen=epoch(max(beats)) if beats else None, info=info,
        running=len(started), queued=len(queued), active_job_ids=active_ids,
        current_job_id=started[0][0] if started else None, current_job_status=started[0][1] if started else None,
        pool=pool.name, pool_type=pool.type, concurrency_limit=pool.concurrency_limit, paused=pool.is_paused,
        workers=[{"name": w.name, "status": getattr(w.status, "value", w.status), "last_heartbeat": epoch(w.last_heartbeat_time)} for w in workers],
        gpus=gpus,
        message=None if online else f"no worker online for host {host.name!r}: jobs wait until one runs `prefect worker start --pool {host.name}`",
    )


async def _runs_by_host(gateway: PrefectGateway, names: list[str], index: JobIndex | None) -> dict[str, tuple[list[FlowRun], FlowRun | None]]:
    """Each host's active runs and last ended run: from the job index when built (two small reads
    for all hosts), else Prefect's filtered reads per host."""
    if index is None or not index.ready:
        found = await asyncio.gather(*(asyncio.gather(gateway.active_runs(n), gateway.last_ended_run(n)) for n in names))
        return {n: (active, last) for n, (active, last) in zip(names, found)}
    out: dict[str, tuple[list[FlowRun], FlowRun | None]] = {n: ([], None) for n in names}
    for run in reversed(await index.runs()):  # oldest expected start first
        if run.work_pool_name not in out:
            continue
        active, last = out[run.work_pool_name]
        if not (run.state and run.state.is_final()):
            active.append(run)
        elif run.end_time and (last is None or not last.end_time or run.end_time > last.end_time):
            out[run.work_pool_name] = (active, run)
    return out


async def hosts_overview(gateway: PrefectGateway, hosts: HostsFile, index: JobIndex | None = None) -> HostsOut:
    """Every host's card in one round of reads (pools at once, workers per pool in parallel, runs)."""
    names = [h.name for h in hosts.hosts]
    (pools, workers), runs = await asyncio.gather(gateway.hosts.reads(names), _runs_by_host(gateway, names, index))
    details = [host_detail(h, pools.get(h.name), workers[h.name], *runs[h.name]) for h in hosts.hosts]
    return HostsOut(available_hosts=names, hosts=dict(zip(names, details)))


def hosts_overview_2025(out: HostsOut) -> HostsOut2025:
    """ai-manager-ui's shape of the same answer: each name as ``{name, host}``."""
    return HostsOut2025(available_hosts=[HostRef(name=n, host=n) for n in out.available_hosts], hosts=out.hosts)


def image_versions(catalog: ImageCatalog, hosts: HostsFile, repository: str | None, limit: int) -> ImageVersions:
    """The runtime versions the UI offers: tags present on the engines of the hosts that may run
    ``repository`` (default: the first host's ``simulator_image``), from a cache (core.images)."""
    found = images.versions(catalog, hosts, repository, limit)
    return ImageVersions(
        repository=found.repository, sif_repository=f"{found.repository}{images.SIF_SUFFIX}",
        tags=[ImageTag(host=t.hosts[0], **vars(t)) for t in found.tags], count=found.count, cached=found.cached,
        fetched_at=found.fetched_at, hosts=found.hosts, reason=found.reason,
    )
