"""Dataset → run lineage (issue 25 §5): the versions of a dataset and the jobs that ran on each,
from the platform's own record (core/dataset_lineage.py), with each job's state from Prefect."""

from __future__ import annotations

import asyncio
from uuid import UUID

from api.dataset_models import DatasetLineage, LineageJob, LineageVersion
from api.errors import ApiError
from api.gateway import PrefectGateway, opeva_status
from core import dataset_lineage
from core.kpis import read_job_kpis
from core.layout import DataRoot

ACTIVE = {"queued", "dispatched", "setup", "running", "stop_requested"}


async def _statuses(gateway: PrefectGateway, job_ids: list[str]) -> dict[str, str]:
    runs = await gateway.runs_by_id([UUID(j) for j in job_ids]) if job_ids else []
    return {str(r.id): opeva_status(r) for r in runs}


async def lineage(gateway: PrefectGateway, storage: DataRoot, name: str) -> DatasetLineage:
    current = await asyncio.to_thread(dataset_lineage.dataset_version, storage, name)
    versions = await asyncio.to_thread(dataset_lineage.versions, storage, name)
    if current is None and not versions:
        raise ApiError(404, f"dataset {name!r} does not exist and no job ran on it")
    ids = [use["job_id"] for v in versions for use in v["jobs"]]
    statuses = await _statuses(gateway, ids)

    def kpis(job_id: str) -> dict[str, float | None]:
        return read_job_kpis(storage.job(job_id).dir).district

    out = []
    for v in versions:
        jobs = [LineageJob(job_id=u["job_id"], status=statuses.get(u["job_id"], "not_found"), used_at=u["at"],
                           kpis=await asyncio.to_thread(kpis, u["job_id"])) for u in v["jobs"]]
        out.append(LineageVersion(digest=v["digest"], current=current is not None and v["digest"] == current["digest"], jobs=jobs))
    return DatasetLineage(name=name, current_digest=current["digest"] if current else None, site=(current or {}).get("site"),
                          window=(current or {}).get("window"), versions=out)


async def refuse_change_while_used(gateway: PrefectGateway, storage: DataRoot, name: str) -> None:
    """A dataset a job still runs (or waits to run) on is neither deleted nor rebuilt under it: 409 naming the jobs."""
    uses = await asyncio.to_thread(dataset_lineage.uses, storage, name)
    statuses = await _statuses(gateway, [u["job_id"] for u in uses])
    active = sorted(j for j, s in statuses.items() if s in ACTIVE)
    if active:
        raise ApiError(409, f"dataset {name!r} is used by {len(active)} unfinished job(s): {', '.join(active[:5])}; "
                            "stop them or wait for them to end")


async def job_ids(storage: DataRoot, spec: str) -> set[str]:
    """``name`` or ``name@digest`` (a full or leading part of the sha256) -> the ids of the jobs that
    ran on that dataset (that version); ``GET /jobs?dataset=`` keeps only those."""
    name, _, digest = spec.partition("@")
    try:
        uses = await asyncio.to_thread(dataset_lineage.uses, storage, name)
    except ValueError as exc:  # an unsafe name
        raise ApiError(400, f"dataset filter {spec!r}: {exc}") from None
    return {u["job_id"] for u in uses if not digest or u["digest"].startswith(digest.lower())}
