"""Compute hosts (work pools, online when a worker heartbeats) and the image tags on them."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timezone
from typing import Any

from api.errors import ApiError
from api.gateway import PrefectGateway, epoch, opeva_status
from api.responses import HostDetail, HostRef, HostsOut, ImageTag, ImageVersions
from core.hosts import Host, HostsFile

log = logging.getLogger("opeva.api")
LOCAL_ENGINE = "local"


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


def engines_of(hosts: HostsFile) -> dict[str, list[str]]:
    """Docker engine URL -> the hosts using it. A host without ``docker_url`` uses this
    machine's engine when its worker runs here; other hosts' engines are out of reach."""
    engines: dict[str, list[str]] = {}
    for h in hosts.hosts:
        key = h.docker_url or (LOCAL_ENGINE if h.start_worker else None)
        if key:
            engines.setdefault(key, []).append(h.name)
    if not engines:
        engines[LOCAL_ENGINE] = [hosts.hosts[0].name]
    return engines


def _tags_on(engine: str, repository: str) -> list[dict[str, Any]]:
    import docker

    client = docker.from_env(timeout=5) if engine == LOCAL_ENGINE else docker.DockerClient(base_url=engine, timeout=5)
    try:
        found = []
        for image in client.images.list(name=repository):
            digests = image.attrs.get("RepoDigests") or []
            for ref in image.tags:
                repo, _, tag = ref.rpartition(":")
                if repo == repository:
                    found.append({"name": tag, "digest": digests[0].rpartition("@")[2] if digests else image.id,
                                  "last_updated": image.attrs.get("Created"), "size_bytes": image.attrs.get("Size")})
        return found
    finally:
        client.close()


def image_versions(hosts: HostsFile, repository: str, limit: int) -> ImageVersions:
    """Tags of ``repository`` on every Docker engine the platform can reach (no registry here)."""
    tags: dict[str, ImageTag] = {}
    problems: list[dict[str, str]] = []
    for engine, names in engines_of(hosts).items():
        try:
            found = _tags_on(engine, repository)
        except Exception as exc:  # docker.errors.DockerException and connection errors alike
            problems.extend({"host": n, "detail": f"Docker engine unreachable: {type(exc).__name__}"} for n in names)
            continue
        for t in found:
            if t["name"] in tags:
                tags[t["name"]].hosts.extend(n for n in names if n not in tags[t["name"]].hosts)
            else:
                tags[t["name"]] = ImageTag(host=names[0], hosts=list(names), **t)
    if problems and len(problems) == sum(len(n) for n in engines_of(hosts).values()):
        raise ApiError(503, "no Docker engine could be reached to list image tags", errors=problems)
    ordered = sorted(tags.values(), key=lambda t: t.last_updated or "", reverse=True)[:limit]
    return ImageVersions(repository=repository, tags=ordered, count=len(ordered), cached=False,
                         fetched_at=datetime.now(timezone.utc).isoformat(), errors=problems)
