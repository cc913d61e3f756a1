"""The API's single door to Prefect: jobs are flow runs, hosts are work pools.

Why one module: every endpoint reads or writes Prefect, and all of them must
agree on how a job id maps to a flow run, how a job is submitted (retries,
resources) and how it is stopped. The REST layer holds no job state of its own.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.filters import (
    FlowFilter,
    FlowFilterName,
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
    LogFilter,
    LogFilterFlowRunId,
    LogFilterTimestamp,
    WorkPoolFilter,
    WorkPoolFilterName,
)
from prefect.client.schemas.objects import FlowRun, FlowRunPolicy, Log, StateType
from prefect.client.schemas.sorting import FlowRunSort, LogSort
from prefect.exceptions import ObjectNotFound
from prefect.states import Cancelled, Cancelling

from core.states import PREFECT_TYPES, opeva_status_of

log = logging.getLogger("opeva.api")

SIMULATION_FLOW = "run-simulation"
DATASET_FLOW = "build-dataset"
JOB_FLOWS = [SIMULATION_FLOW, DATASET_FLOW]
CANCELLED_SCAN = 1000
LOG_GRACE_SECONDS = 3.0
TERMINAL = {StateType.COMPLETED, StateType.FAILED, StateType.CRASHED, StateType.CANCELLED}


class JobNotFound(LookupError):
    def __init__(self, job_id: str) -> None:
        super().__init__(f"no job with id {job_id!r}")
        self.job_id = job_id


class DeploymentMissing(LookupError):
    pass


@dataclass(frozen=True)
class Resources:
    """Per-job container limits, passed as Docker job variables of the flow run."""

    cpus: float | None = None
    memory: str | None = None  # Docker notation: "2g", "512m"
    gpus: int | None = None  # -1 = all

    def job_variables(self) -> dict[str, Any]:
        variables: dict[str, Any] = {}
        create: dict[str, Any] = {}
        if self.cpus:
            create["nano_cpus"] = int(self.cpus * 1e9)
        if self.gpus:
            create["device_requests"] = [{"Driver": "nvidia", "Count": self.gpus, "Capabilities": [["gpu"]]}]
        if create:
            variables["container_create_kwargs"] = create
        if self.memory:
            variables["mem_limit"] = self.memory
        return variables


def opeva_status(run: FlowRun) -> str:
    return opeva_status_of(run.state.type.value if run.state else None, run.run_count)


def parse_job_id(job_id: str) -> UUID:
    try:
        return UUID(str(job_id))
    except ValueError:
        raise JobNotFound(job_id) from None


def epoch(dt: datetime | None) -> float | None:
    return dt.timestamp() if dt else None


class PrefectGateway:
    def __init__(self, client: PrefectClient) -> None:
        self.client = client
        self._deployments: dict[str, UUID] = {}
        self._flow_names: dict[UUID, str] = {}

    # -- submitting ------------------------------------------------------

    async def deployment_id(self, flow_name: str, host: str) -> UUID:
        key = f"{flow_name}/{host}"
        if key not in self._deployments:
            try:
                self._deployments[key] = (await self.client.read_deployment_by_name(key)).id
            except ObjectNotFound:
                raise DeploymentMissing(f"deployment {key!r} does not exist; run `python -m deployments.setup`") from None
        return self._deployments[key]

    async def submit(
        self,
        flow_name: str,
        host: str,
        parameters: dict[str, Any],
        *,
        name: str | None = None,
        retries: int = 0,
        retry_delay_seconds: int = 5,
        resources: Resources | None = None,
        job_variables: dict[str, Any] | None = None,
        tags: list[str] | None = None,
    ) -> FlowRun:
        deployment_id = await self.deployment_id(flow_name, host)
        variables = {**(resources.job_variables() if resources else {}), **(job_variables or {})}
        try:
            run = await self.client.create_flow_run_from_deployment(
                deployment_id,
                parameters=parameters,
                name=name,
                job_variables=variables or None,
                tags=tags or [],
            )
        except ObjectNotFound:  # deployment removed since we cached its id
            self._deployments.pop(f"{flow_name}/{host}", None)
            raise
        if retries:
            # Flow retries are Prefect's own: the server's retry rule reads the run's policy,
            # and the engine keeps it because it is not None. Set before a worker can start it.
            await self.client.update_flow_run(run.id, empirical_policy=FlowRunPolicy(retries=retries, retry_delay=retry_delay_seconds))
        return run

    # -- reading ---------------------------------------------------------

    async def read_run(self, job_id: str) -> FlowRun:
        try:
            return await self.client.read_flow_run(parse_job_id(job_id))
        except ObjectNotFound:
            raise JobNotFound(job_id) from None

    async def list_runs(
        self, *, status: str | None = None, host: str | None = None, limit: int = 50, offset: int = 0
    ) -> tuple[list[FlowRun], int]:
        """Newest first; also the total matching count, for pagination."""
        run_filter = FlowRunFilter()
        if status:
            run_filter.state = FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType(t) for t in sorted(PREFECT_TYPES[status])]))
        kwargs: dict[str, Any] = {
            "flow_filter": FlowFilter(name=FlowFilterName(any_=JOB_FLOWS)),
            "flow_run_filter": run_filter,
            "work_pool_filter": WorkPoolFilter(name=WorkPoolFilterName(any_=[host])) if host else None,
        }
        if status in ("stopped", "canceled"):
            # Prefect cannot filter on run_count: split cancelled runs here (they are few).
            runs = await self.client.read_flow_runs(**kwargs, sort=FlowRunSort.EXPECTED_START_TIME_DESC, limit=CANCELLED_SCAN)
            matching = [r for r in runs if opeva_status(r) == status]
            return matching[offset : offset + limit], len(matching)
        runs, total = await asyncio.gather(
            self.client.read_flow_runs(**kwargs, sort=FlowRunSort.EXPECTED_START_TIME_DESC, limit=limit, offset=offset),
            self.client.count_flow_runs(**kwargs),
        )
        return runs, total

    async def flow_names(self) -> dict[UUID, str]:
        """Flow id -> name of the job flows; flows are few and never renamed, so cached."""
        if len(self._flow_names) < len(JOB_FLOWS):
            flows = await self.client.read_flows(flow_filter=FlowFilter(name=FlowFilterName(any_=JOB_FLOWS)))
            self._flow_names = {f.id: f.name for f in flows}
        return self._flow_names

    async def logs(self, job_id: str, *, after: datetime | None = None, limit: int = 200) -> list[Log]:
        flt = LogFilter(flow_run_id=LogFilterFlowRunId(any_=[parse_job_id(job_id)]))
        if after is not None:
            flt.timestamp = LogFilterTimestamp(after_=after)
        return await self.client.read_logs(log_filter=flt, limit=limit, sort=LogSort.TIMESTAMP_ASC)

    async def follow_logs(self, job_id: str, *, follow: bool, poll_seconds: float = 0.5) -> AsyncIterator[Log]:
        """Every log of the run once, in time order; with ``follow``, until the run ends."""
        after: datetime | None = None
        seen_at_edge: set[UUID] = set()
        while True:
            batch = await self.logs(job_id, after=after)
            fresh = [entry for entry in batch if entry.id not in seen_at_edge]
            for entry in fresh:
                yield entry
            if batch:
                last = batch[-1].timestamp
                seen_at_edge = {e.id for e in batch if e.timestamp == last} | (seen_at_edge if last == after else set())
                after = last
            if len(batch) >= 200:
                continue  # more waiting; the filter is inclusive so the edge set prevents repeats
            if not follow:
                return
            run = await self.read_run(job_id)
            if run.state and run.state.type in TERMINAL:
                # The engine ships its last log batches after it sets the final state:
                # keep reading until the run has been over for LOG_GRACE_SECONDS.
                ended = run.end_time or run.state.timestamp
                if ended is not None and (datetime.now(ended.tzinfo) - ended).total_seconds() < LOG_GRACE_SECONDS:
                    await asyncio.sleep(poll_seconds)
                    continue
                for entry in await self.logs(job_id, after=after):
                    if entry.id not in seen_at_edge:
                        yield entry
                return
            await asyncio.sleep(poll_seconds)

    # -- stopping and deleting -------------------------------------------

    async def stop(self, run: FlowRun) -> str:
        """Cancel a queued run at once; ask the worker to kill a started one."""
        if run.state and run.state.type == StateType.SCHEDULED:
            await self.client.set_flow_run_state(run.id, Cancelled(message="Stopped before it started"), force=True)
            return "canceled"
        await self.client.set_flow_run_state(run.id, Cancelling(message="Stop requested through the OPEVA API"))
        return "stopping"

    async def force_cancelled(self, run_id: UUID, message: str) -> None:
        await self.client.set_flow_run_state(run_id, Cancelled(message=message), force=True)

    async def delete(self, job_id: str) -> None:
        try:
            await self.client.delete_flow_run(parse_job_id(job_id))
        except ObjectNotFound:
            raise JobNotFound(job_id) from None

    # -- hosts -------------------------------------------------------------

    async def host_overview(self, host: str) -> dict[str, Any]:
        """Pool, worker liveness (from heartbeats), limit and this host's active runs."""
        try:
            pool = await self.client.read_work_pool(host)
        except ObjectNotFound:
            return {"pool": None, "pool_type": None, "online": False, "workers": [], "last_seen": None, "concurrency_limit": None,
                    "running": 0, "queued": 0, "current_job_id": None, "active_job_ids": [],
                    "message": f"no work pool named {host!r}: run `python -m deployments.setup`"}
        workers, runs = await asyncio.gather(
            self.client.read_workers_for_work_pool(host),
            self.client.read_flow_runs(
                flow_run_filter=FlowRunFilter(
                    state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED, StateType.PENDING, StateType.RUNNING, StateType.CANCELLING]))
                ),
                work_pool_filter=WorkPoolFilter(name=WorkPoolFilterName(any_=[host])),
                sort=FlowRunSort.EXPECTED_START_TIME_ASC,
                limit=200,
            ),
        )
        online = [w for w in workers if w.status == "ONLINE"]
        beats = [w.last_heartbeat_time for w in workers if w.last_heartbeat_time]
        statuses = [(r, opeva_status(r)) for r in runs]
        running = [str(r.id) for r, s in statuses if s in ("running", "dispatched")]
        queued = [str(r.id) for r, s in statuses if s == "queued"]
        info: dict[str, Any] = {
            "pool": pool.name,
            "pool_type": pool.type,
            "online": bool(online),
            "workers": [{"name": w.name, "status": getattr(w.status, "value", w.status), "last_heartbeat": epoch(w.last_heartbeat_time)} for w in workers],
            "last_seen": epoch(max(beats)) if beats else None,
            "concurrency_limit": pool.concurrency_limit,
            "paused": pool.is_paused,
            "running": len(running),
            "queued": len(queued),
            "current_job_id": running[0] if running else None,
            "active_job_ids": running + queued,
        }
        if not online:
            info["message"] = f"no worker online for host {host!r}: jobs wait until one runs `prefect worker start --pool {host}`"
        return info

    async def healthy(self) -> bool:
        try:
            return (await self.client.api_healthcheck()) is None
        except Exception:
            return False

