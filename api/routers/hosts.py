"""Compute hosts (work pools, online when a worker heartbeats) and the simulator image tags on them."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Query

from api.deps import Gateway, Hosts, Images, Index, Storage, known_host
from api.responses import HostsOut, ImageVersions, errors
from api.models_slurm import PartitionsOut
from api.usecases import hosts as usecase
from api.usecases import slurm_hosts

router = APIRouter(tags=["hosts"])
root_router = APIRouter(tags=["hosts"])  # the routes whose 2025 shape differs (api/routers/ai_manager_ui.py)
REPOSITORY = r"^[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*$"  # Docker's repository grammar (no registry port)


@root_router.get("/hosts", response_model=HostsOut, responses=errors(), summary="Hosts (names as strings) with their worker liveness, info and jobs")
async def list_hosts(gateway: Gateway, hosts: Hosts, index: Index, storage: Storage) -> HostsOut:
    return await slurm_hosts.with_slurm(await usecase.hosts_overview(gateway, hosts, index), hosts, storage)


@router.get("/job-images/versions", response_model=ImageVersions, responses=errors(), summary="Runtime versions: tags of a simulator repository present on the hosts' Docker engines")
async def image_versions(
    hosts: Hosts,
    catalog: Images,
    repository: str | None = Query(None, max_length=255, pattern=REPOSITORY, description="Default: the first host's simulator_image."),
    limit: int = Query(50, ge=1, le=1000),
) -> ImageVersions:
    """Tags present on the Docker engines of the hosts that may run the repository (images are never pulled,
    so a tag is offered only where it can run); ``latest``, ``buildcache*``, ``sha-*`` and variants left out."""
    return await asyncio.to_thread(usecase.image_versions, catalog, hosts, repository, limit)


@router.get("/hosts/{host}/partitions", response_model=PartitionsOut, responses=errors(404, 503),
            summary="A Slurm host's allowed partitions and their limits, from its own Slurm (sinfo)")
async def host_partitions(host: str, hosts: Hosts) -> PartitionsOut:
    return await slurm_hosts.partitions(known_host(host, hosts))


@router.get("/deucalion/partitions", response_model=PartitionsOut, responses=errors(404, 503),
            summary="Upstream's Deucalion partition limits: those of the Slurm host named deucalion")
async def deucalion_partitions(hosts: Hosts) -> PartitionsOut:
    return await slurm_hosts.partitions(slurm_hosts.deucalion_host(hosts))
