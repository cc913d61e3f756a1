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
