"""A host's worker retries its channel to the server a few seconds apart after a lost link
(deployments/worker_channel.py), so a host is online soon after its link returns (issue 22:
heal -> online <= 15 s; bench/lab.py measures it). These tests read the delay Prefect's own channel
would wait: they fail when a Prefect upgrade moves the private cap the mixin lowers."""

from __future__ import annotations

import sys

from prefect.client.orchestration import PrefectClient
from prefect.workers.process import ProcessWorker
from prefect_docker.worker import DockerWorker

from deployments.docker_worker import OpevaDockerWorker
from deployments.platform import worker_cli
from deployments.process_worker import OpevaProcessWorker
from deployments.worker_channel import RECONNECT_MAX_SECONDS


def _channel_delays(worker_class: type) -> list[float]:
    """The waits between reconnect attempts 1..8 of the channel a worker of this class builds."""
    worker = worker_class(work_pool_name="lab-1", name="lab-1@test")
    worker._client = PrefectClient(api="http://127.0.0.1:9/api")  # never called: the channel is only built
    worker._ensure_worker_channel()
    worker._ensure_worker_channel()  # as before every heartbeat: the same channel, the same cap
    return [worker._worker_channel._transport.reconnect_delay(n) for n in range(1, 9)]


def test_prefects_own_workers_wait_up_to_30_s_between_reconnects():
    """What the mixin changes: stock Prefect doubles up to 30 s, so a returning host waited up to that."""
    assert _channel_delays(DockerWorker)[-1] == 30.0
    assert _channel_delays(ProcessWorker)[-1] == 30.0


def test_the_platforms_workers_reconnect_a_few_seconds_apart_and_start_as_quickly():
    for worker_class in (OpevaDockerWorker, OpevaProcessWorker):
        delays = _channel_delays(worker_class)
        assert delays[0] == 1.0, worker_class  # the first retry is as prompt as Prefect's
        assert max(delays) == RECONNECT_MAX_SECONDS <= 5.0, (worker_class, delays)


def test_docker_and_process_hosts_start_the_platforms_worker_with_their_limit():
    for kind in ("docker", "process"):
        cmd = worker_cli("lab-1", kind, "lab-1@test", 2)
        assert cmd[:3] == [sys.executable, "-m", f"deployments.{kind}_worker"], cmd
        assert cmd[3:] == ["--pool", "lab-1", "--name", "lab-1@test", "--limit", "2"], cmd
