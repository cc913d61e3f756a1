"""A Slurm host on a two-node cluster: one node's link is cut mid-job, the other goes on.

The cluster (tests/e2e/conftest.py ``cluster``, deployments/slurm_cluster.py) is this machine's
node in the default partition (2 slots, as in test_slurm.py) plus ``node2``, alone in partition
``lossy``, its slurmd in a network namespace that reaches slurmctld, and is reached by it, only
through relays (deployments/slurm_netns_node.py). Cutting the relays is the lost node: unlike
test_slurm.py's drill (the one slurmd hung by SIGSTOP, the whole cluster out), the rest of the
cluster keeps working while the node is gone. OPEVA_REQUIRE_SLURM=1 (CI) makes a missing Slurm,
socat or nsenter a failure.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from deployments.platform import Platform
from helpers import experiment, final_status, slurm_platform, wait_for

SLURM_SECOND_NODE = True  # read by the cluster fixture

HOSTS = """
hosts:
  - name: deucalion
    kind: slurm
    concurrency_limit: 4
    start_worker: true
    slurm:
      partitions: [normal-x86, lossy]
      runtime: none
      defaults: {time: "00:05:00", cpus_per_task: 1, mem_gb: 0.5, gpus: 0}
      stop_grace_seconds: 5
      python: {python}
"""
SLURMD_TIMEOUT = 30  # the test cluster's SlurmdTimeout


@pytest.fixture(scope="module")
def nodes_platform(cluster) -> Iterator[Platform]:
    with slurm_platform(HOSTS, ("deucalion",), prefix="opeva-slurm-nodes-tests-") as platform:
        yield platform


@pytest.fixture
def api(nodes_platform: Platform) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=nodes_platform.api_url, timeout=60) as client:
        yield client


def submit(api: httpx.Client, run: str, partition: str, script: str) -> str:
    body = {"config": experiment("slurm-nodes", run), "target_host": "deucalion", "command": ["bash", "-c", script],
            "deucalion_options": {"partition": partition, "time": "00:05:00"}}
    r = api.post("/run-simulation", json=body)
    assert r.status_code == 200, r.text
    return r.json()["job_id"]


def finished_on(api: httpx.Client, job_id: str, node: str) -> None:
    status = final_status(api, job_id, 180)
    assert status["status"] == "finished", status
    info = api.get(f"/job-info/{job_id}").json()
    assert info["slurm_state"] == "COMPLETED" and info["slurm_node_list"] == node, info


def test_a_cut_node_fails_its_job_node_fail_while_the_other_node_runs_on(api, cluster):
    """A job on node2 (partition lossy) runs; node2's link is cut. While it is cut a job on the default
    partition starts and finishes on this machine's node; past SlurmdTimeout Slurm marks node2 down and
    the first job ends failed, error_code node_fail (slurm_state NODE_FAIL), never stuck running. With
    the link back node2 returns to service (ReturnToService=2) and takes a new job to the end."""
    lost = submit(api, "lost", "lossy", "echo started; while true; do sleep 1; done")
    wait_for(lambda: "started" in api.get(f"/logs/{lost}").text, 120, what="the job on node2 to start")
    # the output is followed apart from Slurm's fields, which the watcher records at its next poll
    node = wait_for(lambda: api.get(f"/job-info/{lost}").json().get("slurm_node_list"), 60, 0.25, what="the job's Slurm node")
    assert node == "node2"
    cluster.cut_node2()
    cut = time.monotonic()
    try:
        other = submit(api, "other", "normal-x86", "echo on the node that stays")
        finished_on(api, other, cluster.node)
        assert "on the node that stays" in api.get(f"/logs/{other}").text
        assert cluster.node2.relays == []  # still cut: the cluster worked without node2
        status = final_status(api, lost, SLURMD_TIMEOUT + 150)
        took = time.monotonic() - cut
        print(f"\nlink cut -> job {status['status']} in {took:.1f} s (SlurmdTimeout {SLURMD_TIMEOUT} s)")
        assert status["status"] == "failed", status
        info = api.get(f"/job-info/{lost}").json()
        assert info["slurm_state"] == "NODE_FAIL" and info["error_code"] == "node_fail", info
        assert took > SLURMD_TIMEOUT / 3  # Slurm's verdict (no answer for SlurmdTimeout since its last ping), not an instant guess of ours
        assert cluster.node_state("node2").startswith("down"), cluster.node_state("node2")
    finally:
        cluster.heal_node2()  # waits (bounded) for node2 idle in sinfo
    back = submit(api, "back", "lossy", "echo node2 is back")
    finished_on(api, back, "node2")
    assert "node2 is back" in api.get(f"/logs/{back}").text
