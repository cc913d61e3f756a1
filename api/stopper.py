"""Make sure a stopped job's container is gone.

Prefect's cancellation asks the worker to kill the container, but a hung
in-container engine can leave it running (Prefect issue #21616). After a stop
we wait for the run to be Cancelled; if it is not, or its container still
runs, we kill the container ourselves through the Docker daemon named in the
run's ``infrastructure_pid`` (``<docker_base_url>:<container_id>``) and record
the run as Cancelled.
"""

from __future__ import annotations

import asyncio
import logging
from uuid import UUID

from prefect.client.schemas.objects import StateType

from api.gateway import JobNotFound, PrefectGateway

log = logging.getLogger("opeva.api.stopper")

GRACE_SECONDS = 30.0
POLL_SECONDS = 1.0


def _split_pid(infrastructure_pid: str) -> tuple[str, str]:
    """(Docker base URL, container id). prefect-docker writes docker-py's own name for the
    local socket, ``http+docker://localhost``, which no client accepts as a base URL: that
    means the local engine ("")."""
    base_url, _, container_id = infrastructure_pid.rpartition(":")
    return ("" if base_url.startswith("http+docker://") else base_url), container_id


def container_running(infrastructure_pid: str) -> bool:
    """True while the run's container runs (False when gone, stopped or unreachable)."""
    import docker
    from docker.errors import DockerException

    base_url, container_id = _split_pid(infrastructure_pid)
    try:
        client = docker.DockerClient(base_url=base_url) if base_url else docker.from_env()
        return client.containers.get(container_id).status == "running"
    except DockerException:
        return False


def kill_container(infrastructure_pid: str) -> bool:
    """Kill the container if it still runs; True when it had to be killed."""
    import docker
    from docker.errors import DockerException, NotFound

    base_url, container_id = _split_pid(infrastructure_pid)
    try:
        client = docker.DockerClient(base_url=base_url) if base_url else docker.from_env()
        container = client.containers.get(container_id)
        if container.status != "running":
            return False
        container.kill()
        return True
    except NotFound:
        return False
    except DockerException as exc:  # a remote host's daemon may not be reachable from here
        log.warning("could not check container %s: %s", container_id, exc)
        return False


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
        exit_by = loop.time() + grace
        while loop.time() < exit_by and await asyncio.to_thread(container_running, run.infrastructure_pid):
            await asyncio.sleep(POLL_SECONDS)
        if await asyncio.to_thread(kill_container, run.infrastructure_pid):
            log.warning("run %s: container still ran %.0f s after the stop; killed it", run_id, 2 * grace)
    if run.state and run.state.type in (StateType.CANCELLING, StateType.RUNNING, StateType.PENDING):
        await gateway.force_cancelled(run_id, "Stopped: the container was killed by the OPEVA API")


async def kill_now(gateway: PrefectGateway, run_id: UUID) -> None:
    """Kill the run's container at once (an operator failed or cancelled a started run)."""
    try:
        run = await gateway.read_run(str(run_id))
    except JobNotFound:  # deleted meanwhile
        return
    if run.infrastructure_pid and await asyncio.to_thread(kill_container, run.infrastructure_pid):
        log.warning("run %s: killed its container after an operator ended the run", run_id)
