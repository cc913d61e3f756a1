"""The stop check that runs after POST /stop: it must survive the job's deletion, and read
the container address prefect-docker records."""

from __future__ import annotations

import asyncio
import uuid

from api.stopper import _split_pid, ensure_container_gone, kill_now


def test_local_engine_address_is_the_local_socket():
    assert _split_pid("http+docker://localhost:abc123") == ("", "abc123")
    assert _split_pid("tcp://gpu-1:2375:abc123") == ("tcp://gpu-1:2375", "abc123")


def test_checks_of_a_deleted_job_end_quietly(platform):
    """Clients delete right after a stop: the background check then finds no run, and must
    end without an error (an error there cut the client's next request: 'socket hang up')."""
    from prefect.client.orchestration import get_client

    from api.gateway import PrefectGateway

    async def check() -> None:
        async with get_client() as client:
            gateway = PrefectGateway(client)
            gone = uuid.uuid4()
            await ensure_container_gone(gateway, gone, grace=0.1)
            await kill_now(gateway, gone)

    asyncio.run(check())  # before the fix: JobNotFound


def test_a_remote_host_is_stopped_through_its_own_engine(tmp_path, monkeypatch):
    """The worker records its own view of the engine (its local socket); for a host with a
    network engine in hosts.yaml, that engine is asked, not this machine's."""
    from api.stopper import host_engine

    hosts = tmp_path / "hosts.yaml"
    hosts.write_text("hosts:\n  - name: local\n  - name: gpu-1\n    docker_url: tcp://gpu-1.example:2376\n"
                     "  - name: sock\n    docker_url: unix:///srv/docker.sock\n")
    monkeypatch.setenv("OPEVA_HOSTS_FILE", str(hosts))
    assert host_engine("gpu-1").url == "tcp://gpu-1.example:2376" and host_engine("gpu-1").tls is None
    assert host_engine("local") is None and host_engine("sock") is None and host_engine("unknown") is None and host_engine(None) is None


def test_a_job_finishing_during_the_stop_check_keeps_its_final_state(api, monkeypatch):
    """The check reads the run again before forcing Cancelled: a job that completed while
    its container was waited for stays Completed (it was overwritten before). The fast tier
    has no Docker engine: the container is said to run for the first 2 s."""
    import time

    from prefect.client.orchestration import get_client

    from api import stopper
    from prefect.client.schemas.objects import StateType
    from prefect.states import Completed, Running

    from api.gateway import PrefectGateway

    job = api.post("/run-simulation", json={"config": {"experiment": {"name": "race", "run_name": "r"}}, "command": ["true"],
                                            "target_host": "offline"}).json()["job_id"]

    async def race() -> StateType:
        async with get_client() as client:
            gateway = PrefectGateway(client)
            run_id = uuid.UUID(job)
            await client.set_flow_run_state(run_id, Running(), force=True)
            await client.update_flow_run(run_id, infrastructure_pid="http+docker://localhost:0123456789ab")

            until = time.monotonic() + 2.0
            monkeypatch.setattr(stopper, "container_running", lambda pid, engine=None: time.monotonic() < until)

            async def finish() -> None:
                await asyncio.sleep(1.5)  # after the state loop (1 s), while the container is waited for
                await client.set_flow_run_state(run_id, Completed(), force=True)

            await asyncio.gather(ensure_container_gone(gateway, run_id, grace=1.0), finish())
            return (await client.read_flow_run(run_id)).state.type

    assert asyncio.run(race()) == StateType.COMPLETED
    api.delete(f"/job/{job}")
