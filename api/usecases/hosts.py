"""Compute hosts (work pools, online when a worker heartbeats) and the image tags on them."""

from __future__ import annotations

import asyncio
import logging

from api.gateway import PrefectGateway, epoch, opeva_status
from api.responses import HostDetail, HostRef, HostsOut, ImageTag, ImageVersions
from core import images
from core.hosts import Host, HostsFile
from core.images import ImageCatalog

log = logging.getLogger("opeva.api")


async def host_detail(gateway: PrefectGateway, host: Host) -> HostDetail:
    gpus = host.gpus.model_dump() if host.gpus else None
    pool = await gateway.pool(host.name)
    if pool is None:
        return HostDetail(online=False, last_seen=None, running=0, queued=0, active_job_ids=[], current_job_id=None, current_job_status=None,
                          pool=None, pool_type=None, concurrency_limit=None, workers=[], gpus=gpus,
                          message=f"no work pool named {host.name!r}: run `python -m deployments.setup`")
    workers, runs = await asyncio.gather(gateway.workers(host.name), gateway.active_runs(host.name))
    online = [w for w in workers if w.status == "ONLINE"]
    beats = [w.last_heartbeat_time for w in workers if w.last_heartbeat_time]
    statuses = [(r, opeva_status(r)) for r in runs]
    running = [(str(r.id), s) for r, s in statuses if s in ("running", "dispatched", "stop_requested")]
    queued = [str(r.id) for r, s in statuses if s == "queued"]
    return HostDetail(
        online=bool(online), last_seen=epoch(max(beats)) if beats else None,
        info={"pool_type": pool.type, "concurrency_limit": pool.concurrency_limit, "paused": pool.is_paused, "image": host.image},
        running=len(running), queued=len(queued), active_job_ids=[j for j, _ in running] + queued,
        current_job_id=running[0][0] if running else None, current_job_status=running[0][1] if running else None,
        pool=pool.name, pool_type=pool.type, concurrency_limit=pool.concurrency_limit, paused=pool.is_paused,
        workers=[{"name": w.name, "status": getattr(w.status, "value", w.status), "last_heartbeat": epoch(w.last_heartbeat_time)} for w in workers],
        gpus=gpus,
        message=None if online else f"no worker online for host {host.name!r}: jobs wait until one runs `prefect worker start --pool {host.name}`",
    )


async def hosts_overview(gateway: PrefectGateway, hosts: HostsFile) -> HostsOut:
    details = await asyncio.gather(*(host_detail(gateway, h) for h in hosts.hosts))
    return HostsOut(available_hosts=[HostRef(name=h.name, host=h.name) for h in hosts.hosts], hosts={h.name: d for h, d in zip(hosts.hosts, details)})


def image_versions(catalog: ImageCatalog, hosts: HostsFile, repository: str | None, limit: int) -> ImageVersions:
    """The runtime versions the UI offers: tags present on the engines of the hosts that may run
    ``repository`` (default: the first host's ``simulator_image``), from a cache (core.images)."""
    found = images.versions(catalog, hosts, repository, limit)
    return ImageVersions(
        repository=found.repository, sif_repository=f"{found.repository}{images.SIF_SUFFIX}",
        tags=[ImageTag(host=t.hosts[0], **vars(t)) for t in found.tags], count=found.count, cached=found.cached,
        fetched_at=found.fetched_at, hosts=found.hosts, reason=found.reason,
    )
