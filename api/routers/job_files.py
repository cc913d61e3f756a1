"""What a job wrote: progress, result, logs, resolved config, simulation data. Parse, call a use case, return."""

from __future__ import annotations

from collections.abc import AsyncIterator

from fastapi import APIRouter, Query, Request
from fastapi.responses import PlainTextResponse, StreamingResponse

from api.deps import Gateway, Storage
from api.models import SimulationDataFileRequest, SimulationDataIndexRequest
from api.responses import LogsChunk, ProgressOut, ResultOut, SimulationDataIndex, errors, text_response
from api.usecases import job_files
from core.safe_open import read_chunks
from core.layout import canonical_job_id

router = APIRouter(tags=["job files"])

LOG_EXAMPLE = "[INFO] Simulation started\n[INFO] episode 1/5\n"
TEXT = "text/plain; charset=utf-8"
Follow = Query(False, description="Keep streaming until the job ends (default: the log as it is now, once).")


async def _held(request: Request, job_id: str, stream: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The stream inside a follower slot: ``?follow=true`` readers are capped per job and in all
    (each polls Prefect twice a second while connected); past the caps the answer is 429."""
    lease = request.app.state.followers.lease(canonical_job_id(job_id), follow=True)

    async def chunks() -> AsyncIterator[bytes]:
        with lease.held():
            async for chunk in stream:
                yield chunk

    return chunks()


@router.get("/progress/{job_id}", response_model=ProgressOut, responses=errors(404), summary="Latest progress (200 with a placeholder before any, and for an unknown job id)")
async def progress(job_id: str, gateway: Gateway, storage: Storage) -> ProgressOut:
    return await job_files.progress(gateway, storage, job_id)


@router.get("/result/{job_id}", response_model=ResultOut, response_model_exclude_unset=True, responses=errors(404), summary="Final result (200 with status 'pending' before it exists)")
async def result(job_id: str, gateway: Gateway, storage: Storage) -> ResultOut:
    return await job_files.result(gateway, storage, job_id)


@router.get("/logs/{job_id}", response_class=PlainTextResponse, response_model=None, responses=text_response("text/plain", LOG_EXAMPLE, 404), summary="The job's Prefect logs, once (or ?follow=true)")
async def logs(job_id: str, request: Request, gateway: Gateway, follow: bool = Follow) -> PlainTextResponse | StreamingResponse:
    if follow:
        return StreamingResponse(await _held(request, job_id, await job_files.logs_follow(gateway, job_id)), media_type=TEXT)
    return StreamingResponse(await job_files.logs_once(gateway, job_id), media_type=TEXT)  # a page at a time: bounded memory


@router.get("/file-logs/{job_id}", response_class=PlainTextResponse, response_model=None, responses=text_response("text/plain", LOG_EXAMPLE, 404), summary="The simulator's own log file (logs/<job_id>.log), byte for byte, once (or ?follow=true)")
@router.get("/logs/file/{job_id}", response_model=None, include_in_schema=False)
async def file_logs(job_id: str, request: Request, gateway: Gateway, storage: Storage, follow: bool = Follow) -> PlainTextResponse | StreamingResponse:
    if follow:
        return StreamingResponse(await _held(request, job_id, await job_files.file_log_follow(gateway, storage, job_id)), media_type=TEXT)
    body = await job_files.file_log_once(gateway, storage, job_id)
    return PlainTextResponse(body) if isinstance(body, str) else StreamingResponse(body, media_type=TEXT)  # a chunk at a time


@router.get("/logs-chunk/{job_id}", response_model=LogsChunk, responses=errors(404), summary="A piece of the job log: from an offset, or its last lines")
async def logs_chunk(
    job_id: str,
    gateway: Gateway,
    storage: Storage,
    tail_lines: int | None = Query(None, ge=0, le=100_000, description="The last N lines (offset is then ignored)."),
    offset: int = Query(0, ge=0, description="Byte offset to read from (the previous answer's next_offset)."),
    max_bytes: int = Query(65_536, ge=1, le=4 * 1024 * 1024),
) -> LogsChunk:
    return await job_files.logs_chunk(gateway, storage, job_id, tail_lines=tail_lines, offset=offset, max_bytes=max_bytes)


@router.get("/job-resolved-config/{job_id}", response_class=PlainTextResponse, responses=text_response("text/yaml", "metadata:\n  experiment_name: flex\n  run_name: q1\n", 404),
            summary="The config the job ran with (config.resolved.yaml when the simulator wrote one)")
async def resolved_config(job_id: str, gateway: Gateway, storage: Storage) -> PlainTextResponse:
    return PlainTextResponse(await job_files.resolved_config(gateway, storage, job_id), media_type="text/yaml")


@router.post("/simulation-data/index", response_model=SimulationDataIndex, responses=errors(400, 404, 413), summary="Files a job exported under results/simulation_data/<session>/")
async def simulation_index(body: SimulationDataIndexRequest, gateway: Gateway, storage: Storage) -> SimulationDataIndex:
    return await job_files.simulation_index(gateway, storage, body.job_id, body.session)


@router.post(
    "/simulation-data/file", response_class=StreamingResponse, summary="One exported file ('..' in relative_path: 400)",
    responses={200: {"content": {"text/csv": {"schema": {"type": "string"}, "example": "time_step,net_electricity_consumption\n0,1.5\n"},
                                 "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}, "description": "The file"},
               **errors(400, 403, 404, 413)},
)
async def simulation_file(body: SimulationDataFileRequest, gateway: Gateway, storage: Storage) -> StreamingResponse:
    opened = await job_files.simulation_file(gateway, storage, body.job_id, body.session, body.relative_path)
    media = "text/csv" if opened.name.endswith(".csv") else "application/octet-stream"
    headers = {"Content-Length": str(opened.size), "Content-Disposition": f'attachment; filename="{opened.name}"'}
    # Served from the descriptor opened above: a link swapped in afterwards changes nothing.
    return StreamingResponse(read_chunks(opened.fd, opened.size), media_type=media, headers=headers)
