"""Several jobs' KPIs side by side (``GET /compare``): the runs from Prefect, the KPIs from each
job's exported table (core/kpis.py reads it as untrusted job output)."""

from __future__ import annotations

import asyncio

from api.errors import ApiError
from api.gateway import PrefectGateway, opeva_status
from api.models_compare import ComparedJob, CompareOut, KpiRow
from core.kpis import JobKpis, read_job_kpis, side_by_side
from core.layout import DataRoot

MIN_JOBS, MAX_JOBS = 2, 10


def job_ids(jobs: str) -> list[str]:
    """The comma-separated ids, each once, in the order given."""
    ids = list(dict.fromkeys(j.strip() for j in jobs.split(",") if j.strip()))
    if not MIN_JOBS <= len(ids) <= MAX_JOBS:
        raise ApiError(400, f"jobs must name {MIN_JOBS} to {MAX_JOBS} different job ids, comma-separated; got {len(ids)}")
    return ids


def _best(values: dict[str, float | None]) -> str | None:
    present = {job: v for job, v in values.items() if v is not None}
    return min(present, key=lambda job: present[job]) if len(present) >= 2 else None


async def compare(gateway: PrefectGateway, storage: DataRoot, jobs: str) -> CompareOut:
    ids = job_ids(jobs)
    runs = await asyncio.gather(*(gateway.read_run(j) for j in ids))  # an unknown id: 404 naming it

    def read_all() -> dict[str, JobKpis]:
        return {str(run.id): read_job_kpis(storage.job(str(run.id)).dir) for run in runs}

    kpis = await asyncio.to_thread(read_all)
    return CompareOut(
        jobs=[ComparedJob(job_id=str(r.id), job_name=r.name, status=opeva_status(r), host=r.work_pool_name,
                          session=kpis[str(r.id)].session, note=kpis[str(r.id)].note) for r in runs],
        kpis=[KpiRow(kpi=name, values=values, best_job_id=_best(values)) for name, values in side_by_side(kpis)],
    )
