"""What a job wrote: progress, result, logs, its resolved config, simulation data.

Clients poll these while a job runs, so each answers 200 with a placeholder
before the job wrote anything (upstream's contract): only an unknown job is 404.
"""

from __future__ import annotations

import asyncio
import os
import re
from dataclasses import dataclass
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import yaml

from api.errors import ApiError
from api.gateway import JobNotFound, PrefectGateway, opeva_status
from api.responses_insight import EtaFields
from api.usecases import insight
from api.responses import LogsChunk, ProgressOut, ResultOut, SimulationDataIndex, SimulationFile
from core import job_io
from core.experiment import config_source, default_experiment
from core.layout import DataRoot, OutsideDataRoot, UnsafeNameError, canonical_job_id, safe_name
from core.limits import LIMITS
from core.safe_open import NotARegularFile, open_beneath
from core.states import ACTIVE

FOLLOW_POLL_SECONDS = 0.5
FILE_LOG_MAX = 16 << 20  # /file-logs without follow answers at most this much; /logs-chunk pages the rest
NO_PROGRESS = "No updates yet."
_DAY = re.compile(r"(\d{4}-\d{2}-\d{2})")


def _percent(value: Any) -> float | None:
    try:
        return max(0.0, min(100.0, float(value)))
    except (TypeError, ValueError):
        return None


async def progress(gateway: PrefectGateway, storage: DataRoot, job_id: str) -> ProgressOut:
    """200 for any job id, as upstream: the OPEVA UI polls progress for every job it lists,
    even one deleted a moment ago, and shows an error toast for any other answer. What is
    not a job id at all is still a 404."""
    try:
        run = await gateway.read_run(job_id)
    except JobNotFound:
        canonical = canonical_job_id(job_id)  # InvalidJobId (404) for what is no UUID
        return ProgressOut(job_id=canonical, status="not_found", progress=NO_PROGRESS, percent=0, progress_pct=0, source="none")
    status = opeva_status(run)
    data, modified = await asyncio.to_thread(lambda: insight.read_progress_file(storage, str(run.id), strict=True))
    if isinstance(data, dict):
        eta = insight.eta_fields(insight.eta_of(run, status, data, modified))
        skip = ("job_id", "status", "percent", "progress_pct", "source", *EtaFields.model_fields)
        extra = {k: v for k, v in data.items() if k not in skip}
        pct = _percent(data.get("percent", data.get("progress_pct")))
        raw = data.get("progress_pct", data.get("percent"))
        return ProgressOut(job_id=str(run.id), status=status, percent=pct or 0.0, progress_pct=_percent(raw),
                           simulator_status=data.get("status"), source="file", **extra, **eta)
    art = await gateway.progress_artifact(run.id)
    if art is not None and _percent(art.data) is not None:
        pct = _percent(art.data)
        eta = insight.eta_fields(insight.eta_of(run, status, {"percent": pct}, (art.updated or art.created).timestamp() if (art.updated or art.created) else None))
        return ProgressOut(job_id=str(run.id), status=status, percent=pct, progress_pct=pct, progress=art.description, source="prefect-artifact", **eta)
    eta = insight.eta_fields(insight.eta_of(run, status, None, None))
    return ProgressOut(job_id=str(run.id), status=status, progress=NO_PROGRESS, percent=0, progress_pct=0, source="none", **eta)


async def result(gateway: PrefectGateway, storage: DataRoot, job_id: str) -> ResultOut:
    run = await gateway.read_run(job_id)
    data = await asyncio.to_thread(_job_json, storage, storage.job(str(run.id)).result_file)
    if isinstance(data, dict):
        return ResultOut(**{"status": "unknown", **data}) if not isinstance(data.get("status"), str) else ResultOut(**data)
    if data is not None:
        return ResultOut(status="unknown", value=data)
    return ResultOut(status="pending", message="Result not ready yet.", job_status=opeva_status(run))


def _placeholder(job_id: str, status: str) -> str:
    if status in ACTIVE:
        return f"No logs yet: job {job_id} is {status}.\n"
    return f"No logs were recorded for job {job_id} ({status}).\n"


LOG_SEND_BYTES = 256 << 10  # /logs sends its text in pieces of about this size


async def logs_once(gateway: PrefectGateway, job_id: str) -> AsyncIterator[bytes]:
    """Prefect's logs of the run as they are now, sent a page of records at a time: the API's
    memory is one page whatever the log's size (a job may log up to its cap, 256 MiB by
    default; collected whole, that cost the API twice as much). 404 before the first byte."""
    run = await gateway.read_run(job_id)
    entries = gateway.follow_logs(str(run.id), follow=False)
    first = await anext(entries, None)

    async def pieces() -> AsyncIterator[bytes]:
        if first is None:
            yield _placeholder(str(run.id), opeva_status(run)).encode()
            return
        piece = [first.message, "\n"]
        size = len(first.message)
        async for entry in entries:
            piece += (entry.message, "\n")
            size += len(entry.message) + 1
            if size >= LOG_SEND_BYTES:
                yield "".join(piece).encode()
                piece, size = [], 0
        if piece:
            yield "".join(piece).encode()

    return pieces()


async def logs_follow(gateway: PrefectGateway, job_id: str) -> AsyncIterator[bytes]:
    run = await gateway.read_run(job_id)  # 404 before the stream starts

    async def lines() -> AsyncIterator[bytes]:
        async for entry in gateway.follow_logs(str(run.id), follow=True, poll_seconds=FOLLOW_POLL_SECONDS):
            yield (entry.message + "\n").encode()

    return lines()


def _in_job(storage: DataRoot, path: Path) -> tuple[Path, Path]:
    """(the job's folder, path relative to it) of a job file: core.job_io opens it from there."""
    rel = Path(path).relative_to(storage.jobs_dir)
    return storage.jobs_dir / rel.parts[0], Path(*rel.parts[1:])


def _job_json(storage: DataRoot, path: Path) -> Any | None:
    """progress.json / result.json as the job left them: bounded; a link or a FIFO there is 403."""
    try:
        return job_io.read_json(*_in_job(storage, path), strict=True)
    except job_io.NotRegularFile:
        raise OutsideDataRoot(f"{Path(path).name} is a link or not a regular file; refused") from None


def _read_from(storage: DataRoot, path: Path, offset: int, limit: int = 1 << 20) -> bytes:
    """At most ``limit`` bytes of a job file the job may have replaced by a link, a FIFO or a
    huge file: read through core.job_io (no link followed, regular files only, in chunks)."""
    try:
        return job_io.read_bounded(*_in_job(storage, path), offset, limit)
    except job_io.NotRegularFile:
        raise OutsideDataRoot(f"log file {Path(path).name!r} is a link or not a regular file; refused") from None
    except FileNotFoundError:
        return b""


class _FileLogPieces:
    """The log file's bytes up to FILE_LOG_MAX from one opened descriptor (a regular file, never
    a link), in chunks of job_io.CHUNK, then a marker when more is there: a request costs the
    API one chunk, not 16 MiB (read whole, a 1 GiB log's answer cost about 40 MiB per request).
    Iterated by Starlette in a worker thread; the descriptor is closed at the end or when dropped."""

    def __init__(self, fd: int) -> None:
        self.fd: int | None = fd

    def __iter__(self):
        try:
            sent = 0
            while sent < FILE_LOG_MAX:
                piece = os.pread(self.fd, min(job_io.CHUNK, FILE_LOG_MAX - sent), sent)
                if not piece:
                    break
                sent += len(piece)
                yield piece
            rest = os.fstat(self.fd).st_size - sent
            if rest > 0:
                yield f"\n[... {rest} more bytes: read them with /logs-chunk/<job_id>?offset={sent}]\n".encode()
        finally:
            self.close()

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    __del__ = close


def _open_file_log(storage: DataRoot, path: Path) -> _FileLogPieces | None:
    """None when absent; job_io.NotRegularFile when a link, a FIFO or a device is there."""
    if not path.parent.is_dir():
        return None
    try:
        return _FileLogPieces(job_io.open_regular(*_in_job(storage, path)))
    except FileNotFoundError:
        return None


async def file_log_once(gateway: PrefectGateway, storage: DataRoot, job_id: str) -> _FileLogPieces | str:
    """The simulator's own log file (``logs/<job_id>.log``), byte for byte, as upstream serves it:
    only what the simulator wrote there (its stdout, stderr and the platform's lines are ``/logs``)."""
    run = await gateway.read_run(job_id)
    path = storage.job(str(run.id)).simulator_log_file
    try:
        pieces = await asyncio.to_thread(_open_file_log, storage, path)
    except job_io.NotRegularFile:
        raise OutsideDataRoot(f"log file {path.name!r} is a link or not a regular file; refused") from None
    return _placeholder(str(run.id), opeva_status(run)) if pieces is None else pieces


async def file_log_follow(gateway: PrefectGateway, storage: DataRoot, job_id: str) -> AsyncIterator[bytes]:
    run = await gateway.read_run(job_id)
    path = storage.job(str(run.id)).simulator_log_file

    async def chunks() -> AsyncIterator[bytes]:
        offset = 0
        while True:
            active = opeva_status(await gateway.read_run(job_id)) in ACTIVE
            data = await asyncio.to_thread(_read_from, storage, path, offset)
            offset += len(data)
            if data:
                yield data
            if not active:
                while rest := await asyncio.to_thread(_read_from, storage, path, offset):
                    offset += len(rest)
                    yield rest
                return
            await asyncio.sleep(FOLLOW_POLL_SECONDS)

    return chunks()


def _chunk(storage: DataRoot, path: Path, tail_lines: int | None, offset: int, max_bytes: int) -> tuple[str, int, bool, bool]:
    """(text, next_offset, truncated, available) of the log file."""
    try:
        size = job_io.file_size(*_in_job(storage, path))
    except job_io.NotRegularFile:
        raise OutsideDataRoot(f"log file {path.name!r} is a link or not a regular file; refused") from None
    except (FileNotFoundError, NotADirectoryError):
        size = None
    if size is None:
        return "", offset, False, False
    if tail_lines is not None:
        start = max(0, size - max_bytes)
        data = _read_from(storage, path, start, size - start)
        lines = data.decode(errors="replace").splitlines(keepends=True)
        if start > 0 and lines:
            lines = lines[1:]  # a partial first line
        kept = lines[-tail_lines:] if tail_lines else []
        return "".join(kept), size, len(kept) < len(lines) or start > 0, True
    data = _read_from(storage, path, min(offset, size), max_bytes)
    nxt = min(offset, size) + len(data)
    return data.decode(errors="replace"), nxt, nxt < size, True


async def logs_chunk(gateway: PrefectGateway, storage: DataRoot, job_id: str, *, tail_lines: int | None, offset: int, max_bytes: int) -> LogsChunk:
    run = await gateway.read_run(job_id)
    text, nxt, truncated, available = await asyncio.to_thread(_chunk, storage, storage.job(str(run.id)).simulator_log_file, tail_lines, offset, max_bytes)
    message = None if available else _placeholder(str(run.id), opeva_status(run)).strip()
    return LogsChunk(job_id=str(run.id), text=text, next_offset=nxt, truncated=truncated, available=available, message=message)


def _config_text(storage: DataRoot, job_dir: Path, params: dict[str, Any]) -> str:
    for name in ("config.resolved.yaml", "config.yaml"):
        if (job_dir / name).is_file():
            return storage.read_text_inside(job_dir / name, max_bytes=LIMITS.max_yaml_bytes, what="config")
    if isinstance(params.get("config"), dict):
        return yaml.safe_dump(params["config"], sort_keys=False)
    if params.get("config_path"):
        try:
            return storage.read_text_inside(config_source(storage, params["config_path"]), max_bytes=LIMITS.max_yaml_bytes, what="config")
        except (OSError, UnsafeNameError) as exc:
            raise ApiError(404, f"the job's config file {params['config_path']!r} is gone: {exc}") from exc
    return yaml.safe_dump(default_experiment(), sort_keys=False)


async def resolved_config(gateway: PrefectGateway, storage: DataRoot, job_id: str) -> str:
    """``config.resolved.yaml`` when the simulator wrote it, else the config handed to the job."""
    run = await gateway.read_run(job_id)
    return await asyncio.to_thread(_config_text, storage, storage.job(str(run.id)).dir, dict(run.parameters or {}))


def _session_dir(storage: DataRoot, job_id: str, session: str) -> tuple[Path, str, list[str]]:
    base = storage.job(job_id).dir / "results" / "simulation_data"
    sessions = sorted((p for p in base.iterdir() if p.is_dir()), key=lambda p: (p.stat().st_mtime, p.name)) if base.is_dir() else []
    names = [p.name for p in sessions]
    if session == "latest":
        if not sessions:
            raise ApiError(404, f"job {job_id} has exported no simulation data yet")
        return sessions[-1], sessions[-1].name, names
    folder = base / safe_name(session, what="session")
    if not folder.is_dir():
        raise ApiError(404, f"job {job_id} has no simulation data session {session!r}")
    return folder, session, names


def _index(storage: DataRoot, job_id: str, session: str) -> SimulationDataIndex:
    folder, name, sessions = _session_dir(storage, job_id, session)
    storage.inside(folder, what="session folder")
    files = sorted((p for p in folder.rglob("*") if p.is_file() and not p.is_symlink()), key=lambda p: str(p))
    rel = [SimulationFile(relative_path=p.relative_to(folder).as_posix(), size_bytes=p.stat().st_size) for p in files]
    days = sorted({m.group(1) for f in rel if (m := _DAY.search(f.relative_path))})
    return SimulationDataIndex(job_id=job_id, root_path=storage.relative(folder), session=name, sessions=sessions,
                               files=[f.relative_path for f in rel], file_details=rel, available_days=days)


async def simulation_index(gateway: PrefectGateway, storage: DataRoot, job_id: str, session: str) -> SimulationDataIndex:
    run = await gateway.read_run(job_id)
    return await asyncio.to_thread(_index, storage, str(run.id), session)


@dataclass(frozen=True)
class OpenedFile:
    """A file opened for serving: its descriptor (the bytes come from it, not from a path
    opened again), name and size when opened."""

    fd: int
    name: str
    size: int


def _data_file(storage: DataRoot, job_id: str, session: str, relative_path: str) -> OpenedFile:
    parts = [p for p in relative_path.replace("\\", "/").split("/") if p not in ("", ".")]
    if relative_path.startswith("/") or not parts:
        raise UnsafeNameError(f"relative_path {relative_path!r} must be a path inside the session folder")
    for part in parts:
        safe_name(part, what="relative_path segment")
    _, name, _ = _session_dir(storage, job_id, session)
    # From the data root's real path, every component below it opened without following links.
    chain = [*Path(storage.relative(storage.job(job_id).dir)).parts, "results", "simulation_data", name, *parts]
    try:
        fd = open_beneath(storage.real_root, chain)
    except NotARegularFile:
        raise ApiError(403, f"{relative_path!r} in the simulation data of job {job_id} is a link or not a regular file; not served") from None
    except (FileNotFoundError, NotADirectoryError):
        raise ApiError(404, f"no file {relative_path!r} in the simulation data of job {job_id}") from None
    return OpenedFile(fd, parts[-1], os.fstat(fd).st_size)


async def simulation_file(gateway: PrefectGateway, storage: DataRoot, job_id: str, session: str, relative_path: str) -> OpenedFile:
    run = await gateway.read_run(job_id)
    return await asyncio.to_thread(_data_file, storage, str(run.id), session, relative_path)
