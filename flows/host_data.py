"""``stage-host-data``: a job on a ``data: local`` host gets its inputs, and its outputs come back.

Why a control flow next to the job's run rather than steps inside it: the job's run executes on
the host, which cannot see the server's data root, while this flow runs on the control pool
(deployments/control_pool.py), on the server machine, with the data root and the hosts' engines
at hand (core/host_data.py copies through each host's Docker engine). The API creates the job's run
Scheduled in the state named :data:`AWAITING` with a far-future time (the worker leaves it alone;
the job's id stays the run's id), then starts this flow with the job's id:

1. inputs pushed to the host, then the run rescheduled for now (the host's worker takes it);
2. while the run is live, job_info.json, progress and logs back every :data:`FOLLOW_EVERY` seconds
   (the job's Prefect logs reach ``/logs`` on their own);
3. once the run is final (finished, failed, crashed, or stopped), the whole folder back through the
   bounded filter, then the host's copy removed.

Resumable: Prefect retries the flow; every step is idempotent (a run still awaiting its inputs gets
them again, a live or ended one is followed or copied again). A copy that keeps failing ends the job
``failed`` with ``error_code=artifact_sync_failed`` naming the copy (``/status``, ``/job-info``).
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any
from uuid import UUID

from prefect import flow, get_run_logger
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.objects import FlowRun
from prefect.states import Failed, Scheduled

from core.bounded_tar import SyncFailed
from core.dataset_lineage import dataset_name_of
from core.experiment import resolve_experiment
from core.host_data import STAGE_FLOW, HostCopy
from core.hosts import current_hosts
from core.job_inputs import inputs_of
from core.job_io import read_json as read_job_json
from core.layout import DataRoot, write_json_atomic
from core.settings import PlatformSettings
from core.states import AWAITING_INPUTS as AWAITING

FLOW_NAME = STAGE_FLOW
ERROR_CODE = "artifact_sync_failed"
FOLLOW_EVERY = 2.0
RETRIES = 2  # Prefect retries of the whole pass (each step is idempotent); the last attempt fails the job instead


def _run(client: SyncPrefectClient, job_id: str) -> FlowRun:
    return client.read_flow_run(UUID(job_id))


def _inputs(storage: DataRoot, run: FlowRun) -> list:
    """What the job reads besides its folder: its config file, the dataset it names, upstream's paths."""
    params = dict(run.parameters or {})
    resolved = resolve_experiment(storage, config=params.get("config"), config_path=params.get("config_path"), save_as=None, job_id=None)
    name = dataset_name_of(resolved.config)
    cfg = resolved.path if resolved.path is not None else storage.job(str(run.id)).config_file
    return inputs_of(storage, cfg, {"dataset": {"name": name}} if name else {}, params.get("slurm"))


def _release(client: SyncPrefectClient, run: FlowRun, logger: Any) -> None:
    """The run may start now: Scheduled for now, unless it was stopped meanwhile."""
    if run.state is not None and run.state.name == AWAITING:
        client.set_flow_run_state(run.id, Scheduled(scheduled_time=datetime.now(timezone.utc)), force=True)
        logger.info("Job %s released to its host", run.id)


def _fail(client: SyncPrefectClient, storage: DataRoot, job_id: str, message: str) -> None:
    """The job ends failed, saying which copy failed (its state message and job_info.json)."""
    job = storage.job(job_id)
    job.dir.mkdir(parents=True, exist_ok=True)
    info = read_job_json(job.dir, job.job_info_file.relative_to(job.dir))
    write_json_atomic(job.job_info_file, {**(info if isinstance(info, dict) else {}), "job_id": job_id, "error_code": ERROR_CODE,
                                          "error": message})
    client.set_flow_run_state(UUID(job_id), Failed(message=f"error_code={ERROR_CODE}: {message}"), force=True)


def _follow(client: SyncPrefectClient, copy: HostCopy, job_id: str) -> FlowRun:
    """The followed files back every FOLLOW_EVERY seconds until the run is final; returns it."""
    while True:
        run = _run(client, job_id)
        if run.state is not None and run.state.is_final():
            return run
        if run.state is not None and run.state.name != AWAITING and not run.state.is_scheduled():
            copy.pull(final=False)
        time.sleep(FOLLOW_EVERY)


@flow(name=FLOW_NAME, log_prints=False, retries=RETRIES, retry_delay_seconds=10)
def stage_host_data(job_id: str) -> dict[str, Any]:
    """Push a ``data: local`` job's inputs to its host, follow it, and bring its folder back."""
    logger = get_run_logger()
    settings = PlatformSettings()
    storage = DataRoot(settings.shared_data_dir)
    with get_client(sync_client=True) as client:
        run = _run(client, job_id)
        host = current_hosts().get(str((run.parameters or {}).get("target_host") or run.work_pool_name))
        if host is None or host.data != "local":
            raise ValueError(f"job {job_id} is not on a data: local host")
        image = host.image or settings.runtime_image
        try:
            with HostCopy(host, storage, job_id, image) as copy:
                if run.state is not None and run.state.name == AWAITING:
                    started = time.monotonic()
                    sent = copy.push(_inputs(storage, run))
                    logger.info("Inputs of job %s copied to %s: %d bytes in %.1f s", job_id, copy.where, sent, time.monotonic() - started)
                    _release(client, _run(client, job_id), logger)
                run = _follow(client, copy, job_id)
                if not copy.wait_quiet():
                    logger.warning("A container of job %s still runs on %s: its folder is copied as it is now", job_id, copy.where)
                started = time.monotonic()
                dropped = copy.pull(final=True)
                logger.info("Outputs of job %s copied back from %s in %.1f s%s", job_id, copy.where, time.monotonic() - started,
                            f"; left out (links, devices, FIFOs, oversized): {', '.join(dropped[:20])}" if dropped else "")
                copy.remove()
        except Exception as exc:  # noqa: BLE001 (whatever stops the copies, the job must not wait for ever)
            if stage_host_data_attempt() <= RETRIES:  # Prefect retries the flow: the copies are tried again
                raise
            why = str(exc) if isinstance(exc, SyncFailed) else f"copying job {job_id}'s files with host {host.name}: {type(exc).__name__}: {exc}"
            logger.error("%s", why)
            _fail(client, storage, job_id, why)
            return {"job_id": job_id, "error_code": ERROR_CODE, "error": why}
    return {"job_id": job_id, "state": run.state.name if run.state else None, "left_out": dropped}


def stage_host_data_attempt() -> int:
    from prefect.runtime import flow_run

    return int(flow_run.run_count or 1)

