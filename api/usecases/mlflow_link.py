"""A job's MLflow run for ``/job-info``: asked of the platform's MLflow server, not of the job."""

from __future__ import annotations

import asyncio
from datetime import datetime

from api.responses import MlflowLink
from core.mlflow_runs import MlflowUnavailable, find_run
from core.settings import PlatformSettings

SLACK_MS = 60_000  # a run may start a little before Prefect records the job's start


async def mlflow_link(job_id: str, submitted: datetime | None) -> MlflowLink:
    settings = PlatformSettings()
    if not settings.mlflow:
        return MlflowLink(available=False, reason="the platform runs no MLflow server (OPEVA_MLFLOW=0)")
    not_before = int(submitted.timestamp() * 1000) - SLACK_MS if submitted else 0
    try:
        run = await asyncio.to_thread(find_run, settings.mlflow_url, settings.mlflow_browser_url, job_id, not_before)
    except MlflowUnavailable as exc:
        return MlflowLink(available=False, reason=str(exc))
    if run is None:
        return MlflowLink(available=False, reason="no MLflow run is tagged with this job's id (yet)")
    return MlflowLink(available=True, **{k: v for k, v in run.items() if k in MlflowLink.model_fields})
