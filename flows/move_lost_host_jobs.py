"""``move-lost-host-jobs``: a host lost its last worker; its automatic queued jobs go elsewhere.

Why a flow started by an automation: Prefect's foreman marks a work pool NOT_READY when its
last worker stops heart-beating (3 missed beats: 30 s with the platform's 10 s beat) and emits
``prefect.work-pool.not-ready``; the automation ``opeva: move the queued jobs of a lost host``
(deployments/setup.py) runs this deployment on the control pool with that pool's name. So the
rule, its firings and every move are in the Prefect UI (Automations, the run's logs and its
artifact), and the move is an ordinary run anyone can start by hand:
``prefect deployment run move-lost-host-jobs/control -p host=<name>``.

What moves (core/placement.py ``plan_moves``): queued jobs that were placed automatically (no
``target_host``; label ``opeva.placement=automatic``), to the online hosts of their profile with a
free slot first. Pinned jobs wait for their host. A moved job is a new run of the same flow on
the new host with the same parameters (``target_host`` changed), tags and labels, linked both
ways (label ``opeva.requeued_from``, tags ``requeued-from:``/``requeued-as:``), as
``POST /ops/jobs/{id}/requeue`` does; the old run ends Cancelled saying where it went. The new
run's idempotency key is ``moved-from:<old id>``: a second firing (or a retry) cannot move a job
twice.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.client.orchestration import PrefectClient, get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType, WorkPoolFilter, WorkPoolFilterName
from prefect.client.schemas.objects import FlowRun, State, StateType
from prefect.states import Cancelled

from core.host_data import STAGE_FLOW
from core.hosts import CONTROL_POOL, load_hosts
from core.placement import HostLoad, Waiting, plan_moves
from core.states import PLACEMENT_LABEL, PROFILE_LABEL, REQUEUED_FROM, awaiting_inputs, fresh_labels

FLOW_NAME = "move-lost-host-jobs"
ACTIVE = [StateType.SCHEDULED, StateType.PENDING, StateType.RUNNING, StateType.CANCELLING, StateType.PAUSED]
PAGE = 200


def _runs(host: str, types: list[StateType]) -> dict[str, Any]:
    return {"work_pool_filter": WorkPoolFilter(name=WorkPoolFilterName(any_=[host])),
            "flow_run_filter": FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=types)))}


async def _online(client: PrefectClient, host: str) -> bool:
    try:
        return any(w.status == "ONLINE" for w in await client.read_workers_for_work_pool(host))
    except Exception:  # no such pool: not a place to go
        return False


async def _loads(client: PrefectClient, lost: str) -> tuple[list[HostLoad], set[str]]:
    """The other hosts with a worker online, in the hosts file's order, with their active runs."""
    hosts = [h for h in load_hosts().hosts if h.name != lost]
    online = [h for h, up in zip(hosts, await asyncio.gather(*(_online(client, h.name) for h in hosts))) if up]
    pools = {h.name: await client.read_work_pool(h.name) for h in online}
    counts = await asyncio.gather(*(client.count_flow_runs(**_runs(h.name, ACTIVE)) for h in online))
    return ([HostLoad(h.name, pools[h.name].concurrency_limit, n) for h, n in zip(online, counts)],
            {h.name for h in online if h.gpus is not None})


async def _move(client: PrefectClient, run: FlowRun, lost: str, target: str) -> str:
    flow_name = (await client.read_flow(run.flow_id)).name
    deployment = await client.read_deployment_by_name(f"{flow_name}/{target}")
    parameters = {**(run.parameters or {}), "target_host": target}
    local = (found := load_hosts().get(target)) is not None and found.data == "local" and flow_name == "run-simulation"
    new = await client.create_flow_run_from_deployment(
        deployment.id, parameters=parameters, name=run.name, tags=[*run.tags, f"requeued-from:{run.id}"],
        labels=fresh_labels({**(run.labels or {}), REQUEUED_FROM: str(run.id)}), idempotency_key=f"moved-from:{run.id}",
        state=State.model_validate(awaiting_inputs()) if local else None)
    if local:  # a data: local host: its inputs first (flows/host_data.py), as the API does for a new job
        staging = await client.read_deployment_by_name(f"{STAGE_FLOW}/{CONTROL_POOL}")
        await client.create_flow_run_from_deployment(staging.id, parameters={"job_id": str(new.id)}, tags=["opeva", CONTROL_POOL],
                                                     idempotency_key=f"stage:{new.id}")
    await client.set_flow_run_state(run.id, Cancelled(message=f"Host {lost} was lost (no worker online): moved to host {target} as job {new.id}"),
                                    force=True)
    await client.update_flow_run(run.id, tags=[*run.tags, f"requeued-as:{new.id}"])
    return str(new.id)


@flow(name=FLOW_NAME, log_prints=False, retries=0)
async def move_lost_host_jobs(host: str) -> dict[str, Any]:
    """Move ``host``'s automatic queued jobs to online hosts; returns what moved and what stayed."""
    logger = get_run_logger()
    async with get_client() as client:
        if await _online(client, host):
            logger.info("host %s has a worker online again: nothing to move", host)
            return {"host": host, "moved": [], "kept": []}
        queued = await client.read_flow_runs(**_runs(host, [StateType.SCHEDULED]), limit=PAGE)
        by_id = {str(r.id): r for r in queued}
        waiting = [Waiting(str(r.id), (r.labels or {}).get(PLACEMENT_LABEL) == "automatic", (r.labels or {}).get(PROFILE_LABEL),
                           bool(r.job_variables)) for r in queued]
        loads, gpu_hosts = await _loads(client, host)
        planned, kept = plan_moves(waiting, loads, gpu_hosts)
        moved = []
        for job_id, target in planned:
            new_id = await _move(client, by_id[job_id], host, target)
            moved.append({"job_id": job_id, "host": target, "new_job_id": new_id})
            logger.info("moved job %s (%s) to host %s as job %s", job_id, by_id[job_id].name, target, new_id)
        for job_id, why in kept:
            logger.info("job %s stays on host %s: %s", job_id, host, why)
    rows = [f"| {m['job_id']} | {m['host']} | {m['new_job_id']} |" for m in moved]
    create_markdown_artifact(f"## Jobs moved off lost host {host}\n\n| job | to host | as job |\n|---|---|---|\n" + "\n".join(rows)
                             + f"\n\n{len(kept)} stayed (pinned, own resources, or no host fits).\n",
                             key=re.sub(r"[^a-z0-9-]", "-", f"moved-off-{host}".lower())[:100], description=f"{len(moved)} moved, {len(kept)} stayed")
    return {"host": host, "moved": moved, "kept": [{"job_id": j, "why": w} for j, w in kept]}
