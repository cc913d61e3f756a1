"""The gateway's host door: a host is a Prefect work pool, its workers are the pool's workers.

Part of the one Prefect gateway (``PrefectGateway.hosts``), in its own file because it is its
own subject and keeps its own short-lived cache of pool and worker reads.
"""

from __future__ import annotations

import asyncio

from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.filters import WorkPoolFilter, WorkPoolFilterName
from prefect.client.schemas.objects import WorkPool, Worker
from prefect.exceptions import ObjectNotFound

HOST_READ_SECONDS = 2.0


class HostGateway:
    def __init__(self, client: PrefectClient) -> None:
        self.client = client
        self._host_reads: dict[str, tuple[float, WorkPool | None, list[Worker]]] = {}  # host -> (fresh until, pool, workers)

    async def pool(self, host: str) -> WorkPool | None:
        try:
            return await self.client.read_work_pool(host)
        except ObjectNotFound:
            return None

    async def pools(self, hosts: list[str]) -> dict[str, WorkPool]:
        """The work pools of ``hosts`` that exist, in one read."""
        found = await self.client.read_work_pools(work_pool_filter=WorkPoolFilter(name=WorkPoolFilterName(any_=hosts)))
        return {p.name: p for p in found}

    async def workers(self, host: str) -> list[Worker]:
        try:
            return await self.client.read_workers_for_work_pool(host)
        except ObjectNotFound:  # no pool (yet): no worker
            return []

    async def reads(self, hosts: list[str]) -> tuple[dict[str, WorkPool], dict[str, list[Worker]]]:
        """Pools and workers of ``hosts``, each host's kept HOST_READ_SECONDS while a worker of it is
        online. Why: the UIs poll /hosts, /jobs and /queue every few seconds and workers heartbeat
        every 30 s; a host with no worker online is read again every time, so a worker that just
        started shows at once."""
        now = asyncio.get_running_loop().time()
        stale = [h for h in hosts if self._host_reads.get(h, (0.0,))[0] <= now]
        if stale:
            pools, workers = await asyncio.gather(self.pools(stale), asyncio.gather(*(self.workers(h) for h in stale)))
            for host, found in zip(stale, workers):
                online = host in pools and any(w.status == "ONLINE" for w in found)
                self._host_reads[host] = (now + HOST_READ_SECONDS if online else 0.0, pools.get(host), found)
        reads = {h: self._host_reads[h] for h in hosts}
        return {h: r[1] for h, r in reads.items() if r[1] is not None}, {h: r[2] for h, r in reads.items()}
