"""Scheduled dataset builds: schedules on the build-dataset deployments, and backfills.

A schedule is a Prefect deployment schedule whose parameters carry the site, the window and the
name prefix (``ScheduleRequest.flow_parameters``); each run anchors its window on its scheduled
start (flows/build_dataset.py). A backfill creates one run per occurrence in a range, each with
its occurrence as the anchor and an idempotency key per (schedule, occurrence), so asking twice
starts nothing twice. Nothing is stored here: Prefect holds the schedules and the runs.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any
from uuid import UUID

import pymongo
from prefect.client.schemas.objects import DeploymentSchedule

from api.errors import ApiError
from api.gateway import DATASET_FLOW, DeploymentMissing, PrefectGateway
from api.gateway_schedules import ScheduleNotFound
from api.models_schedules import BackfillOut, BackfillRequest, BackfillRun, ScheduleCreated, ScheduleOut, ScheduleRequest
from core.dataset_window import scheduled_name, window_bounds
from core.datasets import parse_ts
from core.hosts import Host
from core.sites import SiteNotFound, require_site

NEXT_RUNS = 3
MAX_BACKFILL = 100  # occurrences in one backfill request


async def _deployments(gateway: PrefectGateway, hosts: list[Host]) -> dict[str, UUID]:
    found = {}
    for host in hosts:
        try:
            found[host.name] = await gateway.deployment_id(DATASET_FLOW, host.name)
        except DeploymentMissing:
            continue  # a host declared but not set up yet holds no schedule
    return found


async def _out(gateway: PrefectGateway, host: str, schedule: DeploymentSchedule) -> ScheduleOut:
    params = schedule.parameters or {}
    cron = getattr(schedule.schedule, "cron", None)
    next_runs = await gateway.schedules.dates(schedule, NEXT_RUNS) if schedule.active else []
    return ScheduleOut(
        schedule_id=str(schedule.id), site_id=params.get("site_id"), cron=cron, timezone=getattr(schedule.schedule, "timezone", None),
        window=params.get("window"), name_prefix=params.get("name_prefix"), active=bool(schedule.active), host=host,
        deployment=f"{DATASET_FLOW}/{host}", slug=schedule.slug, next_runs=[d.isoformat() for d in next_runs],
    )


def _is_dataset_schedule(schedule: DeploymentSchedule) -> bool:
    """Schedules made here carry a window; others on the deployment (made in the Prefect UI) are listed only if they do."""
    return "window" in (schedule.parameters or {})


async def create(body: ScheduleRequest, gateway: PrefectGateway, client: pymongo.MongoClient, host: Host) -> ScheduleCreated:
    try:
        await asyncio.to_thread(require_site, client, body.site_id)
    except SiteNotFound:
        raise ApiError(404, f"site {body.site_id!r} does not exist (GET /dataset/sites lists the sites)") from None
    deployment_id = await gateway.deployment_id(DATASET_FLOW, host.name)
    slug = f"dataset-{body.name_prefix or body.site_id}-{uuid.uuid4().hex[:8]}"[:120]
    schedule = await gateway.schedules.create(deployment_id, body.cron, body.timezone, body.flow_parameters(), slug)
    out = await _out(gateway, host.name, schedule)
    return ScheduleCreated(schedule_id=out.schedule_id, next_runs=out.next_runs, schedule=out)


async def list_all(gateway: PrefectGateway, hosts: list[Host]) -> list[ScheduleOut]:
    found = await gateway.schedules.read(await _deployments(gateway, hosts))
    return [await _out(gateway, host, s) for host, _dep, s in found if _is_dataset_schedule(s)]


async def _find(gateway: PrefectGateway, hosts: list[Host], schedule_id: str) -> tuple[str, UUID, DeploymentSchedule]:
    try:
        wanted = UUID(schedule_id)
    except ValueError:
        raise ApiError(404, f"no dataset schedule {schedule_id!r}: not a schedule id") from None
    try:
        host, deployment_id, schedule = await gateway.schedules.find(await _deployments(gateway, hosts), wanted)
    except ScheduleNotFound as exc:
        raise ApiError(404, str(exc)) from None
    if not _is_dataset_schedule(schedule):
        raise ApiError(404, f"schedule {schedule_id} is not a dataset schedule")
    return host, deployment_id, schedule


async def set_active(gateway: PrefectGateway, hosts: list[Host], schedule_id: str, active: bool) -> ScheduleOut:
    host, deployment_id, schedule = await _find(gateway, hosts, schedule_id)
    await gateway.schedules.set_active(deployment_id, schedule, active)
    return await _out(gateway, host, schedule.model_copy(update={"active": active}))


async def delete(gateway: PrefectGateway, hosts: list[Host], schedule_id: str) -> ScheduleOut:
    host, deployment_id, schedule = await _find(gateway, hosts, schedule_id)
    await gateway.schedules.delete(deployment_id, schedule.id)
    return await _out(gateway, host, schedule.model_copy(update={"active": False}))


async def backfill(gateway: PrefectGateway, hosts: list[Host], schedule_id: str, body: BackfillRequest) -> BackfillOut:
    """One run per occurrence in [from, until], oldest first; repeated requests answer the runs made the first time."""
    host, _deployment_id, schedule = await _find(gateway, hosts, schedule_id)
    start, end = parse_ts(body.from_, "from"), parse_ts(body.until, "until")
    occurrences = await gateway.schedules.dates(schedule, MAX_BACKFILL + 1, start=start, end=end)
    if not occurrences:
        raise ApiError(400, f"the schedule has no occurrence between {start.isoformat()} and {end.isoformat()}")
    if len(occurrences) > MAX_BACKFILL:
        raise ApiError(400, f"the range holds more than {MAX_BACKFILL} occurrences; backfill it in parts")
    params: dict[str, Any] = dict(schedule.parameters or {})
    runs = []
    for when in occurrences:
        dataset = scheduled_name(params.get("name_prefix") or params["site_id"], window_bounds(params["window"], when)[1])
        run = await gateway.submit(DATASET_FLOW, host, {**params, "anchor": when.isoformat()}, name=f"dataset-{dataset}",
                                   idempotency_key=f"backfill:{schedule.id}:{when.isoformat()}")
        runs.append(BackfillRun(anchor=when.isoformat(), dataset=dataset, job_id=str(run.id), status=run.status))
    return BackfillOut(schedule_id=str(schedule.id), runs=runs)
