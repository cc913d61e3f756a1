"""The ``control`` work pool: platform actions (switching a bundle, sweeps) that must never take
a compute host's job slot. A **process** pool whose worker ``make up`` starts on the server machine
(next to the API, the data root and the inference targets' sockets); its runs are short Python
flows, not simulator containers.

Self-contained on purpose: :func:`ensure_control` is called by ``deployments/setup.py`` and
:func:`start_control_worker` by ``make up`` (deployments/up.py) and the tests. Add a control flow
by adding it to :data:`CONTROL_FLOWS`.
"""

from __future__ import annotations

import sys
from typing import Any

from prefect.client.schemas.actions import WorkPoolCreate, WorkPoolUpdate
from prefect.exceptions import ObjectNotFound
from prefect.utilities.callables import parameter_schema

from core.settings import PROJECT_ROOT

CONTROL_POOL = "control"
CONCURRENCY = 8  # switches and sweeps at once; each is a short-lived Python process
# flow (deployment) name -> (entrypoint, import path of the flow object); deployments are "<flow>/control"
CONTROL_FLOWS: dict[str, tuple[str, str]] = {
    "deploy-bundle": ("flows/deploy_bundle.py:deploy_bundle", "flows.deploy_bundle:deploy_bundle"),
}


def template() -> dict[str, Any]:
    from prefect.workers.process import ProcessWorker

    t = ProcessWorker.get_default_base_job_template()
    t["job_configuration"] = {
        # the engine itself: Prefect's default (`prefect flow-run execute`) also imports the whole CLI
        "command": f"{sys.executable} -m prefect.engine", "env": {"PYTHONPATH": str(PROJECT_ROOT), "PREFECT_LOGGING_TO_API_BATCH_INTERVAL": "0.3"},
        "labels": {"opeva.pool": CONTROL_POOL}, "name": None, "stream_output": True, "working_dir": str(PROJECT_ROOT),
    }
    t["variables"] = {"type": "object", "additionalProperties": False, "properties": {},
                      "description": "Control flows take no job variables"}
    return t


async def ensure_control(client: Any) -> list[str]:
    """Create or update the pool and its deployments; returns the deployments' names."""
    try:
        existing = await client.read_work_pool(CONTROL_POOL)
    except ObjectNotFound:
        existing = None
    if existing is not None and existing.type != "process":
        await client.delete_work_pool(CONTROL_POOL)
        existing = None
    if existing is None:
        await client.create_work_pool(WorkPoolCreate(name=CONTROL_POOL, type="process", base_job_template=template(),
                                                     concurrency_limit=CONCURRENCY, description="OPEVA platform actions (no job slot)"))
    else:
        await client.update_work_pool(CONTROL_POOL, WorkPoolUpdate(base_job_template=template(), concurrency_limit=CONCURRENCY))
    names = []
    for entrypoint, import_path in CONTROL_FLOWS.values():
        module, attr = import_path.split(":")
        flow_obj = getattr(__import__(module, fromlist=[attr]), attr)
        flow_id = await client.create_flow_from_name(flow_obj.name)
        await client.create_deployment(
            flow_id=flow_id, name=CONTROL_POOL, work_pool_name=CONTROL_POOL, entrypoint=entrypoint,
            pull_steps=[{"prefect.deployments.steps.set_working_directory": {"directory": str(PROJECT_ROOT)}}],
            parameter_openapi_schema=parameter_schema(flow_obj).model_dump_for_openapi(), enforce_parameter_schema=True,
            description=(flow_obj.description or "").strip().splitlines()[0] if flow_obj.description else None,
            tags=["opeva", "control"],
        )
        names.append(f"{flow_obj.name}/{CONTROL_POOL}")
    return names


def start_control_worker(platform: Any) -> Any:
    """The pool's worker (deployments/control_worker.py), a child of the platform (supervised and
    restarted like the others; named ``worker-*`` so it gets a worker's credentials only)."""
    import socket

    from deployments.platform import WORKER_QUERY_SECONDS, worker_online

    name = f"{CONTROL_POOL}@{socket.gethostname()}"
    return platform.start(
        f"worker-{CONTROL_POOL}-{socket.gethostname()}", [sys.executable, "-m", "deployments.control_worker", "--name", name],
        lambda: worker_online(platform.prefect_api_url, CONTROL_POOL, name, auth=platform.prefect_auth_string),
        PREFECT_WORKER_QUERY_SECONDS=WORKER_QUERY_SECONDS, PREFECT_WORKER_HEARTBEAT_SECONDS="10",
    )
