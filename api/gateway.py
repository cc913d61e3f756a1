"""The API's single door to Prefect: jobs are flow runs, hosts are work pools.

Why one module: every endpoint reads or writes Prefect, and all of them must
agree on how a job id maps to a flow run, how a job is submitted (retries,
resources, idempotency) and how its state is changed. The REST layer holds no job
state of its own. Methods here return Prefect's objects; turning them into OPEVA
answers is the use cases' work (``api/usecases``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any
from uuid import UUID

from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    ArtifactFilterType,
    FlowFilter,
    FlowFilterName,
    FlowRunFilter,
    FlowRunFilterId,
    FlowRunFilterIdempotencyKey,
    FlowRunFilterState,
    FlowRunFilterStateType,
    FlowRunFilterTags,
    LogFilter,
    LogFilterFlowRunId,
    LogFilterTimestamp,
    WorkPoolFilter,
    WorkPoolFilterName,
)
from prefect.client.schemas.objects import Artifact, FlowRun, Log, StateType
from prefect.client.schemas.sorting import ArtifactSort, FlowRunSort, LogSort
from prefect.client.schemas.responses import SetStateStatus
from prefect.exceptions import ObjectNotFound, PrefectHTTPStatusError
from prefect.states import Cancelled, Cancelling, Completed, Failed
from prefect.utilities.names import generate_slug

from api.gateway_hosts import HostGateway
from api.gateway_notifications import NotificationGateway
from api.gateway_schedules import ScheduleGateway
from api.group_commit import GroupCommit
from api.idempotency import conflicts as key_conflicts
from core.limits import Resources
from core.states import PREFECT_TYPES
from api.runs import DeploymentMissing, JobNotFound, RunRefused, RunRequest, Submitted, epoch, opeva_status, parse_job_id  # noqa: F401  (re-exported)

log = logging.getLogger("opeva.api")

SIMULATION_FLOW = "run-simulation"
DATASET_FLOW = "build-dataset"
SWEEP_FLOW = "run-sweep"
JOB_FLOWS = [SIMULATION_FLOW, DATASET_FLOW]
PAGE = 200  # the Prefect server's largest page
MAX_SCAN = 10_000
LOG_GRACE_SECONDS = 3.0
TERMINAL = {StateType.COMPLETED, StateType.FAILED, StateType.CRASHED, StateType.CANCELLED}
ACTIVE_TYPES = [StateType.SCHEDULED, StateType.PENDING, StateType.RUNNING, StateType.CANCELLING, StateType.PAUSED]


def _flows(names: list[str]) -> FlowFilter:
    return FlowFilter(name=FlowFilterName(any_=names))


def _types(types: list[StateType]) -> FlowRunFilterState:
    return FlowRunFilterState(type=FlowRunFilterStateType(any_=types))


class PrefectGateway:
    def __init__(self, client: PrefectClient) -> None:
        self.client = client
        self._deployments: dict[str, tuple[UUID, frozenset[str]]] = {}
        self._flow_names: dict[UUID, str] = {}
        self._creates: GroupCommit[UUID, RunRequest, Submitted] = GroupCommit(self._create_batch)
        self.touched: Callable[[UUID], None] = lambda _run_id: None  # every write through this door is reported (api/job_index.py)
        self.schedules = ScheduleGateway(client)  # dataset-build schedules (api/gateway_schedules.py)
        self.hosts = HostGateway(client)  # work pools and workers (api/gateway_hosts.py)
        self.notifications = NotificationGateway(client)  # channels: automations + blocks (api/gateway_notifications.py)

    # -- submitting ------------------------------------------------------

    async def deployment(self, flow_name: str, host: str) -> tuple[UUID, frozenset[str]]:
        """The deployment's id and the parameters its flow takes (cached per process)."""
        key = f"{flow_name}/{host}"
        if key not in self._deployments:
            try:
                dep = await self.client.read_deployment_by_name(key)
            except ObjectNotFound:
                raise DeploymentMissing(f"deployment {key!r} does not exist; run `python -m deployments.setup`") from None
            params = frozenset((dep.parameter_openapi_schema or {}).get("properties", {}))
            self._deployments[key] = (dep.id, params)
        return self._deployments[key]

    async def deployment_id(self, flow_name: str, host: str) -> UUID:
        return (await self.deployment(flow_name, host))[0]

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
        idempotency_key: str | None = None,
        labels: dict[str, str] | None = None,
        state: dict[str, Any] | None = None,
    ) -> Submitted:
        """Create a flow run of ``<flow_name>/<host>``, in a group commit with the
        submissions made meanwhile (see ``api/group_commit.py``). A repeated
        ``idempotency_key`` returns the run made the first time (api/idempotency.py: per user and body)."""
        deployment_id, _ = await self.deployment(flow_name, host)
        variables = {**(resources.job_variables() if resources else {}), **(job_variables or {})}
        request = RunRequest(  # named here, as Prefect would, to answer without reading the run back
            parameters=parameters, name=name or generate_slug(2), job_variables=variables or None, tags=tuple(tags or ()),
            idempotency_key=idempotency_key, labels=labels, retries=retries, retry_delay_seconds=retry_delay_seconds, state=state,
        )
        try:
            return await self._creates.submit(deployment_id, request)
        except DeploymentMissing:
            self._deployments.pop(f"{flow_name}/{host}", None)  # removed since we cached its id
            raise

    async def _create_batch(self, deployment_id: UUID, requests: list[RunRequest]) -> list[Submitted | Exception]:
        """Runs an earlier submission made with the same key (any deployment) are answered
        from one read, or are conflicts (another body); the others are created in one bulk
        call (one transaction on the server)."""
        keys = sorted({r.idempotency_key for r in requests if r.idempotency_key})
        earlier: dict[str, FlowRun] = {}
        if keys:
            found = await self.client.read_flow_runs(
                flow_run_filter=FlowRunFilter(idempotency_key=FlowRunFilterIdempotencyKey(any_=keys)), limit=len(keys) * 4,
            )
            earlier = {r.idempotency_key: r for r in found if r.idempotency_key}
        conflicts = key_conflicts(requests, earlier)
        new = [r for i, r in enumerate(requests) if r.idempotency_key not in earlier and i not in conflicts]
        created: list[Submitted | Exception] = []
        if new:
            try:
                response = await self.client.request("POST", f"/deployments/{deployment_id}/create_flow_run/bulk", json=[r.body() for r in new])  # type: ignore[arg-type]
            except PrefectHTTPStatusError as exc:
                if exc.response.status_code == 404:
                    raise DeploymentMissing(f"deployment {deployment_id} no longer exists; run `python -m deployments.setup`") from None
                raise
            for r, result in zip(new, response.json()["results"]):
                ok = result.get("status") == "CREATED" and result.get("flow_run_id")
                created.append(Submitted(UUID(result["flow_run_id"]), r.name or "") if ok else RunRefused(result.get("error") or "Prefect refused the run"))
            if len(created) != len(new):
                raise RuntimeError(f"Prefect answered {len(created)} results for {len(new)} runs")
            created = await self._recheck_keys(new, created)
        answers = iter(created)
        return [conflicts[i] if i in conflicts else Submitted(earlier[r.idempotency_key].id, earlier[r.idempotency_key].name, earlier[r.idempotency_key])
                if r.idempotency_key in earlier else next(answers) for i, r in enumerate(requests)]

    async def _recheck_keys(self, new: list[RunRequest], created: list[Submitted | Exception]) -> list[Submitted | Exception]:
        """With several API replicas, another one may have made the run of a key between our
        read and our create; Prefect then answers that run (its idempotency key is unique).
        Read the keyed runs back: one made for another body is a conflict (409), as above."""
        keyed = [c.id for r, c in zip(new, created) if r.idempotency_key and isinstance(c, Submitted)]
        if not keyed:
            return created
        runs = {run.id: run for run in await self.client.read_flow_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=keyed)), limit=len(keyed))}
        earlier = {r.idempotency_key: runs[c.id] for r, c in zip(new, created) if r.idempotency_key and isinstance(c, Submitted) and c.id in runs}
        late = key_conflicts(new, earlier)
        return [late.get(i, c) for i, c in enumerate(created)]

    async def resubmit(self, run: FlowRun, deployment_id: UUID, parameters: dict[str, Any], *, tags: list[str], labels: dict[str, str],
                       state: dict[str, Any] | None = None) -> Submitted:
        """A new run of ``deployment_id`` with ``run``'s name, job variables and retry policy
        (through the same group commit as every submission); ``state``: its first state (a data: local host's)."""
        policy = run.empirical_policy
        request = RunRequest(
            parameters=parameters, name=run.name, job_variables=run.job_variables or None, tags=tuple(tags), labels=labels,
            retries=policy.retries or 0, retry_delay_seconds=policy.retry_delay if policy.retry_delay is not None else 5, state=state,
        )
        return await self._creates.submit(deployment_id, request)

    async def add_tags(self, run: FlowRun, tags: list[str]) -> None:
        await self.client.update_flow_run(run.id, tags=[*run.tags, *(t for t in tags if t not in run.tags)])
        self.touched(run.id)

    # -- reading ---------------------------------------------------------

    async def read_run(self, job_id: str) -> FlowRun:
        try:
            return await self.client.read_flow_run(parse_job_id(job_id))
        except ObjectNotFound:
            raise JobNotFound(job_id) from None

    async def _all_runs(self, limit: int | None, offset: int, **kwargs: Any) -> list[FlowRun]:
        """Pages of PAGE runs until ``limit`` (None: all, up to MAX_SCAN) are read."""
        out: list[FlowRun] = []
        want = min(limit if limit is not None else MAX_SCAN, MAX_SCAN)
        while len(out) < want:
            asked = min(PAGE, want - len(out))
            page = await self.client.read_flow_runs(**kwargs, limit=asked, offset=offset + len(out))
            out.extend(page)
            if len(page) < asked:
                break
        return out

    async def list_runs(
        self, *, status: str | None = None, host: str | None = None, limit: int | None = 50, offset: int = 0,
        flows: list[str] | None = None, tag: str | None = None,
    ) -> tuple[list[FlowRun], int]:
        """Newest first; also the total matching count, for pagination (``tag``: only runs with it)."""
        run_filter = FlowRunFilter(tags=FlowRunFilterTags(all_=[tag]) if tag else None)
        if status:
            run_filter.state = _types([StateType(t) for t in sorted(PREFECT_TYPES[status])])
        kwargs: dict[str, Any] = {
            "flow_filter": _flows(flows or JOB_FLOWS),
            "flow_run_filter": run_filter,
            "work_pool_filter": WorkPoolFilter(name=WorkPoolFilterName(any_=[host])) if host else None,
        }
        sort = FlowRunSort.EXPECTED_START_TIME_DESC
        if status in ("stopped", "canceled", "stop_requested", "setup", "running"):  # Prefect cannot filter on run_count or a label: split here
            runs = await self._all_runs(None, 0, **kwargs, sort=sort)
            matching = [r for r in runs if opeva_status(r) == status]
            end = None if limit is None else offset + limit
            return matching[offset:end], len(matching)
        runs, total = await asyncio.gather(self._all_runs(limit, offset, **kwargs, sort=sort), self.client.count_flow_runs(**kwargs))
        return runs, total

    async def queued_runs(self, flows: list[str]) -> list[FlowRun]:
        """Scheduled (and Late) runs of ``flows``, oldest expected start first."""
        return await self._all_runs(
            None, 0, flow_filter=_flows(flows), flow_run_filter=FlowRunFilter(state=_types([StateType.SCHEDULED])),
            sort=FlowRunSort.EXPECTED_START_TIME_ASC,
        )

    async def active_runs(self, host: str | None = None) -> list[FlowRun]:
        return await self._all_runs(
            None, 0, flow_run_filter=FlowRunFilter(state=_types(ACTIVE_TYPES)),
            work_pool_filter=WorkPoolFilter(name=WorkPoolFilterName(any_=[host])) if host else None,
            sort=FlowRunSort.EXPECTED_START_TIME_ASC,
        )

    async def last_ended_run(self, host: str) -> FlowRun | None:  # /hosts info: last_job_id, last_terminal_status
        return next(iter(await self._all_runs(1, 0, flow_filter=_flows(JOB_FLOWS), flow_run_filter=FlowRunFilter(state=_types(list(TERMINAL))), work_pool_filter=WorkPoolFilter(name=WorkPoolFilterName(any_=[host])), sort=FlowRunSort.END_TIME_DESC)), None)

    async def job_runs(self, *, active_only: bool = False) -> list[FlowRun]:
        """Every job run, its pages read in parallel after a count; or only those not in a final
        state (a page or two: read in turn, no count first, since listings wait on it)."""
        kwargs: dict[str, Any] = {"flow_filter": _flows(JOB_FLOWS),
                                  "flow_run_filter": FlowRunFilter(state=_types(ACTIVE_TYPES)) if active_only else None}
        if active_only:
            return await self._all_runs(None, 0, **kwargs, sort=FlowRunSort.ID_DESC)
        total = min(await self.client.count_flow_runs(**kwargs), MAX_SCAN)
        pages = await asyncio.gather(*(self.client.read_flow_runs(**kwargs, sort=FlowRunSort.ID_DESC, limit=PAGE, offset=o)
                                       for o in range(0, total + PAGE, PAGE)))  # one page more: runs made meanwhile
        return list({r.id: r for page in pages for r in page}.values())

    async def runs_by_id(self, ids: list[UUID]) -> list[FlowRun]:
        out: list[FlowRun] = []
        for start in range(0, len(ids), PAGE):
            out += await self.client.read_flow_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=ids[start:start + PAGE])), limit=PAGE)
        return out

    async def count_job_runs(self) -> int:
        return await self.client.count_flow_runs(flow_filter=_flows(JOB_FLOWS))

    async def run_changes(self) -> AsyncIterator[UUID]:
        """Ids of flow runs as Prefect's event stream reports their changes (any state, any writer)."""
        from prefect.events.clients import PrefectEventSubscriber
        from prefect.events.filters import EventFilter, EventNameFilter

        async with PrefectEventSubscriber(api_url=str(self.client.api_url), filter=EventFilter(event=EventNameFilter(prefix=["prefect.flow-run."])),
                                          reconnect_on_clean_close=True) as events:
            async for event in events:
                try:
                    yield UUID(event.resource.id.rsplit(".", 1)[-1])
                except ValueError:
                    continue

    async def flow_names(self) -> dict[UUID, str]:
        """Flow id -> name of the job flows; flows are few and never renamed, so cached."""
        if len(self._flow_names) < len(JOB_FLOWS):
            flows = await self.client.read_flows(flow_filter=_flows(JOB_FLOWS))
            self._flow_names = {f.id: f.name for f in flows}
        return self._flow_names

    async def progress_artifact(self, run_id: UUID) -> Artifact | None:
        arts = await self.client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]), type=ArtifactFilterType(any_=["progress"])),
            sort=ArtifactSort.UPDATED_DESC,
            limit=1,
        )
        return arts[0] if arts else None

    async def logs(self, job_id: str, *, after: datetime | None = None, limit: int = PAGE) -> list[Log]:
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
            for entry in batch:
                if entry.id not in seen_at_edge:
                    yield entry
            if batch:
                last = batch[-1].timestamp
                seen_at_edge = {e.id for e in batch if e.timestamp == last} | (seen_at_edge if last == after else set())
                after = last
            if len(batch) >= PAGE:
                continue  # more waiting; the filter is inclusive so the edge set prevents repeats
            if not follow:
                return
            run = await self.read_run(job_id)
            if run.state and run.state.type in TERMINAL:
                # The engine ships its last log batches after it sets the final state.
                ended = run.end_time or run.state.timestamp
                if ended is not None and (datetime.now(ended.tzinfo) - ended).total_seconds() < LOG_GRACE_SECONDS:
                    await asyncio.sleep(poll_seconds)
                    continue
                for entry in await self.logs(job_id, after=after):
                    if entry.id not in seen_at_edge:
                        yield entry
                return
            await asyncio.sleep(poll_seconds)

    # -- changing state, deleting ----------------------------------------

    async def cancel_now(self, run_id: UUID, message: str) -> None:
        """Cancelled at once (a run that has not started, or an operator's decision)."""
        await self.client.set_flow_run_state(run_id, Cancelled(message=message), force=True)
        self.touched(run_id)

    async def request_cancel(self, run_id: UUID, message: str) -> bool:
        """Cancelling: the worker (or the in-container watcher) stops the run. False when
        Prefect refused the change (the run ended meanwhile)."""
        result = await self.client.set_flow_run_state(run_id, Cancelling(message=message))
        self.touched(run_id)
        return result.status == SetStateStatus.ACCEPT

    async def mark_completed(self, run_id: UUID, message: str) -> None:  # recover: the results are complete
        await self.client.set_flow_run_state(run_id, Completed(message=message), force=True)
        self.touched(run_id)

    async def mark_failed(self, run_id: UUID, message: str) -> None:
        await self.client.set_flow_run_state(run_id, Failed(message=message), force=True)
        self.touched(run_id)

    async def delete(self, job_id: str) -> None:
        try:
            await self.client.delete_flow_run(parse_job_id(job_id))
        except ObjectNotFound:
            raise JobNotFound(job_id) from None
        finally:
            self.touched(parse_job_id(job_id))

    async def start_action(self, flow_name: str, pool: str, parameters: dict[str, Any]) -> FlowRun:  # a platform action (deploy-bundle/control), not a job
        return await self.client.create_flow_run_from_deployment((await self.deployment(flow_name, pool))[0], parameters=parameters, tags=["opeva", pool])

    async def healthy(self) -> bool:
        try:
            return (await self.client.api_healthcheck()) is None
        except Exception:
            return False
