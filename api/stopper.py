"""Make sure a stopped job's container is gone.

Prefect's cancellation asks the worker to kill the container, but a hung
in-container engine can leave it running (Prefect issue #21616). After a stop
we wait for the run to be Cancelled; if it is not, or its container still
runs, we kill the container ourselves and record the run as Cancelled.

Which engine: the run's host's ``docker_url`` in hosts.yaml (with its ``docker_tls``,
clients from core/engines.py) when it names a network engine (a remote host), else the
one in the run's ``infrastructure_pid``
(``<docker_base_url>:<container_id>``, the worker's own view: its local socket
means *its* machine, which is ours only for local hosts). A job that finishes
while we wait keeps its final state: the run is read again before it is forced.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, TypeVar
from uuid import UUID

from prefect.client.schemas.objects import StateType

from api.gateway import JobNotFound, PrefectGateway
from core import containers
from core.engines import Engine, open_client

log = logging.getLogger("opeva.api.stopper")

GRACE_SECONDS = 30.0
POLL_SECONDS = 0.25  # a stopped job's containers are gone within about a second of its supervisor's exit
T = TypeVar("T")


def _split_pid(infrastructure_pid: str) -> tuple[str, str]:
    """(Docker base URL, container id). prefect-docker writes docker-py's own name for the
    local socket, ``http+docker://localhost``, which no client accepts as a base URL: that
    means the local engine ("")."""
    base_url, _, container_id = infrastructure_pid.rpartition(":")
    return ("" if base_url.startswith("http+docker://") else base_url), container_id


def host_engine(pool: str | None) -> Engine | None:
    """The network Docker engine hosts.yaml names for ``pool`` (None: use the run's own)."""
    if not pool:
        return None
    from core.hosts import current_hosts

    try:
        host = current_hosts().get(pool)
    except (OSError, ValueError) as exc:
        log.warning("hosts file unreadable while stopping a run of %s: %s", pool, exc)
        return None
    url = host.docker_url if host else None
    return Engine.of(host) if host and url and not url.startswith("unix://") else None


def _on_engine(infrastructure_pid: str, act: Callable[[Any, str], T], fallback: T, engine: Engine | None = None) -> T:
    """``act(client, container_id)`` against the Docker engine that runs the container
    (``engine`` when given); the client is closed after, and an engine that cannot be
    reached gives ``fallback``."""
    from docker.errors import DockerException
    from requests import RequestException

    base_url, container_id = _split_pid(infrastructure_pid)
    client = None
    try:
        client = open_client(engine or Engine(url=base_url or None))
        return act(client, container_id)
    except (DockerException, RequestException) as exc:  # a remote host's daemon may not be reachable from here
        log.warning("could not reach the engine of container %s: %s", container_id, exc)
        return fallback
    finally:
        if client is not None:
            client.close()


def container_running(infrastructure_pid: str, engine: Engine | None = None) -> bool:
    """True while the run's container runs (False when gone, stopped or unreachable)."""
    from docker.errors import NotFound

    def running(client: Any, container_id: str) -> bool:
        try:
            return client.containers.get(container_id).status == "running"
        except NotFound:
            return False

    return _on_engine(infrastructure_pid, running, False, engine)


def kill_job_containers(infrastructure_pid: str, run_id: UUID, engine: Engine | None = None) -> bool:
    """Kill the run's supervisor container if it still runs, and remove its simulator
    containers (a killed supervisor cannot remove them itself). True when the supervisor
    had to be killed."""
    from docker.errors import APIError, NotFound

    def kill(client: Any, container_id: str) -> bool:
        killed = False
        try:
            container = client.containers.get(container_id)
            if container.status == "running":
                container.kill()
                killed = True
                try:
                    container.wait(timeout=10)  # gone, not just signalled: callers remove its files next
                except (NotFound, APIError, OSError) as exc:  # removed meanwhile, or still dying after 10 s
                    log.info("run %s: waiting for its killed container: %s", run_id, exc)
        except NotFound:
            pass
        for sim in client.containers.list(ignore_removed=True, all=True, filters=containers.simulators_of(str(run_id))):
            try:
                sim.remove(force=True)
                log.warning("run %s: removed its simulator container %s", run_id, sim.name)
            except (NotFound, APIError) as exc:  # removed meanwhile by the supervisor or a reap
                log.info("run %s: simulator container %s: %s", run_id, sim.name, exc)
        return killed

    return _on_engine(infrastructure_pid, kill, False, engine)


def remove_exited_supervisor(infrastructure_pid: str, run_id: UUID, engine: Engine | None = None) -> int | None:
    """Remove the run's supervisor container once it has exited, reading its exit code first (the
    worker's own read no longer decides anything: the run is already Cancelled). Supervisors are not
    auto-removed (the worker must read a crashed one's code), so without this a stopped job's would
    stay until the next reap. Returns the exit code, None when it still runs or is gone."""
    from docker.errors import APIError, NotFound

    def remove(client: Any, container_id: str) -> int | None:
        try:
            container = client.containers.get(container_id)
        except NotFound:
            return None
        state = container.attrs.get("State") or {}
        if state.get("Running"):
            return None
        try:
            container.remove()
        except (NotFound, APIError) as exc:  # removed meanwhile, or removal already under way
            log.info("run %s: supervisor container %s: %s", run_id, container_id[:12], exc)
        return int(state.get("ExitCode", -1))

    return _on_engine(infrastructure_pid, remove, None, engine)


async def ensure_container_gone(gateway: PrefectGateway, run_id: UUID, grace: float = GRACE_SECONDS) -> None:
    """Runs after the stop's answer; a job deleted meanwhile (clients delete right after a
    stop, and the delete kills the container itself) leaves nothing to do."""
    try:
        await _ensure_container_gone(gateway, run_id, grace)
    except JobNotFound:
        log.info("run %s was deleted while its stop was checked", run_id)


async def _ensure_container_gone(gateway: PrefectGateway, run_id: UUID, grace: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace
    run = await gateway.read_run(str(run_id))
    while loop.time() < deadline:
        if run.state and run.state.type == StateType.CANCELLED:
            break
        await asyncio.sleep(POLL_SECONDS)
        run = await gateway.read_run(str(run_id))
    if run.infrastructure_pid:
        # A cancelled supervisor removes its simulator's container, then exits: give it the
        # same grace before killing it (killed mid-clean-up, it would leave that container).
        engine = await asyncio.to_thread(host_engine, run.work_pool_name)
        exit_by = loop.time() + grace
        while loop.time() < exit_by and await asyncio.to_thread(container_running, run.infrastructure_pid, engine):
            await asyncio.sleep(POLL_SECONDS)
        if await asyncio.to_thread(kill_job_containers, run.infrastructure_pid, run_id, engine):
            log.warning("run %s: container still ran %.0f s after the stop; killed it", run_id, 2 * grace)
        code = await asyncio.to_thread(remove_exited_supervisor, run.infrastructure_pid, run_id, engine)
        if code is not None:
            log.info("run %s: supervisor exited with %s after the stop; removed it", run_id, code)
        run = await gateway.read_run(str(run_id))  # it may have finished meanwhile: that state stands
    if run.state and run.state.type in (StateType.CANCELLING, StateType.RUNNING, StateType.PENDING):
        await gateway.cancel_now(run_id, "Stopped: the container was killed by the OPEVA API")
    from api.usecases.slurm_hosts import cancel_left_job  # a Slurm host's job: scancel what its run left (docs/slurm.md)

    if slurm_id := await asyncio.to_thread(cancel_left_job, run.work_pool_name, str(run_id)):
        log.warning("run %s: its Slurm job %s still ran after the stop; cancelled it", run_id, slurm_id)


async def kill_now(gateway: PrefectGateway, run_id: UUID) -> None:
    """Kill the run's containers at once (an operator failed or cancelled a started run, or a
    client deleted a job whose stop was under way)."""
    try:
        run = await gateway.read_run(str(run_id))
    except JobNotFound:  # deleted meanwhile
        return
    engine = await asyncio.to_thread(host_engine, run.work_pool_name) if run.infrastructure_pid else None
    if run.infrastructure_pid and await asyncio.to_thread(kill_job_containers, run.infrastructure_pid, run.id, engine):
        log.warning("run %s: killed its container after an operator ended the run", run_id)
