"""Create or update everything Prefect must know: blocks, one work pool per host,
the deployments ``run-simulation/<host>`` and ``build-dataset/<host>``, and the
zombie-run automation.

Run it as ``python -m deployments.setup`` (``make up`` does). It is idempotent:
run it again after editing the hosts file. Hosts' defaults (image, volumes,
network, GPUs) live in each pool's base job template, so ``prefect deployment
run`` and the REST API launch identical containers.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from typing import Any

from prefect import get_client
from prefect.client.schemas.actions import WorkPoolCreate, WorkPoolUpdate
from prefect.exceptions import ObjectNotFound
from prefect.settings import PREFECT_API_URL
from prefect.utilities.callables import parameter_schema

from core import containers
from core.settings import PROJECT_ROOT, PlatformSettings
from blocks.storage import DEFAULT_BLOCK_NAME, SharedStorage
from core.engines import Engine, engine_client, open_client
from core.hosts import Host, HostsFile, load_hosts
from deployments import automations, control_pool
from deployments.automations import HEARTBEAT_SECONDS
from deployments.mlflow_server import pool_env

log = logging.getLogger("opeva.setup")

IMAGE_WORKDIR = "/opt/opeva"
# The container's command: one Python that runs the engine and acts on cancellation
# (flows/container_entry.py says why it replaces `prefect flow-run execute`).
CONTAINER_COMMAND = "python -m flows.container_entry"

# flow (deployment) name -> (entrypoint, import path of the flow object)
FLOWS: dict[str, tuple[str, str]] = {
    "run-simulation": ("flows/simulation.py:run_simulation", "flows.simulation:run_simulation"),
    "build-dataset": ("flows/build_dataset.py:build_dataset", "flows.build_dataset:build_dataset"),
}


def docker_available(host: Host | None = None) -> bool:
    """Whether the host's engine (this machine's when no host is given) answers, as core/engines.py reaches it."""
    client = None
    try:
        client = engine_client(host) if host is not None else open_client(Engine())
        client.ping()
        return True
    except Exception:  # any failure means "no engine we can use"
        return False
    finally:
        if client is not None:
            client.close()


def _run_env() -> dict[str, str]:
    """Environment of every flow run: ship logs fast, send heartbeats.

    Neither Prefect's URL nor its credentials are written here: the worker passes its own
    settings (PREFECT_API_URL, PREFECT_API_AUTH_STRING) to the runs it starts, and a value in
    the template would win over them. A URL seen by set-up on the server (127.0.0.1:4200)
    is wrong for a worker on another machine: its containers would call their own loopback.
    """
    return {
        "PREFECT_LOGGING_TO_API_BATCH_INTERVAL": "0.3",
        "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(HEARTBEAT_SECONDS),
    }


# What a flow run (the REST API, `prefect deployment run --job-variable`, anyone with the
# Prefect API) may set: the simulator's CPU/memory/GPU. Nothing else: no image, command,
# env, volumes, network_mode, privileged, labels... (`additionalProperties: false` makes
# the server answer 422). These two are read by the flow and applied to the *simulator's*
# container through core.hosts.simulator_limits; the supervisor's container ignores them.
JOB_VARIABLES_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "mem_limit": {
            "anyOf": [{"type": "string", "pattern": "^[0-9]+[bkmgBKMG]?$"}, {"type": "null"}],
            "default": None,
            "title": "Memory limit of the simulator",
        },
        "job_network": {
            "anyOf": [{"type": "string", "enum": ["internal", "none"]}, {"type": "null"}],
            "default": None,
            "title": "Network of the simulator: none narrows the host's (docs/sandbox-network.md)",
        },
        "limits": {
            "anyOf": [
                {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {k: {"type": "integer", "minimum": 1} for k in ("pids", "nofile", "log_bytes", "disk_bytes", "wall_seconds")},
                },
                {"type": "null"},
            ],
            "default": None,
            "title": "Lower limits of the simulator (processes, open files, log bytes, disk bytes, run time; core/job_limits.py)",
        },
        "container_create_kwargs": {
            "anyOf": [
                {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "nano_cpus": {"type": "integer", "minimum": 1},
                        "device_requests": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "additionalProperties": False,
                                "properties": {
                                    "Driver": {"type": "string"},
                                    "Count": {"type": "integer"},
                                    "DeviceIDs": {"type": "array", "items": {"type": "string"}},
                                    "Capabilities": {"type": "array", "items": {"type": "array", "items": {"type": "string"}}},
                                },
                            },
                        },
                    },
                },
                {"type": "null"},
            ],
            "default": None,
            "title": "Simulator CPUs (nano_cpus) and GPUs (device_requests)",
        },
    },
}

DOCKER_SOCKET = "/var/run/docker.sock"


def _docker_access(host: Host) -> tuple[list[str], dict[str, str]]:
    """How the supervisor reaches the host's Docker engine: the socket mounted, or DOCKER_HOST.

    A TLS or ssh:// engine is the API's way in from outside; the supervisor runs on that host's
    own engine (its worker is there, `make host`) and holds none of those keys: it gets the socket."""
    url = host.docker_url or f"unix://{DOCKER_SOCKET}"
    if host.docker_tls is not None or url.startswith("ssh://"):
        url = f"unix://{DOCKER_SOCKET}"
    if url.startswith("unix://"):
        path = url[len("unix://"):]
        return [f"{path}:{DOCKER_SOCKET}"], {}
    return [], {"DOCKER_HOST": url}


def job_template(host: Host, *, docker: bool, image: str) -> dict[str, Any]:
    """The pool's base job template: everything fixed, except the job variables above.

    Fixed values sit in ``job_configuration`` itself (not as variable defaults), so no
    deployment or flow run can override them (Prefect validates run job variables
    against ``variables``; only ``env`` would be merged, and it is not a variable).
    """
    env = {
        **_run_env(),
        # a shared host's settings leave out ``data`` (its default), so a runtime image or `make host` older than it still reads them
        "OPEVA_HOST_SETTINGS": host.model_dump_json(exclude={"data"} if host.data == "shared" else None),
        containers.RUNTIME_IMAGE_ENV: host.image or image,
        **pool_env(docker, remote_engine=host.docker_url is not None),  # the jobs network's name, MLflow's addresses (deployments/mlflow_server.py)
    }
    if docker:
        from prefect_docker.worker import DockerWorker

        template = DockerWorker.get_default_base_job_template()
        socket_volumes, docker_env = _docker_access(host)
        template["job_configuration"] = {
            "command": CONTAINER_COMMAND,
            "env": {**env, **docker_env},
            "labels": {containers.ROLE: containers.SUPERVISOR_ROLE, containers.HOST: host.name},
            "name": None,
            "image": host.image or image,
            "registry_credentials": None,
            "image_pull_policy": "Never",  # images are built locally; ':latest' would mean Always
            "networks": [],
            "network_mode": "host",  # the only way a container reaches a 127.0.0.1 API here
            # Not auto-removed: the worker must always read the exit code of a supervisor that
            # dies (auto-remove raced that read); flows.sandbox.reap removes exited ones.
            "auto_remove": False,
            "volumes": [*host.volumes, *socket_volumes],
            "stream_output": True,
            "mem_limit": None,
            "memswap_limit": None,
            "privileged": False,
            "container_create_kwargs": None,
        }
    else:
        from prefect.workers.process import ProcessWorker

        template = ProcessWorker.get_default_base_job_template()
        template["job_configuration"] = {
            "command": None,
            "env": {**env, "PYTHONPATH": str(PROJECT_ROOT)},
            "labels": {"opeva.host": host.name},
            "name": None,
            "stream_output": True,
            "working_dir": str(PROJECT_ROOT),
        }
    template["variables"] = {**JOB_VARIABLES_SCHEMA, "description": f"What a job may set on host {host.name}"}
    return template


async def ensure_pool(client: Any, host: Host, *, docker: bool, image: str) -> str:
    pool_type = "docker" if docker else "process"
    template = job_template(host, docker=docker, image=image)
    try:
        existing = await client.read_work_pool(host.name)
    except ObjectNotFound:
        existing = None
    if existing is not None and existing.type != pool_type:
        log.warning("work pool %s is of type %s; recreating it as %s", host.name, existing.type, pool_type)
        await client.delete_work_pool(host.name)
        existing = None
    if existing is None:
        await client.create_work_pool(
            WorkPoolCreate(
                name=host.name,
                type=pool_type,
                base_job_template=template,
                concurrency_limit=host.concurrency_limit,
                description=f"OPEVA compute host {host.name}",
            )
        )
    else:
        await client.update_work_pool(
            host.name, WorkPoolUpdate(base_job_template=template, concurrency_limit=host.concurrency_limit)
        )
        old, new = existing.concurrency_limit, host.concurrency_limit
        if old and new and new > old:
            log.warning("host %s: concurrency_limit raised from %s to %s; its worker holds the limit it started with "
                        "(prefect worker start --limit): restart the worker to use the new slots", host.name, old, new)
    return pool_type


def _load_flow(import_path: str) -> Any:
    module, attr = import_path.split(":")
    return getattr(__import__(module, fromlist=[attr]), attr)


async def ensure_deployments(client: Any, host: Host, *, docker: bool) -> list[str]:
    workdir = IMAGE_WORKDIR if docker else str(PROJECT_ROOT)
    names = []
    for entrypoint, import_path in FLOWS.values():
        flow_obj = _load_flow(import_path)
        flow_id = await client.create_flow_from_name(flow_obj.name)
        await client.create_deployment(
            flow_id=flow_id,
            name=host.name,
            work_pool_name=host.name,
            entrypoint=entrypoint,
            pull_steps=[{"prefect.deployments.steps.set_working_directory": {"directory": workdir}}],
            parameter_openapi_schema=parameter_schema(flow_obj).model_dump_for_openapi(),
            job_variables=None,
            enforce_parameter_schema=True,
            description=(flow_obj.description or "").strip().splitlines()[0] if flow_obj.description else None,
            tags=["opeva", f"host:{host.name}"],
        )
        names.append(f"{flow_obj.name}/{host.name}")
    return names


async def register_blocks(settings: PlatformSettings, mongo_uri: str | None) -> None:
    await SharedStorage.aregister_type_and_schema()
    storage = SharedStorage(base_path=str(settings.shared_data_dir))
    storage.data_root().ensure_layout()
    await storage.asave(DEFAULT_BLOCK_NAME, overwrite=True)
    if mongo_uri:
        from blocks.sites import MongoSites

        await MongoSites.aregister_type_and_schema()
        await MongoSites(uri=mongo_uri).asave(DEFAULT_BLOCK_NAME, overwrite=True)


async def setup(
    hosts: HostsFile | None = None,
    *,
    settings: PlatformSettings | None = None,
    mongo_uri: str | None = None,
    docker: bool | None = None,
) -> dict[str, str]:
    """Returns each host's pool type."""
    settings = settings or PlatformSettings()
    hosts = hosts or load_hosts()

    if hosts.get(control_pool.CONTROL_POOL) is not None:
        raise SystemExit(f"the hosts file names a host {control_pool.CONTROL_POOL!r}: that name is the control pool's; rename the host")
    await register_blocks(settings, mongo_uri)
    types: dict[str, str] = {}
    async with get_client() as client:
        for host in hosts.hosts:
            # a Slurm host is a process pool: its worker runs on the submit node and calls sbatch (docs/slurm.md)
            use_docker = False if host.kind == "slurm" else docker_available(host) if docker is None else docker
            types[host.name] = await ensure_pool(client, host, docker=use_docker, image=settings.runtime_image)
            if use_docker:  # the tag the UI offers on a fresh platform (deployments/reference_image.py)
                from deployments.reference_image import ensure_reference_image

                await asyncio.to_thread(ensure_reference_image, host, host.image or settings.runtime_image)
            for name in await ensure_deployments(client, host, docker=use_docker):
                log.info("deployment %s on a %s pool", name, types[host.name])
        await control_pool.ensure_control_pool(client, _run_env())
        for name in await control_pool.ensure_control_deployments(client, control_pool.CONTROL_FLOWS):
            log.info("deployment %s on the control pool", name)
        await automations.ensure_lost_host_automation(client, hosts)
        await _publish_data_root_id(client, settings)
    await automations.ensure_zombie_automation()
    return types


async def _publish_data_root_id(client: Any, settings: PlatformSettings) -> None:
    """The data root's id, as a Prefect variable: a host joining from another machine checks
    that its mount holds the same root (core/data_root_id.py, deployments/join_host.py)."""
    from prefect.client.schemas.actions import VariableCreate, VariableUpdate

    from core.data_root_id import VARIABLE, ensure_marker

    ident = ensure_marker(settings.shared_data_dir)
    if await client.read_variable_by_name(VARIABLE) is None:
        await client.create_variable(VariableCreate(name=VARIABLE, value=ident))
    else:
        await client.update_variable(VariableUpdate(name=VARIABLE, value=ident))


def setup_as_configured(mongo_uri: str | None, docker: bool | None) -> dict[str, str]:
    """With PREFECT_API_URL set (the tests, docker compose), the environment is the configuration;
    without it (``make setup``), the platform ``make up`` runs is (core.settings.running_settings),
    or a refusal that says what is missing."""
    import os
    import sys

    from prefect.settings import PREFECT_API_AUTH_STRING, temporary_settings

    from core.hosts import load_hosts as load
    from core.settings import SettingsMismatch, running_settings

    if os.environ.get("PREFECT_API_URL"):
        return asyncio.run(setup(mongo_uri=mongo_uri, docker=docker))
    try:
        settings, recorded = running_settings()
    except SettingsMismatch as exc:
        sys.exit(f"make setup: {exc}")
    auth_file = settings.home / "prefect" / "auth_string"
    auth = os.environ.get("PREFECT_API_AUTH_STRING") or os.environ.get("OPEVA_PREFECT_AUTH_STRING") or (auth_file.read_text().strip() if auth_file.exists() else None)
    hosts = load(settings.hosts_file, env={**os.environ, "OPEVA_DATA_DIR": str(settings.shared_data_dir)})
    print(f"make setup: the platform of {settings.home} (image {settings.runtime_image}, hosts {settings.hosts_file})")
    with temporary_settings(updates={PREFECT_API_URL: settings.prefect_api_url, PREFECT_API_AUTH_STRING: auth}):
        return asyncio.run(setup(hosts, settings=settings, mongo_uri=mongo_uri or recorded.get("mongo_uri"), docker=docker))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mongo-uri", help="MongoDB URI saved in the 'default' MongoDB block")
    parser.add_argument("--process", action="store_true", help="use process pools even when Docker answers")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    types = setup_as_configured(args.mongo_uri, docker=False if args.process else None)
    for host, kind in types.items():
        print(f"host {host}: {kind} work pool '{host}', deployments run-simulation/{host}, build-dataset/{host}")
    print(f"control pool: process work pool 'control', deployments {', '.join(f'{f}/control' for f in control_pool.CONTROL_FLOWS)}")


if __name__ == "__main__":
    main()
