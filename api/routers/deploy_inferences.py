"""Inference targets (``/deploy/inferences*``, upstream's shapes). Parse, call the use case, return."""

from __future__ import annotations

from fastapi import APIRouter, Path, Query
from fastapi.responses import StreamingResponse

from api.deps import Gateway, Hosts, Settings, Storage
from api.models_inference import (
    InferenceHealthOut,
    InferenceTargetIn,
    InferenceTargetOut,
    LogChunkOut,
    SwitchIn,
    SwitchOut,
)
from api.responses import ErrorBody, errors
from api.security import CurrentUser
from api.usecases import inferences as usecase

router = APIRouter(tags=["deploy"])
TargetId = Path(..., max_length=64, description="An id from GET /deploy/inferences")
_502 = {502: {"model": ErrorBody, "description": "The target does not answer, or refused the load (it keeps its bundle)"}}
_504 = {504: {"model": ErrorBody, "description": "The switch's flow run did not finish in time (is the control worker running?)"}}


@router.get("/deploy/inferences", response_model=list[InferenceTargetOut],
            summary="Inference targets (hosts.yaml inference_targets, then those created through the API)")
async def list_targets(hosts: Hosts, settings: Settings) -> list[InferenceTargetOut]:
    return usecase.list_targets(hosts, settings.home)


@router.post("/deploy/inferences", response_model=InferenceTargetOut, status_code=201, responses=errors(400, 403, 409),
             summary="Create an inference target (admins); make up starts a platform one's container within seconds")
async def create_target(body: InferenceTargetIn, hosts: Hosts, settings: Settings, user: CurrentUser) -> InferenceTargetOut:
    return await usecase.create(user, hosts, settings.home, body)


@router.delete("/deploy/inferences/{target_id}", response_model=InferenceTargetOut, responses=errors(403, 404, 409),
               summary="Remove a target created through the API (admins); make up then stops its container")
async def delete_target(hosts: Hosts, settings: Settings, user: CurrentUser, target_id: str = TargetId) -> InferenceTargetOut:
    return await usecase.delete(user, hosts, settings.home, target_id)


@router.get("/deploy/inferences/{target_id}/health", response_model=InferenceHealthOut, responses=errors(404),
            summary="Probe a target's GET /health: reachable, configured (a bundle loaded), healthy, its bundle")
async def target_health(hosts: Hosts, settings: Settings, target_id: str = TargetId) -> InferenceHealthOut:
    return await usecase.health(hosts, settings.home, target_id)


@router.post("/deploy/inferences/{target_id}/switch-bundle", response_model=SwitchOut, responses={**errors(404), **_502, **_504},
             summary="Switch a target to a stored bundle (a deploy-bundle flow run); answers when the target serves it")
async def switch_bundle(body: SwitchIn, gateway: Gateway, hosts: Hosts, settings: Settings, storage: Storage,
                        target_id: str = TargetId) -> SwitchOut:
    return await usecase.switch(gateway, hosts, settings.home, storage.root, target_id, body.bundle_id)


@router.get("/deploy/inferences/{target_id}/logs/stream", response_class=StreamingResponse,
            responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "The container's log, followed"},
                       **errors(404, 409), **_502},
            summary="Follow a platform target's log (text; the last `tail` lines first)")
async def log_stream(hosts: Hosts, settings: Settings, target_id: str = TargetId, tail: int = Query(200, ge=0, le=5000)) -> StreamingResponse:
    chunks = await usecase.log_stream(hosts, settings.home, target_id, tail)
    return StreamingResponse(chunks, media_type="text/plain; charset=utf-8", headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


@router.get("/deploy/inferences/{target_id}/logs/history/chunk", response_model=LogChunkOut, responses=errors(400, 404),
            summary="A page of a target's log in a UTC time window, with search")
async def log_history(
    hosts: Hosts, settings: Settings, target_id: str = TargetId,
    since_ts: str = Query(..., max_length=64, description="UTC ISO-8601 (Z or +00:00)"),
    until_ts: str | None = Query(None, max_length=64, description="UTC ISO-8601; default now"),
    cursor: str | None = Query(None, max_length=20, description="next_cursor or prev_cursor of an earlier page"),
    limit_lines: int = Query(500, ge=1, le=2000),
    search: str | None = Query(None, max_length=200, description="Case-insensitive text a line must contain"),
) -> LogChunkOut:
    return await usecase.log_chunk(hosts, settings.home, target_id, since_ts, until_ts, cursor, limit_lines, search)
