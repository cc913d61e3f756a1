"""Sweeps: one experiment of many simulation jobs (docs/sweeps.md). Parse, call the use case, return."""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter, BackgroundTasks, Response

from api.deps import Gateway, Hosts, Storage
from api.models_sweeps import SweepOut, SweepRequest, SweepStopped, SweepSubmitted
from api.responses import errors
from api.security import CurrentUser, submitter
from api.usecases import sweeps as usecase

router = APIRouter(tags=["sweeps"])


@router.post("/sweeps", status_code=202, response_model=SweepSubmitted, responses=errors(400, 404, 413),
             summary="Start a sweep: grid x random draws x seeds, as one experiment")
async def submit(body: SweepRequest, gateway: Gateway, storage: Storage, hosts: Hosts, user: CurrentUser) -> SweepSubmitted:
    """202 with the sweep's id (its ``run-sweep/control`` flow run) and how many jobs it will run.
    400 and nothing started for an empty grid, a key the base config does not have, a value the
    reference simulator refuses, more trials than the cap, or an unknown host; 404 for a missing base_config."""
    body.submitted_by = submitter(user, body.submitted_by)
    return await usecase.submit(gateway, storage, hosts, body)


@router.get("/sweeps/{sweep_id}", response_model=SweepOut, responses=errors(404), summary="A sweep's live table: every trial, its job and objective")
async def table(sweep_id: UUID, gateway: Gateway, storage: Storage) -> SweepOut:
    return await usecase.table(gateway, storage, str(sweep_id))


@router.get("/sweeps/{sweep_id}/summary.csv", response_class=Response, summary="Mean and std of the objective per grid point, over seeds",
            responses={200: {"content": {"text/csv": {"schema": {"type": "string"}}}, "description": "point, the swept keys, n, <metric>_mean, <metric>_std"},
                       **errors(404)})
async def summary(sweep_id: UUID, gateway: Gateway, storage: Storage) -> Response:
    text = await usecase.summary_csv(gateway, storage, str(sweep_id))
    return Response(text, media_type="text/csv", headers={"Content-Disposition": f'attachment; filename="sweep-{sweep_id}-summary.csv"'})


@router.post("/sweeps/{sweep_id}/stop", response_model=SweepStopped, responses=errors(403, 404), summary="Stop a sweep: its jobs first, then the sweep")
async def stop(sweep_id: UUID, background: BackgroundTasks, gateway: Gateway, user: CurrentUser) -> SweepStopped:
    """Answers once every job of the sweep is final (within about 10 s); their containers are checked after."""
    answer, started = await usecase.stop(gateway, str(sweep_id), user=user)
    background.add_task(usecase.check_containers, gateway, started)
    return answer
