"""The ``control`` work pool: flows that only orchestrate other flow runs run here.

Why a pool of its own: a flow that starts other runs and waits for them (a sweep's parent,
for one) must never hold a compute host's job slot. On a host pool of concurrency 1 the
parent would take the only slot and its children would wait for it forever (a deadlock);
on bigger pools it would still steal a slot from a simulation. So such flows run on a
**process** pool served by one worker on the server machine (``make up`` starts it next to
the Prefect server): no container, the platform's own code and data root, Prefect's URL and
credentials from the worker's environment (a process worker passes its environment to the
runs it starts), never a simulator.

What lives here is general: the pool's name and concurrency, the flows deployed on it
(:data:`CONTROL_FLOWS`; add one there), its creation, and the worker's start (the worker is
``deployments/control_worker.py``: Prefect's process worker that runs the short ones in itself).
Nothing here knows what the flows do.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from core.hosts import CONTROL_POOL
from core.settings import PROJECT_ROOT

# Control flows sleep while their children work: a few dozen at once cost only memory
# (one Python process each, ~150 MB). OPEVA_CONTROL_CONCURRENCY overrides it.
DEFAULT_CONCURRENCY = 8
# flow (deployment) name -> (entrypoint, import path of the flow object); deployments are "<flow>/control"
CONTROL_FLOWS: dict[str, tuple[str, str]] = {
    "run-sweep": ("flows/sweep.py:run_sweep", "flows.sweep:run_sweep"),
    "deploy-bundle": ("flows/deploy_bundle.py:deploy_bundle", "flows.deploy_bundle:deploy_bundle"),
    "compare-runs": ("flows/compare_runs.py:compare_runs", "flows.compare_runs:compare_runs"),
    "move-lost-host-jobs": ("flows/move_lost_host_jobs.py:move_lost_host_jobs", "flows.move_lost_host_jobs:move_lost_host_jobs"),
    "stage-host-data": ("flows/host_data.py:stage_host_data", "flows.host_data:stage_host_data"),
}


def concurrency_limit() -> int:
    raw = os.environ.get("OPEVA_CONTROL_CONCURRENCY", "")
    return int(raw) if raw.isdigit() and int(raw) > 0 else DEFAULT_CONCURRENCY


def job_template(env: dict[str, str]) -> dict[str, Any]:
    """A process pool's template with everything fixed: runs execute the project's code from
    its root; ``env`` (the platform's run settings: heartbeats, log shipping) is added to the
    worker's own environment. No job variable may be set by a caller."""
    from prefect.workers.process import ProcessWorker

    template = ProcessWorker.get_default_base_job_template()
    template["job_configuration"] = {
        # the engine itself: Prefect's default (`prefect flow-run execute`) also imports the whole CLI
        "command": f"{sys.executable} -m prefect.engine",
        "env": {**env, "PYTHONPATH": str(PROJECT_ROOT), "PREFECT_LOGGING_TO_API_BATCH_INTERVAL": "0.3"},
        "labels": {"opeva.host": CONTROL_POOL},
        "name": None,
        "stream_output": True,
        "working_dir": str(PROJECT_ROOT),
    }
    template["variables"] = {"type": "object", "additionalProperties": False, "properties": {},
                             "description": "Control flows take no job variables"}
    return template


async def ensure_control_pool(client: Any, env: dict[str, str]) -> None:
    """Create or update the pool (idempotent); a pool of another type under the name is replaced."""
    from prefect.client.schemas.actions import WorkPoolCreate, WorkPoolUpdate
    from prefect.exceptions import ObjectNotFound

    template, limit = job_template(env), concurrency_limit()
    try:
        existing = await client.read_work_pool(CONTROL_POOL)
    except ObjectNotFound:
        existing = None
    if existing is not None and existing.type != "process":
        await client.delete_work_pool(CONTROL_POOL)
        existing = None
    if existing is None:
        await client.create_work_pool(WorkPoolCreate(name=CONTROL_POOL, type="process", base_job_template=template, concurrency_limit=limit,
                                                     description="OPEVA control flows (they start and watch other runs; no host slot)"))
    else:
        await client.update_work_pool(CONTROL_POOL, WorkPoolUpdate(base_job_template=template, concurrency_limit=limit))


async def ensure_control_deployments(client: Any, flows: dict[str, tuple[str, str]]) -> list[str]:
    """``<flow>/control`` for each ``name -> (entrypoint, import path)`` of ``flows``."""
    from prefect.utilities.callables import parameter_schema

    names = []
    for entrypoint, import_path in flows.values():
        module, attr = import_path.split(":")
        flow_obj = getattr(__import__(module, fromlist=[attr]), attr)
        flow_id = await client.create_flow_from_name(flow_obj.name)
        await client.create_deployment(
            flow_id=flow_id, name=CONTROL_POOL, work_pool_name=CONTROL_POOL, entrypoint=entrypoint,
            pull_steps=[{"prefect.deployments.steps.set_working_directory": {"directory": str(PROJECT_ROOT)}}],
            parameter_openapi_schema=parameter_schema(flow_obj).model_dump_for_openapi(), enforce_parameter_schema=True,
            description=(flow_obj.description or "").strip().splitlines()[0] if flow_obj.description else None,
            tags=["opeva", f"host:{CONTROL_POOL}"],
        )
        names.append(f"{flow_obj.name}/{CONTROL_POOL}")
    return names


def start_control_worker(platform: Any) -> Any:
    """The pool's worker (deployments/control_worker.py), a child of ``platform`` (supervised and
    restarted like the hosts' workers; named ``worker-*`` so it gets a worker's credentials only)."""
    import socket

    from deployments.platform import WORKER_HEARTBEAT_SECONDS, worker_online, worker_query_seconds

    name = f"{CONTROL_POOL}@{socket.gethostname()}"
    return platform.start(
        f"worker-{CONTROL_POOL}-{socket.gethostname()}", [sys.executable, "-m", "deployments.control_worker", "--name", name],
        lambda: worker_online(platform.prefect_api_url, CONTROL_POOL, name, auth=platform.prefect_auth_string),
        PREFECT_WORKER_QUERY_SECONDS=worker_query_seconds(), PREFECT_WORKER_HEARTBEAT_SECONDS=WORKER_HEARTBEAT_SECONDS,
    )
