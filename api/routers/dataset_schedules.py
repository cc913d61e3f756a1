"""``/dataset/schedules``: scheduled dataset builds (Prefect deployment schedules). Parse, call the use case, return."""

from __future__ import annotations

from fastapi import APIRouter, Path

from api.deps import Gateway, Hosts, Mongo, known_host
from api.models_schedules import BackfillOut, BackfillRequest, ScheduleCreated, ScheduleOut, ScheduleRequest
from api.responses import errors
from api.usecases import dataset_schedules as usecase

router = APIRouter(tags=["datasets"])
ScheduleId = Path(..., max_length=64, description="The schedule's id (Prefect's deployment schedule id)")


@router.post("/dataset/schedules", response_model=ScheduleCreated, status_code=201, responses=errors(400, 404),
             summary="Build a site's dataset on a cron: each run's window ends at its scheduled start")
async def create_schedule(body: ScheduleRequest, gateway: Gateway, client: Mongo, hosts: Hosts) -> ScheduleCreated:
    return await usecase.create(body, gateway, client, known_host(body.target_host, hosts))


@router.get("/dataset/schedules", response_model=list[ScheduleOut], responses=errors(),
            summary="Dataset schedules on every host, with their next 3 runs")
async def list_schedules(gateway: Gateway, hosts: Hosts) -> list[ScheduleOut]:
    return await usecase.list_all(gateway, hosts.hosts)


@router.post("/dataset/schedules/{schedule_id}/pause", response_model=ScheduleOut, responses=errors(404),
             summary="Pause a schedule (the runs Prefect had created ahead are dropped)")
async def pause_schedule(gateway: Gateway, hosts: Hosts, schedule_id: str = ScheduleId) -> ScheduleOut:
    return await usecase.set_active(gateway, hosts.hosts, schedule_id, False)


@router.post("/dataset/schedules/{schedule_id}/resume", response_model=ScheduleOut, responses=errors(404), summary="Resume a paused schedule")
async def resume_schedule(gateway: Gateway, hosts: Hosts, schedule_id: str = ScheduleId) -> ScheduleOut:
    return await usecase.set_active(gateway, hosts.hosts, schedule_id, True)


@router.post("/dataset/schedules/{schedule_id}/backfill", response_model=BackfillOut, responses=errors(400, 404),
             summary="One build per occurrence in [from, until], each windowed on its occurrence; asking twice starts nothing twice")
async def backfill_schedule(body: BackfillRequest, gateway: Gateway, hosts: Hosts, schedule_id: str = ScheduleId) -> BackfillOut:
    return await usecase.backfill(gateway, hosts.hosts, schedule_id, body)


@router.delete("/dataset/schedules/{schedule_id}", response_model=ScheduleOut, responses=errors(404), summary="Delete a schedule (built datasets stay)")
async def delete_schedule(gateway: Gateway, hosts: Hosts, schedule_id: str = ScheduleId) -> ScheduleOut:
    return await usecase.delete(gateway, hosts.hosts, schedule_id)
