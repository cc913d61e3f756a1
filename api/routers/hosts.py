"""Compute hosts: each a work pool, online when a worker heartbeats."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Depends

from api.deps import get_gateway, get_hosts
from api.gateway import PrefectGateway
from core.hosts import HostsFile

router = APIRouter(tags=["hosts"])


@router.get("/hosts", summary="Hosts with their pool, worker liveness and job counts")
async def list_hosts(gateway: PrefectGateway = Depends(get_gateway), hosts: HostsFile = Depends(get_hosts)) -> dict[str, Any]:
    overviews = await asyncio.gather(*(gateway.host_overview(h.name) for h in hosts.hosts))
    return {"hosts": {h.name: {**o, "gpus": h.gpus.model_dump() if h.gpus else None} for h, o in zip(hosts.hosts, overviews)}}
