"""What users plan with: ETAs, queued-start estimates, failure codes, a job's storage and container.

Why one module: ``/progress``, ``/jobs``, ``/queue``, ``/status`` and ``/job-info`` all add these
to answers other use cases build; each addition reads Prefect through the gateway in a few
batched calls (never one per job), reads the job's files confined to the data root, and hands
the arithmetic and the rules to ``core`` (eta, queue_estimate, failures, job_storage).
"""

from __future__ import annotations

import asyncio
import re
import time
from datetime import datetime, timezone
from typing import Any

from prefect.client.schemas.objects import FlowRun

from api.gateway import SIMULATION_FLOW, PrefectGateway, epoch, opeva_status
from api.job_index import JobIndex
from api.responses_insight import as_fields
from core.states import PROFILE_LABEL
from core.eta import Eta, SampleBook, estimate, read_progress
from core.failures import Failure, classify, result_error_text
from core.hosts import HostsFile
from core.job_bundle import bundle_summary
from core.bundle_store import bundles_of_job
from core.job_storage import measure
from core.layout import DataRoot
from core.queue_estimate import HostQueue, RunningJob, estimate_starts, usual_duration

BOOK = SampleBook()  # readings seen by this process, per job (core/eta.py says why in memory)
LOG_TAIL_BYTES = 8192
RUNNING = ("running", "setup", "stop_requested", "dispatched")
FINISHED_SAMPLE = 100  # recent finished runs read for the hosts' usual run times
ACTIVE_TYPES = frozenset({"SCHEDULED", "PENDING", "RUNNING", "CANCELLING", "PAUSED"})
CONTAINER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


# -- reading a job's files (confined; a link out reads as nothing) ---------------------------

def _json(storage: DataRoot, path: Any) -> Any:
    try:
        return storage.read_json(path)
    except ValueError:  # OutsideDataRoot / UnsafeNameError: the job linked it out
        return None


def read_progress_file(storage: DataRoot, job_id: str, *, strict: bool = False) -> tuple[Any, float | None]:
    """The progress file's content and its modification time; ``strict``: a file linked out of
    the data root is refused (``/progress`` answers 4xx) rather than read as absent."""
    path = storage.job(job_id).progress_file
    data = storage.read_json(path) if strict else _json(storage, path)
    try:
        return data, path.lstat().st_mtime
    except OSError:
        return data, None


def _tail(storage: DataRoot, job_id: str) -> str | None:
    path = storage.job(job_id).log_file
    try:
        with storage.open_inside(path, what="log file") as f:
            size = f.seek(0, 2)
            f.seek(max(0, size - LOG_TAIL_BYTES))
            return f.read().decode("utf-8", "replace")
    except (OSError, ValueError):
        return None


def _failure_texts(storage: DataRoot, job_id: str) -> tuple[str | None, str | None]:
    return result_error_text(_json(storage, storage.job(job_id).result_file)), _tail(storage, job_id)


def failure_of_run(storage: DataRoot, run: FlowRun, status: str) -> Failure | None:
    """The failure of one run (blocking: call in a thread)."""
    if status not in ("failed", "stopped", "canceled"):
        return None
    result_error, tail = _failure_texts(storage, str(run.id))
    return classify(status=status, state_type=run.state.type.value if run.state else None,
                    state_message=run.state.message if run.state else None, result_error=result_error, log_tail=tail)


async def failures(storage: DataRoot, runs: list[FlowRun], index: JobIndex | None = None) -> dict[str, Failure]:
    """Failures of the failed/stopped runs among ``runs``, all in one thread hop; with an
    ``index``, each ended run's files are read once, not on every listing."""
    def one(run: FlowRun) -> Failure | None:
        return failure_of_run(storage, run, opeva_status(run))

    def work() -> dict[str, Failure]:
        out = {}
        for run in runs:
            failure = index.memo(run, "failure", lambda run=run: one(run)) if index is not None else one(run)
            if failure is not None:
                out[str(run.id)] = failure
        return out
    return await asyncio.to_thread(work)


# -- ETAs ------------------------------------------------------------------------------------

def eta_of(run: FlowRun, status: str, data: Any, modified_at: float | None, now: float | None = None) -> Eta:
    """The ETA of ``run`` from its progress file, adding the reading to this process's samples."""
    now = time.time() if now is None else now
    reading = read_progress(data, modified_at)
    started = epoch(run.start_time) if run.run_count else None
    samples = BOOK.record(str(run.id), started, reading, now) if status in RUNNING else []
    return estimate(reading, samples, status=status, started_at=started, now=now)


def eta_fields(eta: Eta) -> dict[str, Any]:
    """``eta`` plus its top-level copies (only when available)."""
    body = eta.as_dict()
    if not eta.available:
        return {"eta": body}
    return {"eta": body, "eta_seconds": body["eta_seconds"], "estimated_finish_at": body["estimated_finish_at"],
            "eta_source": body["source"], "eta_confidence": body["confidence"]}


# -- queued-start estimates ----------------------------------------------------------------------

async def _host_facts(gateway: PrefectGateway, names: list[str]) -> dict[str, tuple[int | None, bool]]:
    """Each host's pool concurrency limit and whether a worker is online (the gateway keeps them briefly)."""
    pools, workers = await gateway.hosts.reads(names)
    return {h: (pools[h].concurrency_limit if h in pools else None, any(w.status == "ONLINE" for w in workers[h])) for h in names}


async def _finished(gateway: PrefectGateway) -> list[FlowRun]:
    return (await gateway.list_runs(status="finished", limit=FINISHED_SAMPLE, flows=[SIMULATION_FLOW]))[0]


async def start_estimates(gateway: PrefectGateway, storage: DataRoot, hosts: HostsFile, every_run: list[FlowRun] | None = None) -> dict[str, dict[str, Any]]:
    """``queued_start_estimate`` of every queued job, by job id: a handful of Prefect reads in all.
    ``every_run``: the caller already read every job (an unfiltered ``/jobs``), so active and
    finished runs are taken from it instead of being read again."""
    if every_run is not None:
        active = sorted((r for r in every_run if r.state and r.state.type.value in ACTIVE_TYPES),
                        key=lambda r: (r.expected_start_time or r.created or datetime.min.replace(tzinfo=timezone.utc)))
    else:
        active = await gateway.active_runs()
    queued = [r for r in active if opeva_status(r) == "queued"]
    if not queued:
        return {}
    names = sorted({r.work_pool_name or "" for r in queued})
    completed = [r for r in every_run if r.state and r.state.type.value == "COMPLETED"] if every_run is not None else None
    finished, facts = await asyncio.gather(_finished(gateway) if completed is None else asyncio.sleep(0, completed), _host_facts(gateway, names))
    running = [r for r in active if opeva_status(r) in RUNNING and (r.work_pool_name or "") in names]

    def etas() -> dict[str, float | None]:
        now = time.time()
        out = {}
        for r in running:
            eta = eta_of(r, opeva_status(r), *read_progress_file(storage, str(r.id)), now=now)
            out[str(r.id)] = eta.eta_seconds if eta.available else None
        return out

    running_eta = await asyncio.to_thread(etas)
    now = time.time()
    out: dict[str, dict[str, Any]] = {}
    for name in names:
        host = hosts.get(name)
        pool_limit, online = facts[name]
        limit = pool_limit or (host.concurrency_limit if host else None)
        mine = [r for r in running if r.work_pool_name == name]
        queue = HostQueue(
            host=name, limit=limit, online=online,
            running=[RunningJob(str(r.id), (now - epoch(r.start_time)) if r.start_time else 0.0, running_eta.get(str(r.id))) for r in mine],
            queued=[str(r.id) for r in queued if (r.work_pool_name or "") == name],
            usual_seconds=usual_duration([r.total_run_time.total_seconds() for r in finished if r.work_pool_name == name][:20]),
            profiles={str(r.id): (r.labels or {}).get(PROFILE_LABEL) for r in queued},
        )
        out.update({job: est.as_dict() for job, est in estimate_starts(queue, now).items()})
    return out


def with_estimate(item: Any, estimates: dict[str, dict[str, Any]]) -> Any:
    """A ``/jobs`` or ``/queue`` item with its start estimate (queued jobs only)."""
    fields = as_fields(estimates.get(item.job_id))
    return item.model_copy(update=fields) if fields else item


def with_failure(item: Any, failure: Failure | None) -> Any:
    return item.model_copy(update=failure.fields()) if failure is not None else item


# -- job-info ------------------------------------------------------------------------------------

def _iso(dt: datetime | None) -> str | None:
    return dt.astimezone(timezone.utc).isoformat() if dt else None


def _container_name(storage: DataRoot, job_id: str) -> str | None:
    """The simulator container's name as the flow recorded it (container.json); checked, since
    the job's folder is the simulator's to write."""
    data = _json(storage, storage.job(job_id).dir / "container.json")
    name = data.get("name") if isinstance(data, dict) else None
    return name if isinstance(name, str) and CONTAINER_NAME.fullmatch(name) else None


def job_info_extras(storage: DataRoot, run: FlowRun, status: str, supervisor: Any) -> dict[str, Any]:
    """``queued_at``, ``total_duration_seconds``, ``result_storage``, ``container_name``, ``bundle`` and
    the failure fields of one job (blocking: call in a thread)."""
    job_id = str(run.id)
    ended = run.end_time if status not in ("queued", "dispatched", "running", "stop_requested") else None
    end = ended or datetime.now(timezone.utc)
    failure = failure_of_run(storage, run, status)
    return {
        "queued_at": _iso(run.created),
        "total_duration_seconds": round((end - run.created).total_seconds(), 3) if run.created else None,
        "result_storage": measure(storage.job(job_id).dir),
        "container_name": _container_name(storage, job_id),
        "supervisor_container_name": supervisor if isinstance(supervisor, str) else None,
        **(failure.fields() if failure else {}),
        "error_summary": failure.error_summary if failure else None,
        "bundle": bundle_summary(storage.job(job_id).dir, job_id),
        "stored_bundle_ids": bundles_of_job(storage.root, job_id),
    }
