"""Compute hosts (work pools, online when a worker heartbeats) and the simulator image tags on them."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Query

from api.deps import Gateway, Hosts, Settings
from api.responses import HostsOut, ImageVersions, errors
from api.usecases import hosts as usecase

router = APIRouter(tags=["hosts"])
root_router = APIRouter(tags=["hosts"])  # the routes whose 2025 shape differs (api/routers/ai_manager_ui.py)
REPOSITORY = r"^[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*$"  # Docker's repository grammar (no registry port)


@root_router.get("/hosts", response_model=HostsOut, responses=errors(), summary="Hosts (names as strings) with their worker liveness, info and jobs")
async def list_hosts(gateway: Gateway, hosts: Hosts) -> HostsOut:
    return await usecase.hosts_overview(gateway, hosts)


@router.get("/job-images/versions", response_model=ImageVersions, responses=errors(), summary="Tags of a simulator image repository on the hosts' Docker engines")
async def image_versions(
    hosts: Hosts,
    settings: Settings,
    repository: str | None = Query(None, max_length=255, pattern=REPOSITORY, description="Default: the runtime image's repository."),
    limit: int = Query(50, ge=1, le=1000),
) -> ImageVersions:
    repo = repository or settings.runtime_image.rsplit(":", 1)[0]
    return await asyncio.to_thread(usecase.image_versions, hosts, repo, limit)
